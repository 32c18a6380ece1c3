"""Exercises of notebook 01 (MNIST MLP), in its order: an MLP builder, softmax, cross-entropy, a Linear layer's
backward pass, accuracy.

Each ``check_*`` function runs the learner's function on fixed cases and on hidden random ones,
compares it with the reference implementation below, and when the answer is wrong names the
typical mistake that gives the learner's results on every case (see :mod:`course_utils.exercises`).
"""
from __future__ import annotations

import copy
import math
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..models import MLP
from . import (
    Case,
    Hint,
    Mistake,
    as_number,
    call,
    check_cases,
    describe,
    exercise,
    expect_close,
    expect_gradients,
    expect_tensor,
    hidden_cases,
    same,
)
from .softmax import HIDDEN, SOFTMAX_FORBIDDEN, SOFTMAX_MISTAKES, check_softmax_cases, stable_softmax

__all__ = ["stable_softmax", "cross_entropy", "linear_backward", "accuracy", "make_mlp", "check_make_mlp",
           "check_stable_softmax", "check_cross_entropy", "check_linear_backward", "check_accuracy"]

# ---------------------------------------------------------------------------------------------
# Reference implementations (``stable_softmax`` is in softmax.py, shared with notebook 05)
# ---------------------------------------------------------------------------------------------


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the true classes: logits ``(N, C)``, labels ``(N,)`` -> scalar."""
    log_probs = logits - logits.logsumexp(dim=-1, keepdim=True)
    return -log_probs[torch.arange(len(labels)), labels].mean()


def linear_backward(x: torch.Tensor, w: torch.Tensor,
                    grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backward pass of a Linear layer ``out = x @ w.T + b``, from matrix products (no autograd).

    Args:
        x: the layer's input ``(N, D_in)``; w: its weights ``(D_out, D_in)``;
        grad_out: dL/d out ``(N, D_out)``, the gradient arriving from the layers above.
    Returns:
        ``(grad_x (N, D_in), grad_w (D_out, D_in), grad_b (D_out,))``: dL/dx, dL/dw and dL/db.
    """
    return grad_out @ w, grad_out.T @ x, grad_out.sum(dim=0)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction in [0, 1] of rows of ``logits`` ``(N, C)`` whose largest entry is at ``labels`` ``(N,)``."""
    return (logits.argmax(dim=-1) == labels).float().mean().item()


def make_mlp(hidden_sizes: Sequence[int], in_features: int = 28 * 28, num_classes: int = 10) -> nn.Sequential:
    """Flatten -> [Linear -> ReLU] per hidden size -> Linear: images ``(B, 1, 28, 28)`` -> logits ``(B, 10)``.

    ``make_mlp([])`` is logistic regression (one Linear layer).
    """
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for size in hidden_sizes:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _same_number(got: Any, want: Any) -> bool:
    """:func:`same`, where a 0-d tensor ``want`` (a mean) counts as a number: so a numpy scalar or a
    one-element tensor of the same value matches it too."""
    if isinstance(want, torch.Tensor) and want.dim() == 0:
        want = float(want)
    return same(got, want)


# ---------------------------------------------------------------------------------------------
# Exercise 2: a numerically stable softmax
# ---------------------------------------------------------------------------------------------


@exercise("stable_softmax", solution=stable_softmax, hidden=HIDDEN, mistakes=SOFTMAX_MISTAKES,
          forbidden=SOFTMAX_FORBIDDEN, gradients=True)
def check_stable_softmax(answer: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(logits)`` -> softmax over the last dim, stable for logits like 1000."""
    generator = torch.Generator().manual_seed(0)
    check_softmax_cases(answer, [
        Case((torch.randn(3, 3, generator=generator),), "softmax of 3 rows of 3 small logits"),
        Case((torch.randn(2, 4, generator=generator),), "softmax of 2 rows of 4 small logits"),
        Case((torch.randn(2, 3, 4, generator=generator),), "softmax of a (2, 3, 4) tensor over its last dim"),
        Case((torch.tensor([[1000.0, 1001.0, 1002.0]]),), "softmax of [[1000, 1001, 1002]]"),
        Case((torch.tensor([[1000.0, 1001.0, 1002.0], [-1000.0, -999.0, -998.0]]),),
             "softmax of [[1000, 1001, 1002], [-1000, -999, -998]]"),
    ])


# ---------------------------------------------------------------------------------------------
# Exercise 3: cross-entropy from logits
# ---------------------------------------------------------------------------------------------


def _log_softmax(x: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the last dim (what the mistakes below start from): ``(N, C) -> (N, C)``."""
    return x - x.logsumexp(dim=-1, keepdim=True)


def _true(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each row's entry at its label: ``(N, C)``, ``(N,)`` -> ``(N,)``."""
    return values[torch.arange(len(labels)), labels]


_BLOCK = ("log_probs[:, labels] picks an (N, N) block (every row at every label); pick one entry per row with "
          "log_probs[torch.arange(N), labels]")
_UNDERFLOW = ("log(softmax(x)) is log(0) = -inf when a probability underflows to 0 (logits far apart, like 0 and "
              "1000). Use the log-softmax: x - max - log(sum(exp(x - max)))")

CROSS_ENTROPY_MISTAKES: tuple[Mistake, ...] = (
    Mistake("(N, N) block, averaged", lambda x, y: -_log_softmax(x)[:, y].mean(), _BLOCK),
    Mistake("(N, N) block", lambda x, y: -_log_softmax(x)[:, y], f"{_BLOCK}, then take the mean"),
    Mistake("wrong sign", lambda x, y: _true(_log_softmax(x), y).mean(),
            "the sign is wrong: the loss is the NEGATIVE log-likelihood, -mean(log p[true class]), which is never "
            "below 0"),
    Mistake("sum over the batch", lambda x, y: -_true(_log_softmax(x), y).sum(),
            "this is the sum over the batch; the loss is the mean over the N examples (divide by N)"),
    Mistake("per-example losses", lambda x, y: -_true(_log_softmax(x), y),
            "these are the N per-example losses; return their mean (one number)"),
    Mistake("mean of probabilities", lambda x, y: -_true(torch.softmax(x, dim=-1), y).mean(),
            "you averaged probabilities; cross-entropy averages their log: -mean(log p[true class])"),
    Mistake("mean of 1 - probability", lambda x, y: (1 - _true(torch.softmax(x, dim=-1), y)).mean(),
            "you averaged 1 - probability; cross-entropy averages -log p[true class]"),
    Mistake("raw logits", lambda x, y: -_true(x, y).mean(),
            "you used the raw logits; turn them into log-probabilities first (log-softmax), then pick the true class"),
    Mistake("log-softmax over dim 0", lambda x, y: -_true(x - x.logsumexp(dim=0, keepdim=True), y).mean(),
            "the log-softmax was taken over the wrong dim: normalise over the classes (dim=-1)"),
    Mistake("every class averaged", lambda x, y: -_log_softmax(x).mean(),
            "you averaged the log-probabilities of every class; use only each example's true class: "
            "log_probs[torch.arange(N), labels]"),
    Mistake("log of softmax", lambda x, y: -_true(torch.softmax(x, dim=-1), y).log().mean(), _UNDERFLOW),
)

CROSS_ENTROPY_ERRORS = {  # log_probs[labels, torch.arange(N)], say: rows and columns swapped
    "is out of bounds for dimension": "an index runs past the end of a dim: are rows and columns swapped? "
                                      "log_probs[torch.arange(N), labels] takes row i (one per example) at column "
                                      "labels[i]",
}


def _cross_entropy_cases() -> tuple[Case, ...]:
    """The fixed cases: two small batches, and logits 1000 apart (where log(softmax) underflows)."""
    generator = torch.Generator().manual_seed(1)
    return (
        Case((torch.randn(4, 5, generator=generator) * 2, torch.tensor([3, 0, 4, 4])),
             "cross-entropy of 4 examples, 5 classes"),
        Case((torch.randn(6, 3, generator=generator) * 2, torch.tensor([2, 1, 0, 1, 2, 2])),
             "cross-entropy of 6 examples, 3 classes"),
        Case((torch.tensor([[0.0, 1000.0], [1000.0, 0.0]]), torch.tensor([0, 0])),
             "cross-entropy of logits [[0, 1000], [1000, 0]] with labels [0, 0]"),
    )


CROSS_ENTROPY_CASES = _cross_entropy_cases()


def _hidden_logits(generator: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor], str]:
    """Random logits ``(N, C)`` and labels ``(N,)``; about one case in three has logits hundreds apart."""
    n, c = (int(v) for v in torch.randint(2, 9, (2,), generator=generator))
    scale = 300.0 if float(torch.rand((), generator=generator)) < 1 / 3 else 2.0
    logits = torch.randn(n, c, generator=generator) * scale
    labels = torch.randint(0, c, (n,), generator=generator)
    return (logits, labels), f"logits ({n}, {c}), labels ({n},)"


def _mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The reference loss as a number, so that a 0-d, a one-element or a numpy result can be compared to it."""
    return cross_entropy(logits, labels).item()


def _explain_loss(got: Any, want: float, case: Case) -> None:
    """Hints for a loss that is not one number, or is inf or NaN."""
    if isinstance(got, torch.Tensor) and got.numel() != 1:
        raise Hint(f"{case.what}: expected one number (the mean loss), got {describe(got)}")
    value = as_number(got, case.what)
    if not math.isfinite(value):
        raise Hint(f"{case.what}: your loss is {value}; {_UNDERFLOW}")


@exercise("cross_entropy", solution=cross_entropy, hidden=3, mistakes=CROSS_ENTROPY_MISTAKES,
          forbidden=(F.cross_entropy, F.nll_loss), gradients=True)
def check_cross_entropy(answer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(logits (N, C), labels (N,))`` -> the mean cross-entropy, and its gradient."""
    cases = [*CROSS_ENTROPY_CASES, *hidden_cases(_hidden_logits, 3)]
    check_cases(answer, cases, _mean_loss, mistakes=CROSS_ENTROPY_MISTAKES, equal=_same_number,
                explain=_explain_loss, known_errors=CROSS_ENTROPY_ERRORS)
    expect_gradients(answer, cross_entropy, cases[0])


# ---------------------------------------------------------------------------------------------
# Exercise 4: the backward pass of a Linear layer
# ---------------------------------------------------------------------------------------------

_AUTOGRAD = ("this exercise asks you to compute the gradients yourself, from matrix products; autograd is what "
             "the notebook checks your function against afterwards")
LINEAR_BACKWARD_FORBIDDEN = ((torch.autograd.grad, _AUTOGRAD), (torch.autograd.backward, _AUTOGRAD),
                             (torch.Tensor.backward, _AUTOGRAD))

_SHAPES = ("write down the shapes: x (N, D_in), w (D_out, D_in), grad_out (N, D_out); each gradient has the shape "
           "of the tensor it belongs to")
LINEAR_BACKWARD_MISTAKES: tuple[Mistake, ...] = (
    Mistake("grad_w transposed", lambda x, w, g: (g @ w, x.T @ g, g.sum(dim=0)),
            "`grad_w` has the shape (D_in, D_out), the transpose of `w`'s: a gradient has the shape of the tensor it "
            "belongs to, (D_out, D_in). Which factor goes on the left?"),
    Mistake("results in the wrong order", lambda x, w, g: (g.T @ x, g @ w, g.sum(dim=0)),
            "your first two results are swapped: return (grad_x, grad_w, grad_b), in that order"),
    Mistake("grad_b summed over the wrong dim", lambda x, w, g: (g @ w, g.T @ x, g.sum(dim=1)),
            "`grad_b` has one entry per example; the bias has one entry per output feature (D_out,). Which dim of "
            "grad_out runs over the examples?"),
    Mistake("grad_b per example", lambda x, w, g: (g @ w, g.T @ x, g),
            "`grad_b` is (N, D_out), one bias gradient per example; the layer has one bias, shared by every example "
            "of the batch: how do the examples' contributions combine?"),
    Mistake("grad_b averaged", lambda x, w, g: (g @ w, g.T @ x, g.mean(dim=0)),
            "`grad_b` is averaged over the batch: grad_out already holds the 1/N of the mean loss, so each "
            "example's contribution counts in full"),
    Mistake("divided by N again", lambda x, w, g: (g @ w, g.T @ x / len(x), g.sum(dim=0) / len(x)),
            "`grad_w` and `grad_b` are N times too small: grad_out is already the gradient of the MEAN loss (the "
            "1/N is inside it), so do not divide by N again"),
    Mistake("wrong sign", lambda x, w, g: (-(g @ w), -(g.T @ x), -g.sum(dim=0)),
            "every gradient has the wrong sign: return the gradients themselves; the minus belongs to the SGD step "
            "(w - lr * grad_w), not here"),
)

LINEAR_BACKWARD_ERRORS = {  # grad_out @ w.T, x @ grad_out...: a product whose inner sizes do not match
    "cannot be multiplied": f"a matrix product's inner sizes do not match: {_SHAPES}",
    "size mismatch": f"a matrix product's inner sizes do not match: {_SHAPES}",
}


def _linear_case(generator: torch.Generator, n: int, d_in: int, d_out: int) -> tuple[torch.Tensor, ...]:
    """Random ``x (n, d_in)``, ``w (d_out, d_in)`` and ``grad_out (n, d_out)``."""
    return (torch.randn(n, d_in, generator=generator), torch.randn(d_out, d_in, generator=generator),
            torch.randn(n, d_out, generator=generator))


def _linear_backward_cases() -> tuple[Case, ...]:
    """The fixed cases: N, D_in and D_out all different, so a transposed or misplaced result shows in its shape;
    the last one's grad_out is that of a mean cross-entropy, (softmax(z) - onehot(y)) / N."""
    generator = torch.Generator().manual_seed(6)
    x, w = torch.randn(6, 5, generator=generator), torch.randn(4, 5, generator=generator)
    labels = torch.tensor([0, 3, 1, 1, 2, 3])
    grad_ce = (torch.softmax(x @ w.T, dim=-1) - F.one_hot(labels, 4)) / 6
    return (
        Case(_linear_case(generator, 4, 3, 2), "x (4, 3), w (2, 3), grad_out (4, 2)"),
        Case(_linear_case(generator, 5, 7, 3), "x (5, 7), w (3, 7), grad_out (5, 3)"),
        Case((x, w, grad_ce), "x (6, 5), w (4, 5), grad_out of a mean cross-entropy over 6 examples (6, 4)"),
    )


LINEAR_BACKWARD_CASES = _linear_backward_cases()


def _hidden_linear(generator: torch.Generator) -> tuple[tuple[torch.Tensor, ...], str]:
    """Random ``x``, ``w`` and ``grad_out`` with N, D_in and D_out three different sizes in 2..9."""
    n, d_in, d_out = (int(v) + 2 for v in torch.randperm(8, generator=generator)[:3])
    return _linear_case(generator, n, d_in, d_out), f"x ({n}, {d_in}), w ({d_out}, {d_in}), grad_out ({n}, {d_out})"


def _explain_linear_backward(got: Any, want: tuple[torch.Tensor, ...], case: Case) -> None:
    """Hints that name the result that is off (grad_x, grad_w or grad_b) and what is wrong with it."""
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise Hint(f"{case.what}: expected three results (grad_x, grad_w, grad_b), got {describe(got)}")
    for name, mine, ref in zip(("grad_x", "grad_w", "grad_b"), got, want):
        if isinstance(mine, torch.Tensor) and mine.shape != ref.shape:
            raise Hint(f"{case.what}: `{name}` should have the shape {tuple(ref.shape)}, yours is "
                       f"{tuple(mine.shape)}; {_SHAPES}")
        if not same(mine, ref):
            expect_close(mine, ref, f"{case.what}, `{name}`")


@exercise("linear_backward", solution=linear_backward, hidden=3, mistakes=LINEAR_BACKWARD_MISTAKES,
          forbidden=LINEAR_BACKWARD_FORBIDDEN)
def check_linear_backward(answer: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]) -> None:
    """Check ``answer(x (N, D_in), w (D_out, D_in), grad_out (N, D_out))`` -> ``(grad_x, grad_w, grad_b)``,
    the gradients of a Linear layer, computed without autograd."""
    cases = [*LINEAR_BACKWARD_CASES, *hidden_cases(_hidden_linear, 3)]
    check_cases(answer, cases, linear_backward, mistakes=LINEAR_BACKWARD_MISTAKES, explain=_explain_linear_backward,
                known_errors=LINEAR_BACKWARD_ERRORS)


# ---------------------------------------------------------------------------------------------
# Exercise 5: accuracy
# ---------------------------------------------------------------------------------------------

ACCURACY_MISTAKES: tuple[Mistake, ...] = (
    Mistake("count instead of fraction", lambda x, y: (x.argmax(dim=-1) == y).sum().item(),
            "this is the number of correct predictions; divide by the number of examples N to get a fraction"),
    Mistake("percentage", lambda x, y: 100 * accuracy(x, y), "this is a percentage; return a fraction in [0, 1]"),
    Mistake("error rate", lambda x, y: 1 - accuracy(x, y),
            "this is the error rate (fraction wrong); accuracy is the fraction right"),
    Mistake("argmin", lambda x, y: (x.argmin(dim=-1) == y).float().mean().item(),
            "argmin picks the lowest score; the predicted class is the one with the highest logit (argmax)"),
    Mistake("argmax without dim", lambda x, y: (x.argmax() == y).float().mean().item(),
            "logits.argmax() without dim= gives one index into the flattened tensor; the prediction of each "
            "example is the argmax over the classes: logits.argmax(dim=1)"),
)

ACCURACY_ERRORS = {  # (logits.argmax(dim=0) == labels): C predictions against N labels
    "must match the size of tensor b": "your predictions do not line up with the labels: argmax over dim 0 picks "
                                       "the highest-scoring EXAMPLE for each class; the prediction of each example "
                                       "is the argmax over the classes, dim=1 (or -1)",
}

def _accuracy_cases() -> tuple[Case, ...]:
    """The fixed cases; their seeds make every mistake's value differ from the right one."""
    square = torch.Generator().manual_seed(16)
    logits = torch.randn(4, 4, generator=square)
    return (
        Case((logits, torch.randint(0, 4, (4,), generator=square)), "accuracy of 4 examples, 4 classes"),
        Case((torch.randn(8, 3, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])),
             "accuracy of 8 examples, 3 classes"),
    )


ACCURACY_CASES = _accuracy_cases()


def _hidden_scores(generator: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor], str]:
    """Random logits ``(N, C)`` with N in 20..60, and labels ``(N,)`` that are the argmax for about 60% of rows."""
    n, c = int(torch.randint(20, 61, (), generator=generator)), int(torch.randint(3, 11, (), generator=generator))
    logits = torch.randn(n, c, generator=generator)
    guesses = torch.randint(0, c, (n,), generator=generator)
    labels = torch.where(torch.rand(n, generator=generator) < 0.6, logits.argmax(dim=-1), guesses)
    return (logits, labels), f"logits ({n}, {c}), labels ({n},)"


def _explain_accuracy(got: Any, want: float, case: Case) -> None:
    """Hints for a result that is one True/False per example, or several numbers."""
    if isinstance(got, torch.Tensor) and got.dtype == torch.bool:
        raise Hint(f"{case.what}: you returned {describe(got)}, one True/False per example; their mean is the "
                   "accuracy: (predictions == labels).float().mean()")
    if isinstance(got, torch.Tensor) and got.numel() != 1:
        raise Hint(f"{case.what}: expected one number, got {describe(got)}; average over the examples")


@exercise("accuracy", solution=accuracy, hidden=3, mistakes=ACCURACY_MISTAKES)
def check_accuracy(answer: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """Check ``answer(logits (N, C), labels (N,))`` -> the fraction of correct predictions (a number in [0, 1])."""
    cases = [*ACCURACY_CASES, *hidden_cases(_hidden_scores, 3)]
    check_cases(answer, cases, accuracy, mistakes=ACCURACY_MISTAKES, explain=_explain_accuracy,
                known_errors=ACCURACY_ERRORS)


# ---------------------------------------------------------------------------------------------
# Exercise 1: build an MLP (last here: it is the longest checker)
# ---------------------------------------------------------------------------------------------

MLP_SIZES: tuple[list[int], ...] = ([64], [128, 32], [])


def _hidden_sizes(generator: torch.Generator) -> tuple[tuple[list[int]], str]:
    """A random list of 1 to 3 hidden sizes, each 4..64."""
    depth = int(torch.randint(1, 4, (), generator=generator))
    return ([int(s) for s in torch.randint(4, 65, (depth,), generator=generator)],), f"{depth} hidden sizes"


def _linears(model: nn.Module) -> list[nn.Linear]:
    """Every ``nn.Linear`` inside ``model``, in order."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _with_fixed_weights(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose Linear layers hold fixed zero-mean weights, so that what the checks below
    measure (is it linear? are all logits >= 0?) never depends on a lucky or unlucky random initialisation."""
    model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for layer in _linears(model):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) / layer.in_features ** 0.5)
            if layer.bias is not None:
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.1)
    return model


def _is_affine(model: nn.Module) -> bool:
    """True when ``model`` maps the midpoint of two inputs to the midpoint of their outputs (a linear map).

    The inputs are centred noise ``(4, 1, 28, 28)``, not images: a ReLU then sees both signs, even in a narrow layer.
    """
    generator = torch.Generator().manual_seed(4)
    a, b = torch.randn(2, 4, 1, 28, 28, generator=generator)
    with torch.no_grad():
        return torch.allclose(model((a + b) / 2), (model(a) + model(b)) / 2, atol=1e-5)


_NO_FLATTEN = ("images (8, 1, 28, 28) cannot go into a Linear layer that expects 784 features; start with "
               "nn.Flatten() to make them (8, 784)")
_LINEAR = ("the model is linear: Linear layers with nothing between them collapse into a single Linear layer. Put an "
           "nn.ReLU() after each hidden Linear")
_PROBABILITIES = ("the outputs are probabilities (rows sum to 1); return raw logits without a softmax at the end: "
                  "cross-entropy applies log-softmax itself")
_LAST_RELU = "every output is >= 0: do not put a ReLU after the last Linear; logits must be free to be negative"
_NO_BIAS = "every Linear layer needs its bias (the default, bias=True)"


def _mlp(hidden: list[int], relu: bool = True, flatten: bool = True, bias: bool = True,
         end: nn.Module | None = None) -> nn.Sequential:
    """:func:`make_mlp` with one of the typical slips (no ReLU, no Flatten, no biases, a layer at the end)."""
    widths = [28 * 28, *hidden, 10]
    layers: list[nn.Module] = [nn.Flatten()] if flatten else []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(n_in, n_out, bias=bias))
        if relu and i < len(hidden):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers, *([end] if end else []))


MLP_MISTAKES: tuple[Mistake, ...] = (
    Mistake("no Flatten", lambda hidden: _mlp(hidden, flatten=False), _NO_FLATTEN),
    Mistake("no ReLU", lambda hidden: _mlp(hidden, relu=False), _LINEAR),
    Mistake("softmax at the end", lambda hidden: _mlp(hidden, end=nn.Softmax(dim=-1)), _PROBABILITIES),
    Mistake("ReLU after the last layer", lambda hidden: _mlp(hidden, end=nn.ReLU()), _LAST_RELU),
    Mistake("no biases", lambda hidden: _mlp(hidden, bias=False), _NO_BIAS),
)


@exercise("make_mlp", solution=make_mlp, hidden=2, mistakes=MLP_MISTAKES, forbidden=(MLP.__init__,))
def check_make_mlp(answer: Callable[[list[int]], nn.Module]) -> None:
    """Check ``answer(hidden_sizes)`` -> Flatten, Linear+ReLU per hidden size, then Linear to 10 logits.

    The structural mistakes (:data:`MLP_MISTAKES`) are recognised from what the model computes and holds.
    """
    images = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    cases = [Case((list(sizes),), f"make_mlp({sizes})") for sizes in MLP_SIZES]
    for case in [*cases, *hidden_cases(_hidden_sizes, 2)]:
        _check_one_mlp(answer, case, images)


def _check_one_mlp(answer: Callable[[list[int]], nn.Module], case: Case, images: torch.Tensor) -> None:
    """Check what ``answer(hidden_sizes)`` builds: its layer sizes, then its outputs on ``images`` (8, 1, 28, 28)."""
    what, (hidden,) = case.what, case.args
    model = call(answer, hidden)
    if not isinstance(model, nn.Module):
        raise Hint(f"{what}: expected an nn.Module (e.g. nn.Sequential), got {describe(model)}")
    widths = [28 * 28, *hidden, 10]
    want = list(zip(widths[:-1], widths[1:]))
    sizes = [(m.in_features, m.out_features) for m in _linears(model)]
    if len(sizes) != len(want):
        raise Hint(f"{what}: expected {len(want)} Linear layers (one per hidden size, plus the output "
                   f"layer), found {len(sizes)}")
    if sizes != want:
        raise Hint(f"{what}: the Linear layers should map {' -> '.join(map(str, widths))} features; "
                   f"yours map {sizes} (in_features, out_features)")
    model = _with_fixed_weights(model).eval()
    try:
        with torch.no_grad():
            logits = call(model, images)
    except Hint as hint:
        if not any(isinstance(m, nn.Flatten) for m in model.modules()):
            raise Hint(f"{what}: {_NO_FLATTEN}") from None
        raise Hint(f"{what}, the model applied to images (8, 1, 28, 28): {hint}") from None
    expect_tensor(logits, (8, 10), f"{what} applied to images (8, 1, 28, 28)")
    if hidden and _is_affine(model):
        raise Hint(f"{what}: {_LINEAR}")
    if bool((logits >= 0).all()) and torch.allclose(logits.sum(dim=-1), torch.ones(8), atol=1e-4):
        raise Hint(f"{what}: {_PROBABILITIES}")
    if bool((logits >= 0).all()):
        raise Hint(f"{what}: {_LAST_RELU}")
    if isinstance(model, nn.Sequential):
        activations = [m for m in model.modules() if not list(m.children())
                       and not isinstance(m, (nn.Linear, nn.Flatten, nn.Dropout, nn.Identity))]
        if len(activations) < len(hidden):
            raise Hint(f"{what}: found {len(activations)} non-linearities for {len(hidden)} hidden layers; "
                       "put an nn.ReLU() after every hidden Linear")
    n_params = sum(p.numel() for p in model.parameters())
    n_want = sum(p.numel() for p in make_mlp(hidden).parameters())
    if n_params != n_want:
        raise Hint(f"{what}: the model has {n_params:,} parameters, {'fewer' if n_params < n_want else 'more'} "
                   f"than it should: {_NO_BIAS}")
