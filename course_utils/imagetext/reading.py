"""Reading comprehension on the course's captions: a caption, a yes/no question about it, the answer.

"a thick, upright seven" + "is this digit greater than five?" -> yes. The caption says everything
needed, so a text model alone can answer; what it has to learn is to read the question against the
caption, and the test asks in wordings it never saw in training (held-out caption templates and
paraphrased questions). Answers are balanced per question: for every pair, a question is drawn,
then the answer (yes or no, half each), then a caption with that answer to it, so neither the
question alone nor the caption alone tells the answer (:func:`question_only_accuracy` measures the first).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import ImageSet
from .attributes import WORDS, AttributeBins
from .captions import make_captions
from .questions import Question, question_pool
from .words import tokens


@dataclass
class CaptionQuestions:
    """N (caption, question, answer) triples.

    Attributes:
        captions: N strings; questions: N strings; answers: ``(N,)`` int64, 1 = yes, 0 = no.
        question_ids: ``(N,)`` int64, each question's index in ``question_pool`` (the same for both wordings).
        kinds: N strings, the kind of each question (``Question.kind``: "class", "parity", "compare" or an attribute).
        split: ``"train"`` (training templates and wordings) or ``"test"`` (held-out templates, paraphrased questions).
    """

    captions: list[str]
    questions: list[str]
    answers: torch.Tensor
    question_ids: torch.Tensor
    kinds: list[str]
    split: str

    def __len__(self) -> int:
        return len(self.captions)


def named_levels(caption: str, attributes: tuple[str, ...]) -> dict[str, int]:
    """The third (0, 1, 2) of each attribute in ``attributes`` that ``caption`` names, e.g. ``{"thickness": 2}``."""
    words = set(tokens(caption))
    return {name: level for name in attributes for level, word in enumerate(WORDS[name]) if word in words}


def _answer_table(captions: list[str], labels: list[int], pool: tuple[Question, ...],
                  attributes: tuple[str, ...]) -> torch.Tensor:
    """``(Q, N)`` int64: each question's answer for each caption, 1 yes, 0 no, -1 the caption does not say."""
    table = torch.full((len(pool), len(captions)), -1, dtype=torch.int64)
    for n, (caption, label) in enumerate(zip(captions, labels)):
        levels = named_levels(caption, attributes)
        for k, question in enumerate(pool):
            if question.attribute is None:
                table[k, n] = int(label in question.yes_labels)
            elif levels.get(question.attribute, 1) != 1:  # named, and not the middle third
                table[k, n] = int(levels[question.attribute] == question.yes_level)
    return table


def make_caption_questions(data: ImageSet, bins: AttributeBins, split: str, seed: int = 0) -> CaptionQuestions:
    """As many (caption, question, answer) triples as ``data`` has images, balanced per question.

    Args:
        data: MNIST or Fashion-MNIST images; each gets one caption (:func:`make_captions`).
        bins: fitted on the TRAIN split's attributes; questions use ``bins.informative`` attributes.
        split: ``"train"``: training caption templates and question wordings; ``"test"``: the held-out
            templates and each question's paraphrase (``Question.held_out``).
        seed: same input and seed -> same triples.
    Returns:
        a :class:`CaptionQuestions` of ``len(data)`` triples. A caption may serve several questions (drawn
        with replacement among the captions that answer the drawn question the drawn way).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    captioned = make_captions(data, bins, split, seed=seed)
    pool = question_pool(data.classes, bins.informative)
    table = _answer_table(captioned.captions, captioned.labels.tolist(), pool, bins.informative)
    generator = torch.Generator().manual_seed(seed + 1)
    captions, questions, answers, ids = [], [], [], []
    for _ in range(len(captioned)):
        k = int(torch.randint(len(pool), (1,), generator=generator))
        answer = int(torch.randint(2, (1,), generator=generator))
        candidates = (table[k] == answer).nonzero().flatten()
        if len(candidates) == 0:  # tiny sets only: no caption answers this question this way
            answer = 1 - answer
            candidates = (table[k] == answer).nonzero().flatten()
        n = int(candidates[torch.randint(len(candidates), (1,), generator=generator)])
        captions.append(captioned.captions[n])
        questions.append(pool[k].text if split == "train" else pool[k].held_out)
        answers.append(answer)
        ids.append(k)
    return CaptionQuestions(captions, questions, torch.tensor(answers), torch.tensor(ids),
                            [pool[k].kind for k in ids], split)


def question_only_accuracy(train: CaptionQuestions, test: CaptionQuestions) -> float:
    """Accuracy on ``test`` of answering each question with its majority answer in ``train``, never reading the
    caption (questions are matched by ``question_ids``, so a paraphrase counts as its training question)."""
    guesses = torch.ones(len(test), dtype=torch.int64)  # a question never seen in training: guess yes
    for k in test.question_ids.unique().tolist():
        seen = train.answers[train.question_ids == k]
        if len(seen):
            guesses[test.question_ids == k] = int(seen.float().mean() >= 0.5)
    return (guesses == test.answers).float().mean().item()
