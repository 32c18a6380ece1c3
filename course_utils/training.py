"""Training and evaluation loops: :func:`fit`, :func:`evaluate`, :func:`predict` for image classifiers,
and :func:`fit_tensors` for models whose batches are several tensors (captioners, fusion models).

The loop is the one notebook 01 writes out by hand, plus the practical parts: a progress bar,
a history of loss and accuracy per epoch, a one-cycle learning-rate schedule, early stopping,
and mixed precision on CUDA. Every function trains or evaluates on the device the model is on,
moves each batch there, and hands the model back in the train/eval mode it was given in.
"""
from __future__ import annotations

import contextlib
import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn
from tqdm import tqdm

from .data import ImageSet


@dataclass
class History:
    """Per-epoch records of a :func:`fit` run: ``history.rows[i]['val_acc']`` and friends."""

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


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _check_data(data: object, name: str) -> ImageSet:
    if not isinstance(data, ImageSet):
        raise TypeError(f"{name}: expected a course_utils.ImageSet (from load_mnist / ImageSet(x, y, classes)), "
                        f"got {type(data).__name__}")
    return data


def _autocast(device: torch.device, amp: bool):
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=amp and device.type == "cuda")


@torch.no_grad()
def predict(model: nn.Module, data: ImageSet, batch_size: int = 1024) -> torch.Tensor:
    """Logits ``(N, num_classes)`` of ``model`` on every image of ``data``, on the model's device."""
    data = _check_data(data, "data")
    device = _device_of(model)
    with _mode(model, training=False):
        outputs = [model(x.to(device)) for x, _ in data.batches(batch_size)]
    return torch.cat(outputs).float()


def evaluate(model: nn.Module, data: ImageSet, loss_fn: Callable | None = None,
             batch_size: int = 1024) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``data``: ``{"loss": ..., "acc": ...}``."""
    data = _check_data(data, "data")
    loss_fn = loss_fn or nn.functional.cross_entropy
    logits = predict(model, data, batch_size)
    labels = data.labels.to(logits.device)
    return {"loss": float(loss_fn(logits, labels)), "acc": float((logits.argmax(1) == labels).float().mean())}


def fit(model: nn.Module, train: ImageSet, val: ImageSet | None = None, *, epochs: int,
        lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 128,
        optimizer: torch.optim.Optimizer | None = None, one_cycle: bool = True,
        loss_fn: Callable | None = None, augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        patience: int | None = None, amp: bool = True, seed: int = 0, progress: bool = True) -> History:
    """Train ``model`` on ``train`` for ``epochs`` epochs; return the :class:`History`.

    Args:
        model: maps images ``(B, C, H, W)`` to logits ``(B, num_classes)``; it trains where it is.
        train, val: datasets; ``val`` (optional) is evaluated after every epoch.
        epochs: the most epochs to run.
        lr, weight_decay: for the default optimizer, ``torch.optim.AdamW``.
        batch_size: examples per step.
        optimizer: use this optimizer instead of the default.
        one_cycle: schedule the learning rate with ``OneCycleLR`` (warm-up, then anneal to ~0).
        loss_fn: ``loss_fn(logits, labels)``; default cross-entropy.
        augment: applied to each training batch of images (e.g. ``data.random_shift``).
        patience: stop when ``val`` accuracy has not improved for this many epochs, and
            restore the best weights (needs ``val``).
        amp: mixed precision on CUDA (ignored on CPU).
        seed: seeds the order of the training examples.
        progress: show a progress bar and a line per epoch.
    """
    train = _check_data(train, "train")
    if val is not None:
        val = _check_data(val, "val")
    if patience is not None and val is None:
        raise ValueError("early stopping (patience) needs a validation set: pass val=...")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    device = _device_of(model)
    loss_fn = loss_fn or nn.functional.cross_entropy
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = -(-len(train) // batch_size)
    scheduler = (torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                     total_steps=epochs * steps) if one_cycle else None)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda" and not torch.cuda.is_bf16_supported())
    history, best_acc, best_state, waited = History(), -1.0, None, 0
    bar = tqdm(range(epochs), desc="epochs", disable=not progress, leave=False)
    with _mode(model, training=True):
        for epoch in bar:
            start, total_loss, correct = time.perf_counter(), 0.0, 0
            for x, y in train.batches(batch_size, shuffle=True, seed=seed + epoch, augment=augment):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with _autocast(device, amp):
                    logits = model(x)
                    loss = loss_fn(logits, y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                history.step_losses.append(loss.item())
                total_loss += loss.item() * len(y)
                correct += int((logits.argmax(1) == y).sum())
            row = {"epoch": epoch + 1, "train_loss": total_loss / len(train), "train_acc": correct / len(train),
                   "seconds": time.perf_counter() - start}
            if val is not None:
                metrics = evaluate(model, val, loss_fn)
                row.update(val_loss=metrics["loss"], val_acc=metrics["acc"])
            history.rows.append(row)
            if progress:
                tqdm.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
            if val is not None and row["val_acc"] > best_acc:
                best_acc, history.best_epoch, waited = row["val_acc"], epoch + 1, 0
                if patience is not None:
                    best_state = copy.deepcopy(model.state_dict())
            elif patience is not None:
                waited += 1
                if waited >= patience:
                    history.stopped_early = True
                    break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def fit_tensors(model: nn.Module, tensors: Sequence[torch.Tensor], loss_fn: Callable[..., Any], *, epochs: int,
                lr: float = 3e-3, weight_decay: float = 1e-4, batch_size: int = 128,
                optimizer: torch.optim.Optimizer | None = None, seed: int = 0,
                evaluate: Callable[[nn.Module], dict[str, float]] | None = None, progress: bool = True) -> History:
    """Train ``model`` on shuffled batches of several aligned tensors, with a one-cycle schedule.

    The same loop as :func:`fit` for models that do not map one image batch to logits.

    Args:
        tensors: e.g. ``(images (N, 1, 28, 28), token_ids (N, L))``; each batch takes the same rows of
            each, moved to the model's device.
        loss_fn: ``loss_fn(model, *batch)`` -> a scalar loss, or ``(loss, number right)`` to record accuracy.
        epochs, lr, weight_decay, batch_size: as in :func:`fit`.
        optimizer: use this one (e.g. AdamW with parameter groups at different rates) instead of
            ``AdamW(model.parameters(), lr, weight_decay)``; the schedule peaks at each group's ``lr``.
        evaluate: called after each epoch in eval mode, e.g. ``lambda m: {"val_acc": ...}``.
        progress: print one line per epoch.
    Returns:
        the :class:`History`: ``train_loss`` (and ``train_acc``), ``seconds`` per epoch, ``step_losses``.
    """
    n = len(tensors[0])
    if any(len(t) != n for t in tensors):
        raise ValueError(f"tensors: expected the same number of rows in each, got {[len(t) for t in tensors]}")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    device = _device_of(model)
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                    total_steps=epochs * -(-n // batch_size))
    generator, history = torch.Generator().manual_seed(seed), History()
    with _mode(model, training=True):
        for epoch in range(epochs):
            start, total, correct = time.perf_counter(), 0.0, None
            for rows in torch.randperm(n, generator=generator).split(batch_size):
                out = loss_fn(model, *(t[rows.to(t.device)].to(device) for t in tensors))
                loss, hits = out if isinstance(out, tuple) else (out, None)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                history.step_losses.append(loss.item())
                total += loss.item() * len(rows)
                if hits is not None:
                    correct = (correct or 0) + int(hits)
            row = {"epoch": epoch + 1, "train_loss": total / n}
            if correct is not None:
                row["train_acc"] = correct / n
            row["seconds"] = time.perf_counter() - start
            if evaluate is not None:
                with _mode(model, training=False), torch.no_grad():
                    row.update(evaluate(model))
            history.rows.append(row)
            if progress:
                print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return history
