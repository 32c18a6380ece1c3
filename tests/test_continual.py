"""Class-incremental training, the replay buffer, forgetting and backward transfer (course_utils.continual)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from course_utils import continual
from course_utils.data import MNIST_CLASSES, ImageSet
from course_utils.runsize import set_seed


def _stream(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` tiny images whose pixel and label both hold their index in the stream."""
    index = torch.arange(n)
    return index.float().view(n, 1, 1, 1).expand(n, 1, 2, 2).clone(), index


# ---------------------------------------------------------------------------------------------
# split_classes
# ---------------------------------------------------------------------------------------------

def test_split_classes_keeps_the_chosen_labels_and_all_class_names(mnist_npm):
    test = mnist_npm["test"]
    first = continual.split_classes(test, range(5))
    second = continual.split_classes(test, [5, 6, 7, 8, 9])
    assert set(first.labels.tolist()) == {0, 1, 2, 3, 4} and set(second.labels.tolist()) == {5, 6, 7, 8, 9}
    assert len(first) + len(second) == len(test) and first.classes == MNIST_CLASSES
    keep = test.labels < 5
    assert torch.equal(first.images, test.images[keep]) and torch.equal(first.labels, test.labels[keep])


@pytest.mark.parametrize("classes", [[], [1, 1], [10], [-1], [0.5], [True]])
def test_split_classes_refuses_bad_classes(mnist_npm, classes):
    with pytest.raises(ValueError, match="distinct class indices in 0..9"):
        continual.split_classes(mnist_npm["test"], classes)
    with pytest.raises(TypeError, match="ImageSet"):
        continual.split_classes(torch.zeros(3, 1, 2, 2), [0])


# ---------------------------------------------------------------------------------------------
# ReplayBuffer
# ---------------------------------------------------------------------------------------------

def test_the_buffer_fills_up_then_keeps_its_capacity():
    buffer = continual.ReplayBuffer(10, seed=0)
    images, labels = _stream(25)
    buffer.add(images[:4], labels[:4])
    assert len(buffer) == 4 and buffer.seen == 4
    buffer.add(images[4:10], labels[4:10])
    assert len(buffer) == 10 and buffer.seen == 10 and buffer.tensors()[1].tolist() == list(range(10))
    buffer.add(images[10:12], labels[10:12])
    assert len(buffer) == 10 and buffer.seen == 12 and set(buffer.tensors()[1].tolist()) <= set(range(12))
    buffer.add(images[12:], labels[12:])
    kept_images, kept_labels = buffer.tensors()
    assert len(buffer) == 10 and buffer.seen == 25 and len(set(kept_labels.tolist())) == 10
    assert torch.equal(kept_images[:, 0, 0, 0].long(), kept_labels)  # each image stays with its label
    kept_labels[0] = -1
    assert buffer.tensors()[1][0] != -1  # tensors() gives copies


def test_reservoir_sampling_keeps_every_example_with_the_same_probability():
    """Over many seeds, each of 60 examples added in uneven batches is kept about 12/60 = 20% of the time."""
    images, labels = _stream(60)
    counts = torch.zeros(60)
    runs = 1500
    for seed in range(runs):
        buffer = continual.ReplayBuffer(12, seed=seed)
        for start, stop in ((0, 5), (5, 30), (30, 31), (31, 60)):
            buffer.add(images[start:stop], labels[start:stop])
        counts[buffer.tensors()[1]] += 1
    share = counts / runs
    assert share.sum() == pytest.approx(12)
    assert float((share - 0.2).abs().max()) < 0.05, share  # about 5 standard deviations of one share
    assert float(share[:30].mean() - share[30:].mean()) == pytest.approx(0, abs=0.02)  # early as likely as late


def test_the_buffer_is_repeatable_with_its_seed():
    images, labels = _stream(100)
    kept = []
    for _ in range(2):
        buffer = continual.ReplayBuffer(10, seed=3)
        buffer.add(images, labels)
        kept.append(buffer.tensors()[1])
    assert torch.equal(*kept)


def test_the_buffer_refuses_bad_input():
    for capacity in (0, 2.5, True):
        with pytest.raises(ValueError, match="capacity"):
            continual.ReplayBuffer(capacity)
    buffer = continual.ReplayBuffer(5)
    with pytest.raises(ValueError, match="empty"):
        buffer.tensors()
    images, labels = _stream(4)
    with pytest.raises(ValueError, match="int64"):
        buffer.add(images, labels.float())
    with pytest.raises(ValueError, match="shape \\(4,\\)"):
        buffer.add(images, labels[:3])
    with pytest.raises(ValueError, match="\\(N, C, H, W\\)"):
        buffer.add(images[:, 0], labels)
    buffer.add(images, labels)
    with pytest.raises(ValueError, match="like those stored"):
        buffer.add(torch.zeros(2, 1, 3, 3), labels[:2])


# ---------------------------------------------------------------------------------------------
# train_incrementally
# ---------------------------------------------------------------------------------------------

def _tasks(mnist_npm) -> tuple[list[ImageSet], list[ImageSet]]:
    train, test = mnist_npm["train"].take(1200), mnist_npm["test"].take(400)
    return ([continual.split_classes(train, range(5)), continual.split_classes(train, range(5, 10))],
            [continual.split_classes(test, range(5)), continual.split_classes(test, range(5, 10))])


def _mlp() -> nn.Module:
    set_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def test_training_task_after_task_forgets_and_replay_remembers(mnist_npm):
    tasks, evals = _tasks(mnist_npm)
    settings = {"epochs": 2, "eval_sets": evals, "lr": 3e-3, "batch_size": 32, "progress": False}
    plain = continual.train_incrementally(_mlp(), tasks, **settings)
    assert len(plain["acc"]) == 2 and all(len(row) == 2 for row in plain["acc"])
    assert [len(curve) for curve in plain["curves"]] == [4, 4] and len(plain["histories"]) == 2
    assert plain["acc"][0][0] > 0.85 and plain["acc"][0][1] < 0.05  # digits 5-9 not learned yet
    assert plain["acc"][1][0] < 0.3  # learning digits 5-9 alone wipes out 0-4
    assert plain["curves"][0][1] == pytest.approx(plain["acc"][0][0]) and plain["seconds"] > 0

    buffer = continual.ReplayBuffer(100, seed=0)
    replay = continual.train_incrementally(_mlp(), tasks, buffer=buffer, **settings)
    assert len(buffer) == 100 and buffer.seen == len(tasks[0]) + len(tasks[1])
    assert replay["acc"][0] == plain["acc"][0]  # same model, same first task: replay starts with task 2
    assert replay["acc"][1][0] > plain["acc"][1][0] + 0.3
    fig = continual.plot_task_accuracy({"no replay": plain, "replay": replay}, ["digits 0-4", "digits 5-9"])
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 3  # two tasks and the task boundary
    plt.close(fig)


def test_replay_makes_up_the_requested_share_of_each_epoch(mnist_npm, monkeypatch):
    tasks, evals = _tasks(mnist_npm)
    sizes = []
    real_fit = continual.fit_tensors

    def counting_fit(model, tensors, *args, **kwargs):
        sizes.append(len(tensors[0]))
        return real_fit(model, tensors, *args, **kwargs)

    monkeypatch.setattr(continual, "fit_tensors", counting_fit)
    continual.train_incrementally(_mlp(), tasks, epochs=1, eval_sets=evals, buffer=continual.ReplayBuffer(50),
                                  replay_share=0.25, progress=False)
    n_new = len(tasks[1])
    assert sizes[0] == len(tasks[0])
    assert (sizes[1] - n_new) / sizes[1] == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"optimizer": None}, TypeError, "fresh AdamW"),
    ({"eval_sets": []}, ValueError, "one evaluation set per task"),
    ({"replay_share": 1.0}, ValueError, "replay_share"),
    ({"replay_share": 0}, ValueError, "replay_share"),
])
def test_train_incrementally_refuses_bad_input(mnist_npm, kwargs, error, words):
    tasks, evals = _tasks(mnist_npm)
    arguments = {"epochs": 1, "eval_sets": evals, **kwargs}
    with pytest.raises(error, match=words):
        continual.train_incrementally(_mlp(), tasks, **arguments)
    with pytest.raises(TypeError, match="ImageSet"):
        continual.train_incrementally(_mlp(), [torch.zeros(2)], epochs=1, eval_sets=[evals[0]])


# ---------------------------------------------------------------------------------------------
# forgetting and backward transfer
# ---------------------------------------------------------------------------------------------

def test_forgetting_and_backward_transfer_on_hand_made_matrices():
    acc = [[0.9, 0.1, 0.0],
           [0.5, 0.8, 0.1],
           [0.3, 0.6, 0.7]]
    assert continual.forgetting(acc) == pytest.approx(((0.9 - 0.3) + (0.8 - 0.6)) / 2)
    assert continual.backward_transfer(acc) == pytest.approx(((0.3 - 0.9) + (0.6 - 0.8)) / 2)
    improving = [[0.5, 0.0, 0.0],  # task 1 peaks after task 2: forgetting counts from the best, BWT from the first
                 [0.9, 0.8, 0.0],
                 [0.7, 0.8, 0.9]]
    assert continual.forgetting(improving) == pytest.approx(((0.9 - 0.7) + 0.0) / 2)
    assert continual.backward_transfer(improving) == pytest.approx(((0.7 - 0.5) + 0.0) / 2)
    two = torch.tensor([[0.98, 0.0], [0.05, 0.97]])
    assert continual.forgetting(two) == pytest.approx(0.93) and continual.backward_transfer(two) == pytest.approx(-0.93)


@pytest.mark.parametrize("acc", [[[0.9]], [[0.9, 0.1]], [[0.9, 0.1], [0.5]], [[0.9, float("nan")], [0.5, 0.8]],
                                 "matrix", [[0.9, 0.1, 0.2], [0.5, 0.8, 0.1]]])
def test_forgetting_refuses_what_is_not_a_square_matrix(acc):
    for measure in (continual.forgetting, continual.backward_transfer):
        with pytest.raises(ValueError, match="acc: expected a square"):
            measure(acc)


def test_plot_task_accuracy_needs_a_run():
    with pytest.raises(ValueError, match="at least one"):
        continual.plot_task_accuracy({})
