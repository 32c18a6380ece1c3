"""Continual learning: train on one task after another with the course's loop, and measure what is forgotten.

- :func:`split_classes`: the examples of some classes only (task 1 = digits 0-4, task 2 = digits 5-9),
  labels kept, so one 10-way head serves every task (class-incremental learning);
- :class:`ReplayBuffer`: a memory of at most ``capacity`` past examples, a uniform sample of all those
  seen (reservoir sampling);
- :func:`train_incrementally`: :func:`~course_utils.training.fit_tensors` on each task in turn, replaying
  the buffer if one is given, with every task's accuracy after every epoch and the accuracy matrix;
- :func:`forgetting` and :func:`backward_transfer`: that matrix in one number each;
  :func:`plot_task_accuracy` draws each task's accuracy through training.
"""
from __future__ import annotations

import numbers
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from .data import ImageSet, check_images
from .training import StepResult, evaluate, fit_tensors

__all__ = ["split_classes", "ReplayBuffer", "train_incrementally", "forgetting", "backward_transfer",
           "plot_task_accuracy"]


def split_classes(data: ImageSet, classes: Sequence[int]) -> ImageSet:
    """The examples of ``data`` whose label is one of ``classes``, in their order, labels unchanged.

    ``split_classes(train, range(5))`` is task 1 of split MNIST; its labels stay 0-4 and its ``classes``
    list keeps all ten names, so the same 10-way model is trained and evaluated on every task.

    Raises:
        TypeError: ``data`` is not an ImageSet. ValueError: ``classes`` is empty, repeats a class or
            names one outside ``0 .. len(data.classes) - 1``.
    """
    if not isinstance(data, ImageSet):
        raise TypeError(f"data: expected a course_utils.ImageSet, got {type(data).__name__}")
    chosen = list(classes)
    if not chosen or len(set(chosen)) != len(chosen) or not all(
            isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c < len(data.classes) for c in chosen):
        raise ValueError(f"classes: expected distinct class indices in 0..{len(data.classes) - 1}, got {chosen!r}")
    keep = torch.isin(data.labels, torch.tensor(chosen, device=data.device))
    return ImageSet(data.images[keep], data.labels[keep], data.classes, data.source)


class ReplayBuffer:
    """At most ``capacity`` examples, at every moment a uniform random sample of all examples added so far.

    Reservoir sampling (Vitter's algorithm R): the first ``capacity`` examples fill the buffer; after
    that, the ``n``-th example seen (counting from 1) replaces a stored one, chosen uniformly, with
    probability ``capacity / n``, and is dropped otherwise. Every example seen so far is in the buffer
    with the same probability, ``capacity / n``, whatever the order and the sizes of the batches added.

    Args:
        capacity: the most examples stored (at least 1).
        seed: seeds the buffer's own generator (which examples it keeps), apart from torch's global one.
    """

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity: expected an int of at least 1, got {capacity!r}")
        self.capacity = capacity
        self.seen = 0  # examples added so far
        self.images: torch.Tensor | None = None  # (stored, C, H, W)
        self.labels: torch.Tensor | None = None  # (stored,)
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return 0 if self.labels is None else len(self.labels)

    def add(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Offer each example of ``images`` ``(N, C, H, W)`` with ``labels`` ``(N,)`` int64 to the buffer, in order.

        Raises:
            ValueError: shapes or dtypes that do not match, or images shaped unlike those stored already.
        """
        check_images(images)
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != (len(images),):
            raise ValueError(f"labels: expected an int64 tensor of shape ({len(images)},), one per image, got "
                             f"{labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__} "
                             f"{tuple(getattr(labels, 'shape', ()))}")
        if self.images is not None and images.shape[1:] != self.images.shape[1:]:
            raise ValueError(f"images: expected {tuple(self.images.shape[1:])} per image like those stored, "
                             f"got {tuple(images.shape[1:])}")
        free = self.capacity - len(self)
        if free > 0:
            first = images[:free].detach().clone(), labels[:free].clone()
            self.images = first[0] if self.images is None else torch.cat([self.images, first[0].to(self.images.device)])
            self.labels = first[1] if self.labels is None else torch.cat([self.labels, first[1].to(self.labels.device)])
        rest = len(images) - max(free, 0)
        if rest > 0:
            # the n-th example seen draws a slot j uniform in 0 .. n - 1, and is kept (in slot j) when j < capacity
            n = torch.arange(self.seen + max(free, 0) + 1, self.seen + len(images) + 1, dtype=torch.float64)
            slots = (torch.rand(rest, generator=self._generator, dtype=torch.float64) * n).long()
            for i in (slots < self.capacity).nonzero().flatten().tolist():  # in order: a later one overwrites
                slot = int(slots[i])
                self.images[slot] = images[max(free, 0) + i].to(self.images.device)
                self.labels[slot] = labels[max(free, 0) + i].to(self.labels.device)
        self.seen += len(images)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the stored ``(images (M, C, H, W), labels (M,))``, ``M = min(capacity, seen)``.

        Raises:
            ValueError: nothing has been added yet.
        """
        if self.images is None or self.labels is None:
            raise ValueError("the buffer is empty: add(images, labels) first")
        return self.images.clone(), self.labels.clone()


def _cross_entropy_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> StepResult:
    logits = model(images)
    return nn.functional.cross_entropy(logits, labels), (logits.argmax(1) == labels).sum()


def train_incrementally(model: nn.Module, tasks: Sequence[ImageSet], *, epochs: int, eval_sets: Sequence[ImageSet],
                        buffer: ReplayBuffer | None = None, replay_share: float = 0.5,
                        **fit_kwargs: Any) -> dict[str, Any]:
    """Train ``model`` on each task in turn; after every epoch, measure its accuracy on every task.

    Each task is one :func:`~course_utils.training.fit_tensors` run of ``epochs`` epochs, with a fresh
    AdamW and its own schedule (cross-entropy on the model's logits). With a ``buffer``, every task
    after the first also trains on the buffer's examples of the earlier tasks, mixed into the same
    shuffled batches; they are repeated so that they make up about ``replay_share`` of each epoch's
    rows (an epoch then has ``1 / (1 - replay_share)`` times as many steps). This is experience replay
    (Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning"), where every batch of new
    examples is trained together with a batch of remembered ones. After training on a task, its
    examples are offered to the buffer.

    Args:
        model: maps images ``(B, C, H, W)`` to logits over all the tasks' classes (one shared head).
        tasks: the training sets, in the order they are learned (e.g. from :func:`split_classes`).
        epochs: epochs per task.
        eval_sets: one evaluation set per task, held out of the training data (a validation split), or
            the test split in a final evaluation that makes no choice.
        buffer: a :class:`ReplayBuffer`, or ``None`` for plain sequential training (no replay).
        replay_share: the fraction of each epoch's rows that are replayed, in ``(0, 1)``.
        fit_kwargs: passed on to ``fit_tensors`` (``lr``, ``batch_size``, ``scheduler``, ``seed``,
            ``progress``...); not ``optimizer``, since each task needs a fresh one.
    Returns:
        ``{"acc": acc, "curves": curves, "histories": [...], "seconds": s}``: ``acc[i][j]`` is the accuracy on
        task ``j``'s evaluation set after training on task ``i``; ``curves[j]`` lists task ``j``'s accuracy
        after each epoch of the whole run (``len(tasks) * epochs`` values); each task's
        :class:`~course_utils.training.History`; the training seconds, summed.
    Raises:
        ValueError: no task, a number of evaluation sets that differs from the number of tasks, or a
            ``replay_share`` outside ``(0, 1)``. TypeError: ``optimizer`` among ``fit_kwargs``, or a task that
            is not an ImageSet.
    """
    if "optimizer" in fit_kwargs:
        raise TypeError("optimizer: train_incrementally makes a fresh AdamW for each task; pass lr= and "
                        "weight_decay= instead")
    if not tasks or len(eval_sets) != len(tasks):
        raise ValueError(f"tasks, eval_sets: expected one evaluation set per task and at least one task, got "
                         f"{len(tasks)} tasks and {len(eval_sets)} evaluation sets")
    if not all(isinstance(s, ImageSet) for s in [*tasks, *eval_sets]):
        raise TypeError("tasks, eval_sets: expected course_utils.ImageSet objects (e.g. from split_classes)")
    if not 0 < replay_share < 1:
        raise ValueError(f"replay_share: expected a fraction in (0, 1), got {replay_share!r}")

    def accuracies(model: nn.Module) -> dict[str, float]:
        return {f"task{j + 1}_acc": evaluate(model, data)["acc"] for j, data in enumerate(eval_sets)}

    acc: list[list[float]] = []
    curves: list[list[float]] = [[] for _ in tasks]
    histories = []
    for task in tasks:
        images, labels = task.images, task.labels
        if buffer is not None and len(buffer):
            old_images, old_labels = buffer.tensors()
            repeats = max(1, round(replay_share / (1 - replay_share) * len(task) / len(buffer)))
            images = torch.cat([images, old_images.to(images.device).repeat(repeats, 1, 1, 1)])
            labels = torch.cat([labels, old_labels.to(labels.device).repeat(repeats)])
        history = fit_tensors(model, (images, labels), _cross_entropy_step, epochs=epochs, evaluate=accuracies,
                              **fit_kwargs)
        histories.append(history)
        for j in range(len(tasks)):
            curves[j] += history[f"task{j + 1}_acc"]
        final = accuracies(model)  # the model as fit_tensors left it (early stopping may have restored an epoch)
        acc.append([final[f"task{j + 1}_acc"] for j in range(len(tasks))])
        if buffer is not None:
            buffer.add(task.images, task.labels)
    return {"acc": acc, "curves": curves, "histories": histories, "seconds": sum(h.seconds for h in histories)}


def _check_matrix(acc: Any) -> np.ndarray:
    """``acc`` as a float array ``(T, T)`` with ``T >= 2``; ValueError otherwise."""
    try:
        matrix = np.asarray(acc, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"acc: expected a square matrix of accuracies (a list of T lists of T numbers), "
                         f"got {type(acc).__name__}") from None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2 or not np.isfinite(matrix).all():
        raise ValueError(f"acc: expected a square (T, T) matrix of finite accuracies with T >= 2 tasks, got shape "
                         f"{matrix.shape}")
    return matrix


def forgetting(acc: Sequence[Sequence[float]]) -> float:
    """Average forgetting (Chaudhry et al. 2018, "Riemannian Walk for Incremental Learning"), in accuracy.

    With ``a[i][j]`` the accuracy on task ``j`` after training on task ``i`` (tasks ``0 .. T-1``), task ``j``'s
    forgetting is the best accuracy it ever had before the last task minus its accuracy at the end,
    ``f_j = max_{l < T-1} a[l][j] - a[T-1][j]``, and the result is their mean over the tasks ``j < T-1``.
    For two tasks it is ``a[0][0] - a[1][0]``: what task 1 lost while task 2 was learned.

    Raises:
        ValueError: ``acc`` is not a square matrix of at least two tasks.
    """
    a = _check_matrix(acc)
    last = len(a) - 1
    return float(np.mean([a[:last, j].max() - a[last, j] for j in range(last)]))


def backward_transfer(acc: Sequence[Sequence[float]]) -> float:
    """Backward transfer (Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual Learning").

    ``BWT = 1/(T-1) * sum_{j < T-1} (a[T-1][j] - a[j][j])``: how much learning the later tasks changed the
    accuracy on each earlier task, right after it was learned; negative when it was forgotten. For two
    tasks it is ``a[1][0] - a[0][0]``.

    Raises:
        ValueError: ``acc`` is not a square matrix of at least two tasks.
    """
    a = _check_matrix(acc)
    last = len(a) - 1
    return float(np.mean([a[last, j] - a[j, j] for j in range(last)]))


def plot_task_accuracy(runs: dict[str, dict[str, Any]], task_names: Sequence[str] | None = None) -> plt.Figure:
    """Each task's accuracy after every epoch, one panel per run (e.g. ``{"no replay": ..., "replay": ...}``).

    Args:
        runs: results of :func:`train_incrementally`; task_names: a label per task ("digits 0-4", ...).
    Returns:
        the figure; dotted vertical lines mark where each new task starts.
    """
    if not runs:
        raise ValueError("runs: expected at least one result of train_incrementally, got none")
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.5), sharey=True, squeeze=False)
    for ax, (title, run) in zip(axes[0], runs.items()):
        names = task_names or [f"task {j + 1}" for j in range(len(run["curves"]))]
        for name, curve in zip(names, run["curves"]):
            ax.plot(range(1, len(curve) + 1), curve, marker="o", label=name)
        start = 0
        for history in run["histories"][:-1]:
            start += len(history.rows)
            ax.axvline(start + 0.5, color="grey", linestyle=":")
        ax.set(title=title, xlabel="epoch (all tasks)", ylim=(0, 1.02))
        ax.legend()
    axes[0][0].set_ylabel("accuracy")
    fig.tight_layout()
    return fig
