"""Classification metrics written once by hand, in plain torch, each equal to scikit-learn's.

- :func:`confusion_matrix`: counts ``(K, K)``, **rows = true class, columns = predicted class**;
- :func:`precision_recall_f1`: per class or averaged (macro, micro, weighted), ``zero_division=0`` as in sklearn;
- :func:`roc_curve_ovr`, :func:`roc_auc_ovr`: one-vs-rest ROC curves and their macro AUC, from **scores**;
- :func:`pr_curve_ovr`, :func:`average_precision`: the precision-recall analogue (macro average precision);
- :func:`top_k_accuracy`: the share of examples whose true class is among the ``k`` highest scores;
- :func:`plot_roc_pr`: both kinds of curve on one figure;
- :func:`bootstrap_interval`: a percentile bootstrap interval for any metric of (labels, predictions).

Labels and predictions are integer class indices ``(N,)`` in ``0 .. K-1``; scores are ``(N, K)`` (logits or
probabilities: ROC and PR curves only use their order). Bad input raises ``TypeError`` / ``ValueError`` saying
what was expected.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import torch

__all__ = ["confusion_matrix", "precision_recall_f1", "roc_curve_ovr", "roc_auc_ovr", "pr_curve_ovr",
           "average_precision", "top_k_accuracy", "plot_roc_pr", "bootstrap_interval"]

AVERAGES = ("macro", "micro", "weighted", None)


def _labels(values: object, name: str, num_classes: int | None = None, n: int | None = None) -> torch.Tensor:
    """``values`` as an int64 CPU tensor ``(N,)`` of class indices (in ``0 .. num_classes-1`` when given)."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor of class indices (N,), got {type(values).__name__}")
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise TypeError(f"{name}: expected integer class indices, got {values.dtype}; for scores, take "
                        f"scores.argmax(1)")
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"{name}: expected a non-empty (N,) tensor, got shape {tuple(values.shape)}")
    if n is not None and len(values) != n:
        raise ValueError(f"{name}: expected ({n},), one per example, got ({len(values)},)")
    values = values.detach().cpu().long()
    outside = (values < 0) | (values >= num_classes) if num_classes is not None else values < 0
    if bool(outside.any()):
        upper = num_classes - 1 if num_classes is not None else "K-1"
        raise ValueError(f"{name}: expected class indices 0 to {upper}, got {int(values[outside][0])}")
    return values


def _scores(scores: object, labels: torch.Tensor) -> torch.Tensor:
    """``scores`` as a float64 CPU tensor ``(N, K)`` matching ``labels`` (N,), with every label below K."""
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        got = scores.dtype if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise TypeError(f"scores: expected a floating tensor (N, K) of logits or probabilities, got {got}")
    if scores.ndim != 2 or scores.shape[0] != len(labels) or scores.shape[1] < 2:
        raise ValueError(f"scores: expected (N, K) = ({len(labels)}, K >= 2), one row per label, got shape "
                         f"{tuple(scores.shape)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores: expected finite values, got inf or NaN")
    if bool((labels >= scores.shape[1]).any()):
        raise ValueError(f"labels: expected class indices 0 to {scores.shape[1] - 1} (scores has {scores.shape[1]} "
                         f"columns), got {int(labels.max())}")
    return scores.detach().cpu().double()


def _num_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes: expected a whole number >= 2, got {num_classes!r}")
    return num_classes


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``(K, K)`` int64: entry ``[i, j]`` is how many examples of **true** class ``i`` (row) were
    **predicted** as class ``j`` (column), sklearn's convention. ``labels``, ``predictions``: ``(N,)``."""
    k = _num_classes(num_classes)
    labels = _labels(labels, "labels", k)
    predictions = _labels(predictions, "predictions", k, len(labels))
    return torch.bincount(labels * k + predictions, minlength=k * k).reshape(k, k)


def _divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator``, 0 where the denominator is 0 (sklearn's ``zero_division=0``)."""
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-300), torch.zeros_like(numerator))


def precision_recall_f1(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int,
                        average: str | None = "macro") -> tuple[torch.Tensor | float, ...]:
    """Precision, recall and F1 of predictions ``(N,)`` against labels ``(N,)`` over classes ``0 .. K-1``.

    Per class c: precision = TP / (TP + FP) (of those predicted c, the share that are c: a column of the
    confusion matrix), recall = TP / (TP + FN) (of the true c, the share found: a row), F1 = their harmonic
    mean = 2 TP / (2 TP + FP + FN). Where a denominator is 0 (a class never predicted, or never present)
    the value is 0, as sklearn's ``zero_division=0``.

    Args:
        average: ``"macro"`` (the plain mean over the K classes: each class counts the same), ``"micro"``
            (from the summed counts: equal to the accuracy for single-label data), ``"weighted"`` (the mean
            weighted by each class's number of true examples), or ``None`` (per class).
    Returns:
        ``(precision, recall, f1)``: three floats, or three ``(K,)`` float64 tensors for ``average=None``.
    """
    if average not in AVERAGES:
        raise ValueError(f"average: expected one of {AVERAGES}, got {average!r}")
    counts = confusion_matrix(labels, predictions, num_classes).double()
    tp, predicted, support = counts.diag(), counts.sum(0), counts.sum(1)
    if average == "micro":
        tp, predicted, support = tp.sum(), predicted.sum(), support.sum()
    precision, recall = _divide(tp, predicted), _divide(tp, support)
    f1 = _divide(2 * tp, predicted + support)
    if average is None:
        return precision, recall, f1
    if average == "micro":
        return float(precision), float(recall), float(f1)
    weights = support / support.sum() if average == "weighted" else torch.full_like(support, 1 / len(support))
    return tuple(float((v * weights).sum()) for v in (precision, recall, f1))


def _binary_roc(positive: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FPR, TPR and thresholds ``(T + 1,)`` of scores ``(N,)`` for the boolean targets ``positive`` ``(N,)``:
    one point per distinct score, from the highest down, after the point (0, 0) at threshold +inf (sklearn's
    ``roc_curve(..., drop_intermediate=False)``)."""
    order = torch.argsort(scores, descending=True, stable=True)
    scores, positive = scores[order], positive[order].double()
    last_of_tie = torch.ones(len(scores), dtype=torch.bool)   # a threshold sits after the last copy of a score
    last_of_tie[:-1] = scores[1:] != scores[:-1]
    tps, fps = positive.cumsum(0)[last_of_tie], (1 - positive).cumsum(0)[last_of_tie]
    zero = torch.zeros(1, dtype=torch.float64)
    tpr = torch.cat([zero, tps / tps[-1]])
    fpr = torch.cat([zero, fps / fps[-1]])
    thresholds = torch.cat([torch.tensor([math.inf], dtype=torch.float64), scores[last_of_tie]])
    return fpr, tpr, thresholds


def _each_class(labels: torch.Tensor, scores: torch.Tensor, what: str) -> list[torch.Tensor]:
    """``labels == c`` for each class c, after checking that every class has positives and negatives."""
    k = scores.shape[1]
    counts = torch.bincount(labels, minlength=k)
    missing = [c for c in range(k) if counts[c] == 0 or counts[c] == len(labels)]
    if missing:
        raise ValueError(f"labels: class {missing[0]} has {'no' if counts[missing[0]] == 0 else 'only'} examples, so "
                         f"its one-vs-rest {what} is undefined; every class needs positives and negatives")
    return [labels == c for c in range(k)]


def roc_curve_ovr(labels: torch.Tensor, scores: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One-vs-rest ROC curves: for each class c, ``(fpr, tpr)`` float64 tensors of "c vs the rest" scored by
    ``scores[:, c]`` (one point per distinct score, from (0, 0) to (1, 1)). ``labels`` ``(N,)``, ``scores`` ``(N, K)``.
    """
    labels = _labels(labels, "labels")
    scores = _scores(scores, labels)
    return [_binary_roc(positive, scores[:, c])[:2] for c, positive in enumerate(_each_class(labels, scores, "ROC"))]


def roc_auc_ovr(labels: torch.Tensor, scores: torch.Tensor, average: str | None = "macro") -> float | torch.Tensor:
    """The area under each one-vs-rest ROC curve, by the trapezoid rule (a tie between a positive and a negative
    counts one half: the Mann-Whitney statistic), averaged over classes (``"macro"``) or per class (``None``,
    a ``(K,)`` tensor). Equal to sklearn's ``roc_auc_score(labels, probs, multi_class="ovr")`` for probabilities.

    AUC needs **scores**: the AUC of hard 0/1 predictions is that of a single threshold, not the model's ranking.
    """
    if average not in ("macro", None):
        raise ValueError(f"average: expected 'macro' or None, got {average!r}")
    aucs = torch.stack([torch.trapezoid(tpr, fpr) for fpr, tpr in roc_curve_ovr(labels, scores)])
    return aucs if average is None else float(aucs.mean())


def _binary_pr(positive: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision and recall ``(T,)`` at each distinct score as a threshold, from the highest score down."""
    order = torch.argsort(scores, descending=True, stable=True)
    scores, positive = scores[order], positive[order].double()
    last_of_tie = torch.ones(len(scores), dtype=torch.bool)
    last_of_tie[:-1] = scores[1:] != scores[:-1]
    tps = positive.cumsum(0)[last_of_tie]
    kept = torch.arange(1, len(scores) + 1, dtype=torch.float64)[last_of_tie]
    return tps / kept, tps / tps[-1]


def pr_curve_ovr(labels: torch.Tensor, scores: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One-vs-rest precision-recall curves: for each class, ``(precision, recall)`` float64 tensors, one point per
    distinct score from the highest down (recall rising to 1). ``labels`` ``(N,)``, ``scores`` ``(N, K)``."""
    labels = _labels(labels, "labels")
    scores = _scores(scores, labels)
    return [_binary_pr(positive, scores[:, c]) for c, positive in enumerate(_each_class(labels, scores, "PR curve"))]


def average_precision(labels: torch.Tensor, scores: torch.Tensor,
                      average: str | None = "macro") -> float | torch.Tensor:
    """Average precision per one-vs-rest class, sum over thresholds of (R_n - R_{n-1}) P_n (no interpolation,
    sklearn's ``average_precision_score``), averaged over classes (``"macro"``) or per class (``None``: ``(K,)``).
    A random scorer's AP is the class's share of the data, not 0.5."""
    if average not in ("macro", None):
        raise ValueError(f"average: expected 'macro' or None, got {average!r}")
    aps = []
    for precision, recall in pr_curve_ovr(labels, scores):
        steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
        aps.append((steps * precision).sum())
    values = torch.stack(aps)
    return values if average is None else float(values.mean())


def top_k_accuracy(labels: torch.Tensor, scores: torch.Tensor, k: int) -> float:
    """The share of examples whose true class is among the ``k`` highest of its scores ``(N, K)``; ``k=1`` is the
    accuracy. ``labels`` ``(N,)``; ``1 <= k <= K``."""
    labels = _labels(labels, "labels")
    scores = _scores(scores, labels)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k: expected a whole number in 1..{scores.shape[1]} (the number of classes), got {k!r}")
    top = scores.topk(k, dim=1).indices                       # (N, k)
    return float((top == labels[:, None]).any(1).double().mean())


def plot_roc_pr(labels: torch.Tensor, scores: torch.Tensor, classes: Sequence[str],
                title: str = "") -> plt.Figure:
    """One figure, two panels: the one-vs-rest ROC curve (with its AUC) and PR curve (with its AP) of each class.

    Args:
        labels: ``(N,)`` class indices; scores: ``(N, K)``; classes: the K class names for the legends.
    """
    aucs = roc_auc_ovr(labels, scores, average=None)
    aps = average_precision(labels, scores, average=None)
    if len(classes) != len(aucs):
        raise ValueError(f"classes: expected {len(aucs)} names (one per column of scores), got {len(classes)}")
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(11, 4.8))
    for name, (fpr, tpr), auc in zip(classes, roc_curve_ovr(labels, scores), aucs):
        roc_ax.plot(fpr.numpy(), tpr.numpy(), lw=1.2, label=f"{name} (AUC {float(auc):.3f})")
    for name, (precision, recall), ap in zip(classes, pr_curve_ovr(labels, scores), aps):
        pr_ax.step(recall.numpy(), precision.numpy(), where="post", lw=1.2, label=f"{name} (AP {float(ap):.3f})")
    roc_ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate",
               title=f"ROC, one vs rest (macro AUC {float(aucs.mean()):.3f})")
    pr_ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02),
              title=f"precision-recall (macro AP {float(aps.mean()):.3f})")
    for ax in (roc_ax, pr_ax):
        ax.legend(fontsize=7, loc="lower left" if ax is pr_ax else "lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def bootstrap_interval(labels: torch.Tensor, predictions: torch.Tensor,
                       metric: Callable[[torch.Tensor, torch.Tensor], float], n_resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of ``metric(labels, predictions)``: draw N examples with replacement
    ``n_resamples`` times, compute the metric on each draw, and return the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles ``(low, high)``. Works for any metric (macro F1, AUC with scores as
    ``predictions`` ``(N, K)``), where the Wilson interval only covers a proportion such as accuracy. A metric
    that needs every class (AUC) fails on a draw that lacks one: use it on sets with enough of each class.

    Args:
        labels: ``(N,)``; predictions: ``(N,)`` or ``(N, K)``, one row per label.
        metric: ``metric(labels, predictions) -> float``, e.g. ``lambda y, p: (y == p).float().mean()``.
    """
    if not isinstance(labels, torch.Tensor) or not isinstance(predictions, torch.Tensor):
        raise TypeError("labels and predictions: expected tensors with one row per example")
    if labels.ndim != 1 or len(labels) == 0 or len(predictions) != len(labels):
        raise ValueError(f"labels (N,) and predictions (N, ...) must have the same N >= 1, got {tuple(labels.shape)} "
                         f"and {tuple(predictions.shape)}")
    if not callable(metric):
        raise TypeError(f"metric: expected a function metric(labels, predictions) -> float, "
                        f"got {type(metric).__name__}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 10:
        raise ValueError(f"n_resamples: expected a whole number >= 10, got {n_resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a level in (0, 1) such as 0.95, got {confidence!r}")
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(len(labels), (n_resamples, len(labels)), generator=generator)
    values = torch.tensor([float(metric(labels[rows], predictions[rows])) for rows in draws], dtype=torch.float64)
    tail = (1 - confidence) / 2
    low, high = torch.quantile(values, torch.tensor([tail, 1 - tail], dtype=torch.float64))
    return float(low), float(high)
