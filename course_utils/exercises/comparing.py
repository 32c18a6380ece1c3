"""Comparing the learner's results with the reference: values, typical mistakes, gradients.

The usual check is one call of :func:`check_cases`: it runs the learner's function on every
:class:`Case` (the fixed ones, then the hidden ones), and when a result differs from the
reference it names the typical :class:`~course_utils.exercises.checking.Mistake` that gives the
learner's results on EVERY case, else says where the first differing case is off. Hints describe
the inputs and the learner's own result, never the expected output.

Valid alternatives compare equal: a float64 result, a numpy scalar, a one-element tensor.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .calling import argument_names, call, describe
from .checking import Hint, Mistake, hidden_generator, session

__all__ = ["Case", "hidden_cases", "same", "as_number", "as_int", "expect_tensor", "expect_close", "name_mistake",
           "check_cases", "expect_gradients", "hidden_generator"]


@dataclass(frozen=True)
class Case:
    """One input of an exercise: ``args`` for the function, ``what`` describes it in hints."""

    args: tuple[Any, ...]
    what: str
    hidden: bool = False


def hidden_cases(make: Callable[[torch.Generator], tuple[tuple[Any, ...], str]], count: int) -> list[Case]:
    """``count`` hidden cases from ``make(generator) -> (args, what)``, drawn afresh for every run of the checker.

    ``what`` should describe the inputs' shapes only: the values are the point of a hidden case.
    """
    generator = hidden_generator()
    cases = []
    for _ in range(count):
        args, what = make(generator)
        cases.append(Case(args, f"a hidden case ({what})", hidden=True))
    session().hidden_cases += count
    return cases


# ---------------------------------------------------------------------------------------------
# Comparing values
# ---------------------------------------------------------------------------------------------

def _to_float_tensor(value: Any) -> torch.Tensor | None:
    """``value`` as a float64 tensor when it is a tensor, a number or a numpy value (not a bool); else None."""
    if isinstance(value, bool) or isinstance(value, np.bool_):
        return None
    if isinstance(value, torch.Tensor):
        return None if value.is_complex() else value.detach().to("cpu", torch.float64)
    if isinstance(value, (numbers.Real, np.ndarray, np.generic)):
        try:
            return torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError):
            return None
    return None


def same(got: Any, want: Any, atol: float = 1e-5, rtol: float = 1e-5) -> bool:
    """True when ``got`` equals ``want`` within the tolerance; inf and NaN equal themselves.

    ``want`` a tensor: ``got`` must be a tensor of its shape (any floating dtype). ``want`` a number:
    ``got`` may be an int, float, numpy scalar or one-element tensor. ``want`` a tuple: element by element.
    """
    if isinstance(want, (tuple, list)):
        return isinstance(got, (tuple, list)) and len(got) == len(want) \
            and all(same(g, w, atol, rtol) for g, w in zip(got, want))
    if isinstance(want, torch.Tensor) and (not isinstance(got, torch.Tensor) or got.shape != want.shape):
        return False
    got_t, want_t = _to_float_tensor(got), _to_float_tensor(want)
    if got_t is None or want_t is None:
        return False
    if not isinstance(want, torch.Tensor):
        if got_t.numel() != 1:
            return False
        got_t, want_t = got_t.reshape(()), want_t.reshape(())
    equal = (got_t == want_t) | (got_t.isnan() & want_t.isnan())
    return bool(((got_t - want_t).abs() <= atol + rtol * want_t.abs()).logical_or(equal).all())


def as_number(got: Any, what: str) -> float:
    """A float from a Python number, a numpy scalar or a one-element tensor; a hint for anything else."""
    if isinstance(got, torch.Tensor) and got.numel() != 1 or isinstance(got, np.ndarray) and got.size != 1:
        raise Hint(f"{what}: expected one number, got {describe(got)}")
    value = _to_float_tensor(got)
    if value is None:
        raise Hint(f"{what}: expected a number, got {describe(got)}")
    return float(value.reshape(()))


def as_int(got: Any, what: str) -> int:
    """An int from a Python int, a numpy integer or a one-element integer tensor; a hint for anything else."""
    if isinstance(got, torch.Tensor) and got.numel() == 1 and not got.is_floating_point() and got.dtype != torch.bool:
        return int(got)
    if isinstance(got, (numbers.Integral, np.integer)) and not isinstance(got, (bool, np.bool_)):
        return int(got)
    raise Hint(f"{what}: returned {describe(got)}; return a whole number (an int)")


def expect_tensor(got: Any, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """Check that ``got`` is a tensor of ``shape``; return it."""
    if isinstance(got, np.ndarray):
        raise Hint(f"{what}: expected a tensor, got {describe(got)}; stay in torch (a numpy array has no autograd "
                   "and cannot live on a GPU)")
    if not isinstance(got, torch.Tensor):
        raise Hint(f"{what}: expected a tensor, got {describe(got)} (did you forget to return it?)")
    if tuple(got.shape) != tuple(shape):
        raise Hint(f"{what}: expected shape {tuple(shape)}, got {tuple(got.shape)}")
    return got


def expect_close(got: Any, want: torch.Tensor, what: str, atol: float = 1e-5) -> None:
    """Check ``got`` against the reference ``want``: the hint says where and by how much, not the expected value."""
    got = expect_tensor(got, tuple(want.shape), what)
    if got.is_floating_point() and not torch.isfinite(got).all():
        bad = tuple((~torch.isfinite(got)).nonzero()[0].tolist())
        raise Hint(f"{what}: your result has inf or NaN (first at index {bad}); is something overflowing?")
    if same(got, want, atol=atol, rtol=0):
        return
    diff = (got.detach().cpu().double() - want.detach().cpu().double()).abs()
    where = tuple(int(i) for i in (diff == diff.max()).nonzero()[0])
    raise Hint(f"{what}: differs from the reference by up to {float(diff.max()):.3g} "
               f"(at index {where}, where yours is {float(got[where]):.6g})")


def _difference(got: Any, want: Any, what: str) -> None:
    """Raise the hint for the first way ``got`` differs from ``want`` (type, shape, then values)."""
    if isinstance(want, torch.Tensor):
        expect_close(got, want, what)
        raise Hint(f"{what}: your result differs from the reference")
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            raise Hint(f"{what}: expected {len(want)} results, got {describe(got)}")
        for i, (g, w) in enumerate(zip(got, want)):
            if not same(g, w):
                _difference(g, w, f"{what}, result {i + 1}")
        raise Hint(f"{what}: your result differs from the reference")
    value = as_number(got, what)
    direction = "larger" if value > float(want) else "smaller"
    raise Hint(f"{what}: your {value:.6g} is {direction} than the reference value")


# ---------------------------------------------------------------------------------------------
# Naming the mistake, and the usual check
# ---------------------------------------------------------------------------------------------

def name_mistake(mistakes: Sequence[Mistake], cases: Sequence[Case], got: Sequence[Any],
                 equal: Callable[[Any, Any], bool] = same) -> None:
    """Raise the hint of the first mistake that gives exactly ``got`` on EVERY case.

    A mistake that cannot run on some case, or differs from the learner's result on one, is not it.
    """
    for mistake in mistakes:
        try:
            wrong = [mistake.compute(*case.args) for case in cases]
        except Exception:  # this mistake cannot even run on these inputs, so it is not the one
            continue
        if all(equal(g, w) for g, w in zip(got, wrong)):
            raise Hint(mistake.hint)


def check_cases(answer: Callable[..., Any], cases: Sequence[Case], reference: Callable[..., Any], *,
                mistakes: Sequence[Mistake] = (), equal: Callable[[Any, Any], bool] = same,
                explain: Callable[[Any, Any, Case], None] | None = None,
                known_errors: Mapping[str, str] | None = None) -> list[Any]:
    """Run ``answer`` on every case and compare with ``reference``; return the learner's results.

    On a difference: the typical mistake that matches every case, else ``explain(got, want, case)``
    for the first differing case (default: type, shape, then where the values differ).
    """
    got = [call(answer, *case.args, known_errors=known_errors) for case in cases]
    want = [reference(*case.args) for case in cases]
    if all(equal(g, w) for g, w in zip(got, want)):
        return got
    name_mistake(mistakes, cases, got, equal)
    case, g, w = next((c, g, w) for c, g, w in zip(cases, got, want) if not equal(g, w))
    if explain:
        explain(g, w, case)
    _difference(g, w, case.what)
    raise Hint(f"{case.what}: your result differs from the reference")


# ---------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------

def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a result (one tensor, or a tuple of them)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def _backward(result: Any, weights: list[torch.Tensor]) -> None:
    """Backward of ``sum(weight * output)`` over the floating outputs, so every output entry counts."""
    total = sum((out * w).sum() for out, w in zip(_tensors(result), weights) if out.is_floating_point())
    total.backward()


def expect_gradients(answer: Callable[..., Any], reference: Callable[..., Any], case: Case,
                     names: Sequence[str] | None = None, atol: float = 1e-4) -> None:
    """Check that gradients flow through ``answer`` to every floating input, equal to the reference's.

    Catches results computed outside autograd (``.item()``, ``float()``, numpy, ``torch.tensor(...)``,
    ``.detach()``) and in-place edits that break ``backward()``.
    """
    def leaves() -> tuple[Any, ...]:
        return tuple(a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point()
                     else a for a in case.args)

    ours, theirs = leaves(), leaves()
    want = reference(*ours)
    got = call(answer, *theirs)
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(t.shape, generator=generator, dtype=torch.float64).to(t.dtype) for t in _tensors(want)]
    _backward(want, weights)
    got_tensors = [t for t in _tensors(got) if t.is_floating_point()]
    if not got_tensors or not any(t.requires_grad for t in got_tensors):
        raise Hint(f"{case.what}: your result is cut off from autograd, so no gradient could train through it: "
                   "keep every step in torch operations on the inputs (`.item()`, `float()`, numpy, "
                   "`torch.tensor(...)` and `.detach()` cut the graph)")
    try:
        _backward(got, weights)
    except RuntimeError as error:
        if "modified by an inplace operation" in str(error):
            raise Hint("backward() fails: an in-place operation (`x -= ...`, `x /= ...`, `x.exp_()`) overwrote a "
                       "value that autograd needs; write `x = x - ...` instead") from None
        raise Hint(f"backward() through your result fails: {str(error).splitlines()[0]}") from None
    labels = list(names) if names else argument_names(answer, case.args)
    for label, mine, ref in zip(labels, theirs, ours):
        if not isinstance(ref, torch.Tensor) or ref.grad is None:
            continue
        if mine.grad is None or not bool(mine.grad.abs().sum()) and bool(ref.grad.abs().sum()):
            raise Hint(f"{case.what}: no gradient reaches `{label}`: somewhere it leaves autograd (`.detach()`, "
                       "`.item()`, `float()`, numpy or `torch.tensor(...)`), so it could not be trained")
        if not same(mine.grad, ref.grad, atol=atol, rtol=1e-4):
            raise Hint(f"{case.what}: the values are right but the gradient with respect to `{label}` is not; "
                       "is part of the computation detached or done outside torch?")

