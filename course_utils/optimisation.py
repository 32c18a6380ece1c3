"""Optimisation done right for fine-tuning: AdamW parameter groups, warmup + cosine, and multi-label targets.

- :func:`decay_groups`: AdamW parameter groups, weight decay on weight matrices, conv kernels and
  embeddings, none on biases and normalisation weights, frozen parameters left out;
- :func:`warmup_cosine`: a scheduler factory for ``fit(scheduler=...)``, a linear warmup from 0 then a
  cosine decay (:func:`warmup_cosine_factor` gives its multiplier at one step); :func:`learning_rates`
  lists a schedule's rate at every step without training, for plotting;
- :func:`attribute_targets`: multi-label targets for digits (thick? right-leaning? large?)
  measured from their pixels, for a model with one logit per label trained with ``BCEWithLogitsLoss``;
  :func:`multilabel_scores` prints and returns its per-label precision, recall, F1 and accuracy.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple, Sequence

import torch
from sklearn.metrics import precision_recall_fscore_support
from torch import nn

from .imagetext.attributes import ATTRIBUTES, WORDS, AttributeBins, measure_attributes
from .training import SchedulerFactory, make_scheduler
from .uncertainty import format_accuracy

__all__ = ["decay_groups", "warmup_cosine_factor", "warmup_cosine", "learning_rates", "AttributeTargets",
           "attribute_targets", "multilabel_scores"]


# ---------------------------------------------------------------------------------------------
# AdamW parameter groups
# ---------------------------------------------------------------------------------------------

def decay_groups(model: nn.Module, weight_decay: float, *, no_decay: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Parameter groups for ``torch.optim.AdamW(decay_groups(model, 0.01), lr=...)``: who gets weight decay.

    The rule is the parameter's number of dims. A trainable parameter with two or more (a Linear weight
    ``(out, in)``, a conv kernel ``(out, in, k, k)``, an embedding table ``(V, D)``, a position embedding
    ``(1, T, D)``) is decayed; one with fewer (every bias, and the scales and shifts of LayerNorm,
    BatchNorm and GroupNorm, all ``(D,)``) is not: pulling a bias or a normalisation scale towards 0
    regularises nothing (a scale of 0 switches its feature off), and these few numbers hardly overfit.
    Embeddings are decayed, as in BERT's original recipe and Hugging Face's ``Trainer`` (which exempt
    only biases and LayerNorm weights) and in nanoGPT (which decays every parameter of 2+ dims); timm's
    ViT recipe also exempts its position embeddings and CLS token (its ``no_weight_decay()`` list):
    follow it with ``no_decay=("pos_embed", "cls_token")``.

    Frozen parameters (``requires_grad=False``) are in neither group, so a fine-tuning optimizer holds
    no state for them; each trainable parameter is in exactly one group, and an empty group is left out.

    Args:
        model: any module; a parameter shared by two modules counts once.
        weight_decay: the decoupled decay of the first group (AdamW's ``weight_decay``), ``>= 0``.
        no_decay: names of further parameters to exempt, as ``model.named_parameters()`` gives them, or
            their last parts (``"pos_embed"`` matches ``"encoder.pos_embed"``).
    Returns:
        ``[{"params": [...], "weight_decay": weight_decay, "names": [...]},
        {"params": [...], "weight_decay": 0.0, "names": [...]}]``; ``"names"`` (the parameters' names,
        for printing) is an extra key that the optimizer keeps and ignores.
    Raises:
        TypeError: ``model`` is not an ``nn.Module``, or ``no_decay`` is not a sequence of names.
        ValueError: ``weight_decay`` is negative or not a number, a ``no_decay`` name matches no
            parameter, or the model has no trainable parameter.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, numbers.Real) \
            or not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay: expected a number >= 0 (e.g. 0.01), got {weight_decay!r}")
    if isinstance(no_decay, str) or not all(isinstance(name, str) for name in no_decay):
        raise TypeError(f"no_decay: expected a list of parameter names, e.g. ['pos_embed'], got {no_decay!r}")
    named = list(model.named_parameters())
    unmatched = [entry for entry in no_decay if not any(_matches(name, entry) for name, _ in named)]
    if unmatched:
        raise ValueError(f"no_decay: {unmatched} match no parameter of the model; its parameters are named like "
                         f"{[name for name, _ in named[:4]]}")
    trainable = [(name, p) for name, p in named if p.requires_grad]
    if not trainable:
        raise ValueError("model: it has no trainable parameter (every requires_grad is False): nothing to optimise")
    exempt = [p.ndim < 2 or any(_matches(name, entry) for entry in no_decay) for name, p in trainable]
    groups = [{"params": [p for (_, p), ex in zip(trainable, exempt) if ex == skip],
               "weight_decay": float(value),
               "names": [name for (name, _), ex in zip(trainable, exempt) if ex == skip]}
              for skip, value in ((False, weight_decay), (True, 0.0))]
    return [group for group in groups if group["params"]]


def _matches(name: str, entry: str) -> bool:
    """Whether the parameter ``name`` is ``entry`` or ends with ``"." + entry``."""
    return name == entry or name.endswith("." + entry)


# ---------------------------------------------------------------------------------------------
# Linear warmup, then cosine decay
# ---------------------------------------------------------------------------------------------

def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, final: float = 0.0) -> float:
    """The learning-rate multiplier at ``step``: a linear warmup from 0, then a cosine decay to ``final``.

    ``step`` counts the optimizer steps taken so far, so batch ``t`` (from 0) trains at the multiplier of
    step ``t``:

    - warmup, ``t < W``: ``t / W``; the first batch trains at 0 and the peak, 1, is reached at ``t = W``
      (the convention of Hugging Face's ``get_cosine_schedule_with_warmup``);
    - decay, ``t >= W``: with ``p = (t - W) / (T - W)`` (capped at 1), ``final + (1 - final) (1 + cos(pi p)) / 2``,
      from 1 at ``t = W`` to ``final`` at ``t = T`` (the last batch, ``t = T - 1``, is just above it).

    Args:
        step: ``t >= 0``; warmup_steps: ``W``, ``0 <= W <= T``; total_steps: ``T >= 1``;
        final: the floor as a fraction of the peak, in ``[0, 1]``.
    Raises:
        ValueError: an argument outside those ranges, or a step count that is not an int.
    """
    for name, value in (("step", step), ("warmup_steps", warmup_steps), ("total_steps", total_steps)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise ValueError(f"{name}: expected a whole number of steps >= 0, got {value!r}")
    if total_steps < 1 or warmup_steps > total_steps:
        raise ValueError(f"expected 0 <= warmup_steps <= total_steps and total_steps >= 1, got warmup_steps="
                         f"{warmup_steps}, total_steps={total_steps}")
    _check_final(final)
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))


def _check_final(final: float) -> None:
    if isinstance(final, bool) or not isinstance(final, numbers.Real) or not 0 <= final <= 1:
        raise ValueError(f"final: expected the floor as a fraction of the peak rate, in [0, 1], got {final!r}")


def warmup_cosine(warmup: float | int = 0.1, final: float = 0.0) -> SchedulerFactory:
    """A scheduler for ``fit(..., scheduler=warmup_cosine(0.1))``: linear warmup, then cosine decay.

    Returns ``make(optimizer, total_steps)``, which ``fit`` and ``fit_tensors`` call once they know the
    number of steps; it gives a ``torch.optim.lr_scheduler.LambdaLR`` multiplying each parameter group's
    own ``lr`` by :func:`warmup_cosine_factor` (groups with different rates keep their ratio). With
    ``final=0`` it equals ``transformers.get_cosine_schedule_with_warmup`` (the tests check it).

    Args:
        warmup: the warmup's length: a fraction of the total steps (a float in ``[0, 1)``), or a
            number of steps (an int, at most the total).
        final: the rate at the end, as a fraction of the peak, in ``[0, 1]``.
    Raises:
        ValueError: ``warmup`` or ``final`` out of range (a ``warmup`` longer than the run: when called).
    """
    if isinstance(warmup, bool) or not isinstance(warmup, numbers.Real) or warmup < 0 \
            or not isinstance(warmup, numbers.Integral) and warmup >= 1:
        raise ValueError(f"warmup: expected a fraction of the steps in [0, 1) (a float) or a number of steps "
                         f"(an int >= 0), got {warmup!r}")
    _check_final(final)

    def make(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
        steps = int(warmup) if isinstance(warmup, numbers.Integral) else round(warmup * total_steps)
        if steps > total_steps:
            raise ValueError(f"warmup: {steps} warmup steps, but the run has only {total_steps} steps")
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine_factor(step, steps, total_steps, final))

    return make


def learning_rates(scheduler: str | SchedulerFactory | None, total_steps: int, lr: float = 1.0) -> list[float]:
    """The learning rate each of ``total_steps`` batches would train at, without training (for plotting).

    Args:
        scheduler: what ``fit(scheduler=...)`` takes: ``"one_cycle"``, ``None`` or a factory such as
            :func:`warmup_cosine`.
        total_steps: the number of batches of the run (``epochs * batches per epoch``), at least 1.
        lr: the peak rate (the optimizer's ``lr``).
    Returns:
        ``total_steps`` rates; entry ``t`` is the rate of batch ``t``.
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps: expected an int of at least 1, got {total_steps!r}")
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = make_scheduler(scheduler, optimizer, total_steps)
    rates = []
    for step in range(total_steps):
        if step and schedule is not None:
            optimizer.step()  # no gradient, so nothing changes: it only keeps the steps in torch's expected order
            schedule.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


# ---------------------------------------------------------------------------------------------
# Multi-label targets: a digit's measured attributes
# ---------------------------------------------------------------------------------------------

class AttributeTargets(NamedTuple):
    """Multi-label targets of a set of images, from :func:`attribute_targets`."""

    targets: torch.Tensor  # (N, K) float32, 1.0 where the image has the label
    names: list[str]  # the K labels' names, e.g. ["thick", "right-leaning", "large"]
    bins: AttributeBins  # the thresholds used: the training split's, to pass on to the other splits


def attribute_targets(images: torch.Tensor, bins: AttributeBins | None = None,
                      attributes: Sequence[str] | None = None) -> AttributeTargets:
    """K binary labels per image: is it in the top third of the training images for each attribute?

    The attributes are measured from the pixels (:func:`~course_utils.imagetext.measure_attributes`:
    stroke thickness, slant, size...) and cut at the training split's upper tercile
    (:class:`~course_utils.imagetext.AttributeBins`), so about a third of the training images carry
    each label and an image may carry any number of them: a multi-label task for a model with K outputs
    and ``BCEWithLogitsLoss``. Fit the thresholds on the training images and reuse them::

        train_y = attribute_targets(train.images)
        test_y = attribute_targets(test.images, bins=train_y.bins)

    Args:
        images: ``(N, 1, H, W)`` in [0, 1], ink bright on dark.
        bins: thresholds from the training split (``None``: learn them from ``images``, at least 3).
        attributes: which attributes, from ``ATTRIBUTES``; default the ones whose words are informative
            (``bins.informative``: for MNIST thickness, slant and size; position and brightness vary too
            little there to be named). ``["thickness", "slant", "size", "brightness"]`` adds "bright".
    Returns:
        :class:`AttributeTargets`: ``targets`` ``(N, K)`` float32 on the images' device, the K label
        names (each attribute's top word: "thick", "right-leaning", "large"...), and the bins.
    Raises:
        ValueError: images not ``(N, 1, H, W)``, or an unknown or repeated attribute name.
    """
    if bins is not None and not isinstance(bins, AttributeBins):
        raise TypeError(f"bins: expected the AttributeBins of a previous call (its .bins), got {type(bins).__name__}")
    measured = measure_attributes(images)
    bins = bins or AttributeBins.fit(measured)
    chosen = list(bins.informative if attributes is None else attributes)
    if isinstance(attributes, str) or not chosen or any(a not in ATTRIBUTES for a in chosen) \
            or len(set(chosen)) != len(chosen):
        raise ValueError(f"attributes: expected distinct names from {list(ATTRIBUTES)}, got {attributes!r}")
    levels = bins.levels(measured)
    targets = torch.stack([(levels[name] == 2).float() for name in chosen], dim=1)
    return AttributeTargets(targets, [WORDS[name][2] for name in chosen], bins)


def multilabel_scores(logits: torch.Tensor, targets: torch.Tensor, names: Sequence[str], threshold: float = 0.5,
                      show: bool = True) -> dict[str, dict[str, float]]:
    """Per-label precision, recall, F1 and accuracy of a multi-label model, printed as a table.

    A label is predicted when its probability ``sigmoid(logit)`` is at least ``threshold``. Each row
    shows the share of positives too, and the accuracy of always answering "no" (``1 - positives``): a
    label that is rare is easy to get right by never predicting it, which F1 sees through. The
    accuracies carry 95% Wilson intervals.

    Args:
        logits: ``(N, K)`` raw scores (before any sigmoid); targets: ``(N, K)`` of 0 and 1;
        names: the K labels' names; threshold: in ``(0, 1)``; show: print the table.
    Returns:
        ``{name: {"positives", "precision", "recall", "f1", "accuracy"}}`` for each label, and
        ``"macro"``: the same numbers averaged over the labels.
    Raises:
        ValueError: shapes that are not ``(N, K)`` alike with ``K == len(names)``, targets other than 0
            and 1, or a threshold outside ``(0, 1)``.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor) or logits.ndim != 2 \
            or logits.shape != targets.shape or len(logits) == 0 or logits.shape[1] != len(names):
        got = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in (logits, targets)]
        raise ValueError(f"logits, targets: expected two (N, K) tensors with N >= 1 and K = len(names) = {len(names)}, "
                         f"got {got[0]} and {got[1]}")
    if not bool(((targets == 0) | (targets == 1)).all()):
        raise ValueError("targets: expected 0 and 1 only (one column per label)")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold: expected a probability in (0, 1), got {threshold!r}")
    truth = targets.detach().cpu().numpy().astype(int)
    predicted = (torch.sigmoid(logits.detach().float().cpu()) >= threshold).numpy().astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    scores = {name: {"positives": float(truth[:, k].mean()), "precision": float(precision[k]),
                     "recall": float(recall[k]), "f1": float(f1[k]),
                     "accuracy": float((truth[:, k] == predicted[:, k]).mean())}
              for k, name in enumerate(names)}
    scores["macro"] = {key: sum(s[key] for s in scores.values()) / len(names)
                       for key in ("positives", "precision", "recall", "f1", "accuracy")}
    if show:
        n, width = len(truth), max(len("label"), *map(len, names)) + 2
        print(f"{'label':<{width}}{'positives':>10}{'precision':>10}{'recall':>8}{'F1':>7}   "
              f"{'accuracy [95% interval]':<34}{'always no':>10}")
        for name in [*names, "macro"]:
            s = scores[name]
            accuracy = format_accuracy(s["accuracy"], n) if name != "macro" else f"{s['accuracy']:.4f}"
            print(f"{name:<{width}}{s['positives']:>10.3f}{s['precision']:>10.3f}{s['recall']:>8.3f}{s['f1']:>7.3f}   "
                  f"{accuracy:<34}{1 - s['positives']:>10.3f}")
    return scores
