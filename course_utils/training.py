"""Training and evaluation: one loop, :func:`fit_tensors`, and the front-ends built on it.

- :func:`fit` trains an image classifier on an :class:`ImageSet` (``model(images) -> logits``).
- :func:`fit_tensors` trains any model on shuffled batches of several aligned tensors, with a loss
  function of the caller's (captioners, fusion models, fine-tuning in 07).
- :func:`evaluate` and :func:`predict` run a classifier on an :class:`ImageSet`.

Both trainers share one loop, so they share its behaviour: AdamW with a one-cycle schedule by default
(or the caller's optimizer and scheduler), mixed precision on CUDA (:func:`autocast_dtype` picks the
type), optional gradient clipping, early stopping with the best weights put back, a live progress bar
(a widget in JupyterLab and Colab), one summary line per epoch and, with ``log_dir=``, TensorBoard logs.
Each trains on the device the model is on, moves every batch there, and hands the model back in the
train/eval mode it was given in.

The same loop runs unchanged on several processes (a script started by ``torchrun``): once
``torch.distributed`` is initialised, :func:`fit_tensors` wraps the model in PyTorch's
``DistributedDataParallel``, gives each process its share of every epoch, and lets rank 0 alone
evaluate, print and log (see :mod:`course_utils.distributed` and notebook 07a).
"""
from __future__ import annotations

import contextlib
import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, Union

import torch
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
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
        progress: bool = True, log_dir: str | Path | None = None,
        after_step: Callable[[int], None] | None = None) -> History:
    """Train the classifier ``model`` on ``train`` for ``epochs`` epochs; return the :class:`History`.

    :func:`fit_tensors` on ``(train.images, train.labels)``, with a cross-entropy step and ``val``'s
    loss and accuracy after each epoch (``val_loss``, ``val_acc``).

    Args:
        model: maps images ``(B, C, H, W)`` to logits ``(B, num_classes)``; it trains where it is.
        train, val: datasets; ``val`` (optional, held out of the training data) is evaluated after every epoch.
        epochs, lr, weight_decay, batch_size, optimizer, scheduler, patience, clip_grad_norm, amp, seed,
            progress, log_dir, after_step: as in :func:`fit_tensors` (``patience`` watches ``val_acc``; on several
            processes ``batch_size`` is per process and rank 0 alone evaluates ``val``).
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
                       clip_grad_norm=clip_grad_norm, amp=amp, seed=seed, progress=progress, log_dir=log_dir,
                       after_step=after_step)


def fit_tensors(model: nn.Module, tensors: Sequence[torch.Tensor], loss_fn: Callable[..., StepResult], *,
                epochs: int, lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 128,
                optimizer: torch.optim.Optimizer | None = None, scheduler: str | SchedulerFactory | None = "one_cycle",
                evaluate: Callable[[nn.Module], dict[str, float]] | None = None, patience: int | None = None,
                monitor: str = "val_acc", clip_grad_norm: float | None = None, amp: bool = True, seed: int = 0,
                progress: bool = True, log_dir: str | Path | None = None,
                after_step: Callable[[int], None] | None = None, lengths: torch.Tensor | None = None) -> History:
    """The course's training loop: train ``model`` on shuffled batches of several aligned tensors.

    On several processes (``torch.distributed`` initialised, e.g. by ``torchrun``) the same call trains
    with ``DistributedDataParallel``: the model is wrapped (unless it already is one), so its gradients
    are averaged over all processes during ``backward``; every process draws the same permutation of the
    rows each epoch and takes every ``world_size``-th row of it (padded by repetition to a multiple of the
    world size, as ``torch.utils.data.DistributedSampler`` does), so that one step of the ``world_size``
    processes together sees ``batch_size x world_size`` rows: the **global batch**. ``train_loss`` and
    ``train_acc`` are averaged over all processes; rank 0 alone runs ``evaluate``, prints, shows the bar and
    writes to ``log_dir``, and sends each epoch's row to the others, so that every process returns the
    same :class:`History` and early stopping stops them all at the same epoch.

    Args:
        tensors: e.g. ``(images (N, 1, 28, 28), token_ids (N, L))``; each batch takes the same rows of
            each, moved to the model's device.
        loss_fn: ``loss_fn(model, *batch)`` -> a scalar loss, or ``(loss, number right)`` to record accuracy.
        epochs: the most epochs to run.
        lr, weight_decay: for the default optimizer, ``torch.optim.AdamW(model.parameters(), lr, weight_decay)``.
        batch_size: rows per step (the last batch of an epoch may be smaller); per process on several.
        optimizer: use this one instead (e.g. AdamW with parameter groups at different rates).
        scheduler: ``"one_cycle"`` (warm-up, then anneal to ~0, peaking at each group's ``lr``), ``None``
            (a constant rate), or ``make(optimizer, total_steps)`` returning a scheduler that is stepped
            after every batch (e.g. a linear warm-up from ``transformers``).
        evaluate: called after each epoch in eval mode without gradients, with the model itself (never its
            ``DistributedDataParallel`` wrapper); returns metrics for the row, e.g. ``lambda m: {"val_acc": ...}``.
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
        log_dir: a folder for TensorBoard (``torch.utils.tensorboard.SummaryWriter``; the ``tensorboard``
            package is imported only then): each epoch's row (``train_loss``, ``train_acc``, the metrics of
            ``evaluate``, ``seconds``) against the epoch, and each step's learning rate (``lr``, or
            ``lr/group_i`` per parameter group) against the step. See it with ``tensorboard --logdir DIR``.
        after_step: called as ``after_step(step)`` after every optimiser step (and the scheduler's), with
            the number of steps taken so far (1, 2, ...), while the step's gradients are still there: e.g.
            ``lambda step: model.base_model.update_and_allocate(step)`` for ``peft``'s AdaLoRA.
        lengths: ``(N,)`` each row's length (e.g. ``attention_mask.sum(1)``): batches then hold rows of
            similar length (:func:`length_grouped_order`, as ``transformers``' ``group_by_length``), so a
            ``loss_fn`` that trims each batch to its longest row computes on less padding.
    Returns:
        the :class:`History`: ``train_loss`` (and ``train_acc``), ``seconds`` per epoch, the metrics of
        ``evaluate``, ``step_losses`` (this process's batches), ``best_epoch`` and ``stopped_early``.
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
    if log_dir is not None and not isinstance(log_dir, (str, Path)):
        raise TypeError(f"log_dir: expected a folder (str or Path) or None, got {type(log_dir).__name__}")
    if after_step is not None and not callable(after_step):
        raise TypeError(f"after_step: expected a function of the step number, or None, got {type(after_step).__name__}")
    if lengths is not None and (not isinstance(lengths, torch.Tensor) or lengths.shape != (n,)):
        got = tuple(lengths.shape) if isinstance(lengths, torch.Tensor) else type(lengths).__name__
        raise ValueError(f"lengths: expected one length per row, a tensor ({n},), got {got}")
    if lengths is not None:
        lengths = lengths.cpu()   # the batches' order is drawn on the CPU, wherever the rows are
    device = device_of(model)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    net = model.module if isinstance(model, DistributedDataParallel) else model  # what evaluate and state see
    if distributed and not isinstance(model, DistributedDataParallel):
        model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    local_n = -(-n // world)  # this process's rows per epoch (n itself on one process)
    steps = -(-local_n // batch_size)
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = make_scheduler(scheduler, optimizer, epochs * steps)
    dtype = autocast_dtype(device) if amp else None
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    history, best, best_state, waited = History(), None, None, 0
    lower_is_better = "loss" in monitor
    progress = progress and rank == 0
    bar = tqdm(total=epochs * steps, disable=not progress, leave=False, unit="step", dynamic_ncols=True)
    with _mode(model, training=True), _tensorboard(log_dir if rank == 0 else None) as writer:
        for epoch in range(epochs):
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
            start, total, correct = time.perf_counter(), 0.0, None
            generator = torch.Generator().manual_seed(seed + epoch)
            order = torch.randperm(n, generator=generator)
            if lengths is not None:   # one global batch (batch_size x world rows) of similar lengths after another
                order = length_grouped_order(order, lengths, batch_size * world, generator)
            if distributed:
                order = shard_rows(order, rank, world)
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
                if writer is not None:
                    _log_rates(writer, optimizer, len(history.step_losses) + 1)
                if schedule is not None:
                    schedule.step()
                history.step_losses.append(loss.item())
                if after_step is not None:
                    after_step(len(history.step_losses))
                total += history.step_losses[-1] * len(rows)
                if hits is not None:
                    correct = (correct or 0) + int(hits)
                bar.update()
                if progress:
                    seen = bar.n - epoch * steps
                    shown = {"loss": f"{total / min(seen * batch_size, local_n):.4f}"}
                    if correct is not None:
                        shown["acc"] = f"{correct / min(seen * batch_size, local_n):.3f}"
                    bar.set_postfix(shown, refresh=False)
            count = n
            if distributed:  # sums over every process's rows
                total, summed, count = _sum_over_processes([total, correct or 0, local_n], device)
                correct = None if correct is None else summed
            row: dict[str, float] = {"epoch": epoch + 1, "train_loss": total / count}
            if correct is not None:
                row["train_acc"] = correct / count
            row["seconds"] = time.perf_counter() - start
            if evaluate is not None and rank == 0:
                with _mode(net, training=False), torch.no_grad():
                    row.update(evaluate(net))
            if distributed:
                row = _from_rank_0(row, device)
            history.rows.append(row)
            if writer is not None:
                for name, value in row.items():
                    if name != "epoch":
                        writer.add_scalar(name, value, epoch + 1)
            if progress and _summarised(epoch + 1, epochs):
                tqdm.write(_summary(row, epochs))
            if monitor in row:
                value = row[monitor]
                if best is None or (value < best if lower_is_better else value > best):
                    best, history.best_epoch, waited = value, epoch + 1, 0
                    if patience is not None:
                        best_state = copy.deepcopy(net.state_dict())
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
        net.load_state_dict(best_state)
    if progress and history.stopped_early:
        tqdm.write(f"stopped early after epoch {len(history.rows)}; weights of epoch {history.best_epoch} restored "
                   f"({monitor}={best:.4f})")
    return history


@contextmanager
def _tensorboard(log_dir: str | Path | None) -> Iterator[Any]:
    """A ``SummaryWriter`` on ``log_dir``, closed (flushed) at the end; ``None`` without a folder. Imported
    here, so that only a run that logs needs the ``tensorboard`` package."""
    if log_dir is None:
        yield None
        return
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        yield writer
    finally:
        writer.close()


def _log_rates(writer: Any, optimizer: torch.optim.Optimizer, step: int) -> None:
    """The learning rate of this step: ``lr``, or ``lr/group_0``, ``lr/group_1``, ... for several groups."""
    groups = optimizer.param_groups
    for index, group in enumerate(groups):
        writer.add_scalar("lr" if len(groups) == 1 else f"lr/group_{index}", group["lr"], step)


def length_grouped_order(order: torch.Tensor, lengths: torch.Tensor, batch_size: int,
                         generator: torch.Generator | None = None, chunk: int = 50) -> torch.Tensor:
    """``order`` ``(N,)`` rearranged so that each run of ``batch_size`` rows holds rows of similar ``lengths``.

    As ``transformers``' ``LengthGroupedSampler``: the random ``order`` is cut into chunks of
    ``chunk x batch_size`` rows, each chunk is sorted by length (longest first) and cut into batches; the
    full batches are then put in a random order (drawn from ``generator``), and a last, smaller batch (when
    ``batch_size`` does not divide N) stays last. Which rows share a batch stays random beyond their length,
    every row appears once per epoch, and the number of batches does not change.

    Args:
        order: ``(N,)`` a permutation of the row indices (the epoch's random order).
        lengths: ``(N,)`` each row's length, indexed by row.
        batch_size: rows per batch. generator: for the order of the batches. chunk: batches per sorted chunk.
    Returns:
        ``(N,)`` the same indices, each consecutive ``batch_size`` of them one batch.
    """
    if batch_size < 1 or chunk < 1:
        raise ValueError(f"batch_size and chunk: expected at least 1, got {batch_size} and {chunk}")
    ranked = torch.cat([part[lengths[part].argsort(descending=True, stable=True)]
                        for part in order.split(chunk * batch_size)])
    full = len(ranked) // batch_size * batch_size
    batches = ranked[:full].view(-1, batch_size)
    shuffled = batches[torch.randperm(len(batches), generator=generator)].flatten()
    return torch.cat([shuffled, ranked[full:]])


def shard_rows(order: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Process ``rank``'s rows of an epoch's ``order`` ``(N,)`` when ``world`` processes share it: every
    ``world``-th row from the ``rank``-th, after padding ``order`` by repetition to a multiple of ``world``
    (as ``torch.utils.data.DistributedSampler`` does). Every process gets ``ceil(N / world)`` rows and takes
    as many steps, and batch ``k`` of all processes together (``B`` rows each) holds rows ``k * B * world``
    to ``(k + 1) * B * world - 1`` of the padded order: one process's batch of ``B * world`` rows.

    Raises:
        ValueError: ``order`` is not a non-empty 1-D tensor, or ``rank`` is not one of ``0 .. world - 1``.
    """
    if not isinstance(order, torch.Tensor) or order.dim() != 1 or len(order) == 0:
        got = tuple(order.shape) if isinstance(order, torch.Tensor) else type(order).__name__
        raise ValueError(f"order: expected a non-empty 1-D tensor of row indices, got {got}")
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank, world: expected world >= 1 and 0 <= rank < world, got rank={rank}, world={world}")
    size = -(-len(order) // world) * world
    padded = order.repeat(-(-size // len(order)))[:size]
    return padded[rank::world]


def _collective_device(device: torch.device) -> torch.device:
    """Where tensors for a collective call must be: on the GPU for NCCL, on the CPU for gloo."""
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def _sum_over_processes(values: list[float], device: torch.device) -> list[float]:
    """``values`` summed element-wise over every process (``all_reduce``), in float64."""
    summed = torch.tensor(values, dtype=torch.float64, device=_collective_device(device))
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return summed.tolist()


def _from_rank_0(row: dict[str, float], device: torch.device) -> dict[str, float]:
    """Rank 0's ``row`` on every process (``broadcast_object_list``)."""
    box = [row]
    dist.broadcast_object_list(box, src=0, device=_collective_device(device))
    return box[0]


def make_scheduler(scheduler: str | SchedulerFactory | None, optimizer: torch.optim.Optimizer,
                   total_steps: int) -> Any:
    """The learning-rate scheduler ``fit_tensors`` steps after every batch, for ``total_steps`` batches:
    ``"one_cycle"`` (``OneCycleLR`` peaking at each group's ``lr``), ``None`` (no scheduler), or
    ``scheduler(optimizer, total_steps)`` for a factory."""
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
