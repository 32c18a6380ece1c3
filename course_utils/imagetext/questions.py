"""Yes/no questions about images, one per image, balanced so that neither modality alone answers.

E.g. "is this digit even?" or "is it thicker than usual?". For every question string, yes and no
are (almost exactly) equally frequent, so a model that reads only the question scores about 50%;
each image's answer is drawn at random (half yes, half no) before its question is picked, so a
model that sees only the image scores about 50% too; a model that knows the class and the
attributes scores 100% (:func:`answer_question` is that oracle, :func:`answer_questions` the same
for many images at once). :func:`majority_baselines` measures the two one-modality ceilings.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from ..data import MNIST_CLASSES, ImageSet
from .attributes import ATTRIBUTES, WORDS, AttributeBins, measure_attributes
from .words import FASHION_WORDS, MNIST_WORDS, check_data, class_words, with_articles


@dataclass(frozen=True)
class Question:
    """A yes/no question about the class (``yes_labels``) or about an attribute's third.

    An attribute question is answered yes at ``yes_level`` (0 or 2), no at the opposite end, and is
    not asked of images in the middle third (the answer there would be a coin toss).
    """

    text: str
    held_out: str  # a paraphrase, to test wordings a model never saw
    kind: str  # "class", "parity", "compare", "group", or an attribute name
    yes_labels: frozenset[int] = frozenset()
    attribute: str | None = None
    yes_level: int = 2

    def answers(self, labels: torch.Tensor, levels: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(N,)`` int64 on the device of ``labels (N,)`` and ``levels`` (``{name: (N,)}``): 1 yes, 0 no,
        -1 does not apply."""
        if self.attribute is None:
            return torch.isin(labels, torch.tensor(sorted(self.yes_labels), device=labels.device)).long()
        level = levels[self.attribute]
        return torch.where(level == self.yes_level, 1, torch.where(level == 2 - self.yes_level, 0, -1))


# Per attribute: (wording, held-out wording) of the question answered yes in the low third, then in the high third.
ATTRIBUTE_QUESTIONS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "thickness": (("is it thinner than usual?", "are its lines thinner than most?"),
                  ("is it thicker than usual?", "are its lines thicker than most?")),
    "slant": (("does it lean further left than usual?", "is it tilted more to the left than most?"),
              ("does it lean further right than usual?", "is it tilted more to the right than most?")),
    "size": (("is it smaller than usual?", "does it take up less space than most?"),
             ("is it larger than usual?", "does it take up more space than most?")),
    "x": (("is it placed to the left?", "does it sit towards the left?"),
          ("is it placed to the right?", "does it sit towards the right?")),
    "y": (("is it placed high up?", "does it sit near the top?"),
          ("is it placed low down?", "does it sit near the bottom?")),
    "brightness": (("is it fainter than usual?", "is it darker than most?"),
                   ("is it brighter than usual?", "is it lighter than most?")),
}


def _mnist_questions() -> list[Question]:
    digits = range(10)
    pool = [Question(with_articles(f"is this a {w}?"), with_articles(f"does the image show a {w}?"), "class",
                     frozenset({d})) for d, w in zip(digits, MNIST_WORDS)]
    pool += [Question("is this digit even?", "is the number even?", "parity", frozenset(range(0, 10, 2))),
             Question("is this digit odd?", "is the number odd?", "parity", frozenset(range(1, 10, 2)))]
    pool += [Question(f"is this digit greater than {MNIST_WORDS[k]}?", f"is the number above {MNIST_WORDS[k]}?",
                      "compare", frozenset(d for d in digits if d > k)) for k in (3, 5, 7)]
    pool += [Question(f"is this digit less than {MNIST_WORDS[k]}?", f"is the number below {MNIST_WORDS[k]}?",
                      "compare", frozenset(d for d in digits if d < k)) for k in (4, 6)]
    return pool


def _fashion_questions() -> list[Question]:
    pool = [Question(with_articles(f"is this a {w}?"), with_articles(f"does the image show a {w}?"), "class",
                     frozenset({c})) for c, w in enumerate(FASHION_WORDS)]
    return pool + [
        Question("is it something you wear on your feet?", "is it footwear?", "group", frozenset({5, 7, 9})),
        Question("is it worn on the upper body?", "would you wear it on your top half?", "group",
                 frozenset({0, 2, 4, 6})),
        Question("is it a piece of clothing, not a shoe or a bag?", "is it a garment rather than shoes or a bag?",
                 "group", frozenset({0, 1, 2, 3, 4, 6})),
    ]


@lru_cache(maxsize=None)
def _pool(classes: tuple[str, ...], attributes: tuple[str, ...]) -> tuple[Question, ...]:
    class_words(classes)  # validates
    pool = _mnist_questions() if list(classes) == MNIST_CLASSES else _fashion_questions()
    for name in attributes:
        for yes_level, (text, held_out) in zip((0, 2), ATTRIBUTE_QUESTIONS[name]):
            pool.append(Question(text, held_out, name, attribute=name, yes_level=yes_level))
    return tuple(pool)


def question_pool(classes: Sequence[str], attributes: Sequence[str] = ATTRIBUTES) -> tuple[Question, ...]:
    """Every question for this dataset: the class-based ones plus two per attribute in ``attributes``."""
    unknown = set(attributes) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"attributes: expected names from {list(ATTRIBUTES)}, got {sorted(unknown)}")
    return _pool(tuple(classes), tuple(attributes))


def answer_question(question: str, label: int, words: dict[str, str], classes: Sequence[str]) -> int:
    """The oracle: 1 (yes) or 0 (no) from the true class and attribute words; -1 if the question does not apply.

    Args:
        question: any wording from :func:`question_pool` (training or held-out).
        label: the image's class index.
        words: the image's attribute words, e.g. ``{"thickness": "thick", ...}`` (only the asked one is read).
        classes: ``cu.MNIST_CLASSES`` or ``cu.FASHION_CLASSES``.
    """
    for q in question_pool(classes):
        if question in (q.text, q.held_out):
            if q.attribute is None:
                return int(label in q.yes_labels)
            if words.get(q.attribute) not in WORDS[q.attribute]:
                raise ValueError(f"words[{q.attribute!r}]: expected one of {WORDS[q.attribute]}, "
                                 f"got {words.get(q.attribute)!r}")
            level = WORDS[q.attribute].index(words[q.attribute])
            return 1 if level == q.yes_level else 0 if level == 2 - q.yes_level else -1
    raise ValueError(f"question: {question!r} is not in this dataset's question pool (see question_pool)")


def answer_questions(questions: Sequence[str], labels: torch.Tensor, levels: dict[str, torch.Tensor],
                     classes: Sequence[str]) -> torch.Tensor:
    """The oracle of :func:`answer_question` for N images at once, from their classes and attribute thirds.

    Give it the true labels and levels to get the true answers, or what a model reads in the images
    (e.g. :func:`course_utils.fusion.read_images`) to get the answers that reading implies.

    Args:
        questions: N wordings from :func:`question_pool` (training or held-out).
        labels: ``(N,)`` int class indices. levels: ``{attribute: (N,) int}`` thirds (0, 1, 2), as from
            :meth:`AttributeBins.levels`; only the attributes the questions ask about are read.
        classes: ``cu.MNIST_CLASSES`` or ``cu.FASHION_CLASSES``.
    Returns:
        ``(N,)`` int64 on ``labels``' device: 1 yes, 0 no, -1 the question does not apply (a middle third).
    Raises:
        ValueError: lengths differ, a question is not in the pool, or an asked attribute has no levels.
    """
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or len(labels) != len(questions):
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else f"a {type(labels).__name__}"
        raise ValueError(f"labels: expected a (N,) tensor, one label per question (N = {len(questions)}), got {got}")
    by_text = {wording: q for q in question_pool(classes) for wording in (q.text, q.held_out)}
    unknown = [text for text in questions if text not in by_text]
    if unknown:
        raise ValueError(f"questions: {unknown[0]!r} is not in this dataset's question pool (see question_pool)")
    asked = [by_text[text] for text in questions]
    missing = sorted({q.attribute for q in asked if q.attribute is not None} - set(levels))
    if missing:
        raise ValueError(f"levels: expected the thirds of every asked attribute, missing {missing}")
    answers = torch.full((len(questions),), -1, dtype=torch.int64, device=labels.device)
    for q in set(asked):
        rows = torch.tensor([i for i, other in enumerate(asked) if other is q], device=labels.device)
        subset = {q.attribute: levels[q.attribute].to(labels.device)[rows]} if q.attribute is not None else {}
        answers[rows] = q.answers(labels[rows], subset)
    return answers


@dataclass
class QuestionSet:
    """Images with one yes/no question each; every tensor on the device of the images.

    Attributes:
        images: ``(N, 1, H, W)``; labels: ``(N,)`` int64; questions: N strings.
        answers: ``(N,)`` int64, 1 = yes, 0 = no.
        kinds: N strings, the kind of each question (``Question.kind``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    questions: list[str]
    answers: torch.Tensor
    kinds: list[str]

    def __len__(self) -> int:
        return len(self.questions)


def make_questions(data: ImageSet, bins: AttributeBins, seed: int = 0, held_out_wording: bool = False) -> QuestionSet:
    """One yes/no question per image, balanced so that neither the image nor the question alone gives the answer.

    Half the images, drawn at random, get the answer yes, the others no; then, visiting the images
    in a seeded order, the image's question is the one, among those with its answer, asked most
    often so far with the OTHER answer (ties broken at random). Every question string thus ends up
    with as many yes as no, within a few.

    Args:
        data: MNIST or Fashion-MNIST images ``(N, 1, H, W)``, on any device (measured there; the
            answer table is then brought to the CPU to pick the questions).
        bins: fitted on the TRAIN split; attribute questions use ``bins.informative`` attributes only.
        seed: same input and seed -> same questions and answers.
        held_out_wording: ask each question in its paraphrase (``Question.held_out``).
    Returns:
        a :class:`QuestionSet` on ``data``'s device (its images and labels are ``data``'s own tensors).
    """
    check_data(data)
    pool = question_pool(data.classes, bins.informative)
    levels = bins.levels(measure_attributes(data.images))
    table = torch.stack([q.answers(data.labels, levels) for q in pool], 1).cpu().numpy()  # (N, Q): 1, 0 or -1
    generator = torch.Generator().manual_seed(seed)
    targets = (torch.randperm(len(data), generator=generator) % 2).numpy()  # half yes, half no
    ties = torch.rand(len(data), len(pool), generator=generator, dtype=torch.float64).numpy()
    order = torch.randperm(len(data), generator=generator).numpy()
    chosen = _assign(table, targets, ties, order).tolist()
    return QuestionSet(data.images, data.labels,
                       [pool[q].held_out if held_out_wording else pool[q].text for q in chosen],
                       torch.from_numpy(targets).long().to(data.device), [pool[q].kind for q in chosen])


def _assign(table: np.ndarray, targets: np.ndarray, ties: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Pick a question per image whose answer is its target, keeping each question's yes - no near 0.

    Args:
        table: ``(N, Q)`` each question's answer for each image (1, 0, or -1: not asked).
        targets: ``(N,)`` the answer each image must get. Every image has a yes and a no question
            (the class questions), so there is always a candidate.
        ties: ``(N, Q)`` in [0, 1): random tie-breaks. order: the order images are visited.
    Returns:
        ``(N,)`` question index per image.
    """
    surplus = np.zeros(table.shape[1])  # per question: times asked with yes minus times with no
    chosen = np.empty(len(table), dtype=np.int64)
    for i in order:
        sign = 1.0 if targets[i] == 1 else -1.0
        score = np.where(table[i] == targets[i], sign * surplus + ties[i], np.inf)
        q = int(score.argmin())
        chosen[i] = q
        surplus[q] += sign
    return chosen


def majority_baselines(train: QuestionSet, test: QuestionSet) -> dict[str, float]:
    """Test accuracy of the best one-modality guessers, fitted on ``train`` (the sets may be on any device).

    - ``question_only``: the majority answer of each question string (else the overall majority);
      no model that reads only the question can do much better.
    - ``class_only``: the majority answer of each class; an upper bound for a perfect image
      classifier that ignores the question.

    Raises ``ValueError`` for an empty set (no majority, no accuracy) or answers other than 0 and 1.
    """
    for name, questions in (("train", train), ("test", test)):
        if len(questions) == 0:
            raise ValueError(f"{name}: expected at least one question, got an empty QuestionSet")
        if bool(((questions.answers != 0) & (questions.answers != 1)).any()):
            values = sorted(set(questions.answers.tolist()))
            raise ValueError(f"{name}: answers must be 0 (no) or 1 (yes), got {values}")
    overall = int(train.answers.float().mean() >= 0.5)
    train_answers, test_answers = train.answers.tolist(), test.answers.cpu()

    def accuracy(train_keys: list, test_keys: list) -> float:
        yes: dict = {}
        for key, answer in zip(train_keys, train_answers):
            yes.setdefault(key, []).append(answer)
        majority = {key: int(np.mean(v) >= 0.5) for key, v in yes.items()}
        guesses = torch.tensor([majority.get(key, overall) for key in test_keys])
        return (guesses == test_answers).float().mean().item()

    return {"question_only": accuracy(train.questions, test.questions),
            "class_only": accuracy(train.labels.tolist(), test.labels.tolist())}
