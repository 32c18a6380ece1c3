"""The hand-written metrics equal scikit-learn's, and bad input gets a clear error."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from course_utils import metrics
from course_utils.uncertainty import wilson_interval


def data(n: int = 300, k: int = 4, seed: int = 0, grid: float | None = None):
    """Labels (n,), scores (n, k) that favour the true class, optionally rounded to a grid (ties)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(k, (n,), generator=g)
    scores = torch.randn(n, k, generator=g) + 1.2 * torch.nn.functional.one_hot(labels, k)
    if grid:
        scores = (scores / grid).round() * grid
    return labels, scores


def test_the_confusion_matrix_has_true_classes_as_rows_and_equals_sklearn():
    labels, predictions = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 0, 2])
    counts = metrics.confusion_matrix(labels, predictions, 3)
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    labels, scores = data()
    want = skm.confusion_matrix(labels.numpy(), scores.argmax(1).numpy(), labels=range(4))
    assert np.array_equal(metrics.confusion_matrix(labels, scores.argmax(1), 4).numpy(), want)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", None])
def test_precision_recall_f1_equal_sklearn_with_zero_division_0(average):
    labels, scores = data(seed=1)
    predictions = scores.argmax(1)
    predictions[predictions == 3] = 0           # class 3 is never predicted: 0 / 0 precision
    labels = torch.where(labels == 2, 1, labels)  # class 2 is never present: 0 / 0 recall
    got = metrics.precision_recall_f1(labels, predictions, 5, average)
    want = skm.precision_recall_fscore_support(labels.numpy(), predictions.numpy(), labels=range(5), average=average,
                                               zero_division=0)[:3]
    for g, w in zip(got, want):
        assert np.allclose(np.asarray(g, dtype=float), w)


def test_micro_f1_is_the_accuracy_and_the_majority_guesser_gets_a_low_macro_f1():
    labels = torch.tensor([0] * 99 + [1])
    majority = torch.zeros(100, dtype=torch.long)
    precision, recall, f1 = metrics.precision_recall_f1(labels, majority, 2, "micro")
    assert precision == recall == f1 == pytest.approx(0.99)
    assert metrics.precision_recall_f1(labels, majority, 2, "macro")[2] == pytest.approx(0.4975, abs=1e-4)


@pytest.mark.parametrize("grid", [None, 0.5])
def test_roc_auc_and_its_curves_equal_sklearn_also_with_ties(grid):
    labels, scores = data(seed=2, grid=grid)
    probs = scores.softmax(1)
    assert metrics.roc_auc_ovr(labels, probs) == pytest.approx(skm.roc_auc_score(labels.numpy(), probs.numpy(),
                                                                                  multi_class="ovr"))
    for c, (fpr, tpr) in enumerate(metrics.roc_curve_ovr(labels, scores)):
        want_fpr, want_tpr, _ = skm.roc_curve((labels == c).numpy(), scores[:, c].numpy(), drop_intermediate=False)
        assert np.allclose(fpr.numpy(), want_fpr) and np.allclose(tpr.numpy(), want_tpr)
    per_class = metrics.roc_auc_ovr(labels, scores, average=None)
    want = [skm.roc_auc_score((labels == c).numpy(), scores[:, c].numpy()) for c in range(4)]
    assert per_class.shape == (4,) and np.allclose(per_class.numpy(), want)


def test_auc_from_hard_labels_is_lower_than_from_scores():
    labels, scores = data(seed=3)
    hard = torch.nn.functional.one_hot(scores.argmax(1), 4).double()
    assert metrics.roc_auc_ovr(labels, hard) < metrics.roc_auc_ovr(labels, scores)


@pytest.mark.parametrize("grid", [None, 0.5])
def test_average_precision_equals_sklearn_also_with_ties(grid):
    labels, scores = data(seed=4, grid=grid)
    onehot = np.eye(4)[labels.numpy()]
    assert metrics.average_precision(labels, scores) == pytest.approx(
        skm.average_precision_score(onehot, scores.numpy(), average="macro"))
    assert np.allclose(metrics.average_precision(labels, scores, average=None).numpy(),
                       skm.average_precision_score(onehot, scores.numpy(), average=None))
    for c, (precision, recall) in enumerate(metrics.pr_curve_ovr(labels, scores)):
        want_p, want_r, _ = skm.precision_recall_curve((labels == c).numpy(), scores[:, c].numpy())
        # sklearn lists the points from the lowest threshold up and appends (precision 1, recall 0)
        assert np.allclose(precision.numpy(), want_p[:-1][::-1]) and np.allclose(recall.numpy(), want_r[:-1][::-1])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_accuracy_equals_sklearn(k):
    labels, scores = data(seed=5)
    want = skm.top_k_accuracy_score(labels.numpy(), scores.numpy(), k=k, labels=range(4))
    assert metrics.top_k_accuracy(labels, scores, k) == pytest.approx(want)


def test_the_bootstrap_interval_of_an_accuracy_is_near_wilson_and_repeats_with_its_seed():
    labels, scores = data(n=500, seed=6)
    predictions = scores.argmax(1)
    correct = int((predictions == labels).sum())

    def accuracy(y, p):
        return float((y == p).double().mean())

    low, high = metrics.bootstrap_interval(labels, predictions, accuracy)
    wilson_low, wilson_high = wilson_interval(correct, 500)
    assert low < correct / 500 < high
    assert abs(low - wilson_low) < 0.015 and abs(high - wilson_high) < 0.015
    assert metrics.bootstrap_interval(labels, predictions, accuracy) == (low, high)
    assert metrics.bootstrap_interval(labels, predictions, accuracy, seed=1) != (low, high)
    narrow = metrics.bootstrap_interval(labels, predictions, accuracy, confidence=0.5)
    assert low < narrow[0] < narrow[1] < high


def test_the_bootstrap_takes_a_metric_of_scores_too():
    labels, scores = data(n=200, seed=7)
    low, high = metrics.bootstrap_interval(labels, scores, metrics.roc_auc_ovr, n_resamples=50)
    assert low < metrics.roc_auc_ovr(labels, scores) < high


def test_plot_roc_pr_draws_two_panels():
    labels, scores = data(seed=8)
    fig = metrics.plot_roc_pr(labels, scores, ["a", "b", "c", "d"])
    assert len(fig.axes) == 2 and "AUC" in fig.axes[0].get_title() and "AP" in fig.axes[1].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="expected 4 names"):
        metrics.plot_roc_pr(labels, scores, ["a", "b"])


LABELS, SCORES = data(n=20, seed=9)


@pytest.mark.parametrize("call, error, words", [
    (lambda: metrics.confusion_matrix(LABELS.float(), LABELS, 4), TypeError, "integer class indices"),
    (lambda: metrics.confusion_matrix([0, 1], LABELS, 4), TypeError, "expected a tensor"),
    (lambda: metrics.confusion_matrix(LABELS, LABELS[:5], 4), ValueError, "expected (20,)"),
    (lambda: metrics.confusion_matrix(LABELS, LABELS, 3), ValueError, "0 to 2"),
    (lambda: metrics.confusion_matrix(LABELS, LABELS, 1), ValueError, "num_classes"),
    (lambda: metrics.confusion_matrix(LABELS[:0], LABELS[:0], 4), ValueError, "non-empty"),
    (lambda: metrics.precision_recall_f1(LABELS, LABELS, 4, "binary"), ValueError, "average"),
    (lambda: metrics.roc_auc_ovr(LABELS, SCORES[:, 0]), ValueError, "(N, K)"),
    (lambda: metrics.roc_auc_ovr(LABELS, SCORES[:10]), ValueError, "(N, K)"),
    (lambda: metrics.roc_auc_ovr(LABELS, SCORES.argmax(1)), TypeError, "floating tensor"),
    (lambda: metrics.roc_auc_ovr(LABELS, SCORES[:, :2]), ValueError, "0 to 1"),
    (lambda: metrics.roc_auc_ovr(torch.zeros(20, dtype=torch.long), SCORES), ValueError, "class 0 has only"),
    (lambda: metrics.roc_auc_ovr(torch.where(LABELS == 3, 0, LABELS), SCORES), ValueError, "class 3 has no"),
    (lambda: metrics.top_k_accuracy(LABELS, SCORES, 5), ValueError, "1..4"),
    (lambda: metrics.top_k_accuracy(LABELS, SCORES, 0), ValueError, "1..4"),
    (lambda: metrics.bootstrap_interval(LABELS, LABELS[:3], lambda y, p: 0.0), ValueError, "same N"),
    (lambda: metrics.bootstrap_interval(LABELS, LABELS, "accuracy"), TypeError, "metric"),
    (lambda: metrics.bootstrap_interval(LABELS, LABELS, lambda y, p: 0.0, confidence=95), ValueError, "confidence"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error) as caught:
        call()
    assert words in str(caught.value)
