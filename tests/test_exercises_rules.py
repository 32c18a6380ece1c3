"""Every checker of the course's notebooks under the same rules, tested through the list of checkers.

For each checker: the reference passes; its float64 and numpy-scalar variants pass; a stub is "not
attempted"; each named mistake gets its own hint; a correct answer that edits its input in place,
a hard-coded answer, a detached result (where gradients are checked) and a call that sleeps past
the time limit all fail with their own message. ``CHECKERS.md`` lists them all and is up to date.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from learner_answers import same_inputs, stub

from course_utils.exercises import CheckerInfo, all_checkers, checker_table

CHECKERS = all_checkers()
IDS = [f"{info.module.rsplit('.', 1)[1]}.{info.name}" for info in CHECKERS]
TABLE = Path(__file__).resolve().parents[1] / "course_utils" / "exercises" / "CHECKERS.md"


def test_every_notebook_checker_is_listed() -> None:
    assert len(CHECKERS) == 42
    assert all(info.solution is not None for info in CHECKERS)


def test_the_generated_table_is_up_to_date() -> None:
    assert TABLE.read_text(encoding="utf-8") == checker_table(), \
        "run `python -m course_utils checkers --write` and commit CHECKERS.md"


def convert(value: Any, float_tensor: Callable[[torch.Tensor], Any], number: Callable[[Any], Any]) -> Any:
    """``value`` with its floating tensors and its numbers converted."""
    if isinstance(value, torch.Tensor):
        return float_tensor(value) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(convert(v, float_tensor, number) for v in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(value)
    return value


def variant(info: CheckerInfo, change: Callable[[Any], Any]) -> Callable[..., Any]:
    def answer(*args: Any) -> Any:
        return change(info.solution(*args))
    return answer


@pytest.mark.parametrize("info", CHECKERS, ids=IDS)
def test_the_reference_and_its_float64_and_numpy_variants_pass(info: CheckerInfo) -> None:
    result = info.checker(info.solution, quiet=True)
    assert result.passed and str(result) == f"PASSED {info.name}" and isinstance(result.seed, int)
    float64 = variant(info, lambda v: convert(v, torch.Tensor.double, lambda n: np.float64(n)
                                              if isinstance(n, float) else np.int64(n)))
    assert info.checker(float64, quiet=True).passed, info.checker(float64, quiet=True).message
    numpy = variant(info, lambda v: convert(v, lambda t: t, lambda n: np.float32(n) if isinstance(n, float)
                                            else np.int32(n)))
    assert info.checker(numpy, quiet=True).passed, info.checker(numpy, quiet=True).message


@pytest.mark.parametrize("info", CHECKERS, ids=IDS)
def test_the_declared_hidden_cases_run_and_a_stub_is_not_attempted(info: CheckerInfo, capsys) -> None:
    info.checker(info.solution, quiet=True)
    assert info.hidden >= 2 and info.checker.hidden_cases_run == info.hidden

    result = info.checker(stub)
    assert result.status == "not attempted" and "NotImplementedError" in result.message
    assert capsys.readouterr().out.startswith(f"TODO {info.name}:")


@pytest.mark.parametrize("info", CHECKERS, ids=IDS)
def test_each_named_mistake_gets_its_own_hint(info: CheckerInfo) -> None:
    for mistake in info.mistakes:
        result = info.checker(mistake.compute, quiet=True)
        # the hint alone, or after the case that showed the mistake ("make_mlp([64]): <hint>")
        exact = result.message == mistake.hint or result.message.endswith(": " + mistake.hint)
        assert result.status == "failed" and exact, (mistake.name, result.message)


def edit_first_input(value: Any) -> bool:
    """Change ``value`` in place (a tensor or a list); False when it cannot be changed."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool:
            value.logical_not_()
        else:
            value.add_(1)
        return True
    if isinstance(value, list):
        value.append(value[-1] if value else 1)
        return True
    return False


@pytest.mark.parametrize("info", CHECKERS, ids=IDS)
def test_an_answer_that_edits_its_input_in_place_fails(info: CheckerInfo) -> None:
    editable = []

    def answer(*args: Any) -> Any:
        result = info.solution(*args)
        with torch.no_grad():
            editable.append(any(edit_first_input(a) for a in args))
        return result

    result = info.checker(answer, quiet=True)
    if not any(editable):
        pytest.skip(f"{info.name} takes no tensor or list input: nothing to edit in place")
    assert result.status == "failed" and "in place" in result.message, result.message


@pytest.mark.parametrize("info", CHECKERS, ids=IDS)
def test_an_answer_hard_coded_from_an_earlier_run_fails(info: CheckerInfo) -> None:
    seen: list[tuple[tuple[Any, ...], Any]] = []

    def recorder(*args: Any) -> Any:
        result = info.solution(*args)
        seen.append((args, result))
        return result

    assert info.checker(recorder, quiet=True, seed=1).passed

    def hard_coded(*args: Any) -> Any:
        return next((out for inputs, out in seen if same_inputs(inputs, args)), seen[0][1])

    result = info.checker(hard_coded, quiet=True, seed=2)
    assert result.status == "failed" and "hidden case" in result.message, result.message


def detach(value: Any) -> Any:
    return convert(value, torch.Tensor.detach, lambda n: n)


@pytest.mark.parametrize("info", [i for i in CHECKERS if i.gradients], ids=[n for n, i in zip(IDS, CHECKERS)
                                                                            if i.gradients])
def test_a_detached_result_fails_where_gradients_are_checked(info: CheckerInfo) -> None:
    result = info.checker(variant(info, detach), quiet=True)
    assert result.status == "failed" and "autograd" in result.message, result.message


@pytest.mark.parametrize("info", CHECKERS, ids=IDS)
def test_a_call_that_sleeps_past_the_limit_is_stopped(info: CheckerInfo) -> None:
    start = time.monotonic()
    result = info.checker(lambda *args: time.sleep(5), quiet=True, time_limit=0.1)
    assert time.monotonic() - start < 1.5
    assert result.status == "failed" and "more than 0.1 s and was stopped" in result.message


def test_the_command_prints_the_table(capsys) -> None:
    from course_utils.__main__ import main

    assert main(["checkers"]) == 0 and capsys.readouterr().out == checker_table()
    assert main(["checkers", "--bogus"]) == 2



def test_the_list_does_not_depend_on_which_module_was_imported_first(monkeypatch) -> None:
    import course_utils.exercises as exercises

    expected = all_checkers()
    registered = list(exercises.CHECKERS)
    search_first = ([i for i in registered if i.module.endswith(".search")]
                    + [i for i in registered if not i.module.endswith(".search")])
    monkeypatch.setattr(exercises, "CHECKERS", search_first)
    assert all_checkers() == expected
