"""Checkers for notebook 08's evaluation exercises, with the model answers they are tested against.

- :func:`check_f1_from_confusion`: ``answer(confusion (K, K))`` -> the macro ``(precision, recall, f1)``; rows of
  the confusion matrix are the true classes, columns the predicted ones;
- :func:`check_roc_auc`: ``answer(labels (N,) of 0/1, scores (N,))`` -> the ROC AUC, from the scores' ranking;
- :func:`check_ece`: ``answer(probs (N, K), labels (N,), bins)`` -> the expected calibration error;
- :func:`check_fit_temperature`: ``answer(logits (N, K), labels (N,))`` -> the temperature T > 0 minimising the NLL
  of ``logits / T`` (judged by its NLL, not by T itself);
- :func:`check_fgsm_step`: ``answer(model, images (B, C, H, W), labels (B,), eps)`` -> one FGSM step;
- :func:`check_top_k_accuracy`: ``answer(labels (N,), scores (N, K), k)`` -> the top-k accuracy.

The course's own functions (:mod:`course_utils.metrics`, :mod:`course_utils.calibration`) are forbidden in their
exercise; each ``solution_*`` here is a model answer written the way a learner would.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from .. import calibration, metrics
from . import Case, Hint, Mistake, as_number, call, check_cases, describe, exercise, hidden_cases, name_mistake

__all__ = ["solution_f1_from_confusion", "solution_roc_auc", "solution_ece", "solution_fit_temperature",
           "solution_fgsm_step", "solution_top_k_accuracy", "check_f1_from_confusion", "check_roc_auc", "check_ece",
           "check_fit_temperature", "check_fgsm_step", "check_top_k_accuracy"]


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _nan_hint(got: Any, case: Case) -> None:
    """A hint for a result holding NaN: a 0/0 somewhere."""
    values = got if isinstance(got, (tuple, list)) else [got]
    for value in values:
        try:
            number = as_number(value, case.what)
        except Hint:
            continue
        if math.isnan(number):
            raise Hint(f"{case.what}: your result holds NaN: a division 0 / 0 somewhere (a class never predicted, "
                       "never present, or an empty bin); decide what such a term is worth instead of dividing")


# ---------------------------------------------------------------------------------------------
# Exercise 1: macro precision, recall and F1 from a confusion matrix
# ---------------------------------------------------------------------------------------------


def solution_f1_from_confusion(confusion: torch.Tensor) -> tuple[float, float, float]:
    """Macro precision, recall and F1 of a confusion matrix ``(K, K)`` (rows true, columns predicted): the
    per-class values averaged over the K classes, a 0 / 0 counted as 0 (sklearn's ``zero_division=0``)."""
    counts = confusion.double()
    right = counts.diag()
    predicted, actual = counts.sum(dim=0), counts.sum(dim=1)
    precision = torch.where(predicted > 0, right / predicted, torch.zeros_like(right))
    recall = torch.where(actual > 0, right / actual, torch.zeros_like(right))
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both, torch.zeros_like(right))
    return float(precision.mean()), float(recall.mean()), float(f1.mean())


def _unguarded(confusion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class precision, recall and F1 without a guard: NaN where a division is 0 / 0."""
    counts = confusion.double()
    right = counts.diag()
    precision, recall = right / counts.sum(dim=0), right / counts.sum(dim=1)
    return precision, recall, 2 * precision * recall / (precision + recall)


def _accuracy_of(confusion: torch.Tensor) -> float:
    counts = confusion.double()
    return float(counts.diag().sum() / counts.sum())


def _macro_p_r(confusion: torch.Tensor) -> tuple[float, float]:
    precision, recall, _ = solution_f1_from_confusion(confusion)
    return precision, recall


def _f1_of(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def _swapped(confusion: torch.Tensor) -> tuple[float, float, float]:
    precision, recall, f1 = solution_f1_from_confusion(confusion)
    return recall, precision, f1


def _source_f1(confusion: torch.Tensor) -> tuple[float, float, float]:
    precision, recall = _macro_p_r(confusion)
    return precision, recall, _f1_of(_accuracy_of(confusion), recall)


def _micro(confusion: torch.Tensor) -> tuple[float, float, float]:
    accuracy = _accuracy_of(confusion)
    return accuracy, accuracy, accuracy


F1_MISTAKES: tuple[Mistake, ...] = (
    Mistake("precision and recall axes swapped", _swapped,
            "your precision and recall are swapped (your F1 is right only because F1 is symmetric in them): rows are "
            "the TRUE classes and columns the PREDICTED ones, so the precision of class c divides its correct count by "
            "everything predicted as c"),
    Mistake("micro instead of macro", _micro,
            "your three numbers are all the accuracy: pooling the counts of every class first is the MICRO average. "
            "The macro average computes each class's value first, then takes their plain mean, so a rare class counts "
            "as much as a common one"),
    Mistake("F1 from accuracy and recall", _source_f1,
            "your F1 is the harmonic mean of the ACCURACY and the recall, the source's wrong definition: F1 is the "
            "harmonic mean of precision and recall, class by class"),
    Mistake("F1 of the macro averages", lambda c: (*_macro_p_r(c), _f1_of(*_macro_p_r(c))),
            "your F1 is the harmonic mean of the macro precision and the macro recall; macro F1 is the mean of the "
            "per-class F1 scores (compute each class's F1 first, then average)"),
    Mistake("no guard for 0 / 0", lambda c: tuple(float(v.mean()) for v in _unguarded(c)),
            "a class that is never predicted has precision 0 / 0, which is NaN in torch, and one NaN makes the whole "
            "mean NaN; count such a precision (and an F1 whose precision and recall are both 0) as 0, as "
            "sklearn's zero_division=0 does"),
)


def _f1_cases() -> tuple[Case, ...]:
    """Fixed cases: a class never predicted, an imbalanced 4-class matrix, the 99:1 majority-class guesser."""
    return (
        Case((torch.tensor([[5, 2, 0], [1, 7, 0], [3, 2, 0]]),), "a 3x3 confusion matrix where class 2 is never "
                                                                   "predicted"),
        Case((torch.tensor([[50, 3, 2, 0], [4, 20, 1, 5], [0, 2, 8, 0], [1, 6, 0, 3]]),),
             "an imbalanced 4x4 confusion matrix"),
        Case((torch.tensor([[990, 0], [10, 0]]),), "a 2x2 matrix of a model that always predicts class 0 on 99:1 "
                                                     "data"),
    )


F1_CASES = _f1_cases()


def _hidden_confusion(generator: torch.Generator) -> tuple[tuple[torch.Tensor], str]:
    """A random ``(K, K)`` matrix, K in 3..6: small off-diagonal counts, a larger diagonal, sometimes a class never
    predicted."""
    k = int(torch.randint(3, 7, (), generator=generator))
    counts = torch.randint(0, 6, (k, k), generator=generator) + torch.diag(torch.randint(3, 25, (k,),
                                                                                         generator=generator))
    if float(torch.rand((), generator=generator)) < 0.5:
        counts[:, int(torch.randint(k, (), generator=generator))] = 0
    return (counts,), f"a {k}x{k} confusion matrix"


def _explain_f1(got: Any, want: tuple[float, float, float], case: Case) -> None:
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise Hint(f"{case.what}: expected three numbers (precision, recall, f1), got {describe(got)}")
    _nan_hint(got, case)


@exercise("f1_from_confusion", solution=solution_f1_from_confusion, hidden=3, mistakes=F1_MISTAKES,
          forbidden=(metrics.precision_recall_f1,))
def check_f1_from_confusion(answer: Callable[[torch.Tensor], tuple[float, float, float]]) -> None:
    """Check ``answer(confusion (K, K))`` -> ``(precision, recall, f1)``, each the macro average over the classes."""
    cases = [*F1_CASES, *hidden_cases(_hidden_confusion, 3)]
    check_cases(answer, cases, solution_f1_from_confusion, mistakes=F1_MISTAKES, explain=_explain_f1)


# ---------------------------------------------------------------------------------------------
# Exercise 2: ROC AUC from scores
# ---------------------------------------------------------------------------------------------


def _pairs(labels: torch.Tensor, scores: torch.Tensor) -> tuple[float, float, float]:
    """Over every (positive, negative) pair: how many the positive outscores, how many tie, and the pair count."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    above = float((positive[:, None] > negative[None, :]).sum())
    ties = float((positive[:, None] == negative[None, :]).sum())
    return above, ties, float(len(positive) * len(negative))


def solution_roc_auc(labels: torch.Tensor, scores: torch.Tensor) -> float:
    """The ROC AUC: the chance that a random positive (label 1) scores above a random negative (label 0), a tie
    counting one half (the Mann-Whitney statistic). ``labels`` ``(N,)`` of 0/1, ``scores`` ``(N,)``."""
    above, ties, pairs = _pairs(labels, scores)
    return (above + 0.5 * ties) / pairs


def _auc_from_pairs(tie_weight: float) -> Callable[[torch.Tensor, torch.Tensor], float]:
    def auc(labels: torch.Tensor, scores: torch.Tensor) -> float:
        above, ties, pairs = _pairs(labels, scores)
        return (above + tie_weight * ties) / pairs
    return auc


_TIES = ("a tie between a positive and a negative score is a coin flip for the ranking: it counts one half (the "
         "ROC curve crosses a tie diagonally)")

_HARD = ("your AUC is that of the hard predictions (scores thresholded at 0.5): AUC measures how well the SCORES "
         "rank positives above negatives over every threshold, so use the scores themselves")

AUC_MISTAKES: tuple[Mistake, ...] = (
    Mistake("AUC from hard labels (>= 0.5)", lambda y, s: solution_roc_auc(y, (s >= 0.5).double()), _HARD),
    Mistake("AUC from hard labels (> 0.5)", lambda y, s: solution_roc_auc(y, (s > 0.5).double()), _HARD),
    Mistake("ties count zero", _auc_from_pairs(0.0), f"ties are not counted: {_TIES}"),
    Mistake("ties count one", _auc_from_pairs(1.0), f"ties count fully: {_TIES}"),
    Mistake("classes swapped", lambda y, s: 1 - solution_roc_auc(y, s),
            "your AUC is 1 minus the right one: you measure how often a NEGATIVE outranks a positive. Label 1 is the "
            "positive class, and a good scorer gives positives the higher scores"),
    Mistake("accuracy at 0.5", lambda y, s: float(((s >= 0.5).long() == y).double().mean()),
            "this is the accuracy at the threshold 0.5, one point of the ROC curve; AUC summarises every threshold: "
            "the share of (positive, negative) pairs the scores put in the right order"),
)


def _auc_cases() -> tuple[Case, ...]:
    """Fixed cases with ties between positives and negatives, and an imbalanced one."""
    g = _seeded(11)
    labels = (torch.rand(30, generator=g) < 0.2).long()
    labels[:2] = torch.tensor([0, 1])
    scores = ((torch.rand(30, generator=g) + 0.35 * labels) / 1.35 * 20).round() / 20
    return (
        Case((torch.tensor([0, 0, 1, 1, 0, 1, 0, 1]), torch.tensor([0.1, 0.4, 0.35, 0.8, 0.6, 0.6, 0.2, 0.9])),
             "8 examples, the scores 0.6 of a positive and a negative tied"),
        Case((torch.tensor([1, 0, 1, 0, 0, 1]), torch.tensor([0.7, 0.3, 0.2, 0.7, 0.45, 0.55])),
             "6 examples, scores 0.7 tied"),
        Case((labels, scores), "30 examples, about 1 positive in 5, scores on a 0.05 grid"),
    )


AUC_CASES = _auc_cases()


def _hidden_auc(generator: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor], str]:
    """N in 20..60, both classes present, probabilities on a 0.1 grid (so ties happen) that favour positives."""
    n = int(torch.randint(20, 61, (), generator=generator))
    labels = (torch.rand(n, generator=generator) < 0.4).long()
    labels[:2] = torch.tensor([0, 1])
    scores = ((torch.rand(n, generator=generator) + 0.5 * labels) / 1.5 * 10).round() / 10
    return (labels, scores), f"labels ({n},) of 0 and 1, scores ({n},) in [0, 1]"


@exercise("roc_auc", solution=solution_roc_auc, hidden=3, mistakes=AUC_MISTAKES,
          forbidden=(metrics.roc_auc_ovr, metrics.roc_curve_ovr))
def check_roc_auc(answer: Callable[[torch.Tensor, torch.Tensor], float]) -> None:
    """Check ``answer(labels (N,) of 0/1, scores (N,))`` -> the area under the ROC curve (a number in [0, 1])."""
    cases = [*AUC_CASES, *hidden_cases(_hidden_auc, 3)]
    check_cases(answer, cases, solution_roc_auc, mistakes=AUC_MISTAKES, explain=lambda g, w, c: _nan_hint(g, c))


# ---------------------------------------------------------------------------------------------
# Exercise 3: expected calibration error
# ---------------------------------------------------------------------------------------------


def solution_ece(probs: torch.Tensor, labels: torch.Tensor, bins: int) -> float:
    """ECE over ``bins`` equal-width bins of the confidence (the largest probability of each row of ``probs``
    ``(N, K)``): bin b holds the confidences in ``(b / bins, (b + 1) / bins]``; each non-empty bin adds
    ``(its count / N) * |its accuracy - its mean confidence|``."""
    confidence, prediction = probs.max(dim=1)
    right = (prediction == labels).double()
    total = 0.0
    for b in range(bins):
        inside = (confidence > b / bins) & (confidence <= (b + 1) / bins)
        if inside.any():
            gap = right[inside].mean() - confidence[inside].double().mean()
            total += float(inside.double().mean() * gap.abs())
    return total


def _bin_gaps(probs: torch.Tensor, labels: torch.Tensor, bins: int, by: str = "max"
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per non-empty bin: share of the examples, accuracy and mean confidence; ``by="true"`` bins on the
    probability of the true class instead of the largest one."""
    prediction = probs.argmax(dim=1)
    confidence = probs.max(dim=1).values if by == "max" else probs.gather(1, labels[:, None]).squeeze(1)
    right = (prediction == labels).double()
    shares, accuracies, confidences = [], [], []
    for b in range(bins):
        inside = (confidence > b / bins) & (confidence <= (b + 1) / bins)
        if inside.any():
            shares.append(inside.double().mean())
            accuracies.append(right[inside].mean())
            confidences.append(confidence[inside].double().mean())
    return torch.stack(shares), torch.stack(accuracies), torch.stack(confidences)


def _overall_accuracy(p: torch.Tensor, y: torch.Tensor, b: int) -> float:
    shares, _, confidences = _bin_gaps(p, y, b)
    accuracy = (p.argmax(dim=1) == y).double().mean()
    return float((shares * (accuracy - confidences).abs()).sum())


ECE_MISTAKES: tuple[Mistake, ...] = (
    Mistake("unweighted mean over bins", lambda p, y, b: float((lambda s, a, c: (a - c).abs().mean())(
        *_bin_gaps(p, y, b))),
            "your bins all weigh the same: a bin holding 2 examples counts as much as one holding 200. Weight each "
            "bin's gap by its share of the examples (count / N)"),
    Mistake("accuracy of all, not of the bin", _overall_accuracy,
            "each bin's confidence is compared with the accuracy over ALL examples; compare it with the accuracy of "
            "the examples IN that bin"),
    Mistake("no absolute value (accuracy - confidence)", lambda p, y, b: float((lambda s, a, c: (s * (a - c)).sum())(
        *_bin_gaps(p, y, b))),
            "gaps of opposite signs cancel in your sum (an over-confident bin hides an under-confident one): add "
            "each bin's |accuracy - confidence|"),
    Mistake("no absolute value (confidence - accuracy)", lambda p, y, b: float((lambda s, a, c: (s * (c - a)).sum())(
        *_bin_gaps(p, y, b))),
            "gaps of opposite signs cancel in your sum (an over-confident bin hides an under-confident one): add "
            "each bin's |accuracy - confidence|"),
    Mistake("binned on the true class's probability", lambda p, y, b: float((lambda s, a, c: (s * (a - c).abs()).sum())(
        *_bin_gaps(p, y, b, by="true"))),
            "you binned on the probability of the TRUE class; the confidence of a prediction is the largest "
            "probability of its row (the probability of the predicted class), and labels only decide right or wrong"),
)


def _ece_case(generator: torch.Generator, n: int, k: int, sharpen: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``(n, k)`` = softmax of random logits, labels drawn from softmax(logits / sharpen): over-confident
    where ``sharpen > 1``; labels equal the argmax for half of the rows (so every bin has some right answers)."""
    logits = torch.randn(n, k, generator=generator) * 2
    drawn = torch.multinomial((logits / sharpen).softmax(1), 1, generator=generator).squeeze(1)
    labels = torch.where(torch.rand(n, generator=generator) < 0.5, logits.argmax(1), drawn)
    return logits.softmax(1), labels


def _ece_cases() -> tuple[Case, ...]:
    g = _seeded(5)
    return (Case((*_ece_case(g, 12, 3, 2.0), 5), "probs (12, 3), labels (12,), 5 bins"),
            Case((*_ece_case(g, 60, 4, 1.5), 10), "probs (60, 4), labels (60,), 10 bins"),
            Case((*_ece_case(g, 40, 2, 0.7), 4), "probs (40, 2), labels (40,), 4 bins"))


ECE_CASES = _ece_cases()


def _hidden_ece(generator: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor, int], str]:
    n, k = int(torch.randint(30, 81, (), generator=generator)), int(torch.randint(2, 7, (), generator=generator))
    bins = [5, 10, 15][int(torch.randint(3, (), generator=generator))]
    sharpen = 0.5 + 2 * float(torch.rand((), generator=generator))
    return (*_ece_case(generator, n, k, sharpen), bins), f"probs ({n}, {k}), labels ({n},), {bins} bins"


@exercise("ece", solution=solution_ece, hidden=3, mistakes=ECE_MISTAKES,
          forbidden=(calibration.expected_calibration_error, calibration.reliability))
def check_ece(answer: Callable[[torch.Tensor, torch.Tensor, int], float]) -> None:
    """Check ``answer(probs (N, K), labels (N,), bins)`` -> the expected calibration error (a number in [0, 1])."""
    cases = [*ECE_CASES, *hidden_cases(_hidden_ece, 3)]
    check_cases(answer, cases, calibration.expected_calibration_error, mistakes=ECE_MISTAKES,
                explain=lambda g, w, c: _nan_hint(g, c))


# ---------------------------------------------------------------------------------------------
# Exercise 4: fitting a temperature
# ---------------------------------------------------------------------------------------------


def _nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(F.cross_entropy(logits.double() / temperature, labels))


def solution_fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 minimising the NLL (mean cross-entropy) of ``logits / T`` ``(N, K)`` against ``labels`` ``(N,)``:
    every T of a grid, even in log T from 0.01 to 100, tried at once, then a finer grid around the best."""
    low, high = math.log(0.01), math.log(100.0)
    for _ in range(2):
        temperatures = torch.linspace(low, high, 201, dtype=torch.float64).exp()           # (G,)
        scaled = logits.double()[None] / temperatures[:, None, None]                      # (G, N, K)
        true_class = scaled.gather(2, labels[None, :, None].expand(len(temperatures), -1, 1)).squeeze(2)
        nll = (scaled.logsumexp(dim=2) - true_class).mean(dim=1)                          # (G,)
        best = int(nll.argmin())
        step = (high - low) / 200
        low, high = math.log(float(temperatures[best])) - step, math.log(float(temperatures[best])) + step
    return float(temperatures[best])


ACCURACY_GRID = torch.linspace(0.5, 5.0, 10)


def _by_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """A temperature chosen for its accuracy: every T ties, so the first one of the grid wins."""
    return max((float(t) for t in ACCURACY_GRID),
               key=lambda t: float(((logits / t).argmax(1) == labels).double().mean()))


_ACCURACY_HINT = ("your temperature does not depend on the logits: dividing by T > 0 never changes the argmax, so the "
                  "accuracy is the same for every T and cannot choose it. Choose the T that minimises the negative "
                  "log-likelihood (the cross-entropy of logits / T against the labels)")

TEMPERATURE_MISTAKES: tuple[Mistake, ...] = (
    Mistake("multiplies instead of dividing", lambda z, y: 1 / solution_fit_temperature(z, y),
            "your T is the inverse of the fitted one: temperature scaling DIVIDES the logits by T (logits / T), so an "
            "over-confident model gets T > 1"),
    Mistake("returns log T", lambda z, y: math.log(solution_fit_temperature(z, y)),
            "you returned log T: optimising log T keeps T positive, but the answer is T itself, its exp"),
    Mistake("fitted on accuracy", _by_accuracy, _ACCURACY_HINT),
)

NLL_TOLERANCE = 1e-3  # how much more NLL than the best T's an answer may reach: the NLL is flat near its minimum


def _temperature_case(generator: torch.Generator, n: int, k: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(n, k)`` whose softmax is calibrated for labels drawn from it, then multiplied by ``scale``: the best
    temperature is close to ``scale``."""
    logits = torch.randn(n, k, generator=generator) * 1.5
    labels = torch.multinomial(logits.softmax(1), 1, generator=generator).squeeze(1)
    return logits * scale, labels


def _temperature_cases() -> tuple[Case, ...]:
    g = _seeded(3)
    return (Case(_temperature_case(g, 400, 5, 3.0), "over-confident logits (400, 5), labels (400,)"),
            Case(_temperature_case(g, 300, 4, 0.4), "under-confident logits (300, 4), labels (300,)"),
            Case(_temperature_case(g, 300, 6, 1.8), "over-confident logits (300, 6), labels (300,)"))


TEMPERATURE_CASES = _temperature_cases()


def _hidden_temperature(generator: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor], str]:
    n, k = int(torch.randint(200, 401, (), generator=generator)), int(torch.randint(3, 9, (), generator=generator))
    scale = math.exp(float(torch.empty(()).uniform_(math.log(0.3), math.log(4.0), generator=generator)))
    return _temperature_case(generator, n, k, scale), f"logits ({n}, {k}), labels ({n},)"


def _temperature_ok(temperature: float, case: Case, best: float) -> bool:
    return temperature > 0 and math.isfinite(temperature) and \
        _nll(*case.args, temperature) <= _nll(*case.args, best) + NLL_TOLERANCE


def _same_temperature(got: float, wrong: Any) -> bool:
    """Whether the learner's T is a mistake's T, within 2% (a search stops anywhere near the best point)."""
    wrong = float(wrong)
    return math.isfinite(got) and abs(got - wrong) <= 0.02 * abs(wrong) + 1e-3


@exercise("fit_temperature", solution=solution_fit_temperature, hidden=2, mistakes=TEMPERATURE_MISTAKES,
          forbidden=(calibration.fit_temperature,))
def check_fit_temperature(answer: Callable[[torch.Tensor, torch.Tensor], float]) -> None:
    """Check ``answer(logits (N, K), labels (N,))`` -> T: its NLL must be within ``NLL_TOLERANCE`` of the best T's."""
    cases = [*TEMPERATURE_CASES, *hidden_cases(_hidden_temperature, 2)]
    got = [as_number(call(answer, *case.args), f"{case.what}: your temperature") for case in cases]
    best = [calibration.fit_temperature(*case.args) for case in cases]
    if all(_temperature_ok(t, case, b) for t, case, b in zip(got, cases, best)):
        return
    name_mistake(TEMPERATURE_MISTAKES, cases, got, equal=_same_temperature)
    if len(set(got)) == 1:
        raise Hint(_ACCURACY_HINT)
    t, case, b = next((t, c, b) for t, c, b in zip(got, cases, best) if not _temperature_ok(t, c, b))
    if not t > 0 or not math.isfinite(t):
        raise Hint(f"{case.what}: your T is {t:.4g}; a temperature is a positive number (logits / T with T <= 0 "
                   "flips or breaks the ranking)")
    side = "sharpens the probabilities too much (T too small)" if t < b else "flattens them too much (T too large)"
    raise Hint(f"{case.what}: your T = {t:.4g} gives an NLL {_nll(*case.args, t) - _nll(*case.args, b):.4g} above "
               f"the best temperature's: it {side}. Minimise the mean cross-entropy of logits / T over T")


# ---------------------------------------------------------------------------------------------
# Exercise 5: one FGSM step
# ---------------------------------------------------------------------------------------------


class AttackedModel(nn.Sequential):
    """A checker's small classifier ``(B, C, H, W) -> (B, K)`` with batch norm, handed over in train mode (as
    ``cu.fit`` hands back a new model). Two are equal when their parameters are: the learner's copy may come
    back with other batch-norm statistics or another mode, which the checker judges by the result instead."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AttackedModel):
            return NotImplemented
        mine, theirs = list(self.named_parameters()), list(other.named_parameters())
        return len(mine) == len(theirs) and all(a == b and p.shape == q.shape and torch.equal(p, q)
                                                for (a, p), (b, q) in zip(mine, theirs))

    __hash__ = nn.Module.__hash__


def _attacked_model(generator: torch.Generator, pixels: int, classes: int) -> AttackedModel:
    """Flatten -> Linear -> BatchNorm1d -> ReLU -> Linear, random weights and running statistics, in train mode;
    built without moving torch's global random numbers."""
    with torch.random.fork_rng(devices=[]):
        model = AttackedModel(nn.Flatten(), nn.Linear(pixels, 12), nn.BatchNorm1d(12), nn.ReLU(),
                              nn.Linear(12, classes))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * (0.5 if p.ndim > 1 else 0.2))
        model[2].running_mean.copy_(torch.randn(12, generator=generator))
        model[2].running_var.copy_(0.5 + 1.5 * torch.rand(12, generator=generator))
    return model.train()


def _attack_case(generator: torch.Generator, batch: int, side: int, classes: int, eps: float
                 ) -> tuple[AttackedModel, torch.Tensor, torch.Tensor, float]:
    """A model, images ``(batch, 1, side, side)`` in [0, 1] with many pixels at exactly 0 or 1, labels, eps."""
    images = torch.rand(batch, 1, side, side, generator=generator)
    ink = torch.rand(images.shape, generator=generator)
    images = torch.where(ink < 0.4, torch.zeros_like(images), torch.where(ink > 0.8, torch.ones_like(images), images))
    labels = torch.randint(classes, (batch,), generator=generator)
    return _attacked_model(generator, side * side, classes), images, labels, eps


def solution_fgsm_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """``clamp(images + eps * sign(d loss / d images), 0, 1)``: one step that raises the cross-entropy, every pixel
    moved by ``eps``, the model in eval mode during the attack (its mode restored). Shapes ``(B, C, H, W)``."""
    was_training = model.training
    model.eval()
    x = images.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), labels)
    (grad,) = torch.autograd.grad(loss, x)
    model.train(was_training)
    return (images + eps * grad.sign()).clamp(0, 1)


def _fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, *, sign: float = 1.0,
          use_sign: bool = True, clamp: bool = True, of_logits: bool = False, eval_mode: bool = True) -> torch.Tensor:
    """A variant of FGSM, run on a copy of ``model`` (the case's model never changes)."""
    model = copy.deepcopy(model).train(not eval_mode)
    x = images.clone().requires_grad_(True)
    logits = model(x)
    target = logits.sum() if of_logits else F.cross_entropy(logits, labels)
    (grad,) = torch.autograd.grad(target, x)
    step = images + sign * eps * (grad.sign() if use_sign else grad)
    return step.clamp(0, 1) if clamp else step


FGSM_MISTAKES: tuple[Mistake, ...] = (
    Mistake("minus sign", lambda m, x, y, e: _fgsm(m, x, y, e, sign=-1.0),
            "you stepped AGAINST the gradient of the loss, which lowers the loss and makes the model surer of the "
            "right class; an attack moves each pixel in the direction that raises the loss"),
    Mistake("gradient, not its sign", lambda m, x, y, e: _fgsm(m, x, y, e, use_sign=False),
            "you stepped along the gradient itself, so each pixel moves by eps times its gradient: FGSM keeps only "
            "the direction of each entry, so that every pixel moves by exactly eps"),
    Mistake("no clamp", lambda m, x, y, e: _fgsm(m, x, y, e, clamp=False),
            "some of your pixels lie outside [0, 1]: the attacked input must still be a valid image"),
    Mistake("gradient of the logits", lambda m, x, y, e: _fgsm(m, x, y, e, of_logits=True),
            "you followed the gradient of the logits (their sum), which ignores the labels; differentiate the LOSS, "
            "the cross-entropy of the logits against the labels"),
    Mistake("model left in train mode", lambda m, x, y, e: _fgsm(m, x, y, e, eval_mode=False),
            "the model ran in train mode during your attack: its batch norm then normalises with the batch's own "
            "statistics (and dropout drops units), so you attacked another function than the one that predicts. "
            "Switch it to eval mode for the attack, and give it back in the mode it came in"),
)

_NEEDS_GRAD = ("the gradient with respect to the images needs images that require it (else their .grad stays None): "
               "work on `x = images.clone().requires_grad_(True)` and compute the loss from `model(x)`")
FGSM_ERRORS = {
    "does not require grad": _NEEDS_GRAD,
    "'NoneType' object has no attribute": _NEEDS_GRAD,
    "only for scalar outputs": "backward() needs one number: the loss (the mean cross-entropy over the batch), not "
                               "the logits",
}


def _fgsm_cases() -> tuple[Case, ...]:
    g = _seeded(8)
    return (Case(_attack_case(g, 6, 5, 3, 0.1), "a model in train mode, images (6, 1, 5, 5), labels (6,), eps 0.1"),
            Case(_attack_case(g, 8, 6, 4, 0.25), "a model in train mode, images (8, 1, 6, 6), labels (8,), eps 0.25"))


FGSM_CASES = _fgsm_cases()


def _hidden_fgsm(generator: torch.Generator) -> tuple[tuple[Any, ...], str]:
    batch, side = int(torch.randint(4, 11, (), generator=generator)), int(torch.randint(4, 8, (), generator=generator))
    classes = int(torch.randint(3, 6, (), generator=generator))
    eps = round(0.05 + 0.25 * float(torch.rand((), generator=generator)), 3)
    return _attack_case(generator, batch, side, classes, eps), \
        f"a model in train mode, images ({batch}, 1, {side}, {side}), eps {eps}"


MAX_SIGN_FLIPS = 0.01  # share of pixels where a valid answer may step the other way (a gradient entry near 0)


def _same_image(got: Any, want: torch.Tensor) -> bool:
    """Same shape, and equal on all but ``MAX_SIGN_FLIPS`` of the pixels (where the gradient is ~0 its sign is
    down to rounding)."""
    if not isinstance(got, torch.Tensor) or got.shape != want.shape or not got.is_floating_point():
        return False
    differ = (got.detach().double() - want.detach().double()).abs() > 1e-5
    return float(differ.double().mean()) <= MAX_SIGN_FLIPS


def _explain_fgsm(got: Any, want: torch.Tensor, case: Case) -> None:
    _, images, _, eps = case.args
    if isinstance(got, torch.Tensor) and got.shape == want.shape and got.is_floating_point():
        if bool((got.detach() < 0).any() | (got.detach() > 1).any()):
            raise Hint(f"{case.what}: some of your pixels lie outside [0, 1]: the attacked input must still be a "
                       "valid image")
        moved = (got.detach() - images).abs()
        if bool((moved > eps + 1e-5).any()):
            raise Hint(f"{case.what}: some pixels moved by more than eps: one FGSM step moves each pixel by at most "
                       "eps")
        share = float(((got.detach().double() - want.double()).abs() > 1e-5).double().mean())
        raise Hint(f"{case.what}: {share:.0%} of your pixels differ from the reference step")


@exercise("fgsm_step", solution=solution_fgsm_step, hidden=2, mistakes=FGSM_MISTAKES)
def check_fgsm_step(answer: Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """Check ``answer(model, images (B, C, H, W), labels (B,), eps)`` -> the images after one FGSM step."""
    cases = [*FGSM_CASES, *hidden_cases(_hidden_fgsm, 2)]
    check_cases(answer, cases, solution_fgsm_step, mistakes=FGSM_MISTAKES, equal=_same_image, explain=_explain_fgsm,
                known_errors=FGSM_ERRORS)


# ---------------------------------------------------------------------------------------------
# Exercise 6: top-k accuracy
# ---------------------------------------------------------------------------------------------


def solution_top_k_accuracy(labels: torch.Tensor, scores: torch.Tensor, k: int) -> float:
    """The share of rows of ``scores`` ``(N, K)`` whose true class (``labels`` ``(N,)``) has fewer than ``k`` classes
    scoring above it: it is among the k highest."""
    true_score = scores.gather(1, labels[:, None])            # (N, 1)
    above = (scores > true_score).sum(dim=1)                  # (N,)
    return float((above < k).double().mean())


def _over_examples(labels: torch.Tensor, scores: torch.Tensor, k: int) -> float:
    """Whether example i is among the k highest-scoring examples of its class's column."""
    top = scores.topk(k, dim=0).indices                       # (k, K)
    return float((top[:, labels] == torch.arange(len(labels))).any(0).double().mean())


TOP_K_MISTAKES: tuple[Mistake, ...] = (
    Mistake("argmax only", lambda y, s, k: solution_top_k_accuracy(y, s, 1),
            "you count only the highest score (top-1 accuracy) whatever k is: a row counts as right when its label is "
            "ANY of its k highest-scoring classes"),
    Mistake("k - 1", lambda y, s, k: solution_top_k_accuracy(y, s, k - 1),
            "off by one: you count the k - 1 highest classes; the top k include the first"),
    Mistake("k + 1", lambda y, s, k: solution_top_k_accuracy(y, s, k + 1),
            "off by one: you count k + 1 classes; the top k are the k highest, the first one included"),
    Mistake("lowest k", lambda y, s, k: float((s.argsort(dim=1)[:, :k] == y[:, None]).any(1).double().mean()),
            "you took the k LOWEST scores: argsort sorts in ascending order; take the k highest (`topk`, or argsort "
            "with descending=True)"),
    Mistake("top k over the examples", _over_examples,
            "you took the top k along dim 0, the k highest-scoring EXAMPLES of each class; each example's top k are "
            "its k highest-scoring CLASSES, along dim 1"),
)

TOP_K_ERRORS = {
    "must match the size of tensor b": "your top-k classes (N, k) and the labels (N,) do not line up: compare each "
                                       "row's k classes with its label as `labels[:, None]` (shape (N, 1))",
}


def _top_k_scores(generator: torch.Generator, n: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``(n, classes)`` without ties and labels that are often the 2nd or 3rd highest class."""
    scores = torch.randn(n, classes, generator=generator)
    rank = torch.randint(0, min(classes, 4), (n,), generator=generator)
    labels = scores.argsort(dim=1, descending=True).gather(1, rank[:, None]).squeeze(1)
    return labels, scores


def _top_k_cases() -> tuple[Case, ...]:
    g = _seeded(4)
    return (Case((*_top_k_scores(g, 10, 5), 2), "labels (10,), scores (10, 5), k 2"),
            Case((*_top_k_scores(g, 12, 6), 3), "labels (12,), scores (12, 6), k 3"),
            Case((*_top_k_scores(g, 7, 4), 1), "labels (7,), scores (7, 4), k 1"),
            Case((*_top_k_scores(g, 9, 10), 4), "labels (9,), scores (9, 10), k 4"))


TOP_K_CASES = _top_k_cases()


def _hidden_top_k(generator: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor, int], str]:
    n, classes = int(torch.randint(15, 41, (), generator=generator)), int(torch.randint(5, 11, (), generator=generator))
    k = int(torch.randint(2, 5, (), generator=generator))
    return (*_top_k_scores(generator, n, classes), k), f"labels ({n},), scores ({n}, {classes}), k {k}"


@exercise("top_k_accuracy", solution=solution_top_k_accuracy, hidden=3, mistakes=TOP_K_MISTAKES,
          forbidden=(metrics.top_k_accuracy,))
def check_top_k_accuracy(answer: Callable[[torch.Tensor, torch.Tensor, int], float]) -> None:
    """Check ``answer(labels (N,), scores (N, K), k)`` -> the share of rows whose label is among their k highest
    scores (a number in [0, 1])."""
    cases = [*TOP_K_CASES, *hidden_cases(_hidden_top_k, 3)]
    check_cases(answer, cases, metrics.top_k_accuracy, mistakes=TOP_K_MISTAKES, known_errors=TOP_K_ERRORS)

