"""A small framework for "write this function" exercises, and the checkers of each notebook.

A learner's cell starts unsolved (its body is ``raise NotImplementedError``) and calls a
checker, e.g. ``check_softmax(softmax)``. The checker prints one line that starts with its verdict:

- ``PASSED softmax``;
- ``FAILED softmax: <a specific hint>``: what is wrong, never a traceback from inside torch;
- ``TODO softmax: not attempted yet: ...``: the notebook goes on (later cells use the library's version).

The verdicts are plain words, not emoji: they read the same in every font, terminal and log
(minimal Linux and WSL often have no emoji font).

It also returns a :class:`CheckResult`, which the tests use.

Writing a checker::

    @exercise("softmax")
    def check_softmax(answer):
        got = call(answer, torch.tensor([[1.0, 2.0]]))
        expect_close(got, reference, "softmax of [[1, 2]]")
        if ...: raise Hint("each row must sum to 1")
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch


class Hint(Exception):
    """Raised inside a checker: the message is the hint shown to the learner."""


class NotAttempted(Exception):
    """The learner's function still raises ``NotImplementedError``."""


# How each status is printed: a word, readable without colour or an emoji font.
VERDICTS = {"passed": "PASSED", "failed": "FAILED", "not attempted": "TODO"}


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one checker: ``status`` is "passed", "failed" or "not attempted"."""

    exercise: str
    status: str
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __str__(self) -> str:
        """``VERDICT exercise: message``, e.g. ``FAILED softmax: ...``; a plain pass is ``PASSED softmax``."""
        plain_pass = self.passed and self.message in ("", "passed")
        detail = "" if plain_pass else f": {self.message or self.status}"
        return f"{VERDICTS[self.status]} {self.exercise}{detail}"

    def _ipython_display_(self) -> None:
        """Show nothing more in a notebook: the checker has printed the verdict already."""


def exercise(name: str) -> Callable[[Callable[..., None]], Callable[..., CheckResult]]:
    """Turn ``check(answer, ...)``, which raises :class:`Hint` on a wrong answer, into a checker."""

    def decorate(check: Callable[..., None]) -> Callable[..., CheckResult]:
        @functools.wraps(check)
        def checker(answer: Any, *args: Any, quiet: bool = False, **kwargs: Any) -> CheckResult:
            try:
                check(answer, *args, **kwargs)
                result = CheckResult(name, "passed", "passed")
            except NotAttempted:
                result = CheckResult(name, "not attempted",
                                     "not attempted yet: replace `raise NotImplementedError` with your code")
            except Hint as hint:
                result = CheckResult(name, "failed", str(hint))
            except Exception as error:  # the answer broke the check itself: still a hint, not a traceback
                result = CheckResult(name, "failed", f"could not check your answer ({type(error).__name__}: "
                                                     f"{error}); does it return what the exercise asks for?")
            if not quiet:
                print(result)
            return result

        return checker

    return decorate


def describe(value: Any) -> str:
    """A short description of a value for hints: tensors by dtype and shape."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (int, float, str, bool)) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


def call(answer: Callable[..., Any], *args: Any, known_errors: Mapping[str, str] | None = None,
         **kwargs: Any) -> Any:
    """Call the learner's function; turn its exceptions into hints (or :class:`NotAttempted`).

    Args:
        known_errors: ``{piece of an error message: what it means}`` for the errors an exercise's
            learners often hit; a matching error becomes that plain hint.
    """
    if not callable(answer):
        raise Hint(f"expected a function, got {describe(answer)}")
    try:
        return answer(*args, **kwargs)
    except NotImplementedError as error:
        raise NotAttempted from error
    except Exception as error:  # the learner's code failed: say where, not a traceback
        for fragment, meaning in (known_errors or {}).items():
            if fragment in str(error):
                raise Hint(meaning) from None
        inputs = ", ".join(describe(a) for a in args)
        raise Hint(f"calling it with ({inputs}) raised {type(error).__name__}: {error}") from None


def expect_tensor(got: Any, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """Check that ``got`` is a floating tensor of ``shape``; return it."""
    if not isinstance(got, torch.Tensor):
        raise Hint(f"{what}: expected a tensor, got {describe(got)} (did you forget to return it?)")
    if tuple(got.shape) != tuple(shape):
        raise Hint(f"{what}: expected shape {tuple(shape)}, got {tuple(got.shape)}")
    return got


def expect_close(got: torch.Tensor, want: torch.Tensor, what: str, atol: float = 1e-5) -> None:
    """Check ``got`` against the reference ``want``; the hint says where and by how much they differ."""
    got = expect_tensor(got, tuple(want.shape), what)
    if not torch.isfinite(got).all():
        bad = (~torch.isfinite(got)).nonzero()[0].tolist()
        raise Hint(f"{what}: your result has inf or NaN (first at index {bad}); is something overflowing?")
    diff = (got.detach().double() - want.double()).abs()
    if float(diff.max()) > atol:
        where = tuple(int(i) for i in (diff == diff.max()).nonzero()[0])
        raise Hint(f"{what}: differs from the reference by up to {float(diff.max()):.3g} "
                   f"(at index {where}: yours {float(got[where]):.6g}, expected {float(want[where]):.6g})")


def name_mistake(mistakes: Sequence[tuple[Callable[..., Any], str]], cases: Sequence[tuple],
                 got: list[Any], want: list[Any]) -> None:
    """Raise the hint of the typical mistake that gives exactly ``got`` on every case.

    ``mistakes`` holds ``(wrong_solution, hint)`` pairs; each wrong solution takes a case's arguments.
    """
    for mistake, hint in mistakes:
        if got != want and all(g == mistake(*case) for case, g in zip(cases, got)):
            raise Hint(hint)
