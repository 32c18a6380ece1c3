"""Calibration and uncertainty: does a confidence of 0.9 mean right 9 times in 10, and may the model refuse?

- :func:`reliability`, :func:`expected_calibration_error`, :func:`plot_reliability`: equal-width bins on the
  confidence (the largest probability); ECE is the count-weighted mean gap |accuracy - confidence| of the bins;
- :func:`fit_temperature`: temperature scaling, one scalar T > 0 that divides the logits, fitted by minimising
  the negative log-likelihood on **validation** logits (it never changes a prediction, only its confidence);
- :func:`mc_dropout_probs`, :func:`ensemble_probs`: several predictions per input (dropout kept on at test time,
  or several trained models), stacked ``(S, N, K)``; their mean ``.mean(0)`` is the prediction;
- :func:`rejection_curve`, :func:`plot_rejection_curve`: the accuracy on the inputs kept when the model may
  refuse the least confident share of them.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.nn import functional as F

from .models import device_of

__all__ = ["Reliability", "reliability", "expected_calibration_error", "plot_reliability", "fit_temperature",
           "mc_dropout_probs", "ensemble_probs", "rejection_curve", "plot_rejection_curve"]


class Reliability(NamedTuple):
    """Per-bin figures of a reliability diagram, each ``(bins,)``: the mean confidence and the accuracy of the
    examples in the bin (NaN for an empty bin) and how many there are."""

    confidence: torch.Tensor
    accuracy: torch.Tensor
    count: torch.Tensor


def _probs_labels(probs: object, labels: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``(N, K)`` (float64, CPU) and labels ``(N,)`` (int64), checked."""
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        got = probs.dtype if isinstance(probs, torch.Tensor) else type(probs).__name__
        raise TypeError(f"probs: expected a floating tensor (N, K) of probabilities, got {got}")
    if probs.ndim != 2 or len(probs) == 0 or probs.shape[1] < 2:
        raise ValueError(f"probs: expected (N, K) with N >= 1 and K >= 2, got shape {tuple(probs.shape)}")
    probs = probs.detach().cpu().double()
    if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()) or \
            not torch.allclose(probs.sum(1), torch.ones(len(probs), dtype=torch.float64), atol=1e-3):
        raise ValueError("probs: expected rows of probabilities (>= 0, summing to 1); for logits pass "
                         "logits.softmax(1)")
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.dtype == torch.bool:
        got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(f"labels: expected a tensor of integer class indices (N,), got {got}")
    if labels.shape != (len(probs),):
        raise ValueError(f"labels: expected ({len(probs)},), one per row of probs, got {tuple(labels.shape)}")
    labels = labels.detach().cpu().long()
    if bool(((labels < 0) | (labels >= probs.shape[1])).any()):
        raise ValueError(f"labels: expected class indices 0 to {probs.shape[1] - 1}, got values outside")
    return probs, labels


def _bins(bins: object) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins: expected a whole number of bins >= 1, got {bins!r}")
    return bins


def reliability(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> Reliability:
    """The per-bin confidence, accuracy and count of a reliability diagram.

    The confidence of an example is its largest probability, the prediction its argmax. Bin b of ``bins``
    equal-width bins holds the confidences in ``(b / bins, (b + 1) / bins]`` (a confidence of exactly 0 goes in
    the first).

    Args:
        probs: ``(N, K)`` rows of probabilities (e.g. ``logits.softmax(1)``); labels: ``(N,)`` class indices.
    """
    probs, labels = _probs_labels(probs, labels)
    bins = _bins(bins)
    confidence, prediction = probs.max(1)
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1)
    count = torch.bincount(index, minlength=bins)
    right = (prediction == labels).double()
    sums = torch.zeros(bins, dtype=torch.float64)
    mean_confidence = sums.index_add(0, index, confidence) / count
    accuracy = sums.index_add(0, index, right) / count          # 0 / 0 = NaN in an empty bin
    return Reliability(mean_confidence, accuracy, count)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    """ECE: the mean over bins of |accuracy - confidence|, each bin weighted by its share of the N examples
    (see :func:`reliability` for the bins). 0 for a calibrated model; probs ``(N, K)``, labels ``(N,)``."""
    confidence, accuracy, count = reliability(probs, labels, bins)
    full = count > 0
    return float(((accuracy[full] - confidence[full]).abs() * count[full]).sum() / count.sum())


def plot_reliability(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15,
                     after: torch.Tensor | None = None, names: Sequence[str] = ("before", "after"),
                     title: str = "") -> plt.Figure:
    """A reliability diagram: per bin, the accuracy as a bar and the gap to the bin's mean confidence as a red
    bar, the diagonal of perfect calibration, and the ECE in the panel's title. With ``after`` (probabilities
    of the same examples after a fix, e.g. temperature scaling) a second panel shows them beside the first.

    Args:
        probs, after: ``(N, K)`` probabilities; labels: ``(N,)``; names: the panels' titles.
    """
    panels = [probs] if after is None else [probs, after]
    if len(names) < len(panels):
        raise ValueError(f"names: expected {len(panels)} panel names, got {list(names)}")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.4), squeeze=False)
    edges = torch.linspace(0, 1, _bins(bins) + 1)
    width = 1 / bins
    for ax, panel, name in zip(axes[0], panels, names):
        confidence, accuracy, count = reliability(panel, labels, bins)
        full = count > 0
        left, right, mean = edges[:-1][full].numpy(), accuracy[full].numpy(), confidence[full].numpy()
        ax.bar(left, right, width=width, align="edge", color="tab:blue", edgecolor="black", lw=0.5,
               label="accuracy")
        ax.bar(left, mean - right, bottom=right, width=width, align="edge",
               color="tab:red", alpha=0.35, edgecolor="tab:red", hatch="//", lw=0.5, label="gap to confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="calibrated")
        ece = expected_calibration_error(panel, labels, bins)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (largest probability)", ylabel="accuracy",
               title=f"{name}: ECE {ece:.4f}")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 that minimises the mean cross-entropy of ``logits / T`` against ``labels``.

    Fit it on **validation** logits (held out of the training data), then divide the test logits by it. T > 1
    softens over-confident probabilities; the argmax, hence the accuracy, never changes. The search runs over
    log T (so T stays positive) with L-BFGS, in float64.

    Args:
        logits: ``(N, K)`` raw scores (not probabilities); labels: ``(N,)`` class indices.
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.ndim != 2:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise TypeError(f"logits: expected a floating tensor (N, K), got {got}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("logits: expected finite values, got inf or NaN")
    _probs_labels(logits.detach().double().softmax(1), labels)    # the same checks of the labels as for probabilities
    logits, labels = logits.detach().cpu().double(), labels.detach().cpu().long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def _inputs(x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or len(x) == 0:
        raise TypeError(f"x: expected a non-empty tensor of inputs (N, ...), got {type(x).__name__}")
    return x


@torch.no_grad()
def _probs(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Softmax probabilities ``(N, K)`` of ``model`` on ``x`` in batches, on the CPU, in the model's current modes."""
    device = device_of(model)
    out = torch.cat([model(batch.to(device)).float().softmax(1).cpu() for batch in x.split(batch_size)])
    if out.ndim != 2:
        raise ValueError(f"model: expected logits (N, K), got shape {tuple(out.shape)}")
    return out


DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def mc_dropout_probs(model: nn.Module, x: torch.Tensor, samples: int = 20, seed: int = 0,
                     batch_size: int = 1024) -> torch.Tensor:
    """Monte Carlo dropout: ``samples`` predictions of ``model`` on ``x`` ``(N, ...)`` with its dropout layers
    active (train mode) and every other layer in eval mode (batch norm uses its running statistics); each
    layer's mode is restored afterwards, and torch's random state too (the draws come from ``seed``).

    Returns:
        probabilities ``(samples, N, K)`` on the CPU; ``.mean(0)`` is the prediction, the spread its uncertainty.
    """
    x = _inputs(x)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples: expected a whole number >= 1, got {samples!r}")
    dropouts = [m for m in model.modules() if isinstance(m, DROPOUT)]
    if not dropouts:
        raise ValueError("model: has no dropout layer (nn.Dropout...), so every sample would be the same; use a "
                         "model with dropout, or ensemble_probs over several models")
    modes = [(m, m.training) for m in model.modules()]
    devices = [device_of(model)] if device_of(model).type == "cuda" else []
    try:
        model.eval()
        for m in dropouts:
            m.train()
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return torch.stack([_probs(model, x, batch_size) for _ in range(samples)])
    finally:
        for m, was_training in modes:
            m.train(was_training)


def ensemble_probs(models: Sequence[nn.Module], x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The probabilities ``(M, N, K)`` of each of M trained models on ``x`` ``(N, ...)``, each in eval mode
    (its modes restored afterwards); ``.mean(0)`` is the ensemble's prediction."""
    x = _inputs(x)
    if isinstance(models, nn.Module) or not models or not all(isinstance(m, nn.Module) for m in models):
        raise TypeError("models: expected a non-empty list of nn.Module")
    out = []
    for model in models:
        modes = [(m, m.training) for m in model.modules()]
        try:
            model.eval()
            out.append(_probs(model, x, batch_size))
        finally:
            for m, was_training in modes:
                m.train(was_training)
    return torch.stack(out)


def rejection_curve(probs: torch.Tensor, labels: torch.Tensor, fractions: Sequence[float]) -> torch.Tensor:
    """Accuracy ``(len(fractions),)`` on the examples kept when the model refuses the share ``f`` of them with
    the lowest confidence (largest probability), for each ``f`` in ``fractions`` (each in [0, 1)). It keeps the
    ``ceil((1 - f) N)`` most confident examples (ties broken by position); ``f = 0`` gives the plain accuracy.

    Args:
        probs: ``(N, K)`` probabilities (e.g. the mean of :func:`mc_dropout_probs`); labels: ``(N,)``.
    """
    probs, labels = _probs_labels(probs, labels)
    fractions = [float(f) for f in fractions]
    if not fractions or not all(0 <= f < 1 for f in fractions):
        raise ValueError(f"fractions: expected shares refused in [0, 1), got {fractions}")
    confidence, prediction = probs.max(1)
    order = torch.argsort(confidence, descending=True, stable=True)
    right = (prediction == labels)[order].double().cumsum(0)     # right answers among the i + 1 most confident
    kept = [max(1, math.ceil((1 - f) * len(labels) - 1e-9)) for f in fractions]
    return torch.tensor([float(right[k - 1]) / k for k in kept], dtype=torch.float64)


def plot_rejection_curve(fractions: Sequence[float], curves: dict[str, Sequence[float] | torch.Tensor],
                         title: str = "Accuracy when the model may refuse") -> plt.Figure:
    """Accuracy on the kept inputs against the share refused, one line per method (``{name: accuracies}``,
    each one value per fraction, as :func:`rejection_curve` gives)."""
    if not curves:
        raise ValueError("curves: expected at least one {name: accuracies}")
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, accuracies in curves.items():
        if len(accuracies) != len(fractions):
            raise ValueError(f"curves[{name!r}]: expected {len(fractions)} accuracies, one per fraction, "
                             f"got {len(accuracies)}")
        ax.plot(list(fractions), [float(a) for a in accuracies], marker="o", ms=3, label=name)
    ax.set(xlabel="share of inputs refused (least confident first)", ylabel="accuracy on the kept inputs",
           title=title)
    ax.legend()
    fig.tight_layout()
    return fig
