"""The in-memory image dataset, :class:`ImageSet`, and the image transforms the course applies to it.

- :class:`ImageSet`: images ``(N, 1, H, W)`` float32 in [0, 1] and labels ``(N,)`` int64, with
  ``take`` (a seeded subset), ``split`` (a held-out fraction), ``batches`` and ``to(device)``;
  the loaders of :mod:`course_utils.data` return one.
- :func:`check_images`: the check every helper that takes an image batch ``(N, C, H, W)`` runs first.
- :func:`shift_images` (one offset for all) and :func:`random_shift` (a random offset each, the
  course's augmentation): translations with zero fill, batched, on the images' device.

Every name is also importable from :mod:`course_utils.data`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch


@dataclass
class ImageSet:
    """A labelled image dataset held as two tensors.

    Attributes:
        images: ``(N, 1, H, W)`` float32, pixel values in [0, 1].
        labels: ``(N,)`` int64 class indices.
        classes: class names; ``classes[label]`` names a label.
        source: where the data came from (printed by the loaders).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str = "tensors"

    def __post_init__(self) -> None:
        check_images(self.images, "images")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64 or self.labels.ndim != 1:
            raise ValueError(f"labels: expected an int64 tensor of shape (N,), got {_describe(self.labels)}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"images has N={len(self.images)} but labels has N={len(self.labels)}")
        if self.labels.device != self.images.device:
            raise ValueError(f"labels: expected on the images' device, {self.images.device}, got {self.labels.device}")
        if not isinstance(self.classes, (list, tuple)) or not all(isinstance(c, str) for c in self.classes):
            raise TypeError(f"classes: expected a list of class names (str), got {self.classes!r}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> "ImageSet":
        """The same data on ``device``."""
        return ImageSet(self.images.to(device), self.labels.to(device), self.classes, self.source)

    def take(self, limit: int | None, seed: int = 0) -> "ImageSet":
        """A seeded random subset of ``limit`` examples (all of them when ``limit`` is None)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"limit must be an int number of examples or None, got {limit!r}")
        if limit is None or limit >= len(self):
            return self
        if limit < 1:
            raise ValueError(f"limit must be a positive number of examples or None, got {limit}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:limit].to(self.device)
        return ImageSet(self.images[order], self.labels[order], self.classes, self.source)

    def split(self, fraction: float, seed: int = 0) -> tuple["ImageSet", "ImageSet"]:
        """Split at random into ``(the rest, a held-out fraction)``, e.g. a validation set of 10%."""
        if not 0 < fraction < 1:
            raise ValueError(f"fraction must be between 0 and 1 (exclusive), got {fraction}")
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).to(self.device)
        n_held = max(1, round(fraction * len(self)))
        held, rest = order[:n_held], order[n_held:]
        return (ImageSet(self.images[rest], self.labels[rest], self.classes, self.source),
                ImageSet(self.images[held], self.labels[held], self.classes, self.source))

    def batches(self, batch_size: int, shuffle: bool = False, seed: int | None = None,
                augment: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images (B, 1, H, W), labels (B,))`` slices; no per-sample Python work.

        Args:
            batch_size: examples per batch (the last batch may be smaller).
            shuffle: visit the examples in a random order.
            seed: seed for that order (``None``: draw from torch's global generator).
            augment: a function applied to each image batch, e.g. :func:`random_shift`.
        Raises:
            ValueError: at the first batch, unless ``batch_size`` is an int of at least 1.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int of at least 1, got {batch_size!r}")
        n = len(self)
        if shuffle:
            generator = None if seed is None else torch.Generator().manual_seed(seed)
            order = torch.randperm(n, generator=generator).to(self.device)
        for start in range(0, n, batch_size):
            if shuffle:
                idx = order[start:start + batch_size]
                x, y = self.images[idx], self.labels[idx]
            else:
                x, y = self.images[start:start + batch_size], self.labels[start:start + batch_size]
            yield (augment(x) if augment is not None else x), y


def check_images(images: object, name: str = "images") -> None:
    """Raise ``ValueError`` unless ``images`` is a float tensor shaped ``(N, C, H, W)``."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor of shape (N, C, H, W), got {_describe(images)}")


def _describe(obj: object) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a {obj.dtype} tensor of shape {tuple(obj.shape)}"
    return f"a {type(obj).__name__}"


def shift_images(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate every image by ``dx`` pixels right and ``dy`` down, filling with zeros.

    Args:
        images: ``(N, C, H, W)``.
    Returns:
        ``(N, C, H, W)`` on the same device.
    """
    check_images(images)
    for name, value in (("dx", dx), ("dy", dy)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}: expected a whole number of pixels (int), got {value!r}")
    h, w = images.shape[-2:]
    if abs(dx) >= w or abs(dy) >= h:
        raise ValueError(f"dx, dy: a shift of ({dx}, {dy}) pixels moves the {h}x{w} images out of view")
    out = torch.zeros_like(images)
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def random_shift(images: torch.Tensor, max_shift: int = 2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by its own random offset in ``[-max_shift, max_shift]`` (zero fill).

    A cheap, batched augmentation: ``(B, C, H, W)`` in, ``(B, C, H, W)`` out, same device.
    """
    check_images(images)
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift: expected a whole number of pixels >= 0 (int), got {max_shift!r}")
    b, c, h, w = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator).to(images.device)
    rows = (offsets[0, :, None] + torch.arange(h, device=images.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (offsets[1, :, None] + torch.arange(w, device=images.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]
