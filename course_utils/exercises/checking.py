"""Verdicts, hints and the ``@exercise`` decorator that turns a check into a checker, and the list of checkers.

A check is a function ``check(answer)`` that raises :class:`Hint` when the learner's ``answer`` is
wrong. ``@exercise(name, ...)`` turns it into a checker that prints one verdict line and returns a
:class:`CheckResult`. While a check runs, the decorator's settings (the functions the exercise
forbids, the per-call time limit, the seed of the hidden cases) are in force for every
:func:`~course_utils.exercises.calling.call` of the learner's code.
"""
from __future__ import annotations

import contextvars
import functools
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

TIME_LIMIT = 10.0  # seconds one call of the learner's function may run; a checker's ``time_limit=`` changes it


class Hint(Exception):
    """Raised inside a check: the message is the hint shown to the learner."""


class NotAttempted(Exception):
    """The learner's function still raises ``NotImplementedError``."""


# How each status is printed: a word, readable without colour or an emoji font.
VERDICTS = {"passed": "PASSED", "failed": "FAILED", "not attempted": "TODO"}


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one checker: ``status`` is "passed", "failed" or "not attempted".

    ``seed`` is the seed of the hidden cases (pass it back as ``seed=`` to repeat them); ``None``
    when the checker has none.
    """

    exercise: str
    status: str
    message: str = ""
    seed: int | None = field(default=None, compare=False)

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


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer: ``compute`` takes a case's arguments and returns what that wrong code returns.

    ``name`` is a few words for the table of checkers and the tests; ``hint`` is what the learner reads.
    """

    name: str
    compute: Callable[..., Any]
    hint: str


@dataclass
class Session:
    """The settings of the check that is running, read by :func:`~course_utils.exercises.calling.call`."""

    name: str
    forbidden: tuple[Any, ...] = ()
    time_limit: float = TIME_LIMIT
    seed: int = 0
    hidden_cases: int = 0  # how many hidden cases the check has run so far


_SESSION: contextvars.ContextVar[Session | None] = contextvars.ContextVar("exercise_session", default=None)


def session() -> Session:
    """The running check's settings; outside a checker, defaults with no forbidden functions."""
    return _SESSION.get() or Session("exercise")


def hidden_generator() -> torch.Generator:
    """A generator for the hidden cases: seeded afresh for every run of a checker (or by its ``seed=``),
    so that a hard-coded answer cannot pass, and never touching the notebook's own random numbers."""
    return torch.Generator().manual_seed(session().seed)


@dataclass(frozen=True)
class CheckerInfo:
    """What the table of checkers says about one checker."""

    name: str
    module: str
    checker: Callable[..., CheckResult]
    solution: Callable[..., Any] | None
    hidden: int
    mistakes: tuple[Mistake, ...]
    forbidden: tuple[Any, ...]
    gradients: bool


CHECKERS: list[CheckerInfo] = []  # every checker made with @exercise, in the order they were defined


def exercise(name: str, *, solution: Callable[..., Any] | None = None, hidden: int = 0,
             mistakes: Sequence[Mistake] = (), forbidden: Sequence[Any] = (),
             gradients: bool = False) -> Callable[[Callable[..., None]], Callable[..., CheckResult]]:
    """Turn ``check(answer, ...)``, which raises :class:`Hint` on a wrong answer, into a checker.

    Args:
        name: the exercise's name, printed in the verdict.
        solution: the reference answer, with the learner's signature (the tests check that it passes).
        hidden: how many hidden, randomised cases the check runs beside its fixed ones.
        mistakes: the typical wrong answers it names (for the table of checkers).
        forbidden: functions the learner's code may not call (torch functions, ``Tensor`` methods or
            Python functions), each alone or as a ``(function, hint)`` pair: the check fails naming the
            one used, with its hint. When the library's own function is forbidden, ``solution`` must be a
            separate model answer written from simpler operations (the checker would refuse the library's).
        gradients: whether the check also compares gradients (for losses and differentiable layers).

    The checker is ``checker(answer, quiet=False, time_limit=TIME_LIMIT, seed=None)``: ``quiet``
    prints nothing, ``time_limit`` is in seconds per call, ``seed`` repeats a run's hidden cases. It runs
    in a fork of torch's CPU random state, so a solved exercise leaves the notebook's later figures as an
    unsolved one does.
    """

    def decorate(check: Callable[..., None]) -> Callable[..., CheckResult]:
        @functools.wraps(check)
        def checker(answer: Any, *args: Any, quiet: bool = False, time_limit: float = TIME_LIMIT,
                    seed: int | None = None, **kwargs: Any) -> CheckResult:
            run = Session(name, tuple(forbidden), time_limit, secrets.randbits(62) if seed is None else seed)
            token = _SESSION.set(run)
            try:
                with torch.random.fork_rng(devices=[]):  # checking never moves the notebook's random numbers
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
            finally:
                _SESSION.reset(token)
            if hidden:
                result = CheckResult(result.exercise, result.status, result.message, run.seed)
            checker.hidden_cases_run = run.hidden_cases
            if not quiet:
                print(result)
            return result

        checker.hidden_cases_run = 0
        CHECKERS.append(CheckerInfo(name, check.__module__, checker, solution, hidden, tuple(mistakes),
                                    tuple(forbidden), gradients))
        return checker

    return decorate
