"""Calling the learner's function under the exercise's rules.

:func:`call` runs the learner's function on copies of the inputs and turns everything that can go
wrong into a :class:`~course_utils.exercises.checking.Hint` that says what happened:

- an exception names the learner's own line (``line 3 of its cell``), not a frame inside torch;
  ``NotImplementedError`` raised by the learner's own code means "not attempted yet";
- a call that runs past the time limit is stopped;
- a function the exercise forbids (``torch.softmax`` in a softmax exercise, say) is caught while it
  is called, however it was imported: torch functions and ``Tensor`` methods through a
  ``TorchFunctionMode``, Python functions through the profiler hook;
- an input changed in place (``x -= ...``, ``x.exp_()``, ``hidden_sizes.append(...)``) is found by
  comparing each input with a copy taken before the call.
"""
from __future__ import annotations

import copy
import ctypes
import inspect
import signal
import sys
import sysconfig
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from .checking import Hint, NotAttempted, session


class TimeLimit(BaseException):
    """Raised into the learner's code when a call runs past the time limit (a BaseException, so that a
    learner's ``except Exception`` cannot swallow it)."""


KNOWN_ERRORS = {  # a piece of an error message -> what it means, for every exercise
    "a leaf Variable that requires grad is being used in an in-place operation":
        "your code changes an input in place (e.g. `x -= ...`, `x.exp_()`, `x[...] = ...`); compute a new "
        "tensor instead (`x = x - ...`)",
    "modified by an inplace operation":
        "an in-place operation (`x -= ...`, `x /= ...`, `x.exp_()`) overwrote a value that backward() needs; "
        "write `x = x - ...` instead of `x -= ...`",
    "on Tensor that requires grad": "your code goes through numpy (or `.numpy()`), where no gradient can follow, so "
                                    "nothing could train through it: stay with torch operations",
    "return_types.max": "x.max(dim=...) returns a pair (values, indices); take its .values: "
                        "x.max(dim=-1, keepdim=True).values",
    "could not infer output dtype": ".mean() does not work on a tensor of True/False; convert it first: "
                                    "(predictions == labels).float().mean()",
}


def describe(value: Any) -> str:
    """A short description of a value for hints: tensors and arrays by dtype and shape."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a numpy {value.dtype} array of shape {value.shape}"
    if isinstance(value, np.generic):
        return f"a numpy {value.dtype} scalar"
    if isinstance(value, (int, float, str, bool)) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


def display_name(function: Any) -> str:
    """How a forbidden function is named in hints: ``torch.softmax``, ``F.conv2d``, ``Tensor.unfold``..."""
    name = getattr(function, "__name__", repr(function))
    module = getattr(function, "__module__", None) or ""
    if getattr(torch.Tensor, name, None) is function:
        return f"Tensor.{name}"
    if module == "torch.nn.functional" or getattr(F, name, None) is function:
        return f"F.{name}"
    if getattr(torch.special, name.removeprefix("special_"), None) is function:
        return f"torch.special.{name.removeprefix('special_')}"
    if getattr(torch, name, None) is function:
        return f"torch.{name}"
    if module.startswith("torch.nn.modules."):
        return f"nn.{getattr(function, '__qualname__', name)}"
    return f"{module}.{getattr(function, '__qualname__', name)}" if module else name


def call(answer: Callable[..., Any], *args: Any, known_errors: Mapping[str, str] | None = None,
         **kwargs: Any) -> Any:
    """Call the learner's function under the running exercise's rules; return what it returns.

    The function gets copies of ``args`` (tensors keep their autograd graph), so the caller's inputs
    never change. Raises :class:`NotAttempted` for the learner's own ``raise NotImplementedError``,
    and :class:`Hint` for an error (naming the learner's line), a time-out, a forbidden function or an
    input changed in place.

    Args:
        known_errors: ``{piece of an error message: what it means}`` for the errors an exercise's
            learners often hit; a matching error becomes that plain hint.
    """
    if not callable(answer):
        raise Hint(f"expected a function, got {describe(answer)}")
    rules = session()
    given, given_kwargs = _copy(args), _copy(kwargs)
    watch = _Watch(rules.forbidden)
    try:
        with _time_limit(rules.time_limit), watch:
            result = answer(*given, **given_kwargs)
    except NotImplementedError as error:
        if _raised_by_learner(error):
            raise NotAttempted from error
        raise Hint(_error_hint(error, args, known_errors)) from None
    except TimeLimit:
        inputs = ", ".join(describe(a) for a in args)
        raise Hint(f"calling it with ({inputs}) ran for more than {rules.time_limit:g} s and was stopped: is there "
                   "a loop that never ends, or one over far more items than the inputs have?") from None
    except (Hint, NotAttempted):
        raise
    except Exception as error:  # the learner's code failed: say where, not a traceback
        raise Hint(_error_hint(error, args, known_errors)) from None
    if watch.used:
        name = watch.used[0]
        raise Hint(f"your code calls `{name}`: {watch.hints.get(name, FORBIDDEN_HINT)}")
    for name, before, after in zip(argument_names(answer, args), args, given):
        if _changed(before, after):
            raise Hint(_in_place_hint(name, before))
    return result


def _in_place_hint(name: str, value: Any) -> str:
    """The hint for an input ``name`` changed in place, worded for its kind (tensor, list, other)."""
    if isinstance(value, torch.Tensor):
        how, fix = f"`{name} -= ...`, `{name}.exp_()`, `{name}[...] = ...`", f"(`{name} = {name} - ...`) or work on " \
                                                                              f"`{name}.clone()`"
    elif isinstance(value, list):
        how, fix = f"`{name}.append(...)`, `{name}[0] = ...`", f"or work on a copy, `list({name})`"
    else:
        how, fix = f"`{name}[...] = ...`", "or work on a copy"
    return (f"your function changed its input `{name}` in place (e.g. {how}): the caller's data must stay as it "
            f"was. Compute a new value {fix}")


# ---------------------------------------------------------------------------------------------
# Errors: the learner's own line
# ---------------------------------------------------------------------------------------------

_LIBRARY_DIRS = tuple({Path(torch.__file__).resolve().parent, Path(__file__).resolve().parents[1],
                       *(Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "purelib", "platlib"))})


def _is_learner_file(filename: str) -> bool:
    """True for a notebook cell or a file outside torch, course_utils and the installed packages."""
    if filename.startswith("<"):
        return filename.startswith("<ipython-input")
    path = Path(filename).resolve()
    return not any(path.is_relative_to(folder) for folder in _LIBRARY_DIRS)


def _learner_frame(error: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of the learner's own code in ``error``'s traceback."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if _is_learner_file(f.filename)]
    return frames[-1] if frames else None


def _raised_by_learner(error: BaseException) -> bool:
    """True when the innermost frame of the traceback is the learner's (their own ``raise``)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and _is_learner_file(frames[-1].filename)


def _location(frame: traceback.FrameSummary) -> str:
    """``in `f`, line 3 of its cell (`source`)``: where the learner's code raised."""
    cell = "ipykernel_" in frame.filename or frame.filename.startswith("<ipython-input")
    place = "its cell" if cell else Path(frame.filename).name
    source = f" (`{frame.line.strip()}`)" if frame.line else ""
    return f"in `{frame.name}`, line {frame.lineno} of {place}{source}"


def _error_hint(error: Exception, args: tuple[Any, ...], known_errors: Mapping[str, str] | None) -> str:
    frame = _learner_frame(error)
    where = f" {_location(frame)}" if frame else ""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    for fragment, meaning in {**KNOWN_ERRORS, **(known_errors or {})}.items():
        if fragment in str(error):
            return f"{meaning} (raised{where})" if where else meaning
    inputs = ", ".join(describe(a) for a in args)
    return f"calling it with ({inputs}) raised {type(error).__name__}{where}: {message}"


# ---------------------------------------------------------------------------------------------
# Inputs: copies in, compared after
# ---------------------------------------------------------------------------------------------

def _copy(value: Any) -> Any:
    """A copy the learner may change: tensors cloned (keeping their graph), containers copied deeply."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    try:
        return copy.deepcopy(value)
    except Exception:  # an object that cannot be copied is passed as it is
        return value


def _changed(before: Any, after: Any) -> bool:
    """True when ``after`` (what the learner got) no longer equals ``before`` (the caller's value)."""
    if isinstance(before, torch.Tensor):
        if not isinstance(after, torch.Tensor) or after.shape != before.shape or after.dtype != before.dtype:
            return True
        a, b = after.detach(), before.detach()
        return not (torch.equal(a, b) or (a.is_floating_point() and bool(((a == b) | (a.isnan() & b.isnan())).all())))
    if isinstance(before, (list, tuple)):
        return not isinstance(after, (list, tuple)) or len(after) != len(before) \
            or any(_changed(b, a) for b, a in zip(before, after))
    if isinstance(before, np.ndarray):
        return not np.array_equal(before, after, equal_nan=True)
    try:
        return bool(before != after)
    except Exception:
        return False


def argument_names(answer: Callable[..., Any], args: tuple[Any, ...]) -> list[str]:
    """The learner's names of the positional arguments (``argument 1``... when they cannot be read)."""
    try:
        bound = inspect.signature(answer).bind(*args)
        names = [name for name, value in bound.arguments.items()
                 if inspect.signature(answer).parameters[name].kind is not inspect.Parameter.VAR_POSITIONAL]
        if len(names) == len(args):
            return names
    except (TypeError, ValueError):
        pass
    return [f"argument {i + 1}" for i in range(len(args))]


# ---------------------------------------------------------------------------------------------
# Forbidden functions
# ---------------------------------------------------------------------------------------------

class _ForbiddenMode(TorchFunctionMode):
    """Notes every forbidden torch function or ``Tensor`` method called while it is active."""

    def __init__(self, targets: dict[int, str], used: list[str]) -> None:
        super().__init__()
        self.targets, self.used = targets, used

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch's protocol)
        name = self.targets.get(id(func))
        if name and name not in self.used:
            self.used.append(name)
        return func(*args, **(kwargs or {}))


FORBIDDEN_HINT = "this exercise asks you to write that yourself, from simpler operations"


def forbidden_functions(forbidden: tuple[Any, ...]) -> list[tuple[Any, str | None]]:
    """``(function, hint or None)`` for each entry of an exercise's ``forbidden``: a function, or a
    ``(function, hint)`` pair whose hint replaces :data:`FORBIDDEN_HINT`."""
    return [(entry[0], entry[1]) if isinstance(entry, tuple) else (entry, None) for entry in forbidden]


class _Watch:
    """While active, records in ``used`` which of the ``forbidden`` functions the code calls."""

    def __init__(self, forbidden: tuple[Any, ...]) -> None:
        pairs = forbidden_functions(forbidden)
        forbidden = tuple(function for function, _ in pairs)
        self.hints = {display_name(function): hint for function, hint in pairs if hint}
        self.used: list[str] = []
        # Python functions are watched by the profiler (however the learner's code reaches them), torch
        # functions and Tensor methods by the mode; a Python function torch can override is in both.
        self.codes = {f.__code__: display_name(f) for f in forbidden if hasattr(f, "__code__")}
        self.torch = {id(f): display_name(f) for f in forbidden}
        self.mode = _ForbiddenMode(self.torch, self.used) if self.torch else None
        self.previous_profile: Any = None

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in self.codes and self.codes[frame.f_code] not in self.used:
            self.used.append(self.codes[frame.f_code])

    def __enter__(self) -> _Watch:
        if self.mode:
            self.mode.__enter__()
        if self.codes:
            self.previous_profile = sys.getprofile()
            sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.codes:
            sys.setprofile(self.previous_profile)
        if self.mode:
            self.mode.__exit__(*exc)


# ---------------------------------------------------------------------------------------------
# Time limit
# ---------------------------------------------------------------------------------------------

@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`TimeLimit` in the code run inside after ``seconds``.

    In the main thread on Linux and macOS (a notebook's kernel, pytest) a timer signal stops even a
    ``time.sleep``; elsewhere (Windows, other threads) a watchdog raises it at the next Python step.
    """
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        def on_alarm(signum: int, frame: Any) -> None:
            raise TimeLimit

        outer_left, _ = signal.getitimer(signal.ITIMER_REAL)   # an outer timer (e.g. a test's) is restored after
        previous = signal.signal(signal.SIGALRM, on_alarm)
        start = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, seconds if not outer_left else min(seconds, outer_left))
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if outer_left:
                signal.setitimer(signal.ITIMER_REAL, max(outer_left - (time.monotonic() - start), 1e-3))
        return
    thread_id, lock, done = threading.get_ident(), threading.Lock(), [False]

    def interrupt() -> None:
        with lock:
            if not done[0]:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(TimeLimit))

    timer = threading.Timer(seconds, interrupt)
    timer.start()
    try:
        yield
    finally:
        with lock:
            done[0] = True
        timer.cancel()
