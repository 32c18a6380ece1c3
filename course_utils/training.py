"""Training and evaluation: one loop, :func:`fit_tensors`, and the front-ends built on it.

- :func:`fit` trains an image classifier on an :class:`ImageSet` (``model(images) -> logits``).
- :func:`fit_tensors` trains any model on shuffled batches of several aligned tensors, with a loss
  function of the caller's (captioners, fusion models, fine-tuning in 07).
- :func:`evaluate` and :func:`predict` run a classifier on an :class:`ImageSet`.

Both trainers share one loop, so they share its behaviour: AdamW with a one-cycle schedule by default
(or the caller's optimizer and scheduler), mixed precision on CUDA (:func:`autocast_dtype` picks the
type), optional gradient clipping, early stopping with the best weights put back, a live progress bar
(a widget in JupyterLab and Colab) and one summary line per epoch. Each trains on the device the model
is on, moves every batch there, and hands the model back in the train/eval mode it was given in.
"""
from __future__ import annotations

import contextlib
import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import ImageSet
from .models import count_parameters, device_of
from .uncertainty import format_accuracy

# A loss function of fit_tensors returns the loss, or (loss, number of correct predictions in the batch).
StepResult = Union[torch.Tensor, tuple[torch.Tensor, Union[int, torch.Tensor]]]
# scheduler= takes "one_cycle", None, or make(optimizer, total_steps) -> a scheduler stepped after every batch.
SchedulerFactory = Callable[[torch.optim.Optimizer, int], Any]
# A run prints at most about this many summary lines: every epoch of a short run, every k-th of a long one.
MAX_SUMMARY_LINES = 10


@dataclass
class History:
    """Per-epoch records of a training run: ``history.rows[i]['val_acc']`` and friends."""

    rows: list[dict[str, float]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    def __getitem__(self, key: str) -> list[float]:
        """All epochs' values of ``key``, e.g. ``history['train_loss']``."""
        return [row[key] for row in self.rows if key in row]

    @property
    def seconds(self) -> float:
        """Training time summed over epochs."""
        return sum(self["seconds"])


@contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Put ``model`` in train or eval mode, and restore every submodule's own mode afterwards
    (a backbone frozen in eval mode inside a training model stays frozen)."""
    modes = [(module, module.training) for module in model.modules()]  # parents before children
    model.train(training)
    try:
        yield
    finally:
        for module, was_training in modes:
            module.train(was_training)


def evaluating(model: nn.Module) -> contextlib.AbstractContextManager[None]:
    """``with evaluating(model):`` eval mode inside, every submodule's own mode restored afterwards."""
    return _mode(model, training=False)


def _check_data(data: object, name: str) -> ImageSet:
    if not isinstance(data, ImageSet):
        raise TypeError(f"{name}: expected a course_utils.ImageSet (from load_mnist / ImageSet(x, y, classes)), "
                        f"got {type(data).__name__}")
    return data


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The mixed-precision type for training on ``device``, or ``None`` for full precision.

    bfloat16 on GPUs with native support (CUDA compute capability 8.0 or more: A100, L4, H100);
    float16, whose small range needs a ``GradScaler``, on older GPUs (the T4 of free Colab is 7.5).
    ``torch.cuda.is_bf16_supported()`` is not used: it also says yes where bf16 is only emulated (slow).
    """
    device = torch.device(device)
    if device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


@torch.no_grad()
def predict(model: nn.Module, data: ImageSet, batch_size: int = 1024) -> torch.Tensor:
    """Logits ``(N, num_classes)`` of ``model`` on every image of ``data``, on the model's device.

    Raises ``ValueError`` for an empty ``data`` or a ``batch_size`` below 1.
    """
    data = _check_data(data, "data")
    if len(data) == 0:
        raise ValueError("data: expected at least one image, got an empty ImageSet")
    device = device_of(model)
    with _mode(model, training=False):
        outputs = [model(x.to(device)) for x, _ in data.batches(batch_size)]
    return torch.cat(outputs).float()


def evaluate(model: nn.Module, data: ImageSet, loss_fn: Callable | None = None,
             batch_size: int = 1024) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``data``: ``{"loss": ..., "acc": ...}``.

    ``model`` must give logits ``(N, num_classes)`` and every label must be one of its classes,
    ``0 .. num_classes - 1``; otherwise ``ValueError`` (as for an empty ``data``, see :func:`predict`).
    """
    data = _check_data(data, "data")
    loss_fn = loss_fn or nn.functional.cross_entropy
    logits = predict(model, data, batch_size)
    if logits.dim() != 2:
        raise ValueError(f"model: expected logits (N, num_classes), got shape {tuple(logits.shape)}")
    labels = data.labels.to(logits.device)
    outside = (labels < 0) | (labels >= logits.shape[1])
    if bool(outside.any()):
        raise ValueError(f"data: labels must be classes 0 to {logits.shape[1] - 1} of the model's "
                         f"{logits.shape[1]} outputs; {int(outside.sum())} are not, e.g. {int(labels[outside][0])}")
    return {"loss": float(loss_fn(logits, labels)), "acc": float((logits.argmax(1) == labels).float().mean())}


def accuracy_table(models: dict[str, nn.Module], data: ImageSet, histories: dict[str, History] | None = None,
                   split: str = "test") -> dict[str, float]:
    """Evaluate each model on ``data`` once and print a row per model; return ``{name: accuracy}``.

    A row holds the parameter count and the accuracy with its 95% Wilson interval; with ``histories``
    (the :class:`History` of each model's training), also its epochs, training seconds and seconds per
    epoch. ``split`` names the data in the header ("test", "validation").

    Raises:
        ValueError: ``models`` is empty or holds something that is not an ``nn.Module``, or
            ``histories`` lacks one of the models.
    """
    data = _check_data(data, "data")
    if not isinstance(models, dict) or not models or \
            not all(isinstance(m, nn.Module) for m in models.values()):
        got = {k: type(v).__name__ for k, v in models.items()} if isinstance(models, dict) else type(models).__name__
        raise ValueError(f"models: expected a non-empty dict {{name: nn.Module}}, got {got!r}")
    missing = [name for name in models if histories is not None and name not in histories]
    if missing:
        raise ValueError(f"histories: expected a History for every model; missing {missing}")
    accuracies = {name: evaluate(model, data)["acc"] for name, model in models.items()}
    width = max(len("model"), *map(len, models)) + 2
    header = f"{'model':<{width}}{'parameters':>11}   {split + ' accuracy [95% interval]':<36}"
    if histories is not None:
        header += f"{'epochs':>7}{'train seconds':>15}{'s/epoch':>9}"
    print(header.rstrip())
    for name, model in models.items():
        row = f"{name:<{width}}{count_parameters(model):>11,}   {format_accuracy(accuracies[name], len(data)):<36}"
        if histories is not None:
            epochs, seconds = len(histories[name].rows), histories[name].seconds
            row += f"{epochs:>7}{seconds:>15.1f}{seconds / max(epochs, 1):>9.1f}"
        print(row.rstrip())
    return accuracies


def fit(model: nn.Module, train: ImageSet, val: ImageSet | None = None, *, epochs: int,
        lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 128,
        optimizer: torch.optim.Optimizer | None = None, scheduler: str | SchedulerFactory | None = "one_cycle",
        loss_fn: Callable | None = None, augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        patience: int | None = None, clip_grad_norm: float | None = None, amp: bool = True, seed: int = 0,
        progress: bool = True) -> History:
    """Train the classifier ``model`` on ``train`` for ``epochs`` epochs; return the :class:`History`.

    :func:`fit_tensors` on ``(train.images, train.labels)``, with a cross-entropy step and ``val``'s
    loss and accuracy after each epoch (``val_loss``, ``val_acc``).

    Args:
        model: maps images ``(B, C, H, W)`` to logits ``(B, num_classes)``; it trains where it is.
        train, val: datasets; ``val`` (optional, held out of the training data) is evaluated after every epoch.
        epochs, lr, weight_decay, batch_size, optimizer, scheduler, patience, clip_grad_norm, amp, seed,
            progress: as in :func:`fit_tensors` (``patience`` watches ``val_acc``).
        loss_fn: ``loss_fn(logits, labels)``; default cross-entropy.
        augment: applied to each training batch of images (e.g. ``data.random_shift``).
    """
    train = _check_data(train, "train")
    if val is not None:
        val = _check_data(val, "val")
    if patience is not None and val is None:
        raise ValueError("early stopping (patience) needs a validation set: pass val=...")
    loss_fn = loss_fn or nn.functional.cross_entropy

    def step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> StepResult:
        logits = model(augment(images) if augment is not None else images)
        return loss_fn(logits, labels), (logits.argmax(1) == labels).sum()

    def validate(model: nn.Module) -> dict[str, float]:
        metrics = evaluate(model, val, loss_fn)
        return {"val_loss": metrics["loss"], "val_acc": metrics["acc"]}

    return fit_tensors(model, (train.images, train.labels), step, epochs=epochs, lr=lr, weight_decay=weight_decay,
                       batch_size=batch_size, optimizer=optimizer, scheduler=scheduler,
                       evaluate=validate if val is not None else None, patience=patience, monitor="val_acc",
                       clip_grad_norm=clip_grad_norm, amp=amp, seed=seed, progress=progress)


def fit_tensors(model: nn.Module, tensors: Sequence[torch.Tensor], loss_fn: Callable[..., StepResult], *,
                epochs: int, lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 128,
                optimizer: torch.optim.Optimizer | None = None, scheduler: str | SchedulerFactory | None = "one_cycle",
                evaluate: Callable[[nn.Module], dict[str, float]] | None = None, patience: int | None = None,
                monitor: str = "val_acc", clip_grad_norm: float | None = None, amp: bool = True, seed: int = 0,
                progress: bool = True) -> History:
    """The course's training loop: train ``model`` on shuffled batches of several aligned tensors.

    Args:
        tensors: e.g. ``(images (N, 1, 28, 28), token_ids (N, L))``; each batch takes the same rows of
            each, moved to the model's device.
        loss_fn: ``loss_fn(model, *batch)`` -> a scalar loss, or ``(loss, number right)`` to record accuracy.
        epochs: the most epochs to run.
        lr, weight_decay: for the default optimizer, ``torch.optim.AdamW(model.parameters(), lr, weight_decay)``.
        batch_size: rows per step (the last batch of an epoch may be smaller).
        optimizer: use this one instead (e.g. AdamW with parameter groups at different rates).
        scheduler: ``"one_cycle"`` (warm-up, then anneal to ~0, peaking at each group's ``lr``), ``None``
            (a constant rate), or ``make(optimizer, total_steps)`` returning a scheduler that is stepped
            after every batch (e.g. a linear warm-up from ``transformers``).
        evaluate: called after each epoch in eval mode without gradients; returns metrics for the row,
            e.g. ``lambda m: {"val_acc": ...}``.
        patience: stop when ``monitor`` has not improved for this many epochs, and put back the weights of
            the best epoch (needs ``evaluate``).
        monitor: the metric of ``evaluate`` that decides the best epoch; lower is better when its name
            contains "loss", higher otherwise.
        clip_grad_norm: clip the gradients' total norm to this value before each step.
        amp: mixed precision on CUDA (the type of :func:`autocast_dtype`, with a ``GradScaler`` for
            float16); ignored on the CPU.
        seed: the order of the rows in epoch ``e`` is ``randperm(N)`` seeded with ``seed + e``.
        progress: a live bar (running loss and accuracy), cleared at the end, and a summary line per epoch
            (the first, the last and every k-th one in a run of more than ``MAX_SUMMARY_LINES`` epochs).
    Returns:
        the :class:`History`: ``train_loss`` (and ``train_acc``), ``seconds`` per epoch, the metrics of
        ``evaluate``, ``step_losses``, ``best_epoch`` and ``stopped_early``.
    """
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise TypeError("tensors: expected a non-empty sequence of tensors with one row per example")
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"tensors: expected the same number of rows in each, got {[len(t) for t in tensors]}")
    if n == 0:
        raise ValueError("tensors: expected at least one row to train on, got 0")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if patience is not None and evaluate is None:
        raise ValueError("early stopping (patience) needs validation metrics: pass evaluate=...")
    device = device_of(model)
    steps = -(-n // batch_size)
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = _make_scheduler(scheduler, optimizer, epochs * steps)
    dtype = autocast_dtype(device) if amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    history, best, best_state, waited = History(), None, None, 0
    lower_is_better = "loss" in monitor
    bar = tqdm(total=epochs * steps, disable=not progress, leave=False, unit="step", dynamic_ncols=True)
    with _mode(model, training=True):
        for epoch in range(epochs):
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
            start, total, correct = time.perf_counter(), 0.0, None
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
            for rows in order.split(batch_size):
                batch = [t[rows.to(t.device)].to(device, non_blocking=True) for t in tensors]
                with torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext():
                    out = loss_fn(model, *batch)
                loss, hits = out if isinstance(out, tuple) else (out, None)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if clip_grad_norm is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                if schedule is not None:
                    schedule.step()
                history.step_losses.append(loss.item())
                total += history.step_losses[-1] * len(rows)
                if hits is not None:
                    correct = (correct or 0) + int(hits)
                bar.update()
                if progress:
                    seen = bar.n - epoch * steps
                    shown = {"loss": f"{total / min(seen * batch_size, n):.4f}"}
                    if correct is not None:
                        shown["acc"] = f"{correct / min(seen * batch_size, n):.3f}"
                    bar.set_postfix(shown, refresh=False)
            row: dict[str, float] = {"epoch": epoch + 1, "train_loss": total / n}
            if correct is not None:
                row["train_acc"] = correct / n
            row["seconds"] = time.perf_counter() - start
            if evaluate is not None:
                with _mode(model, training=False), torch.no_grad():
                    row.update(evaluate(model))
            history.rows.append(row)
            if progress and _summarised(epoch + 1, epochs):
                tqdm.write(_summary(row, epochs))
            if monitor in row:
                value = row[monitor]
                if best is None or (value < best if lower_is_better else value > best):
                    best, history.best_epoch, waited = value, epoch + 1, 0
                    if patience is not None:
                        best_state = copy.deepcopy(model.state_dict())
                elif patience is not None:
                    waited += 1
                    if waited >= patience:
                        history.stopped_early = True
                        break
            elif patience is not None:
                raise ValueError(f"early stopping watches {monitor!r}, but evaluate returned {sorted(row)}; "
                                 f"pass monitor= one of its keys")
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    if progress and history.stopped_early:
        tqdm.write(f"stopped early after epoch {len(history.rows)}; weights of epoch {history.best_epoch} restored "
                   f"({monitor}={best:.4f})")
    return history


def _make_scheduler(scheduler: str | SchedulerFactory | None, optimizer: torch.optim.Optimizer,
                    total_steps: int) -> Any:
    if scheduler is None:
        return None
    if scheduler == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=total_steps)
    if callable(scheduler):
        return scheduler(optimizer, total_steps)
    raise ValueError(f"scheduler: expected 'one_cycle', None or a function (optimizer, total_steps) -> scheduler, "
                     f"got {scheduler!r}")


def _summarised(epoch: int, epochs: int) -> bool:
    """Whether epoch ``epoch`` (from 1) of ``epochs`` gets a summary line: at most ~``MAX_SUMMARY_LINES`` a run."""
    return epoch in (1, epochs) or epoch % -(-epochs // MAX_SUMMARY_LINES) == 0


def _summary(row: dict[str, float], epochs: int) -> str:
    """One line per epoch: ``epoch 3/10  train_loss 0.2213  train_acc 0.9312  val_acc 0.9410  (2.1 s)``."""
    metrics = "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                        if k not in ("epoch", "seconds"))
    return f"epoch {row['epoch']}/{epochs}  {metrics}  ({row['seconds']:.1f} s)"
