"""Checkers for notebook 09's detection exercises, with the model answers they are tested against.

- :func:`check_box_iou`: the intersection over union of every pair of boxes ``(x1, y1, x2, y2)``;
- :func:`check_nms`: greedy non-maximum suppression, the indices of the boxes kept, best score first.

``torchvision.ops`` has both; they are forbidden in their exercises and the tests check the model answers
against them.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor
from torchvision import ops

from . import Case, Hint, Mistake, check_cases, describe, exercise, hidden_cases, same

__all__ = ["solution_box_iou", "solution_nms", "check_box_iou", "check_nms"]


def _area(boxes: Tensor) -> Tensor:
    """``(N, 4)`` boxes -> ``(N,)`` areas."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _intersection(a: Tensor, b: Tensor, clamp: bool = True) -> Tensor:
    """``(N, M)`` areas of overlap; without ``clamp`` disjoint pairs give wrong (negative or positive) values."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    sides = (bottom_right - top_left).clamp(min=0) if clamp else bottom_right - top_left
    return sides[..., 0] * sides[..., 1]


def solution_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every pair: ``a (N, 4)``, ``b (M, 4)`` boxes as ``(x1, y1, x2, y2)`` with ``x1 < x2``, ``y1 < y2``
    -> ``(N, M)``, ``area(a & b) / (area(a) + area(b) - area(a & b))``; 0 for boxes that do not overlap."""
    inter = _intersection(a, b)
    return inter / (_area(a)[:, None] + _area(b)[None, :] - inter)


_PLUS_ONE = torch.tensor([0.0, 0.0, 1.0, 1.0])  # x2 + 1, y2 + 1

IOU_MISTAKES: tuple[Mistake, ...] = (
    Mistake("overlap not clamped at 0", lambda a, b: (lambda i: i / (_area(a)[:, None] + _area(b)[None, :] - i))(
        _intersection(a, b, clamp=False)),
            "boxes that do not overlap get a non-zero IoU: when x2 - x1 or y2 - y1 of the overlap is negative the "
            "overlap is empty; clamp each side at 0 before multiplying"),
    Mistake("intersection counted twice", lambda a, b: _intersection(a, b) / (_area(a)[:, None] + _area(b)[None, :]),
            "your denominator is area(a) + area(b), which counts the overlap twice: subtract the intersection"),
    Mistake("over the smaller box", lambda a, b: _intersection(a, b) / torch.minimum(_area(a)[:, None],
                                                                                     _area(b)[None, :]),
            "you divide by the smaller box's area; IoU divides by the area of the union"),
    Mistake("+1 pixel convention", lambda a, b: solution_box_iou(a + _PLUS_ONE.to(a.dtype), b + _PLUS_ONE.to(b.dtype)),
            "you add 1 to the widths and heights (the old integer-pixel convention of some VOC code); the "
            "coordinates here are continuous: width = x2 - x1"),
)

IOU_FORBIDDEN = (ops.box_iou, ops.generalized_box_iou, ops.complete_box_iou, ops.distance_box_iou)


def _boxes(generator: torch.Generator, n: int, span: float = 10.0) -> Tensor:
    """``(n, 4)`` random boxes inside a ``span`` x ``span`` square, sides at least 0.5."""
    corner = torch.rand(n, 2, generator=generator) * span
    size = 0.5 + torch.rand(n, 2, generator=generator) * span / 2
    return torch.cat([corner, corner + size], dim=1)


IOU_CASES = (
    Case((torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]]),
          torch.tensor([[0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 7.0], [1.0, 0.0, 2.0, 4.0]])),
         "a (2, 4) against b (3, 4): a box with itself, disjoint boxes, partial overlaps"),
    Case((_boxes(torch.Generator().manual_seed(0), 4), _boxes(torch.Generator().manual_seed(1), 5)),
         "a (4, 4) against b (5, 4)"),
)


def _hidden_iou(generator: torch.Generator) -> tuple[tuple[Tensor, Tensor], str]:
    n, m = (int(v) for v in torch.randint(2, 7, (2,), generator=generator))
    return (_boxes(generator, n), _boxes(generator, m)), f"a ({n}, 4) against b ({m}, 4)"


@exercise("box_iou", solution=solution_box_iou, hidden=2, mistakes=IOU_MISTAKES, forbidden=IOU_FORBIDDEN)
def check_box_iou(answer: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Check ``answer(a (N, 4), b (M, 4))`` -> the ``(N, M)`` IoU of every pair."""
    check_cases(answer, [*IOU_CASES, *hidden_cases(_hidden_iou, 2)], solution_box_iou, mistakes=IOU_MISTAKES)


# ---------------------------------------------------------------------------------------------
# Non-maximum suppression
# ---------------------------------------------------------------------------------------------


def solution_nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy NMS: take the best-scoring box left, keep it, discard every box whose IoU with it is above
    ``iou_threshold``; repeat. boxes ``(N, 4)``, scores ``(N,)`` -> the kept indices, an int64 ``(K,)``, best first."""
    order = scores.argsort(descending=True)
    iou = solution_box_iou(boxes, boxes)
    keep: list[int] = []
    suppressed = torch.zeros(len(scores), dtype=torch.bool)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def _nms_suppressed_count(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """The mistake of comparing each box with EVERY better box, suppressed ones included."""
    order = scores.argsort(descending=True).tolist()
    iou = solution_box_iou(boxes, boxes)
    keep = [i for rank, i in enumerate(order) if all(iou[i, j] <= iou_threshold for j in order[:rank])]
    return torch.tensor(keep, dtype=torch.int64)


NMS_MISTAKES: tuple[Mistake, ...] = (
    Mistake("suppressed boxes still suppress", _nms_suppressed_count,
            "a box that was itself discarded still discards others in your version: compare each candidate only "
            "with the boxes you have KEPT"),
    Mistake("original order", lambda b, s, t: solution_nms(b, s, t).sort().values,
            "you return the right boxes in index order; return them best score first, the order NMS keeps them"),
    Mistake("lowest score first", lambda b, s, t: solution_nms(b, -s, t),
            "you start from the lowest score: NMS keeps the BEST box of each cluster, so sort by descending score"),
    Mistake("threshold reversed", lambda b, s, t: _nms_below(b, s, t),
            "you discard the boxes that overlap LESS than the threshold; discard those whose IoU is above it"),
)


def _nms_below(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    order = scores.argsort(descending=True)
    iou = solution_box_iou(boxes, boxes)
    keep: list[int] = []
    suppressed = torch.zeros(len(scores), dtype=torch.bool)
    for i in order.tolist():
        if not suppressed[i]:
            keep.append(i)
            suppressed |= iou[i] <= iou_threshold
            suppressed[i] = True
    return torch.tensor(keep, dtype=torch.int64)


NMS_FORBIDDEN = (ops.nms, ops.batched_nms)


def _indices(value: Any, what: str) -> Tensor:
    """The learner's kept indices as an int64 tensor: a tensor, list or tuple of whole numbers."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return torch.tensor(list(value), dtype=torch.int64)
    if isinstance(value, Tensor) and value.ndim == 1 and not value.is_floating_point() and value.dtype != torch.bool:
        return value.to(torch.int64)
    raise Hint(f"{what}: expected the kept indices as a 1-D int64 tensor (or a list of ints), got {describe(value)}")


def _same_indices(got: Any, want: Tensor) -> bool:
    try:
        return same(_indices(got, ""), want)
    except Hint:
        return False


def _cluster_case(seed: int, clusters: int, per: int, threshold: float) -> Case:
    """Boxes jittered around ``clusters`` centres, so that NMS has something to suppress."""
    g = torch.Generator().manual_seed(seed)
    centres = _boxes(g, clusters, span=20.0)
    boxes = centres.repeat_interleave(per, 0) + torch.randn(clusters * per, 4, generator=g) * 0.6
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 0.3)
    return Case((boxes, torch.rand(clusters * per, generator=g), threshold),
                f"{clusters * per} boxes in {clusters} clusters, iou_threshold={threshold}")


NMS_CASES = (
    Case((torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.5, 0.0, 4.5, 4.0], [1.0, 0.0, 5.0, 4.0], [10.0, 10.0, 12.0, 12.0]]),
          torch.tensor([0.9, 0.8, 0.7, 0.6]), 0.7),
     "a chain of 3 overlapping boxes (box 0 overlaps box 1, box 1 overlaps box 2, box 0 hardly box 2) and a lone box,"
     " iou_threshold=0.7"),
    _cluster_case(0, 3, 4, 0.5),
    _cluster_case(1, 4, 3, 0.3),
)


def _hidden_nms(generator: torch.Generator) -> tuple[tuple[Tensor, Tensor, float], str]:
    clusters, per = (int(v) for v in torch.randint(2, 5, (2,), generator=generator))
    case = _cluster_case(int(torch.randint(0, 2**31, (), generator=generator)), clusters, per, 0.5)
    return case.args, case.what


@exercise("nms", solution=solution_nms, hidden=2, mistakes=NMS_MISTAKES, forbidden=NMS_FORBIDDEN)
def check_nms(answer: Callable[[Tensor, Tensor, float], Tensor]) -> None:
    """Check ``answer(boxes (N, 4), scores (N,), iou_threshold)`` -> the kept indices, best score first."""
    cases = [*NMS_CASES, *hidden_cases(_hidden_nms, 2)]

    def explain(got: Any, want: Tensor, case: Case) -> None:
        kept = _indices(got, case.what)
        raise Hint(f"{case.what}: you keep {len(kept)} boxes, indices {kept.tolist()}; check the order you visit "
                   "the boxes in and which boxes a kept box discards")

    check_cases(answer, cases, solution_nms, mistakes=NMS_MISTAKES, equal=_same_indices, explain=explain)
