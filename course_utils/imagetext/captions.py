"""Captions made from an image's class and measured attributes, e.g. "a thick, upright seven".

Each caption names the class once plus one to three attribute words, in one of eight training
sentence templates. The test split uses three other wordings (held out), so a model that only
memorised sentence frames is caught out. :class:`~course_utils.imagetext.vocab.CaptionVocab`
turns captions into token ids and back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..data import ImageSet
from .attributes import AttributeBins, measure_attributes
from .words import check_data, class_words, thing_word, tokens, with_articles

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


@dataclass
class CaptionSet:
    """Images with one caption each; every tensor on the device of the images.

    Attributes:
        images: ``(N, 1, H, W)``; labels: ``(N,)`` int64; captions: N strings.
        template_ids: ``(N,)`` int64, index into ``TEMPLATES[split]``.
        attributes: ``{name: (N,)}`` from :func:`~course_utils.imagetext.attributes.measure_attributes`.
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


def make_captions(data: ImageSet, bins: AttributeBins, split: str, seed: int = 0) -> CaptionSet:
    """One caption per image: its class word once and 1-3 of its informative attribute words.

    Args:
        data: MNIST or Fashion-MNIST images ``(N, 1, H, W)``, on any device (measured there).
        bins: fitted on the TRAIN split's attributes.
        split: ``"train"`` uses ``TRAIN_TEMPLATES``, ``"test"`` the held-out ``TEST_TEMPLATES``.
        seed: picks the template and the attributes; same input and seed -> same captions.
    Returns:
        a :class:`CaptionSet` on ``data``'s device (its images and labels are ``data``'s own tensors).
    """
    words_of_class = check_data(data)
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
    thing = thing_word(data.classes)
    captions = []
    for i, (label, template_id, order) in enumerate(zip(data.labels.tolist(), template_ids.tolist(), picks.tolist())):
        chosen = [words[informative[k]][i] for k in order]
        caption = templates[template_id].format(cls=words_of_class[label], thing=thing, **dict(zip("abc", chosen)))
        captions.append(with_articles(caption))
    return CaptionSet(data.images, data.labels, captions, template_ids.to(data.device), attributes, split)


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
