"""Class imbalance and label noise: make the problem on purpose, then measure each fix.

Imbalance:

- :func:`make_imbalanced`: keep a geometric share of each class, from all of class 0 down to
  ``1 / ratio`` of it for the last class (10:1, 100:1);
- three fixes: :func:`class_weights` (a weighted cross-entropy), :func:`balanced_sampler` with
  :func:`resample` (draw every class equally often) and :func:`adjust_logits` (threshold moving by
  logit adjustment, at prediction time, no retraining);
- :func:`imbalance_table`: accuracy, balanced accuracy and per-class recall of each method in one table
  (scikit-learn's ``balanced_accuracy_score`` and ``recall_score``).

Label noise:

- :func:`add_symmetric_noise`: flip a given share of the labels, each to another class at random;
- two mitigations usable as ``loss_fn`` of :func:`~course_utils.training.fit`:
  :func:`generalised_cross_entropy` (a robust loss) and :func:`small_loss_cross_entropy` (train on the
  examples with the smallest losses, :func:`small_loss_mask`);
- :func:`suspicious_labels`: the training examples the model finds least believable (highest loss),
  for a grid with :func:`~course_utils.plots.show_images` (data cleaning).
"""
from __future__ import annotations

import numbers
from typing import Callable

import torch
from sklearn.metrics import balanced_accuracy_score, recall_score
from torch import nn
from torch.utils.data import Sampler, WeightedRandomSampler

from .data import ImageSet
from .training import predict

__all__ = ["make_imbalanced", "class_weights", "balanced_sampler", "resample", "adjust_logits", "imbalance_table",
           "add_symmetric_noise", "generalised_cross_entropy", "small_loss_mask", "small_loss_cross_entropy",
           "suspicious_labels"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_data(data: object, name: str = "data") -> ImageSet:
    if not isinstance(data, ImageSet):
        raise TypeError(f"{name}: expected a course_utils.ImageSet, got {type(data).__name__}")
    return data


def _check_labels(labels: object, num_classes: int | None = None, name: str = "labels") -> torch.Tensor:
    """``labels`` as a non-empty 1-D integer tensor, every value in ``0 .. num_classes - 1`` when given."""
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
        got = f"a {labels.dtype} tensor of shape {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) \
            else f"a {type(labels).__name__}"
        raise TypeError(f"{name}: expected an int64 tensor (N,) of class indices, got {got}")
    if len(labels) == 0:
        raise ValueError(f"{name}: expected at least one label, got none")
    if num_classes is not None:
        _check_count(num_classes, "num_classes", minimum=2)
        outside = (labels < 0) | (labels >= num_classes)
        if bool(outside.any()):
            raise ValueError(f"{name}: expected class indices 0 to {num_classes - 1}, got {int(outside.sum())} "
                             f"outside, e.g. {int(labels[outside][0])}")
    return labels


def _check_count(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an int of at least {minimum}, got {value!r}")


def _check_fraction(value: object, name: str, low_open: bool, high_open: bool) -> float:
    """``value`` as a float in the interval between 0 and 1 (each end open or closed as asked)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and \
        (0 < value if low_open else 0 <= value) and (value < 1 if high_open else value <= 1)
    if not ok:
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name}: expected a number in {interval}, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Class imbalance
# ---------------------------------------------------------------------------------------------

def make_imbalanced(data: ImageSet, ratio: float, seed: int = 0) -> ImageSet:
    """A long-tailed subset of ``data``: class ``k`` of ``K`` keeps ``round(m * ratio ** (-k / (K - 1)))``
    examples (at least 1), a seeded random choice among its own, where ``m`` is the size of the smallest
    class of ``data``.

    So class 0 keeps ``m`` examples and the shares shrink geometrically with the class index down to
    ``m / ratio`` for the last class: the **higher** the class index, the rarer the class. ``ratio=1``
    gives ``m`` of every class (balanced). The kept examples stay in their order in ``data``.

    Args:
        data: images ``(N, 1, H, W)`` and labels ``(N,)``, every class of ``data.classes`` present.
        ratio: largest class size / smallest, at least 1 (10 and 100 in notebook 08).
    Returns:
        an :class:`ImageSet` with ``sum_k n_k`` examples; ``torch.bincount(result.labels)`` shows the counts.
    Raises:
        TypeError: ``data`` is not an ImageSet. ValueError: ``ratio`` below 1, or a class has no example.
    """
    data = _check_data(data)
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not ratio >= 1:
        raise ValueError(f"ratio: expected a number >= 1 (largest class / smallest), got {ratio!r}")
    num_classes = len(data.classes)
    labels = data.labels.cpu()
    counts = torch.bincount(labels, minlength=num_classes)
    if bool((counts == 0).any()):
        raise ValueError(f"data: every class needs at least one example; classes "
                         f"{(counts == 0).nonzero().flatten().tolist()} have none")
    smallest = int(counts.min())
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for k in range(num_classes):
        share = ratio ** (-k / max(num_classes - 1, 1))
        members = (labels == k).nonzero().flatten()
        choice = torch.randperm(len(members), generator=generator)[:max(1, round(smallest * share))]
        kept.append(members[choice])
    rows = torch.cat(kept).sort().values.to(data.device)
    return ImageSet(data.images[rows], data.labels[rows], data.classes, data.source)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights, scaled to mean 1: ``w_c = (1 / n_c) / mean_k(1 / n_k)``.

    Pass them to the cross-entropy, ``nn.functional.cross_entropy(logits, y, weight=w)`` (on the model's
    device), so that each class weighs the same in the loss however many examples it has.

    Args:
        labels: ``(N,)`` class indices of the training set.
    Returns:
        ``(num_classes,)`` float32 weights on the labels' device, mean 1; rare classes weigh more.
    Raises:
        TypeError: ``labels`` is not an integer tensor ``(N,)``. ValueError: a label outside
            ``0 .. num_classes - 1``, or a class without any example (its weight would be infinite).
    """
    labels = _check_labels(labels, num_classes)
    counts = torch.bincount(labels, minlength=num_classes).float()
    if bool((counts == 0).any()):
        raise ValueError(f"labels: class weights need every class present; classes "
                         f"{(counts == 0).nonzero().flatten().tolist()} have no example")
    inverse = 1.0 / counts
    return inverse / inverse.mean()


def balanced_sampler(labels: torch.Tensor, seed: int = 0, num_samples: int | None = None) -> WeightedRandomSampler:
    """A ``torch.utils.data.WeightedRandomSampler`` that draws every class equally often.

    Each example has weight ``1 / n_{y_i}`` (its class's size), and draws are with replacement: the
    rare classes' examples are repeated (oversampling) and the common classes' are drawn fewer times.

    :func:`~course_utils.training.fit` has no ``sampler`` argument (it shuffles the rows itself), so use
    it through :func:`resample`, which draws one epoch's worth of rows into a new training set.

    Args:
        labels: ``(N,)`` class indices.
        seed: seeds the sampler's own generator.
        num_samples: rows drawn per pass (default ``N``).
    Raises:
        TypeError: ``labels`` is not an integer tensor ``(N,)``. ValueError: negative labels, or
            ``num_samples`` below 1.
    """
    labels = _check_labels(labels)
    if bool((labels < 0).any()):
        raise ValueError("labels: expected class indices >= 0")
    if num_samples is not None:
        _check_count(num_samples, "num_samples", minimum=1)
    counts = torch.bincount(labels.cpu())
    weights = 1.0 / counts[labels.cpu()].double()
    return WeightedRandomSampler(weights, num_samples or len(labels), replacement=True,
                                 generator=torch.Generator().manual_seed(seed))


def resample(data: ImageSet, sampler: Sampler) -> ImageSet:
    """The rows of ``data`` that one pass of ``sampler`` draws, in its order (repeats included).

    ``fit(model, resample(train, balanced_sampler(train.labels)), ...)`` trains on a class-balanced set
    of the same size; every epoch sees that same draw (``fit`` shuffles its order each epoch).

    Raises:
        TypeError: ``data`` is not an ImageSet or ``sampler`` not a ``torch.utils.data.Sampler``.
        ValueError: the sampler gives an index outside ``0 .. len(data) - 1``, or none at all.
    """
    data = _check_data(data)
    if not isinstance(sampler, Sampler):
        raise TypeError(f"sampler: expected a torch.utils.data.Sampler (e.g. balanced_sampler(labels)), "
                        f"got {type(sampler).__name__}")
    rows = torch.as_tensor(list(sampler), dtype=torch.int64)
    if len(rows) == 0 or bool(((rows < 0) | (rows >= len(data))).any()):
        raise ValueError(f"sampler: expected at least one index in 0..{len(data) - 1}, got {len(rows)} indices "
                         f"from {int(rows.min()) if len(rows) else None} to {int(rows.max()) if len(rows) else None}")
    rows = rows.to(data.device)
    return ImageSet(data.images[rows], data.labels[rows], data.classes, data.source)


def adjust_logits(logits: torch.Tensor, priors: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Threshold moving by logit adjustment (Menon et al., 2021): ``logits - tau * log(priors)``.

    A model trained on imbalanced data learns the training prior ``p(y)`` into its logits; subtracting
    ``tau * log p(y)`` from them before the argmax favours the rare classes, as if each class were
    equally likely (``tau = 1``). It changes only the decision, not the model: no retraining.

    Args:
        logits: ``(N, K)`` scores of a trained model.
        priors: ``(K,)`` class frequencies of the training set (or counts: only their ratios matter for
            the argmax), every one positive.
        tau: strength, ``>= 0``; ``0`` gives the logits back; tune it on validation data.
    Returns:
        ``(N, K)`` adjusted logits on the logits' device.
    Raises:
        TypeError: ``logits`` or ``priors`` is not a floating-point tensor. ValueError: other shapes, a
            prior that is not positive and finite, or a negative ``tau``.
    """
    for name, value in (("logits", logits), ("priors", priors)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            got = value.dtype if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
            raise TypeError(f"{name}: expected a floating-point tensor, got {got}")
    if logits.dim() != 2 or priors.shape != (logits.shape[1],):
        raise ValueError(f"logits, priors: expected (N, K) and (K,), got {tuple(logits.shape)} and "
                         f"{tuple(priors.shape)}")
    if not bool(torch.isfinite(priors).all()) or bool((priors <= 0).any()):
        raise ValueError(f"priors: expected positive class frequencies, got {priors.tolist()}")
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not tau >= 0:
        raise ValueError(f"tau: expected a number >= 0, got {tau!r}")
    return logits - tau * torch.log(priors / priors.sum()).to(logits.device, logits.dtype)


def imbalance_table(predictions: dict[str, torch.Tensor], labels: torch.Tensor,
                    classes: list[str]) -> dict[str, float]:
    """Print accuracy, balanced accuracy and per-class recall of each method; return the balanced accuracies.

    Balanced accuracy is the mean of the per-class recalls (scikit-learn's ``balanced_accuracy_score``
    and ``recall_score(average=None)``): on a balanced test set of an imbalanced problem it shows what
    plain accuracy hides, the rare classes that are never predicted.

    Args:
        predictions: ``{method: (N,) predicted classes}``, e.g. ``logits.argmax(1)`` of each model.
        labels: ``(N,)`` true classes.
        classes: the class names, one column each.
    Returns:
        ``{method: balanced accuracy}``.
    Raises:
        ValueError: ``predictions`` empty, or a prediction tensor of another length than ``labels`` or with
            a class outside ``0 .. len(classes) - 1``. TypeError: non-integer predictions or labels.
    """
    labels = _check_labels(labels, len(classes))
    if not isinstance(predictions, dict) or not predictions:
        raise ValueError(f"predictions: expected a non-empty dict {{method: (N,) predicted classes}}, "
                         f"got {type(predictions).__name__}")
    for name, predicted in predictions.items():
        _check_labels(predicted, len(classes), name=f"predictions[{name!r}]")
        if len(predicted) != len(labels):
            raise ValueError(f"predictions[{name!r}]: expected {len(labels)} predictions, one per label, "
                             f"got {len(predicted)}")
    truth = labels.cpu().numpy()
    every = list(range(len(classes)))
    width = max(len("method"), *map(len, predictions)) + 2
    print(f"{'method':<{width}}{'accuracy':>9}{'balanced':>9}   recall per class: "
          + " ".join(f"{c[:5]:>5}" for c in classes))
    balanced = {}
    for name, predicted in predictions.items():
        guess = predicted.cpu().numpy()
        balanced[name] = float(balanced_accuracy_score(truth, guess))
        recalls = recall_score(truth, guess, labels=every, average=None, zero_division=0)
        accuracy = float((guess == truth).mean())
        print(f"{name:<{width}}{accuracy:>9.3f}{balanced[name]:>9.3f}   {'':<18}"
              + " ".join(f"{r:>5.2f}" for r in recalls))
    return balanced


# ---------------------------------------------------------------------------------------------
# Label noise
# ---------------------------------------------------------------------------------------------

def add_symmetric_noise(labels: torch.Tensor, rate: float, num_classes: int,
                        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip exactly ``round(rate * N)`` labels, chosen at random, each to one of the other classes at random.

    Symmetric noise: a flipped label never equals the true one, and each wrong class is equally likely.
    Prints the realised rate (``round(rate * N) / N``).

    Args:
        labels: ``(N,)`` true class indices (left unchanged).
        rate: the share of labels to flip, in ``[0, 1]``.
        seed: seeds which labels flip and to what.
    Returns:
        ``(noisy (N,) int64, flipped (N,) bool)`` on the labels' device; ``noisy[flipped] != labels[flipped]``.
    Raises:
        TypeError: ``labels`` not an integer tensor ``(N,)``. ValueError: labels outside
            ``0 .. num_classes - 1``, ``num_classes`` below 2, ``rate`` outside ``[0, 1]``.
    """
    labels = _check_labels(labels, num_classes)
    rate = _check_fraction(rate, "rate", low_open=False, high_open=False)
    generator = torch.Generator().manual_seed(seed)
    n = len(labels)
    chosen = torch.randperm(n, generator=generator)[:round(rate * n)]
    offsets = torch.randint(1, num_classes, (len(chosen),), generator=generator)  # never 0: always another class
    noisy = labels.cpu().long().clone()
    noisy[chosen] = (noisy[chosen] + offsets) % num_classes
    flipped = torch.zeros(n, dtype=torch.bool)
    flipped[chosen] = True
    print(f"label noise: {len(chosen):,} of {n:,} labels flipped ({len(chosen) / n:.1%}), each to one of the "
          f"other {num_classes - 1} classes at random")
    return noisy.to(labels.device), flipped.to(labels.device)


def _check_logits_labels(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() != 2:
        got = f"{logits.dtype} {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits: expected floating-point scores (N, K), got {got}")
    _check_labels(labels, logits.shape[1])
    if len(labels) != len(logits):
        raise ValueError(f"labels: expected one per row of logits ({len(logits)}), got {len(labels)}")


def generalised_cross_entropy(q: float = 0.7) -> LossFn:
    """The generalised cross-entropy loss (Zhang & Sabuncu, 2018), robust to label noise: a ``loss_fn`` for ``fit``.

    Per example ``(1 - p_y ** q) / q``, averaged, with ``p_y`` the softmax probability of the given label.
    As ``q -> 0`` it becomes the cross-entropy ``-log p_y``; at ``q = 1`` it is ``1 - p_y``, the mean absolute
    error, which a wrong label can push on by at most 1 where the cross-entropy grows without bound.

    Args:
        q: in ``(0, 1]``.
    Returns:
        ``loss_fn(logits (B, K), labels (B,)) -> scalar``.
    Raises:
        ValueError: ``q`` outside ``(0, 1]`` (here); wrong shapes (when called).
    """
    q = _check_fraction(q, "q", low_open=True, high_open=False)

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_logits_labels(logits, labels)
        p_true = torch.softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)
        return ((1 - p_true.clamp_min(1e-12) ** q) / q).mean()

    return loss_fn


def small_loss_mask(losses: torch.Tensor, keep: float) -> torch.Tensor:
    """The ``keep`` share of examples with the smallest losses: ``(N,)`` bool, ``round(keep * N)`` (at least one)
    of them True.

    Noisy labels are hard to fit, so early in training they have the largest losses; training on the
    small-loss examples alone skips most of them (the selection of Co-teaching, Han et al., 2018).

    Args:
        losses: ``(N,)`` per-example losses.
        keep: in ``(0, 1]``; about ``1 - noise rate``.
    Raises:
        ValueError: ``losses`` not a non-empty floating tensor ``(N,)``, ``keep`` outside ``(0, 1]``.
    """
    if not isinstance(losses, torch.Tensor) or not losses.is_floating_point() or losses.dim() != 1 or \
            len(losses) == 0:
        got = f"{losses.dtype} {tuple(losses.shape)}" if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise ValueError(f"losses: expected a non-empty floating-point tensor (N,), got {got}")
    keep = _check_fraction(keep, "keep", low_open=True, high_open=False)
    count = max(1, round(keep * len(losses)))
    mask = torch.zeros(len(losses), dtype=torch.bool, device=losses.device)
    mask[losses.detach().argsort()[:count]] = True
    return mask


def small_loss_cross_entropy(keep: float, ramp_steps: int = 0) -> LossFn:
    """A ``loss_fn`` for ``fit``: the cross-entropy averaged over the ``keep`` share of each batch with the
    smallest losses (:func:`small_loss_mask`); the rest of the batch gives no gradient.

    A fresh model cannot yet tell noisy labels from hard ones, so, as in Co-teaching (Han et al., 2018),
    the kept share can fall linearly from all of the batch to ``keep`` over the first ``ramp_steps``
    training steps (about ``ramp_epochs * ceil(N / batch_size)``). A step is a call with gradients enabled:
    ``fit``'s validation, which runs without them, uses the current share and does not advance it. Make a
    new loss function for each training run. ``fit`` reports ``val_loss`` with this function too, so
    that figure covers the kept share only; ``val_acc`` is unaffected.

    Args:
        keep: the share kept once the ramp is over, in ``(0, 1]``; about ``1 - noise rate``.
        ramp_steps: training steps to reach it, ``>= 0`` (0: ``keep`` from the first step).
    Returns:
        ``loss_fn(logits (B, K), labels (B,)) -> scalar``.
    Raises:
        ValueError: ``keep`` or ``ramp_steps`` out of range (here); wrong shapes (when called).
    """
    keep = _check_fraction(keep, "keep", low_open=True, high_open=False)
    if isinstance(ramp_steps, bool) or not isinstance(ramp_steps, numbers.Integral) or ramp_steps < 0:
        raise ValueError(f"ramp_steps: expected an int >= 0, got {ramp_steps!r}")
    steps = 0

    def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        nonlocal steps
        _check_logits_labels(logits, labels)
        share = 1 - (1 - keep) * min(1.0, steps / ramp_steps) if ramp_steps else keep
        if torch.is_grad_enabled():
            steps += 1
        losses = nn.functional.cross_entropy(logits, labels, reduction="none")
        return losses[small_loss_mask(losses, share)].mean()

    return loss_fn


def suspicious_labels(model: nn.Module, data: ImageSet, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` examples of ``data`` whose given label the model finds least believable: highest cross-entropy.

    Show them with ``show_images(data.images[rows], data.labels[rows], data.classes,
    predictions=predict(model, data)[rows].argmax(1))``; where the noise is known (``flipped`` of
    :func:`add_symmetric_noise`), ``flipped[rows].float().mean()`` is the share of true finds.

    Args:
        model: a classifier, ``(B, 1, H, W) -> (B, K)``; run in eval mode, its mode restored.
        data: images ``(N, 1, H, W)`` with their (possibly noisy) labels ``(N,)``.
        n: how many, ``1 <= n <= N``.
    Returns:
        ``(rows (n,) int64, losses (n,))``, the highest loss first, on the CPU.
    Raises:
        TypeError: ``data`` is not an ImageSet. ValueError: ``n`` out of range.
    """
    data = _check_data(data)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= len(data):
        raise ValueError(f"n: expected an int from 1 to {len(data)} (the examples in data), got {n!r}")
    logits = predict(model, data).cpu()
    losses = nn.functional.cross_entropy(logits, data.labels.cpu(), reduction="none")
    top = losses.topk(int(n))
    return top.indices, top.values
