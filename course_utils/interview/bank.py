"""The question bank of notebook 09: loading ``bank.json``, filling in the course's figures, resolving links, rendering.

``bank.json`` (one data file, read with the standard library) holds ``questions`` and ``designs``:

- a question has ``id`` (unique), ``topic`` (a key of :data:`TOPICS`), ``question``, ``answer`` (short enough to say
  aloud) and optionally ``source`` (its number in the source material, 1-35), ``source_claim`` and ``correction``
  (what the source answered wrongly, and the fix: both or neither) and ``link``: ``"<notebook stem>#<heading
  text>"``, the ``##`` or ``###`` heading of the section that demonstrates the answer (a test resolves every link);
- a design prompt has ``id``, ``title``, ``prompt``, ``rubric`` (a list of marking points) and ``answer``.

A figure of the course is written ``[[notebook.metric]]`` and read from the committed ``results/<notebook>.json``
when rendered, so an answer always quotes the course's latest run.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ..results import RESULTS_DIR

BANK = Path(__file__).with_name("bank.json")
NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
TOPICS = {"cnn": "Convolutional networks", "training": "Training", "vit_bert": "ViT, BERT and image-text",
          "attention": "Attention", "fusion_clip": "Fusion and CLIP", "finetuning": "Fine-tuning and PEFT",
          "evaluation": "Evaluation", "practical": "Practical problems", "llm_vision": "LLMs in vision"}
FIGURE = re.compile(r"\[\[([0-9A-Za-z_]+)\.([0-9A-Za-z_]+)\]\]")
SOURCE_QUESTIONS = range(1, 36)  # the numbers of the source material's questions (33 spoken + 2 coding)


class Markdown(str):
    """Text that Jupyter shows rendered as Markdown when it is a cell's last value (no IPython import needed);
    everywhere else it is the plain text."""

    def _repr_markdown_(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Question:
    """One interview question with the answer to say aloud; ``source`` is its number in the source material."""

    id: str
    topic: str
    question: str
    answer: str
    source: int | None = None
    source_claim: str | None = None
    correction: str | None = None
    link: str | None = None


@dataclass(frozen=True)
class Design:
    """A system-design prompt with its marking rubric and a model answer."""

    id: str
    title: str
    prompt: str
    answer: str
    rubric: tuple[str, ...] = field(default_factory=tuple)


def _load() -> dict:
    return json.loads(BANK.read_text(encoding="utf-8"))


def load_questions() -> list[Question]:
    """Every question of ``bank.json``, in file order.

    Raises:
        ValueError: a question lacks a field, has an unknown topic or field, a duplicate id, or a
            ``source_claim`` without a ``correction`` (or the reverse).
    """
    questions, seen = [], set()
    for raw in _load()["questions"]:
        try:
            question = Question(**raw)
        except TypeError as error:
            raise ValueError(f"bank.json: question {raw.get('id', '?')!r}: {error}") from None
        if question.topic not in TOPICS:
            raise ValueError(f"bank.json: question {question.id!r} has topic {question.topic!r}; expected one of "
                             f"{sorted(TOPICS)}")
        if question.id in seen:
            raise ValueError(f"bank.json: two questions have the id {question.id!r}")
        if (question.source_claim is None) != (question.correction is None):
            raise ValueError(f"bank.json: question {question.id!r} needs both source_claim and correction, or neither")
        seen.add(question.id)
        questions.append(question)
    return questions


def load_designs() -> list[Design]:
    """The system-design prompts of ``bank.json``."""
    return [Design(**{**raw, "rubric": tuple(raw.get("rubric", ()))}) for raw in _load()["designs"]]


@lru_cache(maxsize=None)
def _metrics(notebook: str) -> dict[str, float]:
    path = RESULTS_DIR / f"{notebook}.json"
    return json.loads(path.read_text(encoding="utf-8"))["metrics"] if path.exists() else {}


def figure(notebook: str, metric: str) -> str:
    """A recorded figure of the committed run, as printed in answers: accuracies as percentages.

    Raises:
        KeyError: ``results/<notebook>.json`` has no such metric.
    """
    metrics = _metrics(notebook)
    if metric not in metrics:
        raise KeyError(f"results/{notebook}.json has no metric {metric!r}")
    value = metrics[metric]
    if isinstance(value, int):
        return f"{value:,}"
    if "acc" in metric:
        return f"{100 * value:.1f}%"
    return f"{value:.3g}"


def fill_figures(text: str) -> str:
    """``text`` with every ``[[notebook.metric]]`` replaced by the recorded figure, e.g. ``98.8%``."""
    return FIGURE.sub(lambda m: figure(m.group(1), m.group(2)), text)


@lru_cache(maxsize=None)
def headings(notebook: str) -> tuple[str, ...]:
    """The ``##`` and ``###`` headings of ``notebooks/<notebook>.ipynb``, without the hashes; () when it is missing."""
    path = NOTEBOOKS_DIR / f"{notebook}.ipynb"
    if not path.exists():
        return ()
    found = []
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            found += [line.lstrip("#").strip() for line in text.splitlines() if line.startswith(("## ", "### "))]
    return tuple(found)


def resolve_link(link: str) -> tuple[str, str]:
    """``"<notebook stem>#<heading>"`` -> (notebook file name, heading).

    Raises:
        ValueError: the link has no ``#``, or names a notebook or heading that does not exist.
    """
    notebook, sep, heading = link.partition("#")
    if not sep:
        raise ValueError(f"link {link!r}: expected '<notebook stem>#<heading text>'")
    found = headings(notebook)
    if not found:
        raise ValueError(f"link {link!r}: no notebook notebooks/{notebook}.ipynb")
    if heading not in found:
        raise ValueError(f"link {link!r}: notebooks/{notebook}.ipynb has no heading {heading!r}")
    return f"{notebook}.ipynb", heading


def link_markdown(link: str) -> str:
    """A Markdown link to the heading, with the anchor JupyterLab gives it (spaces become '-')."""
    file, heading = resolve_link(link)
    anchor = heading.replace(" ", "-")
    return f"[{file[:2]} § {heading}]({file}#{anchor})"


def render_question(question: Question, answer: bool = True, collapsed: bool = False) -> str:
    """One question as Markdown: the question, then (``answer=True``) the answer, the source's wrong claim and its
    correction, and the link to the section that shows it; ``collapsed`` hides the answer until it is clicked."""
    if collapsed:
        body = render_question(question).split("\n\n", 1)[1]
        source = f" <i>(source Q{question.source})</i>" if question.source else ""
        return f"<details><summary><b>{question.question}</b>{source}</summary>\n\n{body}\n\n</details>"
    source = f" *(source Q{question.source})*" if question.source else ""
    lines = [f"**Q. {question.question}**{source}"]
    if answer:
        lines.append(f"A. {fill_figures(question.answer)}")
        if question.source_claim:
            lines.append(f"*The source says:* {fill_figures(question.source_claim)} *Correction:* "
                         f"{fill_figures(question.correction or '')}")
        if question.link:
            lines.append(f"See {link_markdown(question.link)}.")
    return "\n\n".join(lines)


def render_topic(topic: str, questions: list[Question] | None = None, collapsed: bool = True) -> str:
    """Every question of ``topic`` as one Markdown block, with a heading; answers hidden until clicked
    (``collapsed``).

    Raises:
        ValueError: ``topic`` is not one of ``TOPICS``.
    """
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; expected one of {sorted(TOPICS)}")
    chosen = [q for q in (questions if questions is not None else load_questions()) if q.topic == topic]
    blocks = [render_question(q, collapsed=collapsed) for q in chosen]
    return "\n\n".join([f"#### {TOPICS[topic]} ({len(chosen)} questions)", *blocks])


def render_design(design: Design) -> str:
    """A design prompt as Markdown: prompt, rubric, model answer."""
    rubric = "\n".join(f"- {item}" for item in design.rubric)
    return (f"### {design.title}\n\n**Prompt.** {design.prompt}\n\n**Rubric** (one point each):\n{rubric}\n\n"
            f"**Model answer.** {fill_figures(design.answer)}")
