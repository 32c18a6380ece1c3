"""Every plot returns a Figure with the expected axes and refuses bad shapes (course_utils.plots)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from course_utils import models  # noqa: E402
from course_utils.data import ImageSet  # noqa: E402
from course_utils.plots import (  # noqa: E402
    plot_confusion_matrix,
    plot_history,
    plot_mistakes,
    show_feature_maps,
    show_filters,
    show_images,
)
from course_utils.training import History  # noqa: E402


def _history(epochs: int = 3, val: bool = True) -> History:
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "train_loss": 1 / e, "train_acc": 1 - 0.5 / e, "seconds": 0.1}
        if val:
            row.update(val_loss=1.2 / e, val_acc=1 - 0.6 / e)
        rows.append(row)
    return History(rows=rows, best_epoch=epochs)


def _digits(n: int = 12) -> ImageSet:
    return ImageSet(torch.rand(n, 1, 28, 28), torch.arange(n) % 10, [str(d) for d in range(10)])


class Constant(nn.Module):
    """Always predicts ``label`` with high confidence."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = label
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 10) + self.dummy
        logits[:, self.label] = 5.0
        return logits


def test_plot_history_one_run():
    fig = plot_history(_history(), title="one run")
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 2
    loss, acc = fig.axes
    assert len(loss.lines) == 2 and len(acc.lines) == 2  # train and validation
    assert list(acc.lines[1].get_ydata()) == _history()["val_acc"]
    assert loss.get_xlabel() == "epoch" and "accuracy" in acc.get_ylabel()


def test_plot_history_compares_runs():
    fig = plot_history({"MLP": _history(), "CNN": _history(5, val=False)})
    assert len(fig.axes) == 2
    labels = [line.get_label() for line in fig.axes[1].lines]
    assert labels == ["MLP train", "MLP validation", "CNN train"]
    assert len(fig.axes[0].lines[2].get_xdata()) == 5


def test_plot_history_names_the_dashed_curves():
    fig = plot_history({"CNN": _history()}, val_label="test")
    assert [line.get_label() for line in fig.axes[1].lines] == ["CNN train", "CNN test"]


def test_plot_history_legend_sits_below_the_curves():
    """One figure legend under both plots: a legend inside an axes used to cover the curves' points."""
    fig = plot_history({"MLP": _history(), "CNN": _history()})
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert len(fig.legends) == 1
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["MLP train", "MLP validation", "CNN train", "CNN validation"]
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert all(box.y1 <= ax.get_window_extent().y0 for ax in fig.axes)  # entirely below both plots


def test_plot_confusion_matrix_counts():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    predictions = torch.tensor([0, 1, 1, 1, 2, 2])
    fig = plot_confusion_matrix(labels, predictions, ["a", "b", "c"])
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    counts = [int(t.get_text()) for t in ax.texts]
    assert counts == [1, 1, 0, 0, 2, 1, 0, 0, 1]  # row = true class, column = predicted
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"


@pytest.mark.parametrize("labels, predictions", [
    (torch.zeros(5, dtype=torch.int64), torch.zeros(4, dtype=torch.int64)),
    (torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.int64)),
])
def test_plot_confusion_matrix_rejects_bad_shapes(labels, predictions):
    with pytest.raises(ValueError, match=r"\(N,\)"):
        plot_confusion_matrix(labels, predictions, ["a"])


@pytest.mark.parametrize("n, ncols, axes", [(16, 8, 16), (5, 8, 8), (9, 4, 12), (1, 8, 8)])
def test_show_images_grid(n, ncols, axes):
    fig = show_images(torch.rand(n, 1, 28, 28), ncols=ncols)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == axes
    assert sum(len(ax.images) for ax in fig.axes) == n


def test_show_images_titles_and_wrong_predictions():
    data = _digits(4)
    predictions = torch.tensor([0, 2, 2, 0])  # right, wrong, right, wrong
    fig = show_images(data.images, data.labels, data.classes, predictions, ncols=4)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["0 → 0", "1 → 2", "2 → 2", "3 → 0"]
    colors = [ax.title.get_color() for ax in fig.axes]
    assert colors[0] == colors[2] == "black" and colors[1] == colors[3] == "crimson"


def test_show_images_accepts_n_h_w():
    fig = show_images(torch.rand(3, 28, 28), [1, 2, 3])
    assert len(fig.axes) == 8 and fig.axes[1].get_title() == "2"


@pytest.mark.parametrize("images", [torch.rand(28, 28), torch.rand(2, 1, 1, 28, 28),
                                    torch.zeros(2, 1, 28, 28, dtype=torch.uint8)])
def test_show_images_rejects_bad_shapes(images):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        show_images(images)


def test_plot_mistakes_shows_the_most_confident_mistakes():
    data = _digits(12)  # labels 0..9, 0, 1: a constant "3" is right once
    model = Constant(3).train()
    fig = plot_mistakes(model, data, n=4)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 8  # one row of 8, 4 used
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 4
    assert all("→ 3" in ax.get_title() and "%" in ax.get_title() for ax in shown)
    assert "11 wrong of 12" in fig._suptitle.get_text()
    assert "true → predicted" in fig._suptitle.get_text()  # the title says how to read the captions
    assert model.training  # mode restored


def test_plot_mistakes_with_no_mistakes():
    data = ImageSet(torch.rand(5, 1, 28, 28), torch.full((5,), 7), [str(d) for d in range(10)])
    fig = plot_mistakes(Constant(7), data)
    assert not any(ax.images for ax in fig.axes) and "0 wrong of 5" in fig._suptitle.get_text()


@pytest.mark.parametrize("filters, max_filters, panels", [(16, 32, 16), (32, 32, 32), (40, 32, 32), (4, 32, 4)])
def test_show_filters(filters, max_filters, panels):
    fig = show_filters(nn.Conv2d(1, filters, 5), max_filters=max_filters)
    assert isinstance(fig, plt.Figure) and len(fig.axes) == panels + 1  # the panels and one colour bar
    assert sum(len(ax.images) for ax in fig.axes) == min(filters, max_filters)
    assert "5x5" in fig._suptitle.get_text()
    assert fig.axes[0].get_title() == "filter 0" and fig.axes[-1].get_ylabel() == "weight"
    limits = {ax.images[0].get_clim() for ax in fig.axes if ax.images}
    assert len(limits) == 1 and limits.pop()[0] < 0  # one colour scale, symmetric around 0


def test_show_filters_rejects_other_layers():
    with pytest.raises(TypeError, match="Conv2d"):
        show_filters(nn.Linear(3, 3))


def test_show_feature_maps():
    torch.manual_seed(0)
    model = models.CNN().train()
    first_block = model[0]
    fig = show_feature_maps(model, first_block, torch.rand(1, 28, 28))
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 16 + 1  # 16 maps and a colour bar
    assert fig.axes[0].images[0].get_array().shape == (14, 14)  # after the 2x2 pool
    assert model.training and not first_block[0]._forward_hooks  # mode restored, hook removed


def test_show_feature_maps_are_labelled_large_and_on_one_scale():
    torch.manual_seed(0)
    model = models.CNN()
    fig = show_feature_maps(model, model[0][2], torch.rand(1, 28, 28), max_maps=8)
    panels, colorbar = fig.axes[:-1], fig.axes[-1]
    assert [ax.get_title() for ax in panels] == [f"channel {k}" for k in range(8)]
    assert colorbar.get_ylabel() == "activation"
    assert len({ax.images[0].get_clim() for ax in panels}) == 1  # bright means the same in every panel
    width, height = fig.get_size_inches()
    assert width / 4 >= 1.9 and height / 2 >= 1.9  # 4 columns, 2 rows: about 2 inches a map
    with pytest.raises(ValueError, match="ncols"):
        show_feature_maps(model, model[0], torch.rand(1, 28, 28), ncols=0)


@pytest.mark.parametrize("image", [torch.rand(1, 1, 28, 28), torch.rand(28, 28)])
def test_show_feature_maps_rejects_bad_shapes(image):
    model = models.CNN()
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        show_feature_maps(model, model[0], image)
    assert not model[0]._forward_hooks


@pytest.mark.parametrize("labels, predictions, message", [
    ([0, 1, 3], [0, 1, 2], r"labels: expected class indices 0 to 2 .* 1 outside, e\.g\. 3"),
    ([0, 1, 2], [0, -1, 2], r"predictions: expected class indices 0 to 2 .* e\.g\. -1"),
], ids=["label-too-large", "negative-prediction"])
def test_plot_confusion_matrix_refuses_labels_outside_the_classes(labels, predictions, message):
    """Labels outside range(len(classes)) used to be dropped from the counts without a word."""
    with pytest.raises(ValueError, match=message):
        plot_confusion_matrix(torch.tensor(labels), torch.tensor(predictions), ["a", "b", "c"])


def test_plot_confusion_matrix_refuses_empty_and_float_input():
    with pytest.raises(ValueError, match="N >= 1"):
        plot_confusion_matrix(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), ["a"])
    with pytest.raises(TypeError, match="labels: expected integer class indices"):
        plot_confusion_matrix(torch.zeros(3), torch.zeros(3, dtype=torch.int64), ["a"])


def test_show_images_refuses_labels_it_cannot_name():
    """A label of -1 used to be shown as the last class's name, 10 of 10 classes raised an IndexError."""
    images = torch.rand(3, 1, 28, 28)
    with pytest.raises(ValueError, match=r"labels: expected class indices 0 to 9"):
        show_images(images, torch.tensor([0, -1, 2]), [str(d) for d in range(10)])
    with pytest.raises(ValueError, match=r"predictions: expected class indices 0 to 9 .* e\.g\. 10"):
        show_images(images, [0, 1, 2], [str(d) for d in range(10)], torch.tensor([0, 10, 2]))
    with pytest.raises(ValueError, match=r"labels: expected one per image, \(3,\)"):
        show_images(images, [0, 1])
    with pytest.raises(ValueError, match="ncols: expected an int of at least 1, got 0"):
        show_images(images, ncols=0)


def test_plot_counts_must_be_positive():
    """Zero columns or filters used to end in a ZeroDivisionError."""
    with pytest.raises(ValueError, match="max_filters"):
        show_filters(nn.Conv2d(1, 4, 3), max_filters=0)
    with pytest.raises(ValueError, match="max_maps"):
        show_feature_maps(models.CNN(), models.CNN()[0], torch.rand(1, 28, 28), max_maps=0)
    with pytest.raises(ValueError, match="n: expected an int of at least 1"):
        plot_mistakes(Constant(3), _digits(4), n=-1)
