"""Plots the notebooks share: learning curves, confusion matrices, image grids, mistakes,
convolution filters and feature maps. Each returns the matplotlib ``Figure``."""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import seaborn as sns
import torch
from sklearn.metrics import confusion_matrix
from torch import nn

from .data import ImageSet, check_images
from .training import History, predict


def plot_history(histories: History | dict[str, History], title: str = "",
                 val_label: str = "validation") -> plt.Figure:
    """Loss and accuracy per epoch, train (solid) and the ``val`` set of ``fit`` (dashed), for one or more runs.

    The legend sits below the two plots, one entry per curve, so it never hides a point.

    Args:
        histories: one :class:`History`, or ``{"MLP": h1, "CNN": h2}`` to compare runs.
        val_label: what the dashed curves measured (the validation split held out of the training data).
    """
    if isinstance(histories, History):
        histories = {"": histories}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for (name, history), color in zip(histories.items(), sns.color_palette()):
        for ax, metric in zip(axes, ("loss", "acc")):
            epochs = history["epoch"]
            ax.plot(epochs, history[f"train_{metric}"], color=color, label=f"{name} train".strip())
            if history[f"val_{metric}"]:
                ax.plot(epochs, history[f"val_{metric}"], "--", color=color, label=f"{name} {val_label}".strip())
    for ax, label in zip(axes, ("cross-entropy loss", "accuracy")):
        ax.set(xlabel="epoch", ylabel=label)
        ax.grid(alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), frameon=False)
    fig.suptitle(title)
    return fig


def plot_confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, classes: Sequence[str],
                          title: str = "Confusion matrix") -> plt.Figure:
    """Heatmap of counts: row = true class, column = predicted class.

    Args:
        labels, predictions: ``(N,)`` integer class indices in ``[0, len(classes))``, N >= 1; any
            other value raises ``ValueError`` (it would have no cell to be counted in).
    """
    if not isinstance(labels, torch.Tensor) or not isinstance(predictions, torch.Tensor):
        raise TypeError(f"labels and predictions: expected tensors, got a {type(labels).__name__} "
                        f"and a {type(predictions).__name__}")
    if labels.shape != predictions.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels and predictions must both be (N,) with N >= 1, got {tuple(labels.shape)} "
                         f"and {tuple(predictions.shape)}")
    labels = _class_indices(labels, "labels", len(labels), classes)
    predictions = _class_indices(predictions, "predictions", len(labels), classes)
    counts = confusion_matrix(labels.numpy(), predictions.numpy(), labels=range(len(classes)))
    fig, ax = plt.subplots(figsize=(7, 6))
    sns.heatmap(counts, annot=True, fmt="d", cmap="Blues", cbar=False, square=True,
                xticklabels=classes, yticklabels=classes, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return fig


def _class_indices(values: Sequence[int] | torch.Tensor, name: str, n: int,
                   classes: Sequence[str] | None) -> torch.Tensor:
    """``values`` as an int64 CPU tensor ``(n,)``: ``TypeError`` unless they are integers, ``ValueError`` for
    another shape or (when ``classes`` are given) a value that does not index ``classes``."""
    values = torch.as_tensor(values).cpu()
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise TypeError(f"{name}: expected integer class indices, got {values.dtype}")
    if values.shape != (n,):
        raise ValueError(f"{name}: expected one per image, ({n},), got shape {tuple(values.shape)}")
    if classes is None:
        return values.long()
    outside = (values < 0) | (values >= len(classes))
    if bool(outside.any()):
        raise ValueError(f"{name}: expected class indices 0 to {len(classes) - 1} (len(classes) = {len(classes)}), "
                         f"got {int(outside.sum())} outside, e.g. {int(values[outside][0])}")
    return values.long()


def show_images(images: torch.Tensor, labels: Sequence[int] | torch.Tensor | None = None,
                classes: Sequence[str] | None = None, predictions: Sequence[int] | torch.Tensor | None = None,
                ncols: int = 8, title: str = "") -> plt.Figure:
    """A grid of grayscale images with their labels (and predictions, red when wrong).

    Args:
        images: ``(N, 1, H, W)`` or ``(N, H, W)``.
        labels, predictions: N integers each; with ``classes``, indices into it.
        ncols: images per row, at least 1.
    """
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        images = images.unsqueeze(1)
    check_images(images)
    if 0 in images.shape[1:]:
        raise ValueError(f"images: expected (N, C, H, W) with C, H and W at least 1, got {tuple(images.shape)}")
    n = len(images)
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols: expected an int of at least 1, got {ncols!r}")
    if labels is not None:
        labels = _class_indices(labels, "labels", n, classes)
    if predictions is not None:
        predictions = _class_indices(predictions, "predictions", n, classes)

    def caption(k: int | torch.Tensor) -> str:
        return classes[int(k)] if classes is not None else str(int(k))

    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.4 * ncols, 1.6 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i, 0].detach().float().cpu().numpy(), cmap="gray_r")
        parts = [] if labels is None else [caption(labels[i])]
        wrong = False
        if predictions is not None:
            parts.append(f"→ {caption(predictions[i])}")
            wrong = labels is not None and int(predictions[i]) != int(labels[i])
        ax.set_title(" ".join(parts), fontsize=8, color="crimson" if wrong else "black")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_mistakes(model: nn.Module, data: ImageSet, n: int = 16, title: str = "") -> plt.Figure:
    """The ``n`` images of ``data`` the model got wrong with the highest confidence.

    Each caption reads ``true → predicted (confidence)``; the title says so, and how many were wrong.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an int of at least 1, got {n!r}")
    probs = predict(model, data).softmax(1).cpu()
    confidence, guess = probs.max(1)
    wrong = (guess != data.labels.cpu()).nonzero().squeeze(1)
    order = wrong[confidence[wrong].argsort(descending=True)][:n]
    heading = title or f"Most confident mistakes ({len(wrong)} wrong of {len(data)})"
    fig = show_images(data.images[order].cpu(), data.labels[order].cpu(), data.classes, guess[order],
                      title=f"{heading}\ncaptions: true → predicted (the model's confidence)")
    for ax, k in zip(fig.axes, order):
        ax.set_title(ax.get_title() + f" ({confidence[k]:.0%})", fontsize=8, color="crimson")
    return fig


def show_filters(conv: nn.Conv2d, max_filters: int = 32, title: str = "") -> plt.Figure:
    """The kernels of a conv layer's first input channel, one labelled image each, on one colour scale
    (blue < 0 < red) with a colour bar."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected an nn.Conv2d, got {type(conv).__name__}")
    if isinstance(max_filters, bool) or not isinstance(max_filters, int) or max_filters < 1:
        raise ValueError(f"max_filters: expected an int of at least 1, got {max_filters!r}")
    weights = conv.weight.detach().float().cpu()[:max_filters, 0]  # (F, kH, kW)
    limit = float(weights.abs().max()) or 1.0
    fig = _map_grid(weights, "filter", cmap="RdBu_r", vmin=-limit, vmax=limit, colorbar_label="weight",
                    ncols=8, size=1.3)
    fig.suptitle(title or f"{len(weights)} learned {conv.kernel_size[0]}x{conv.kernel_size[1]} filters")
    return fig


def show_feature_maps(model: nn.Module, layer: nn.Module, image: torch.Tensor, max_maps: int = 16,
                      title: str = "", ncols: int = 4) -> plt.Figure:
    """What ``layer`` outputs for one ``image`` ``(C, H, W)``: its first ``max_maps`` channels.

    Each map is a labelled panel (``channel k``, large enough to see the pixels), all on one colour
    scale with a colour bar, so that bright means the same in every panel. The model runs on its own
    device in eval mode; its mode is restored afterwards.

    Args:
        ncols: panels per row, at least 1.
    """
    if image.ndim != 3:
        raise ValueError(f"image: expected one image (C, H, W), got shape {tuple(image.shape)}")
    if isinstance(max_maps, bool) or not isinstance(max_maps, int) or max_maps < 1:
        raise ValueError(f"max_maps: expected an int of at least 1, got {max_maps!r}")
    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols: expected an int of at least 1, got {ncols!r}")
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        predict(model, ImageSet(image[None].float(), torch.zeros(1, dtype=torch.int64, device=image.device), ["?"]))
    finally:
        handle.remove()
    maps = captured[0][0, :max_maps].float().cpu()  # (C, h, w)
    low, high = float(maps.min()), float(maps.max())
    fig = _map_grid(maps, "channel", cmap="viridis", vmin=low, vmax=high if high > low else low + 1,
                    colorbar_label="activation", ncols=ncols, size=2.0)
    fig.suptitle(title or f"{len(maps)} feature maps, each {maps.shape[-2]}x{maps.shape[-1]}")
    return fig


def _map_grid(maps: torch.Tensor, name: str, cmap: str, vmin: float, vmax: float, colorbar_label: str,
              ncols: int, size: float) -> plt.Figure:
    """Maps ``(K, h, w)`` as panels titled ``f"{name} {k}"`` on one colour scale, with one colour bar
    (the figure's last axes)."""
    ncols = min(ncols, len(maps))
    nrows = math.ceil(len(maps) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + 1.0, size * nrows + 0.6), squeeze=False,
                             layout="constrained")
    shown = None
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(maps):
            shown = ax.imshow(maps[i].numpy(), cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_title(f"{name} {i}", fontsize=8)
    fig.colorbar(shown, ax=axes.ravel().tolist(), label=colorbar_label, shrink=0.9)
    return fig
