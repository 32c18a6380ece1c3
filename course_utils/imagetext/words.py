"""The words that captions and questions share: class words, "a" / "an", and cutting text into tokens."""
from __future__ import annotations

import re
from typing import Sequence

from ..data import FASHION_CLASSES, MNIST_CLASSES, ImageSet

MNIST_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FASHION_WORDS = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")


def class_words(classes: Sequence[str]) -> tuple[str, ...]:
    """The plain lower-case word for each class: "zero".."nine" for MNIST, "t-shirt".."ankle boot" for Fashion."""
    if list(classes) == MNIST_CLASSES:
        return MNIST_WORDS
    if list(classes) == FASHION_CLASSES:
        return FASHION_WORDS
    raise ValueError(f"classes: expected cu.MNIST_CLASSES or cu.FASHION_CLASSES, got {list(classes)!r}")


def check_data(data: object) -> tuple[str, ...]:
    """Raise ``TypeError`` unless ``data`` is an :class:`~course_utils.data.ImageSet`; return its class words."""
    if not isinstance(data, ImageSet):
        raise TypeError(f"data: expected a course_utils.ImageSet, got a {type(data).__name__}")
    return class_words(data.classes)


def thing_word(classes: Sequence[str]) -> str:
    """What one image shows, in general: "digit" for MNIST, "item" for Fashion-MNIST."""
    return "digit" if list(classes) == MNIST_CLASSES else "item"


def with_articles(text: str) -> str:
    """ "a eight" -> "an eight", "a upright" -> "an upright" (but "a one")."""
    return re.sub(r"\ba (?=(?!one\b)[aeiou])", "an ", text)


def tokens(text: str) -> list[str]:
    """Lower-case words (hyphenated words stay whole) and punctuation marks, each one token."""
    return re.findall(r"[a-z0-9]+(?:[-'][a-z0-9]+)*|[^\sa-z0-9]", text.lower())


def join_tokens(words: Sequence[str]) -> str:
    """Inverse of :func:`tokens` for a normalised caption: spaces between words, none before punctuation."""
    return re.sub(r" ([,.:;?!])", r"\1", " ".join(words))
