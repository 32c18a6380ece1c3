"""Attributes measured from the pixels of each image, and their thirds named in words.

:func:`measure_attributes` gives stroke thickness, slant, size, position and brightness as numbers
``(N,)``. :class:`AttributeBins` cuts each one into thirds on the training split and names them
("thin" / "regular" / "thick", ...): every word is relative to the training images, "thick" means
thicker than two thirds of them. Attributes whose middle third is too narrow to see (digit position
in MNIST, which is centred by its centre of mass; slant of mostly symmetric clothes) are left out
of captions and questions (:attr:`AttributeBins.informative`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data import check_images

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
        images: ``(N, 1, H, W)`` float, ink bright on a dark background, values in [0, 1], on any device.
        chunk: images measured at a time (bounds the memory used).
    Returns:
        ``{name: (N,) float32}`` for each name in ``ATTRIBUTES``, computed and kept on the images' device.
    """
    check_images(images)
    if images.shape[1] != 1 or 0 in images.shape[2:]:
        raise ValueError(f"images: expected one channel, (N, 1, H, W) with H, W >= 1, got shape {tuple(images.shape)}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected an int of at least 1, got {chunk!r}")
    parts = [_measure(images[start:start + chunk, 0].float()) for start in range(0, len(images), chunk)]
    if not parts:  # N = 0: empty measurements
        return {name: torch.zeros(0, dtype=torch.float32, device=images.device) for name in ATTRIBUTES}
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
    kinds = {name: attributes[name].dtype for name in ATTRIBUTES}
    if any(dtype.is_complex for dtype in kinds.values()):
        raise TypeError(f"attributes: expected real numbers, got dtypes {kinds}")
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
        """Each attribute's third: ``{name: (N,) int64}`` on the attributes' device, 0 below the first
        tercile, 1 between, 2 above."""
        _check_attributes(attributes)
        return {name: (attributes[name] > low).long() + (attributes[name] > high).long()
                for name, (low, high) in self.thresholds.items()}

    def words(self, attributes: dict[str, torch.Tensor]) -> dict[str, list[str]]:
        """Each attribute's word per image, e.g. ``{"thickness": ["thin", "thick", ...], ...}``."""
        return {name: [WORDS[name][level] for level in level_of.tolist()]
                for name, level_of in self.levels(attributes).items()}
