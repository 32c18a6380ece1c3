"""The stable-softmax exercise, shared by notebooks 01 (class probabilities) and 05 (attention weights).

:func:`check_softmax_cases` is the check; each notebook's ``check_stable_softmax`` gives it that
notebook's fixed cases (logits ``(N, C)`` in 01, scores ``(B, Tq, Tk)`` in 05).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.nn import functional as F

from .checking import Hint, Mistake
from .comparing import Case, check_cases, expect_gradients, expect_tensor, hidden_cases, same


def stable_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim, computed without overflow: ``(..., C) -> (..., C)``, rows sum to 1."""
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    exps = shifted.exp()
    return exps / exps.sum(dim=-1, keepdim=True)


# The library's softmaxes do the whole exercise (nn.Softmax calls F.softmax, so it is caught too).
SOFTMAX_FORBIDDEN = (torch.softmax, torch.Tensor.softmax, F.softmax, torch.special.softmax,
                     torch.log_softmax, torch.Tensor.log_softmax, F.log_softmax)

_KEEPDIM = ("a row statistic (the max or the sum) was broadcast along the wrong axis: pass keepdim=True to max() "
            "and sum() so that it has shape (..., 1) and lines up with its row")
_NOT_NORMALISED = "the exponentials are not normalised: divide by their sum over the last dim so each row sums to 1"


def _shift(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return x - x.max(dim=dim, keepdim=True).values


SOFTMAX_MISTAKES: tuple[Mistake, ...] = (
    Mistake("no max subtracted", lambda x: x.exp() / x.exp().sum(dim=-1, keepdim=True),
            "exp() overflows: exp(1000) is inf in float32, and inf / inf is NaN. Subtract each row's max before "
            "exp (softmax does not change when a row is shifted)"),
    Mistake("one max for the whole tensor", lambda x: (x - x.max()).exp() / (x - x.max()).exp().sum(-1, keepdim=True),
            "you subtracted one max for the whole tensor; a row far below it underflows to 0 / 0 = NaN. Subtract "
            "each row's own max: x.max(dim=-1, keepdim=True).values"),
    Mistake("normalised over dim 0", lambda x: stable_softmax(x.movedim(0, -1)).movedim(-1, 0),
            "you normalised over dim 0 (down the columns); each row (the last dim, dim=-1) must sum to 1"),
    Mistake("normalised over dim 1", lambda x: stable_softmax(x.movedim(1, -1)).movedim(-1, 1),
            "you normalised over dim 1; use dim=-1 so that the last dim sums to 1 for any number of leading dims"),
    Mistake("not normalised (shifted)", lambda x: _shift(x).exp(), _NOT_NORMALISED),
    Mistake("not normalised", lambda x: x.exp(), _NOT_NORMALISED),
    Mistake("column max subtracted", lambda x: _shift(x, 0).exp() / _shift(x, 0).exp().sum(dim=-1, keepdim=True),
            "you subtracted the max over dim 0 (each column's max), which shifts the entries of a row by different "
            "amounts; subtract each row's max: x.max(dim=-1, keepdim=True).values"),
    Mistake("keepdim missing", lambda x: x.exp() / x.exp().sum(dim=-1), _KEEPDIM),
    Mistake("log-probabilities", lambda x: _shift(x) - _shift(x).exp().sum(-1, keepdim=True).log(),
            "these are log-probabilities; softmax returns probabilities (exp of them)"),
)


def _hidden(generator: torch.Generator) -> tuple[tuple[torch.Tensor], str]:
    """Random logits of a random shape, some rows shifted far up or down (so that overflow shows)."""
    shape = tuple(int(n) for n in torch.randint(2, 6, (3,), generator=generator))
    x = torch.randn(shape, generator=generator) * 3
    x = x + torch.randint(-1, 2, shape[:-1] + (1,), generator=generator) * 500.0
    return (x,), f"logits of shape {shape}"


HIDDEN = 3


def check_softmax_cases(answer: Callable[[torch.Tensor], torch.Tensor], fixed: Sequence[Case]) -> None:
    """Compare ``answer(x)`` with the stable softmax over the last dim on ``fixed`` and the hidden cases.

    Raises :class:`Hint` naming the typical mistake it matches, else where the results differ; then
    checks that gradients flow through it.
    """
    cases = [*fixed, *hidden_cases(_hidden, HIDDEN)]

    def explain(got: object, want: torch.Tensor, case: Case) -> None:
        got = expect_tensor(got, tuple(want.shape), case.what)
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise Hint(f"{case.what}: your result has inf or NaN: exp() overflows; subtract each row's max before "
                       "exp")

    check_cases(answer, cases, stable_softmax, mistakes=SOFTMAX_MISTAKES, explain=explain,
                equal=lambda got, want: same(got, want, atol=1e-4),  # float32 rounding of x - logsumexp at |x| ~ 500
                known_errors={"must match the size of tensor": _KEEPDIM})
    expect_gradients(answer, stable_softmax, cases[0])
