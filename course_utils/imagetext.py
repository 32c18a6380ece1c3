"""An image–text teaching dataset made from MNIST or Fashion-MNIST: seeded, deterministic, offline.

From an :class:`~course_utils.data.ImageSet` it builds three things:

1. **Attributes** measured from the pixels (:func:`measure_attributes`): stroke thickness, slant,
   size, position and brightness, as numbers ``(N,)``. :class:`AttributeBins` cuts each one into
   thirds on the training split and names them ("thin" / "regular" / "thick", ...). Every word is
   relative to the training images: "thick" means thicker than two thirds of them.
2. **Captions** (:func:`make_captions`), e.g. "a thick, upright seven" or "a large item: coat":
   the class word once plus one to three attribute words, in one of eight training sentence
   templates. The test split uses three other wordings (held out), so a model that only memorised
   sentence frames is caught out. :class:`CaptionVocab` turns captions into token ids and back.
3. **Yes/no questions** (:func:`make_questions`), one per image, e.g. "is this digit even?" or
   "is it thicker than usual?". The answer needs the image AND the question: for every question
   string, yes and no are (almost exactly) equally frequent, so a model that reads only the
   question scores about 50%; each image's answer is drawn at random (half yes, half no) before
   its question is picked, so a model that sees only the image scores about 50% too; a model
   that knows the class and the attributes scores 100% (:func:`answer_question` is that oracle).
   :func:`majority_baselines` measures the two one-modality ceilings.

Attributes whose middle third is too narrow to see (digit position in MNIST, which is centred by
its centre of mass; slant of mostly symmetric clothes) are left out of captions and questions
(:attr:`AttributeBins.informative`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import FASHION_CLASSES, MNIST_CLASSES, ImageSet, check_images

ATTRIBUTES = ("thickness", "slant", "size", "x", "y", "brightness")
INK = 0.3  # a pixel above this value is ink (for size and brightness)
# The word for each third of an attribute: below the first tercile, between, above the second.
WORDS: dict[str, tuple[str, str, str]] = {
    "thickness": ("thin", "regular", "thick"),
    "slant": ("left-leaning", "upright", "right-leaning"),
    "size": ("small", "mid-sized", "large"),
    "x": ("left-side", "central", "right-side"),
    "y": ("high", "mid-height", "low"),
    "brightness": ("faint", "mid-grey", "bright"),
}
# An attribute is used in captions and questions only when its middle third is at least this wide.
MIN_SPREAD = {"thickness": 0.25, "slant": 0.1, "size": 30.0, "x": 2.0, "y": 2.0, "brightness": 0.05}

MNIST_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FASHION_WORDS = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")

# Slots: {cls} the class word, {thing} "digit" or "item", {a} {b} {c} attribute words.
TRAIN_TEMPLATES = (
    "a {a} {cls}",
    "a {a}, {b} {cls}",
    "a {a}, {b}, {c} {cls}",
    "a picture of a {a} {cls}",
    "a {cls} that looks {a}",
    "a {cls}, {a} and {b}",
    "a {a} {thing}: {cls}",
    "this {thing} is a {a}, {b} {cls}",
)
TEST_TEMPLATES = (
    "here we see a {cls} which is {a}",
    "{a} and {b}: it shows a {cls}",
    "the image contains a {cls}: {a}, {b}, {c}",
)
TEMPLATES = {"train": TRAIN_TEMPLATES, "test": TEST_TEMPLATES}


# ---------------------------------------------------------------------------------------------
# Attributes
# ---------------------------------------------------------------------------------------------

def measure_attributes(images: torch.Tensor, chunk: int = 8192) -> dict[str, torch.Tensor]:
    """Measure six attributes of each image from its pixels (vectorised; blank images give zeros).

    - ``thickness``: stroke width in pixels, ``2 * ink mass / total variation``. A ribbon of width
      ``w`` and length ``L`` has mass ``w L`` and an outline (the summed gradient magnitude) ``2 L``.
    - ``slant``: ``-cov(x, y) / var(y)`` of the ink, i.e. how many pixels the ink moves right per
      pixel up; ``> 0`` leans right (``/``), ``< 0`` leans left (``\\``).
    - ``size``: area in pixels of the box around the ink pixels (``> INK``).
    - ``x``, ``y``: centre of mass of the ink in pixels from the left / top edge.
    - ``brightness``: mean value of the ink pixels, in [0, 1].

    Args:
        images: ``(N, 1, H, W)`` float, ink bright on a dark background, values in [0, 1].
        chunk: images measured at a time (bounds the memory used).
    Returns:
        ``{name: (N,) float32}`` for each name in ``ATTRIBUTES``.
    """
    check_images(images)
    if images.shape[1] != 1:
        raise ValueError(f"images: expected one channel, (N, 1, H, W), got shape {tuple(images.shape)}")
    parts = [_measure(images[start:start + chunk, 0].float()) for start in range(0, len(images), chunk)]
    return {name: torch.cat([part[name] for part in parts]) for name in ATTRIBUTES}


def _measure(ink: torch.Tensor) -> dict[str, torch.Tensor]:
    """:func:`measure_attributes` for ``ink`` ``(n, H, W)``."""
    _, h, w = ink.shape
    mass = ink.sum((1, 2))  # (n,)
    safe_mass = mass.clamp_min(1e-8)
    rows = torch.arange(h, dtype=ink.dtype, device=ink.device)[None, :, None]  # (1, H, 1)
    cols = torch.arange(w, dtype=ink.dtype, device=ink.device)[None, None, :]  # (1, 1, W)
    x = (ink * cols).sum((1, 2)) / safe_mass
    y = (ink * rows).sum((1, 2)) / safe_mass
    dx, dy = cols - x[:, None, None], rows - y[:, None, None]  # (n, 1, W), (n, H, 1)
    var_y = (ink * dy ** 2).sum((1, 2)) / safe_mass
    cov_xy = (ink * dx * dy).sum((1, 2)) / safe_mass
    padded = F.pad(ink, (1, 1, 1, 1))  # the image border counts as background
    grad_x = padded[:, :-1, 1:] - padded[:, :-1, :-1]  # (n, H + 1, W + 1) forward differences
    grad_y = padded[:, 1:, :-1] - padded[:, :-1, :-1]
    outline = (grad_x ** 2 + grad_y ** 2).sqrt().sum((1, 2))
    on = ink > INK
    n_on = on.sum((1, 2))
    return {
        "thickness": 2 * mass / outline.clamp_min(1e-8),
        "slant": -cov_xy / var_y.clamp_min(1e-8),
        "size": (_extent(on.any(2)) * _extent(on.any(1))).float(),
        "x": x,
        "y": y,
        "brightness": (ink * on).sum((1, 2)) / n_on.clamp_min(1),
    }


def _extent(occupied: torch.Tensor) -> torch.Tensor:
    """Length of the span from the first to the last True of each row of ``occupied`` ``(n, L)`` (0 if none)."""
    positions = torch.arange(occupied.shape[1], device=occupied.device)
    first = torch.where(occupied, positions, occupied.shape[1]).min(1).values
    last = torch.where(occupied, positions, -1).max(1).values
    return (last - first + 1).clamp_min(0)


def _check_attributes(attributes: object) -> int:
    """Raise ``ValueError`` unless ``attributes`` maps every name in ``ATTRIBUTES`` to an ``(N,)`` tensor; return N."""
    if not isinstance(attributes, dict) or set(ATTRIBUTES) - set(attributes):
        have = sorted(attributes) if isinstance(attributes, dict) else type(attributes).__name__
        raise ValueError(f"attributes: expected a dict with keys {list(ATTRIBUTES)} "
                         f"(from measure_attributes), got {have}")
    shapes = {name: tuple(getattr(attributes[name], "shape", ())) for name in ATTRIBUTES}
    if len(set(shapes.values())) != 1 or len(shapes["thickness"]) != 1:
        raise ValueError(f"attributes: expected one (N,) tensor per attribute, all the same N, got shapes {shapes}")
    return shapes["thickness"][0]


@dataclass(frozen=True)
class AttributeBins:
    """Tercile thresholds ``(low, high)`` per attribute, learned on the training split."""

    thresholds: dict[str, tuple[float, float]]

    @classmethod
    def fit(cls, attributes: dict[str, torch.Tensor]) -> "AttributeBins":
        """Learn each attribute's terciles from ``attributes`` (from :func:`measure_attributes` on TRAIN)."""
        if _check_attributes(attributes) < 3:
            raise ValueError("attributes: need at least 3 images to cut each attribute into thirds")
        cuts = torch.tensor([1 / 3, 2 / 3], dtype=torch.float64)
        return cls({name: tuple(torch.quantile(attributes[name].double().cpu(), cuts).tolist())
                    for name in ATTRIBUTES})

    @property
    def informative(self) -> tuple[str, ...]:
        """The attributes whose middle third is wide enough (``MIN_SPREAD``) for its words to mean something."""
        return tuple(name for name in ATTRIBUTES
                     if self.thresholds[name][1] - self.thresholds[name][0] >= MIN_SPREAD[name])

    def levels(self, attributes: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each attribute's third: ``{name: (N,) int64}``, 0 below the first tercile, 1 between, 2 above."""
        _check_attributes(attributes)
        return {name: (attributes[name] > low).long() + (attributes[name] > high).long()
                for name, (low, high) in self.thresholds.items()}

    def words(self, attributes: dict[str, torch.Tensor]) -> dict[str, list[str]]:
        """Each attribute's word per image, e.g. ``{"thickness": ["thin", "thick", ...], ...}``."""
        return {name: [WORDS[name][level] for level in level_of.tolist()]
                for name, level_of in self.levels(attributes).items()}


# ---------------------------------------------------------------------------------------------
# Words, tokens, captions
# ---------------------------------------------------------------------------------------------

def class_words(classes: Sequence[str]) -> tuple[str, ...]:
    """The plain lower-case word for each class: "zero".."nine" for MNIST, "t-shirt".."ankle boot" for Fashion."""
    if list(classes) == MNIST_CLASSES:
        return MNIST_WORDS
    if list(classes) == FASHION_CLASSES:
        return FASHION_WORDS
    raise ValueError(f"classes: expected cu.MNIST_CLASSES or cu.FASHION_CLASSES, got {list(classes)!r}")


def _thing(classes: Sequence[str]) -> str:
    return "digit" if list(classes) == MNIST_CLASSES else "item"


def tokens(text: str) -> list[str]:
    """Lower-case words (hyphenated words stay whole) and punctuation marks, each one token."""
    return re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[^\sa-z0-9]", text.lower())


def join_tokens(words: Sequence[str]) -> str:
    """Inverse of :func:`tokens` for a normalised caption: spaces between words, none before punctuation."""
    return re.sub(r" ([,.:;?!])", r"\1", " ".join(words))


def _with_articles(text: str) -> str:
    """ "a eight" -> "an eight", "a upright" -> "an upright" (but "a one")."""
    return re.sub(r"\ba (?=(?!one\b)[aeiou])", "an ", text)


@dataclass
class CaptionSet:
    """Images with one caption each.

    Attributes:
        images: ``(N, 1, H, W)``; labels: ``(N,)`` int64; captions: N strings.
        template_ids: ``(N,)`` int64, index into ``TEMPLATES[split]``.
        attributes: ``{name: (N,)}`` from :func:`measure_attributes`.
        split: ``"train"`` or ``"test"`` (which templates were used).
    """

    images: torch.Tensor
    labels: torch.Tensor
    captions: list[str]
    template_ids: torch.Tensor
    attributes: dict[str, torch.Tensor]
    split: str

    def __len__(self) -> int:
        return len(self.captions)


def _check_data(data: object) -> tuple[str, ...]:
    if not isinstance(data, ImageSet):
        raise TypeError(f"data: expected a course_utils.ImageSet, got a {type(data).__name__}")
    return class_words(data.classes)


def make_captions(data: ImageSet, bins: AttributeBins, split: str, seed: int = 0) -> CaptionSet:
    """One caption per image: its class word once and 1-3 of its informative attribute words.

    Args:
        data: MNIST or Fashion-MNIST images ``(N, 1, H, W)``.
        bins: fitted on the TRAIN split's attributes.
        split: ``"train"`` uses ``TRAIN_TEMPLATES``, ``"test"`` the held-out ``TEST_TEMPLATES``.
        seed: picks the template and the attributes; same input and seed -> same captions.
    """
    words_of_class = _check_data(data)
    if split not in TEMPLATES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    informative = bins.informative
    if not informative:
        raise ValueError("bins: no attribute varies enough to be described (AttributeBins.informative is empty)")
    templates = TEMPLATES[split]
    usable = [i for i, t in enumerate(templates) if _slots(t) <= len(informative)]
    attributes = measure_attributes(data.images)
    words = bins.words(attributes)
    generator = torch.Generator().manual_seed(seed)
    template_ids = torch.tensor(usable)[torch.randint(len(usable), (len(data),), generator=generator)]
    picks = torch.rand(len(data), len(informative), generator=generator).argsort(1)  # (N, n_informative)
    thing = _thing(data.classes)
    captions = []
    for i, (label, template_id, order) in enumerate(zip(data.labels.tolist(), template_ids.tolist(), picks.tolist())):
        chosen = [words[informative[k]][i] for k in order]
        caption = templates[template_id].format(cls=words_of_class[label], thing=thing, **dict(zip("abc", chosen)))
        captions.append(_with_articles(caption))
    return CaptionSet(data.images, data.labels, captions, template_ids, attributes, split)


def _slots(template: str) -> int:
    """How many attribute words ``template`` takes."""
    return sum(slot in template for slot in ("{a}", "{b}", "{c}"))


def label_from_caption(caption: str, classes: Sequence[str]) -> int:
    """The label whose class word ``caption`` names, or -1 when it names none or several classes."""
    words_of_class = class_words(classes)
    if not isinstance(caption, str):
        raise TypeError(f"caption: expected a str, got a {type(caption).__name__}")
    seen = tokens(caption)
    named = [label for label, word in enumerate(words_of_class) if _contains(seen, word.split())]
    return named[0] if len(named) == 1 else -1


def _contains(seq: list[str], part: list[str]) -> bool:
    return any(seq[i:i + len(part)] == part for i in range(len(seq) - len(part) + 1))


class CaptionVocab:
    """Word-level vocabulary: ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3, then the words.

    Build it from the captions of BOTH splits (train and test templates) so that a captioner can
    emit every word; a word it has never seen becomes ``<unk>``.
    """

    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
    pad_id, bos_id, eos_id, unk_id = range(4)

    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(self.SPECIALS) + [w for w in words if w not in self.SPECIALS]
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_captions(cls, captions: Sequence[str]) -> "CaptionVocab":
        """Every token of ``captions``, sorted (so the same captions give the same ids)."""
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise TypeError("captions: expected a list of str")
        return cls(sorted({token for caption in captions for token in tokens(caption)}))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, captions: Sequence[str], max_len: int | None = None) -> torch.Tensor:
        """Token ids ``(N, L)``: ``<bos>`` words ``<eos>`` then ``<pad>``; L = ``max_len`` or the longest + 2."""
        if isinstance(captions, str) or not captions or not all(isinstance(c, str) for c in captions):
            raise TypeError("captions: expected a non-empty list of str")
        split = [tokens(c) for c in captions]
        longest = max(len(s) for s in split) + 2
        length = longest if max_len is None else max_len
        if length < longest:
            raise ValueError(f"max_len={max_len} is too short: the longest caption needs {longest} ids "
                             "(its tokens plus <bos> and <eos>)")
        ids = torch.full((len(captions), length), self.pad_id, dtype=torch.int64)
        for row, words in zip(ids, split):
            row[:len(words) + 2] = torch.tensor([self.bos_id] + [self.index.get(w, self.unk_id) for w in words]
                                                + [self.eos_id])
        return ids

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Captions from ids ``(N, L)``: stops at ``<eos>``, skips ``<pad>`` and ``<bos>``."""
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point():
            got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids: expected an integer tensor (N, L) (one caption: ids[None]), got {got}")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"ids: expected values in [0, {len(self)}), got [{ids.min()}, {ids.max()}]")
        captions = []
        for row in ids.tolist():
            row = row[:row.index(self.eos_id)] if self.eos_id in row else row
            captions.append(join_tokens([self.words[i] for i in row if i not in (self.pad_id, self.bos_id)]))
        return captions


# ---------------------------------------------------------------------------------------------
# Questions
# ---------------------------------------------------------------------------------------------

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
        """``(N,)`` int64: 1 yes, 0 no, -1 does not apply."""
        if self.attribute is None:
            return torch.isin(labels, torch.tensor(sorted(self.yes_labels))).long()
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
    pool = [Question(_with_articles(f"is this a {w}?"), _with_articles(f"does the image show a {w}?"), "class",
                     frozenset({d})) for d, w in zip(digits, MNIST_WORDS)]
    pool += [Question("is this digit even?", "is the number even?", "parity", frozenset(range(0, 10, 2))),
             Question("is this digit odd?", "is the number odd?", "parity", frozenset(range(1, 10, 2)))]
    pool += [Question(f"is this digit greater than {MNIST_WORDS[k]}?", f"is the number above {MNIST_WORDS[k]}?",
                      "compare", frozenset(d for d in digits if d > k)) for k in (3, 5, 7)]
    pool += [Question(f"is this digit less than {MNIST_WORDS[k]}?", f"is the number below {MNIST_WORDS[k]}?",
                      "compare", frozenset(d for d in digits if d < k)) for k in (4, 6)]
    return pool


def _fashion_questions() -> list[Question]:
    pool = [Question(_with_articles(f"is this a {w}?"), _with_articles(f"does the image show a {w}?"), "class",
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


@dataclass
class QuestionSet:
    """Images with one yes/no question each.

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
        data: MNIST or Fashion-MNIST images ``(N, 1, H, W)``.
        bins: fitted on the TRAIN split; attribute questions use ``bins.informative`` attributes only.
        seed: same input and seed -> same questions and answers.
        held_out_wording: ask each question in its paraphrase (``Question.held_out``).
    """
    _check_data(data)
    pool = question_pool(data.classes, bins.informative)
    levels = bins.levels(measure_attributes(data.images))
    labels = data.labels.cpu()
    table = torch.stack([q.answers(labels, levels) for q in pool], 1).numpy()  # (N, Q): 1, 0 or -1
    generator = torch.Generator().manual_seed(seed)
    targets = (torch.randperm(len(data), generator=generator) % 2).numpy()  # half yes, half no
    ties = torch.rand(len(data), len(pool), generator=generator, dtype=torch.float64).numpy()
    order = torch.randperm(len(data), generator=generator).numpy()
    chosen = _assign(table, targets, ties, order)
    return QuestionSet(data.images, data.labels,
                       [pool[q].held_out if held_out_wording else pool[q].text for q in chosen.tolist()],
                       torch.from_numpy(targets).long(), [pool[q].kind for q in chosen.tolist()])


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
    """Test accuracy of the best one-modality guessers, fitted on ``train``.

    - ``question_only``: the majority answer of each question string (else the overall majority);
      no model that reads only the question can do much better.
    - ``class_only``: the majority answer of each class; an upper bound for a perfect image
      classifier that ignores the question.
    """
    overall = int(train.answers.float().mean() >= 0.5)

    def accuracy(train_keys: list, test_keys: list) -> float:
        yes: dict = {}
        for key, answer in zip(train_keys, train.answers.tolist()):
            yes.setdefault(key, []).append(answer)
        majority = {key: int(np.mean(v) >= 0.5) for key, v in yes.items()}
        guesses = torch.tensor([majority.get(key, overall) for key in test_keys])
        return (guesses == test.answers).float().mean().item()

    return {"question_only": accuracy(train.questions, test.questions),
            "class_only": accuracy(train.labels.tolist(), test.labels.tolist())}
