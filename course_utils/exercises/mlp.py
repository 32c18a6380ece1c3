"""Exercises of notebook 01 (MNIST MLP), in its order: an MLP builder, softmax, cross-entropy, accuracy.

Each ``check_*`` function takes the learner's function, compares it with the reference
implementation below on small inputs, and recognises the usual mistakes: it recomputes each
typical wrong answer on the same inputs and, when the learner's output matches one, says what
that mistake is and where to fix it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from . import Hint, call, describe, exercise, expect_close, expect_tensor

Mistake = tuple[Callable[..., Any], str]  # (what the mistaken code computes, the hint to give)

# ---------------------------------------------------------------------------------------------
# Reference implementations
# ---------------------------------------------------------------------------------------------


def stable_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim, computed without overflow: ``(..., C) -> (..., C)``, rows sum to 1."""
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    exps = shifted.exp()
    return exps / exps.sum(dim=-1, keepdim=True)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the true classes: logits ``(N, C)``, labels ``(N,)`` -> scalar."""
    log_probs = logits - logits.logsumexp(dim=-1, keepdim=True)
    return -log_probs[torch.arange(len(labels)), labels].mean()


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


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _matches(got: Any, want: Any, atol: float = 1e-4) -> bool:
    """True when ``got`` equals the (mistaken) value ``want``: same shape and close (inf and NaN
    count as equal to themselves)."""
    try:
        got_t = torch.as_tensor(got, dtype=torch.float64)
        want_t = torch.as_tensor(want, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return False
    if got_t.shape != want_t.shape:
        return False
    same = (got_t == want_t) | (torch.isnan(got_t) & torch.isnan(want_t))
    return bool(((got_t - want_t).abs() <= atol).logical_or(same).all())


def _diagnose(got: Any, args: tuple[Any, ...], mistakes: Sequence[Mistake], what: str) -> None:
    """Raise the hint of the first mistake whose output equals ``got`` on ``args``."""
    for mistaken, hint in mistakes:
        try:
            want = mistaken(*args)
        except Exception:  # this mistake cannot even run on these inputs, so it is not the one
            continue
        if _matches(got, want):
            raise Hint(f"{what}: {hint}")


KNOWN_ERRORS = {  # a piece of torch's error message -> what it means in these exercises
    "return_types.max": "x.max(dim=...) returns a pair (values, indices); take its .values: "
                        "x.max(dim=-1, keepdim=True).values",
    "could not infer output dtype": ".mean() does not work on a tensor of True/False; convert it first: "
                                    "(predictions == labels).float().mean()",
}


def _call(answer: Callable[..., Any], *args: Any) -> Any:
    """:func:`call`, with the errors these exercises often hit turned into a plain hint."""
    return call(answer, *args, known_errors=KNOWN_ERRORS)


def _as_number(got: Any, what: str) -> float:
    """A Python float from a number or a one-element tensor; a hint for anything else."""
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            raise Hint(f"{what}: expected one number, got {describe(got)}")
        return float(got)
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        raise Hint(f"{what}: expected a number, got {describe(got)}")
    return float(got)


# ---------------------------------------------------------------------------------------------
# Exercise 2: a numerically stable softmax
# ---------------------------------------------------------------------------------------------

SOFTMAX_MISTAKES: list[Mistake] = [
    (lambda x: x.exp() / x.exp().sum(dim=-1, keepdim=True),
     "exp() overflows: exp(1000) is inf in float32, and inf / inf is NaN. "
     "Subtract each row's max before exp (softmax does not change when a row is shifted)"),
    (lambda x: (x - x.max()).exp() / (x - x.max()).exp().sum(dim=-1, keepdim=True),
     "you subtracted one max for the whole tensor; a row far below it underflows to 0 / 0 = NaN. "
     "Subtract each row's own max: x.max(dim=-1, keepdim=True).values"),
    (lambda x: torch.softmax(x, dim=0),
     "you normalised over dim 0 (down the columns); each row (the last dim, dim=-1) must sum to 1"),
    (lambda x: torch.softmax(x, dim=1),
     "you normalised over dim 1; use dim=-1 so that the last dim sums to 1 for any number of leading dims"),
    (lambda x: (x - x.max(dim=-1, keepdim=True).values).exp(),
     "the exponentials are not normalised: divide by their sum over the last dim so each row sums to 1"),
    (lambda x: x.exp(),
     "the exponentials are not normalised: divide by their sum over the last dim so each row sums to 1"),
    (lambda x: (x - x.max(dim=0, keepdim=True).values).exp()
     / (x - x.max(dim=0, keepdim=True).values).exp().sum(dim=-1, keepdim=True),
     "you subtracted the max over dim 0 (each column's max), which shifts the entries of a row by "
     "different amounts; subtract each row's max: x.max(dim=-1, keepdim=True).values"),
    (lambda x: (x - x.max(dim=-1).values).exp() / (x - x.max(dim=-1).values).exp().sum(dim=-1, keepdim=True),
     "the row maxima were broadcast along the wrong axis: pass keepdim=True to max() so they have "
     "shape (N, 1) and line up with the rows"),
    (lambda x: x.exp() / x.exp().sum(dim=-1),
     "the row sums were broadcast along the wrong axis: pass keepdim=True to sum() so they have "
     "shape (N, 1) and divide each row by its own sum"),
    (lambda x: (x - x.max(dim=-1, keepdim=True).values).exp()
     / (x - x.max(dim=-1, keepdim=True).values).exp().sum(dim=-1),
     "the row sums were broadcast along the wrong axis: pass keepdim=True to sum() so they have "
     "shape (N, 1) and divide each row by its own sum"),
    (lambda x: torch.log_softmax(x, dim=-1),
     "these are log-probabilities; softmax returns probabilities (exp of them)"),
]


def expect_softmax(answer: Callable[[torch.Tensor], torch.Tensor],
                   cases: Sequence[tuple[str, torch.Tensor]]) -> None:
    """Compare ``answer(x)`` with the stable softmax over the last dim for each ``(what, x)`` case.

    Raises :class:`Hint` naming the typical mistake it matches, else where the results differ.
    """
    for what, logits in cases:
        got = _call(answer, logits.clone())
        expect_tensor(got, tuple(logits.shape), what)
        want = stable_softmax(logits)
        if not _matches(got, want, atol=1e-5):
            _diagnose(got, (logits,), SOFTMAX_MISTAKES, what)
            if not torch.isfinite(got).all():
                raise Hint(f"{what}: your result has inf or NaN: exp() overflows; subtract each row's max "
                           "before exp")
            expect_close(got, want, what)


@exercise("stable_softmax")
def check_stable_softmax(answer: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(logits)`` -> softmax over the last dim, stable for logits like 1000."""
    generator = torch.Generator().manual_seed(0)
    cases = [
        ("softmax of 3 rows of 3 small logits", torch.randn(3, 3, generator=generator)),
        ("softmax of 2 rows of 4 small logits", torch.randn(2, 4, generator=generator)),
        ("softmax of a (2, 3, 4) tensor over its last dim", torch.randn(2, 3, 4, generator=generator)),
        ("softmax of [[1000, 1001, 1002]]", torch.tensor([[1000.0, 1001.0, 1002.0]])),
        ("softmax of [[1000, 1001, 1002], [-1000, -999, -998]]",
         torch.tensor([[1000.0, 1001.0, 1002.0], [-1000.0, -999.0, -998.0]])),
    ]
    expect_softmax(answer, cases)


# ---------------------------------------------------------------------------------------------
# Exercise 3: cross-entropy from logits
# ---------------------------------------------------------------------------------------------


def _log_softmax(x: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the last dim (what the mistakes below start from)."""
    return x - x.logsumexp(dim=-1, keepdim=True)


CROSS_ENTROPY_MISTAKES: list[Mistake] = [
    (lambda x, y: -_log_softmax(x)[:, y].mean(),
     "log_probs[:, labels] picks an (N, N) block (every row at every label); pick one entry per row "
     "with log_probs[torch.arange(N), labels]"),
    (lambda x, y: -_log_softmax(x)[:, y],
     "log_probs[:, labels] picks an (N, N) block (every row at every label); pick one entry per row "
     "with log_probs[torch.arange(N), labels], then take the mean"),
    (lambda x, y: _log_softmax(x)[torch.arange(len(y)), y].mean(),
     "the sign is wrong: the loss is the NEGATIVE log-likelihood, -mean(log p[true class]), "
     "which is never below 0"),
    (lambda x, y: -_log_softmax(x)[torch.arange(len(y)), y].sum(),
     "this is the sum over the batch; the loss is the mean over the N examples (divide by N)"),
    (lambda x, y: -_log_softmax(x)[torch.arange(len(y)), y],
     "these are the N per-example losses; return their mean (one number)"),
    (lambda x, y: -torch.softmax(x, dim=-1)[torch.arange(len(y)), y].mean(),
     "you averaged probabilities; cross-entropy averages their log: -mean(log p[true class])"),
    (lambda x, y: (1 - torch.softmax(x, dim=-1)[torch.arange(len(y)), y]).mean(),
     "you averaged 1 - probability; cross-entropy averages -log p[true class]"),
    (lambda x, y: -x[torch.arange(len(y)), y].mean(),
     "you used the raw logits; turn them into log-probabilities first (log-softmax), then pick the "
     "true class"),
    (lambda x, y: -_log_softmax(x)[y, torch.arange(len(y))].mean(),
     "rows and columns are swapped: log_probs[torch.arange(N), labels] takes row i at column labels[i]"),
    (lambda x, y: -(x - x.logsumexp(dim=0, keepdim=True))[torch.arange(len(y)), y].mean(),
     "the log-softmax was taken over the wrong dim: normalise over the classes (dim=-1)"),
    (lambda x, y: -_log_softmax(x).mean(),
     "you averaged the log-probabilities of every class; use only each example's true class: "
     "log_probs[torch.arange(N), labels]"),
]


@exercise("cross_entropy")
def check_cross_entropy(answer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(logits, labels)`` -> the mean cross-entropy, equal to ``F.cross_entropy``."""
    generator = torch.Generator().manual_seed(1)
    cases = [
        ("cross-entropy of 4 examples, 5 classes",
         torch.randn(4, 5, generator=generator) * 2, torch.tensor([3, 0, 4, 4])),
        ("cross-entropy of 6 examples, 3 classes",
         torch.randn(6, 3, generator=generator) * 2, torch.tensor([2, 1, 0, 1, 2, 2])),
        ("cross-entropy of logits [[0, 1000], [1000, 0]] with labels [0, 0]",
         torch.tensor([[0.0, 1000.0], [1000.0, 0.0]]), torch.tensor([0, 0])),
    ]
    for what, logits, labels in cases:
        got = _call(answer, logits.clone(), labels.clone())
        want = cross_entropy(logits, labels)
        if isinstance(got, torch.Tensor) and got.numel() != 1:
            _diagnose(got, (logits, labels), CROSS_ENTROPY_MISTAKES, what)
            raise Hint(f"{what}: expected one number (the mean loss), got {describe(got)}")
        value = _as_number(got, what)
        if not _matches(value, want):
            _diagnose(value, (logits, labels), CROSS_ENTROPY_MISTAKES, what)
            if value == float("inf") or value != value:
                raise Hint(f"{what}: got {value}; log(softmax(x)) is log(0) = -inf when a probability "
                           "underflows to 0. Use the log-softmax: x - max - log(sum(exp(x - max)))")
            raise Hint(f"{what}: got {value:.6g}, expected {float(want):.6g}")


# ---------------------------------------------------------------------------------------------
# Exercise 4: accuracy
# ---------------------------------------------------------------------------------------------

ACCURACY_MISTAKES: list[Mistake] = [
    (lambda x, y: (x.argmax(dim=0) == y).float().mean().item(),
     "argmax over dim 0 picks the highest-scoring EXAMPLE for each class; the prediction of each "
     "example is the argmax over the classes, dim=1 (or -1)"),
    (lambda x, y: (x.argmax(dim=-1) == y).sum().item(),
     "this is the number of correct predictions; divide by the number of examples N to get a fraction"),
    (lambda x, y: 100 * (x.argmax(dim=-1) == y).float().mean().item(),
     "this is a percentage; return a fraction in [0, 1]"),
    (lambda x, y: 1 - (x.argmax(dim=-1) == y).float().mean().item(),
     "this is the error rate (fraction wrong); accuracy is the fraction right"),
    (lambda x, y: (x.argmin(dim=-1) == y).float().mean().item(),
     "argmin picks the lowest score; the predicted class is the one with the highest logit (argmax)"),
]


@exercise("accuracy")
def check_accuracy(answer: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
    """Check ``answer(logits, labels)`` -> the fraction of correct predictions (a float in [0, 1])."""
    # Square first, so that argmax over the wrong dim runs; seed 16 makes every mistake's value distinct.
    square = torch.Generator().manual_seed(16)
    cases = [
        ("accuracy of 4 examples, 4 classes", torch.randn(4, 4, generator=square),
         torch.randint(0, 4, (4,), generator=square)),
        ("accuracy of 8 examples, 3 classes", torch.randn(8, 3, generator=torch.Generator().manual_seed(2)),
         torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])),
    ]
    for what, logits, labels in cases:
        want = accuracy(logits, labels)
        got = _call(answer, logits.clone(), labels.clone())
        if isinstance(got, torch.Tensor) and got.dtype == torch.bool:
            raise Hint(f"{what}: you returned {describe(got)}, one True/False per example; "
                       "their mean is the accuracy: (predictions == labels).float().mean()")
        if isinstance(got, torch.Tensor) and got.numel() > 1:
            raise Hint(f"{what}: expected one number, got {describe(got)}; average over the examples")
        value = _as_number(got, what)
        if abs(value - want) > 1e-6:
            _diagnose(value, (logits, labels), ACCURACY_MISTAKES, what)
            raise Hint(f"{what}: got {value:.6g}, expected {want:.6g}")


# ---------------------------------------------------------------------------------------------
# Exercise 1: build an MLP (last here: it is the longest checker)
# ---------------------------------------------------------------------------------------------


def _linears(model: nn.Module) -> list[nn.Linear]:
    """Every ``nn.Linear`` inside ``model``, in order."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _is_affine(model: nn.Module, images: torch.Tensor) -> bool:
    """True when ``model`` maps the midpoint of two inputs to the midpoint of their outputs (a linear map)."""
    a, b = images[:4], images[4:8]
    with torch.no_grad():
        return torch.allclose(model((a + b) / 2), (model(a) + model(b)) / 2, atol=1e-5)


@exercise("make_mlp")
def check_make_mlp(answer: Callable[[Sequence[int]], nn.Module]) -> None:
    """Check ``answer(hidden_sizes)`` -> Flatten, Linear+ReLU per hidden size, then Linear to 10 logits.

    Runs in a forked random state, so checking never changes the notebook's random numbers.
    """
    with torch.random.fork_rng(devices=[]):
        images = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(3))
        for hidden in ([64], [128, 32], []):
            _check_one_mlp(answer, hidden, images)


def _check_one_mlp(answer: Callable[[Sequence[int]], nn.Module], hidden: list[int], images: torch.Tensor) -> None:
    """Check what ``answer(hidden)`` builds: its layer sizes, then its outputs on ``images`` (8, 1, 28, 28)."""
    what = f"make_mlp({hidden})"
    model = call(answer, list(hidden))
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
    model.eval()
    try:
        with torch.no_grad():
            logits = model(images)
    except Exception as error:
        if not any(isinstance(m, nn.Flatten) for m in model.modules()):
            raise Hint(f"{what}: images (8, 1, 28, 28) cannot go into a Linear layer that expects 784 "
                       "features; start with nn.Flatten() to make them (8, 784)") from None
        raise Hint(f"{what}: calling the model on images (8, 1, 28, 28) raised "
                   f"{type(error).__name__}: {error}") from None
    expect_tensor(logits, (8, 10), f"{what} applied to images (8, 1, 28, 28)")
    if hidden and _is_affine(model, images):
        raise Hint(f"{what}: the model is linear: Linear layers with nothing between them collapse "
                   "into a single Linear layer. Put an nn.ReLU() after each hidden Linear")
    if bool((logits >= 0).all()) and torch.allclose(logits.sum(dim=-1), torch.ones(8), atol=1e-4):
        raise Hint(f"{what}: the outputs are probabilities (rows sum to 1); return raw logits without a "
                   "softmax at the end: cross-entropy applies log-softmax itself")
    if bool((logits >= 0).all()):
        raise Hint(f"{what}: every output is >= 0: do not put a ReLU after the last Linear; "
                   "logits must be free to be negative")
    if isinstance(model, nn.Sequential):
        activations = [m for m in model.modules() if not list(m.children())
                       and not isinstance(m, (nn.Linear, nn.Flatten, nn.Dropout, nn.Identity))]
        if len(activations) < len(hidden):
            raise Hint(f"{what}: found {len(activations)} non-linearities for {len(hidden)} hidden layers; "
                       "put an nn.ReLU() after every hidden Linear")
    n_params = sum(p.numel() for p in model.parameters())
    n_want = sum(p.numel() for p in make_mlp(hidden).parameters())
    if n_params != n_want:
        raise Hint(f"{what}: the model has {n_params:,} parameters, expected {n_want:,}; "
                   "every Linear layer needs its bias (the default, bias=True)")
