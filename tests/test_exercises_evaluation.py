"""The evaluation checkers of notebook 08: they accept the model answers and other correct versions, name each
typical mistake on every case, and reject shortcuts, in-place edits and hard-coded answers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from learner_answers import rejects, same_inputs, stub
from scipy.optimize import minimize_scalar
from scipy.stats import rankdata
from sklearn import metrics as skm
from torch.nn import functional as F

from course_utils import calibration, metrics
from course_utils.exercises import CHECKERS
from course_utils.exercises import evaluation as ex

INFOS = {info.name: info for info in CHECKERS if info.module == ex.__name__}
NAMES = ["f1_from_confusion", "roc_auc", "ece", "fit_temperature", "fgsm_step", "top_k_accuracy"]


def test_the_registry_lists_the_six_checkers_of_notebook_08():
    assert list(INFOS) == NAMES
    assert all(i.hidden >= 2 and len(i.mistakes) >= 3 for i in INFOS.values())


@pytest.mark.parametrize("name", NAMES)
def test_the_model_answer_passes_its_float64_variant_too_and_a_stub_is_todo(name):
    info = INFOS[name]
    assert info.checker(info.solution, quiet=True).passed

    def float64(*args):
        out = info.solution(*args)
        if isinstance(out, torch.Tensor):
            return out.double()
        return tuple(np.float64(v) for v in out) if isinstance(out, tuple) else np.float64(out)

    result = info.checker(float64, quiet=True)
    assert result.passed, result.message
    assert info.checker(stub, quiet=True).status == "not attempted"


@pytest.mark.parametrize("name", NAMES)
def test_each_named_mistake_fails_with_its_hint(name):
    info = INFOS[name]
    for mistake in info.mistakes:
        result = info.checker(mistake.compute, quiet=True)
        assert result.status == "failed" and mistake.hint in result.message, (mistake.name, result.message)


@pytest.mark.parametrize("name", NAMES)
def test_an_answer_hard_coded_from_an_earlier_run_fails(name):
    info = INFOS[name]
    seen = []

    def recorder(*args):
        seen.append((args, info.solution(*args)))
        return seen[-1][1]

    assert info.checker(recorder, quiet=True, seed=1).passed
    result = info.checker(lambda *a: next((o for i, o in seen if same_inputs(i, a)), seen[0][1]), quiet=True, seed=2)
    assert result.status == "failed" and "hidden case" in result.message, result.message


# ---------------------------------------------------------------------------------------------
# The model answers agree with scikit-learn and the library
# ---------------------------------------------------------------------------------------------

def expand(confusion: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The (labels, predictions) a confusion matrix counts."""
    k = len(confusion)
    labels = np.repeat(np.repeat(np.arange(k), k), confusion.flatten().numpy())
    predictions = np.repeat(np.tile(np.arange(k), k), confusion.flatten().numpy())
    return labels, predictions


def test_the_model_answers_agree_with_scikit_learn():
    for case in ex.F1_CASES:
        labels, predictions = expand(case.args[0])
        want = skm.precision_recall_fscore_support(labels, predictions, labels=range(len(case.args[0])),
                                                   average="macro", zero_division=0)[:3]
        assert np.allclose(ex.solution_f1_from_confusion(*case.args), want)
    for case in ex.AUC_CASES:
        labels, scores = case.args
        assert math.isclose(ex.solution_roc_auc(labels, scores), skm.roc_auc_score(labels, scores))
    for case in ex.TOP_K_CASES:
        labels, scores, k = case.args
        want = skm.top_k_accuracy_score(labels, scores, k=k, labels=range(scores.shape[1]))
        assert math.isclose(ex.solution_top_k_accuracy(labels, scores, k), want)
    for case in ex.ECE_CASES:
        assert math.isclose(ex.solution_ece(*case.args), calibration.expected_calibration_error(*case.args))


def test_the_temperature_answer_reaches_the_library_fit_and_the_scale_it_was_made_with():
    for case, scale in zip(ex.TEMPERATURE_CASES, (3.0, 0.4, 1.8)):
        t = ex.solution_fit_temperature(*case.args)
        assert ex._nll(*case.args, t) <= ex._nll(*case.args, calibration.fit_temperature(*case.args)) + 1e-6
        assert abs(math.log(t / scale)) < 0.25


def test_the_fgsm_answer_raises_the_loss_moves_each_pixel_at_most_eps_and_leaves_the_model_as_it_was():
    model, images, labels, eps = ex.FGSM_CASES[1].args
    state = {k: v.clone() for k, v in model.state_dict().items()}
    adversarial = ex.solution_fgsm_step(model, images, labels, eps)
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert float((adversarial - images).abs().max()) <= eps + 1e-6 and 0 <= adversarial.min() <= adversarial.max() <= 1
    model.eval()
    with torch.no_grad():
        assert F.cross_entropy(model(adversarial), labels) > F.cross_entropy(model(images), labels)
    model.train()


# ---------------------------------------------------------------------------------------------
# Valid alternatives pass; typical wrong answers, written as a learner would, get their hints
# ---------------------------------------------------------------------------------------------

def f1_by_counts(confusion):
    c = confusion.numpy().astype(float)
    tp, fp, fn = np.diag(c), c.sum(0) - np.diag(c), c.sum(1) - np.diag(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        p, r, f1 = (np.nan_to_num(v) for v in (tp / (tp + fp), tp / (tp + fn), 2 * tp / (2 * tp + fp + fn)))
    return p.mean(), r.mean(), f1.mean()


def f1_rows_as_predictions(confusion):
    c = confusion.double()
    p = torch.nan_to_num(c.diag() / c.sum(1))
    r = torch.nan_to_num(c.diag() / c.sum(0))
    f1 = torch.nan_to_num(2 * p * r / (p + r))
    return p.mean(), r.mean(), f1.mean()


def f1_unguarded(confusion):
    c = confusion.float()
    p, r = c.diag() / c.sum(0), c.diag() / c.sum(1)
    return p.mean(), r.mean(), (2 * p * r / (p + r)).mean()


def f1_source(confusion):
    c = confusion.double()
    p, r = torch.nan_to_num(c.diag() / c.sum(0)).mean(), (c.diag() / c.sum(1)).mean()
    accuracy = c.diag().sum() / c.sum()
    return p, r, 2 * accuracy * r / (accuracy + r)


def test_f1_accepts_valid_alternatives_and_names_mistakes():
    assert ex.check_f1_from_confusion(f1_by_counts, quiet=True).passed
    rejects(ex.check_f1_from_confusion, f1_rows_as_predictions, "swapped", "rows are the TRUE classes")
    rejects(ex.check_f1_from_confusion, f1_unguarded, "never predicted", "zero_division=0")
    rejects(ex.check_f1_from_confusion, f1_source, "ACCURACY and the recall")
    rejects(ex.check_f1_from_confusion, lambda c: f1_by_counts(c)[2], "expected three numbers")


def auc_by_ranks(labels, scores):
    ranks = rankdata(scores.numpy())                                   # ties get their average rank
    positives = labels.numpy() == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    return (ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auc_strict(labels, scores):
    pos, neg = scores[labels == 1], scores[labels == 0]
    return (pos[:, None] > neg[None, :]).float().mean()


def test_roc_auc_accepts_valid_alternatives_and_names_mistakes():
    assert ex.check_roc_auc(auc_by_ranks, quiet=True).passed
    assert ex.check_roc_auc(lambda y, s: skm.roc_auc_score(y.numpy(), s.numpy()), quiet=True).passed
    rejects(ex.check_roc_auc, lambda y, s: skm.roc_auc_score(y.numpy(), (s > 0.5).numpy()), "hard predictions")
    rejects(ex.check_roc_auc, auc_strict, "ties are not counted", "one half")
    rejects(ex.check_roc_auc, lambda y, s: auc_by_ranks(1 - y, s), "1 minus the right one")
    rejects(ex.check_roc_auc, lambda y, s: metrics.roc_auc_ovr(y, torch.stack([1 - s, s], 1).double()),
            "your code calls `course_utils.metrics.roc_auc_ovr`")


def ece_floor_bins(probs, labels, bins):
    confidence, prediction = probs.max(1)
    index = (confidence * bins).floor().long().clamp(max=bins - 1)
    right = (prediction == labels).float()
    total = torch.zeros(())
    for b in range(bins):
        inside = index == b
        if inside.sum() > 0:
            total = total + inside.float().mean() * (right[inside].mean() - confidence[inside].mean()).abs()
    return total


def ece_unweighted(probs, labels, bins):
    confidence, prediction = probs.max(1)
    gaps = []
    for b in range(bins):
        inside = (confidence > b / bins) & (confidence <= (b + 1) / bins)
        if inside.any():
            gaps.append(abs((prediction[inside] == labels[inside]).float().mean() - confidence[inside].mean()))
    return sum(gaps) / len(gaps)


def test_ece_accepts_valid_alternatives_and_names_mistakes():
    assert ex.check_ece(ece_floor_bins, quiet=True).passed
    rejects(ex.check_ece, ece_unweighted, "all weigh the same")
    rejects(ex.check_ece, lambda p, y, b: (p.argmax(1) == y).float().mean() - p.max(1).values.mean(),
            "opposite signs cancel")
    rejects(ex.check_ece, lambda p, y, b: calibration.expected_calibration_error(p, y, b),
            "your code calls `course_utils.calibration.expected_calibration_error`")


def temperature_by_scipy(logits, labels):
    """A valid alternative: scipy's bounded 1-D search over log T."""
    def nll(log_t):
        return float(F.cross_entropy(logits / math.exp(log_t), labels))

    return math.exp(minimize_scalar(nll, bounds=(-5, 5), method="bounded").x)


def test_fit_temperature_accepts_valid_alternatives_and_judges_by_the_nll():
    assert ex.check_fit_temperature(temperature_by_scipy, quiet=True).passed
    near = ex.check_fit_temperature(lambda z, y: 1.01 * ex.solution_fit_temperature(z, y), quiet=True)
    assert near.passed, near.message
    rejects(ex.check_fit_temperature, lambda z, y: 1 / temperature_by_scipy(z, y), "DIVIDES the logits")
    rejects(ex.check_fit_temperature, lambda z, y: 1.0, "does not depend on the logits", "negative log-likelihood")
    rejects(ex.check_fit_temperature, lambda z, y: -ex.solution_fit_temperature(z, y), "positive number")
    rejects(ex.check_fit_temperature, lambda z, y: 2 * ex.solution_fit_temperature(z, y), "NLL", "flattens")
    rejects(ex.check_fit_temperature, lambda z, y: calibration.fit_temperature(z, y),
            "your code calls `course_utils.calibration.fit_temperature`")


def fgsm_with_backward(model, images, labels, eps):
    model.eval()
    x = images.clone().requires_grad_(True)
    F.cross_entropy(model(x), labels, reduction="sum").backward()
    return torch.clamp(images + eps * x.grad.sign(), min=0.0, max=1.0)


def fgsm_train_mode(model, images, labels, eps):
    x = images.clone().requires_grad_(True)
    F.cross_entropy(model(x), labels).backward()
    return (images + eps * x.grad.sign()).clamp(0, 1)


def fgsm_no_grad(model, images, labels, eps):
    model.eval()
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    return (images + eps * images.grad.sign()).clamp(0, 1)


def test_fgsm_accepts_valid_alternatives_and_names_mistakes():
    assert ex.check_fgsm_step(fgsm_with_backward, quiet=True).passed
    rejects(ex.check_fgsm_step, fgsm_train_mode, "train mode", "eval mode")
    rejects(ex.check_fgsm_step, lambda m, x, y, e: fgsm_with_backward(m, x, y, -e), "AGAINST the gradient")
    rejects(ex.check_fgsm_step, lambda m, x, y, e: fgsm_with_backward(m, x, y, e) * 1.5, "outside [0, 1]")
    rejects(ex.check_fgsm_step, fgsm_no_grad, "requires_grad_(True)")


def test_top_k_accepts_valid_alternatives_and_names_mistakes():
    assert ex.check_top_k_accuracy(lambda y, s, k: (s.topk(k, dim=1).indices == y[:, None]).any(1).float().mean(),
                                   quiet=True).passed
    assert ex.check_top_k_accuracy(lambda y, s, k: skm.top_k_accuracy_score(y, s, k=k, labels=range(s.shape[1])),
                                   quiet=True).passed
    rejects(ex.check_top_k_accuracy, lambda y, s, k: (s.argmax(1) == y).float().mean(), "top-1")
    rejects(ex.check_top_k_accuracy, lambda y, s, k: (s.argsort(1)[:, :k] == y[:, None]).any(1).float().mean(),
            "LOWEST")
    rejects(ex.check_top_k_accuracy, lambda y, s, k: (s.topk(k).indices == y).any(1).float().mean(),
            "labels[:, None]")
    rejects(ex.check_top_k_accuracy, lambda y, s, k: metrics.top_k_accuracy(y, s, k),
            "your code calls `course_utils.metrics.top_k_accuracy`")
