"""Reliability bins and ECE (by hand and against numpy), temperature scaling, MC dropout, ensembles and the
rejection curve."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from course_utils import calibration


def calibrated(n: int = 4000, k: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (n, k) and labels drawn from their softmax: calibrated by construction."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * 1.5
    return logits, torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)


TINY_PROBS = torch.tensor([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.4, 0.35, 0.25]])
TINY_LABELS = torch.tensor([0, 1, 1, 2])   # right, wrong, right, wrong


def test_reliability_and_ece_of_a_hand_computed_case():
    confidence, accuracy, count = calibration.reliability(TINY_PROBS, TINY_LABELS, bins=2)
    # bin (0, 0.5]: the 0.4 (wrong); bin (0.5, 1]: 0.9 (right), 0.8 (wrong), 0.6 (right)
    assert count.tolist() == [1, 3]
    assert torch.allclose(confidence, torch.tensor([0.4, 2.3 / 3], dtype=torch.float64))
    assert torch.allclose(accuracy, torch.tensor([0.0, 2 / 3], dtype=torch.float64))
    assert calibration.expected_calibration_error(TINY_PROBS, TINY_LABELS, bins=2) == pytest.approx(
        0.25 * 0.4 + 0.75 * (2.3 / 3 - 2 / 3))
    _, empty_accuracy, empty_count = calibration.reliability(TINY_PROBS, TINY_LABELS, bins=10)
    assert empty_count.sum() == 4 and torch.isnan(empty_accuracy[empty_count == 0]).all()


def numpy_ece(probs: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """An independent ECE: np.digitize on the bins' upper edges, right-closed."""
    confidence, prediction = probs.max(1), probs.argmax(1)
    index = np.digitize(confidence, np.linspace(0, 1, bins + 1)[1:-1], right=True)
    total = 0.0
    for b in range(bins):
        inside = index == b
        if inside.any():
            total += inside.mean() * abs((prediction[inside] == labels[inside]).mean() - confidence[inside].mean())
    return total


@pytest.mark.parametrize("bins", [1, 5, 15])
def test_ece_equals_an_independent_numpy_computation(bins):
    logits, labels = calibrated(n=500, seed=1)
    probs = (logits * 2).softmax(1)
    assert calibration.expected_calibration_error(probs, labels, bins) == pytest.approx(
        numpy_ece(probs.double().numpy(), labels.numpy(), bins))


def test_a_calibrated_model_has_a_small_ece_and_an_over_confident_one_a_large_one():
    logits, labels = calibrated()
    assert calibration.expected_calibration_error(logits.softmax(1), labels) < 0.03
    assert calibration.expected_calibration_error((logits * 3).softmax(1), labels) > 0.15


@pytest.mark.parametrize("factor", [0.5, 2.5])
def test_fit_temperature_recovers_the_factor_that_made_the_logits_over_or_under_confident(factor):
    logits, labels = calibrated(seed=2)
    temperature = calibration.fit_temperature(logits * factor, labels)
    assert temperature == pytest.approx(factor, rel=0.1)
    before = calibration.expected_calibration_error((logits * factor).softmax(1), labels)
    after = calibration.expected_calibration_error((logits * factor / temperature).softmax(1), labels)
    assert after < 0.7 * before


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_mc_dropout_keeps_only_dropout_on_restores_the_modes_and_repeats_with_its_seed():
    torch.manual_seed(0)
    model, x = Net().train(), torch.randn(10, 6)
    model.body[1].train(False)     # a frozen batch norm inside a training model keeps its own mode
    stats = model.body[1].running_mean.clone()
    state = torch.random.get_rng_state()
    probs = calibration.mc_dropout_probs(model, x, samples=8, seed=3)
    assert probs.shape == (8, 10, 3) and torch.allclose(probs.sum(2), torch.ones(8, 10))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert model.training and not model.body[1].training and model.body[3].training
    assert torch.equal(model.body[1].running_mean, stats)        # batch norm ran in eval mode
    assert torch.equal(probs, calibration.mc_dropout_probs(model, x, samples=8, seed=3))
    assert probs.std(0).max() > 0.01                             # dropout was on: the samples differ
    model.eval()
    calibration.mc_dropout_probs(model, x, samples=2)
    assert not model.training and not model.body[3].training
    with pytest.raises(ValueError, match="no dropout layer"):
        calibration.mc_dropout_probs(nn.Linear(6, 3), x)


def test_ensemble_probs_stack_each_models_eval_mode_softmax():
    torch.manual_seed(1)
    models, x = [Net().train(), Net().eval()], torch.randn(7, 6)
    probs = calibration.ensemble_probs(models, x)
    assert probs.shape == (2, 7, 3) and models[0].training and not models[1].training
    models[0].eval()
    with torch.no_grad():
        assert torch.allclose(probs[0], models[0](x).softmax(1))
    with pytest.raises(TypeError, match="list of nn.Module"):
        calibration.ensemble_probs(models[0], x)


def test_the_rejection_curve_drops_the_least_confident_first():
    # confidences 0.9 (right), 0.8 (wrong), 0.6 (right), 0.4 (wrong)
    accuracy = calibration.rejection_curve(TINY_PROBS, TINY_LABELS, [0.0, 0.25, 0.5, 0.75])
    assert accuracy.tolist() == pytest.approx([0.5, 2 / 3, 0.5, 1.0])
    logits, labels = calibrated(seed=4)
    curve = calibration.rejection_curve(logits.softmax(1), labels, [0.0, 0.5, 0.9])
    assert curve[0] == pytest.approx(float((logits.argmax(1) == labels).double().mean()))
    assert curve[0] < curve[1] < curve[2]


def test_the_plots_draw_one_or_two_panels():
    logits, labels = calibrated(n=300, seed=5)
    fig = calibration.plot_reliability((logits * 3).softmax(1), labels, bins=10, after=logits.softmax(1))
    assert len(fig.axes) == 2 and "ECE" in fig.axes[1].get_title()
    plt.close(fig)
    fig = calibration.plot_reliability(logits.softmax(1), labels)
    assert len(fig.axes) == 1
    plt.close(fig)
    fig = calibration.plot_rejection_curve([0.0, 0.5], {"softmax": [0.8, 0.9], "MC dropout": torch.tensor([0.8, 0.95])})
    assert len(fig.axes[0].lines) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="one per fraction"):
        calibration.plot_rejection_curve([0.0, 0.5], {"softmax": [0.8]})


@pytest.mark.parametrize("call, error, words", [
    (lambda: calibration.reliability(TINY_PROBS * 2, TINY_LABELS), ValueError, "summing to 1"),
    (lambda: calibration.reliability(TINY_PROBS[0], TINY_LABELS), ValueError, "(N, K)"),
    (lambda: calibration.reliability(TINY_PROBS, TINY_LABELS.float()), TypeError, "integer class indices"),
    (lambda: calibration.reliability(TINY_PROBS, TINY_LABELS[:2]), ValueError, "one per row"),
    (lambda: calibration.reliability(TINY_PROBS, TINY_LABELS + 1), ValueError, "0 to 2"),
    (lambda: calibration.reliability(TINY_PROBS, TINY_LABELS, bins=0), ValueError, "bins"),
    (lambda: calibration.expected_calibration_error(TINY_PROBS.long(), TINY_LABELS), TypeError, "floating"),
    (lambda: calibration.fit_temperature(TINY_PROBS[0], TINY_LABELS), TypeError, "(N, K)"),
    (lambda: calibration.fit_temperature(TINY_PROBS, TINY_LABELS[:3]), ValueError, "one per row"),
    (lambda: calibration.fit_temperature(TINY_PROBS.log(), TINY_LABELS.float()), TypeError, "integer class"),
    (lambda: calibration.fit_temperature(TINY_PROBS / 0, TINY_LABELS), ValueError, "finite"),
    (lambda: calibration.rejection_curve(TINY_PROBS, TINY_LABELS, [1.0]), ValueError, "[0, 1)"),
    (lambda: calibration.mc_dropout_probs(Net(), torch.randn(3, 6), samples=0), ValueError, "samples"),
])
def test_bad_input_gets_a_clear_error(call, error, words):
    with pytest.raises(error) as caught:
        call()
    assert words in str(caught.value)
