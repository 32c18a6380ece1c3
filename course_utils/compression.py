"""Compression: make a trained model smaller or faster, and measure what it costs in accuracy.

- :func:`quantize_dynamic_int8`: int8 weights for the ``nn.Linear`` layers (dynamic quantisation, CPU);
- :func:`magnitude_prune` (global, unstructured, made permanent) and :func:`sparsity`;
- :func:`distillation_loss` (Hinton et al., 2015) and :func:`distillation_step`, its loss for
  :func:`~course_utils.training.fit_tensors`, to train a small student on a teacher's soft targets, also on
  images nobody labelled (label :data:`UNLABELLED`);
- the measures of one table: :func:`size_on_disk` and :func:`latency_per_image`;
- :class:`Ensemble` (average the members' probabilities) and :func:`ensemble_cost`, to check the claim that
  merging small models cuts compute: an ensemble's cost is the sum of its members'.
"""
from __future__ import annotations

import copy
import io
import numbers
import statistics
import time
import warnings
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from .models import device_of
from .training import StepResult, evaluating

__all__ = ["quantize_dynamic_int8", "size_on_disk", "latency_per_image", "magnitude_prune", "sparsity",
           "UNLABELLED", "distillation_loss", "distillation_step", "Ensemble", "ensemble_cost"]

# The layers that pruning and sparsity cover: those with a weight matrix or kernel.
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# The label of an image nobody labelled: the cross-entropy's ``ignore_index`` default, so it skips the row.
UNLABELLED = -100


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    return model


def _fraction(value: object, name: str) -> float:
    """``value`` as a float in ``[0, 1]``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """A copy of ``model`` on the CPU whose ``nn.Linear`` layers hold int8 weights (dynamic quantisation).

    Each weight matrix is stored as int8 with one scale (a quarter of float32's bytes); at run time each
    input is quantised on the fly and the matrix product runs in int8 on the CPU. Only ``nn.Linear``
    layers change: convolutions stay float32 (they need static quantisation, with calibration data), so
    the course's MLP shrinks about four times and the CNN, whose weights are mostly convolutions, much less.

    It uses ``torch.ao.quantization.quantize_dynamic``, which torch 2.14 still ships but marks as deprecated
    in favour of the separate ``torchao`` package (not a dependency of the course). The two deprecation
    notices it raises while converting (``torch.ao.quantization is deprecated`` and the one on quantized
    tensor creation) are silenced here, and only those; the model works as before.

    Returns:
        the quantised copy in eval mode, on the CPU (its kernels are CPU kernels); ``model`` is untouched.
    Raises:
        TypeError: ``model`` is not an ``nn.Module``. ValueError: it has no ``nn.Linear`` layer.
    """
    model = _check_model(model)
    if not any(isinstance(module, nn.Linear) for module in model.modules()):
        raise ValueError("model: dynamic int8 quantisation converts nn.Linear layers, and this model has none")
    float_copy = copy.deepcopy(model).cpu().eval()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="torch.quantize_per_tensor, torch.quantize_per_channel",
                                category=UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(float_copy, {nn.Linear}, dtype=torch.qint8)


def size_on_disk(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``, saved into memory: what a checkpoint of it weighs.

    A pruned model weighs as much as before (its zeros are stored like any number); a quantised one less.
    """
    buffer = io.BytesIO()
    torch.save(_check_model(model).state_dict(), buffer)
    return buffer.getbuffer().nbytes


def latency_per_image(model: nn.Module, images: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median seconds per image of ``model(images)``: one batch timed ``repeats`` times, divided by its size.

    The model runs in eval mode (its modes restored) under ``torch.inference_mode``, on its device (the
    images are moved there first; on a GPU each run is synchronised). ``warmup`` untimed runs go first.
    Pass ``images[:1]`` for the latency of a single image, a batch for the cost per image in bulk. The
    figure depends on the machine and on ``torch.get_num_threads()``: compare models on the same run.

    Args:
        images: ``(N, C, H, W)`` with N >= 1 (any input the model takes, with the batch first).
        repeats: timed runs, at least 1. warmup: untimed runs, at least 0.
    Raises:
        ValueError: no images, or ``repeats``/``warmup`` out of range.
    """
    model = _check_model(model)
    if not isinstance(images, torch.Tensor) or images.dim() == 0 or len(images) == 0:
        raise ValueError("images: expected a tensor with a batch of at least one input first")
    for name, value, least in (("repeats", repeats, 1), ("warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise ValueError(f"{name}: expected an int of at least {least}, got {value!r}")
    device = device_of(model)
    x = images.to(device)
    times = []
    with evaluating(model), torch.inference_mode():
        for run in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if run >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times) / len(images)


def _prunable(model: nn.Module) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, PRUNABLE)]


def magnitude_prune(model: nn.Module, sparsity: float) -> nn.Module:
    """A copy of ``model`` with the ``sparsity`` share of its smallest weights set to zero, for good.

    Global unstructured magnitude pruning (``torch.nn.utils.prune.global_unstructured`` with
    ``L1Unstructured``): the weights of every ``nn.Linear`` and ``nn.Conv*`` layer are ranked together by
    absolute value and the smallest ones zeroed, wherever they are; biases and norms are kept. Then
    ``prune.remove`` makes it permanent (no mask left, the state dict has the usual keys). The copy is as
    big on disk and as fast on dense kernels as before: pruning alone saves nothing until the zeros are
    stored sparsely or whole channels go.

    Args:
        sparsity: the share of those weights to zero, in ``[0, 1]``.
    Returns:
        the pruned copy (``model`` is untouched); :func:`sparsity` measures it.
    Raises:
        TypeError: not a model. ValueError: ``sparsity`` out of range, or no Linear or Conv layer.
    """
    model = _check_model(model)
    amount = _fraction(sparsity, "sparsity")
    pruned = copy.deepcopy(model)
    layers = _prunable(pruned)
    if not layers:
        raise ValueError("model: magnitude pruning covers nn.Linear and nn.Conv layers, and this model has none")
    targets = [(layer, "weight") for layer in layers]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    for layer, name in targets:
        prune.remove(layer, name)
    return pruned


def sparsity(model: nn.Module) -> float:
    """The share of zeros among the weights of ``model``'s ``nn.Linear`` and ``nn.Conv*`` layers (those
    :func:`magnitude_prune` ranks).

    Raises:
        TypeError: not a model. ValueError: no such layer.
    """
    layers = _prunable(_check_model(model))
    if not layers:
        raise ValueError("model: sparsity counts the weights of nn.Linear and nn.Conv layers; this model has none")
    zeros = sum(int((layer.weight == 0).sum()) for layer in layers)
    return zeros / sum(layer.weight.numel() for layer in layers)


def _check_logits(logits: object, name: str) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() != 2:
        got = f"{logits.dtype} {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{name}: expected floating-point logits (N, K), got {got}")
    return logits


def _check_temperature(T: object, alpha: object) -> tuple[float, float]:
    if isinstance(T, bool) or not isinstance(T, numbers.Real) or not T > 0:
        raise ValueError(f"T: expected a temperature above 0, got {T!r}")
    return float(T), _fraction(alpha, "alpha")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                      T: float = 4.0, alpha: float = 0.5) -> torch.Tensor:
    """Knowledge distillation (Hinton et al., 2015): ``alpha * T**2 * KL(p_teacher^T || p_student^T)
    + (1 - alpha) * CE(student_logits, labels)``.

    ``p^T = softmax(logits / T)``: a temperature above 1 softens both distributions, so the student also
    learns how the teacher ranks the wrong classes (a 7 that looks like a 1). The KL term is averaged over
    the batch and multiplied by ``T**2`` so that its gradients keep their size as ``T`` changes.

    A row labelled :data:`UNLABELLED` (-100) is an image nobody labelled: it gets the teacher's term only.
    The cross-entropy averages over the labelled rows (0 when the batch has none), so with ``alpha=0`` the
    unlabelled rows teach nothing: the student trained on the labels alone.

    Args:
        student_logits, teacher_logits: ``(N, K)``; the teacher's get no gradient.
        labels: ``(N,)`` true classes in ``[0, K)``, or :data:`UNLABELLED`.
        T: temperature, above 0. alpha: the weight of the teacher's term, in ``[0, 1]`` (0: labels alone).
    Returns:
        a scalar.
    Raises:
        ValueError: shapes that differ or labels of another length, a label outside ``[0, K)`` that is not
            :data:`UNLABELLED`, ``T <= 0``, ``alpha`` outside ``[0, 1]``.
    """
    student_logits = _check_logits(student_logits, "student_logits")
    teacher_logits = _check_logits(teacher_logits, "teacher_logits")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher_logits: expected the student's shape {tuple(student_logits.shape)}, "
                         f"got {tuple(teacher_logits.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != (len(student_logits),):
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels: expected int64 classes ({len(student_logits)},), got {got}")
    labelled = labels != UNLABELLED
    classes = student_logits.shape[1]
    bad = labels[labelled & ((labels < 0) | (labels >= classes))]
    if len(bad):
        raise ValueError(f"labels: expected classes in [0, {classes}) or UNLABELLED ({UNLABELLED}), "
                         f"got {sorted(set(bad.tolist()))[:10]}")
    T, alpha = _check_temperature(T, alpha)
    soft = nn.functional.kl_div(nn.functional.log_softmax(student_logits.float() / T, dim=1),
                                nn.functional.log_softmax(teacher_logits.detach().float() / T, dim=1),
                                reduction="batchmean", log_target=True)
    hard = (nn.functional.cross_entropy(student_logits[labelled].float(), labels[labelled]) if bool(labelled.any())
            else student_logits.sum() * 0.0)   # no labelled row: no label term, and still a graph to backward
    return alpha * T ** 2 * soft + (1 - alpha) * hard


def distillation_step(T: float = 4.0, alpha: float = 0.5,
                      augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Callable[..., StepResult]:
    """:func:`distillation_loss` as a loss for :func:`~course_utils.training.fit_tensors`, with the teacher's
    logits computed once beforehand and passed as a third tensor::

        teacher_logits = predict(teacher, train)          # (N, K), the teacher runs once
        fit_tensors(student, (train.images, train.labels, teacher_logits), distillation_step(4.0, 0.5), ...)

    With ``augment`` (e.g. :func:`~course_utils.images.random_shift`) the student sees each batch augmented
    while the teacher's logits stay those of the original image: a soft label reused for the shifted image,
    as the hard label is. ``alpha=0`` gives the same step on the labels alone, the fair baseline. Images
    nobody labelled carry the label :data:`UNLABELLED`: the teacher's term alone teaches from them.

    Args:
        T: temperature, above 0. alpha: the weight of the teacher's term, in ``[0, 1]``.
        augment: applied to each batch of images ``(B, C, H, W)`` before the student sees it, or ``None``.
    Returns:
        ``loss_fn(model, images, labels, teacher_logits) -> (loss, number right)``, where a row counts as right
        when the student's top class is its label or, for an unlabelled row, the teacher's top class.
    Raises:
        ValueError: ``T <= 0``, ``alpha`` outside ``[0, 1]``, or an ``augment`` that is not callable.
    """
    T, alpha = _check_temperature(T, alpha)
    if augment is not None and not callable(augment):
        raise ValueError(f"augment: expected a function of a batch of images, or None, got {augment!r}")

    def loss_fn(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                teacher_logits: torch.Tensor) -> StepResult:
        logits = model(augment(images) if augment is not None else images)
        targets = torch.where(labels == UNLABELLED, teacher_logits.argmax(1), labels)
        return distillation_loss(logits, teacher_logits, labels, T, alpha), (logits.argmax(1) == targets).sum()

    return loss_fn


class Ensemble(nn.Module):
    """Several classifiers as one: the log of their averaged softmax probabilities, ``(B, ...) -> (B, K)``.

    The output is a log-probability, so ``argmax``, :func:`~course_utils.training.evaluate` and the
    cross-entropy work on it as on logits. Every member runs on every input: the ensemble costs the sum of
    its members' parameters and time.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        single = isinstance(members, nn.Module) and not isinstance(members, nn.ModuleList)  # a ModuleList is a list
        if single or not members or not all(isinstance(m, nn.Module) for m in members):
            raise ValueError("members: expected a non-empty list of nn.Module classifiers")
        self.members = nn.ModuleList(members)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([torch.softmax(member(inputs).float(), dim=-1) for member in self.members])
        return probabilities.mean(dim=0).clamp_min(1e-12).log()


def ensemble_cost(models: Sequence[nn.Module], images: torch.Tensor, repeats: int = 20) -> dict[str, float]:
    """What running ``models`` as an :class:`Ensemble` costs, against its members.

    Returns:
        ``{"members": k, "parameters": all the members' parameters together, "seconds_per_image": the
        ensemble's measured :func:`latency_per_image` on ``images``, "member_seconds_per_image": the sum of
        the members' own}``; the two times agree up to timing noise: no saving from merging.
    Raises:
        ValueError: ``models`` is empty or holds something that is not an ``nn.Module``.
    """
    ensemble = Ensemble(models)
    own = [latency_per_image(member, images, repeats) for member in ensemble.members]
    return {"members": len(ensemble.members),
            "parameters": sum(p.numel() for p in ensemble.parameters()),
            "seconds_per_image": latency_per_image(ensemble, images, repeats),
            "member_seconds_per_image": sum(own)}
