"""The exercise framework itself (course_utils.exercises): verdicts, hints, and the helpers checkers use."""
from __future__ import annotations

import pytest
import torch

from course_utils.exercises import (
    CheckResult,
    Hint,
    NotAttempted,
    call,
    describe,
    exercise,
    expect_close,
    expect_tensor,
)


@exercise("double")
def check_double(answer) -> None:
    x = torch.tensor([1.0, -2.0, 3.0])
    got = expect_tensor(call(answer, x), (3,), "double([1, -2, 3])")
    if torch.allclose(got, x * x):
        raise Hint("that squares x; doubling is x + x")
    expect_close(got, 2 * x, "double([1, -2, 3])")


def test_right_answer_passes(capsys):
    result = check_double(lambda x: x * 2)
    assert result == CheckResult("double", "passed", "passed") and result.passed
    assert capsys.readouterr().out.strip() == "PASSED double"


def test_wrong_answer_gets_the_specific_hint(capsys):
    result = check_double(lambda x: x * x)
    assert result.status == "failed" and not result.passed and "squares" in result.message
    assert capsys.readouterr().out.startswith("FAILED double: that squares x")


def test_stub_is_not_attempted(capsys):
    def double(x):
        raise NotImplementedError("your code here")

    result = check_double(double)
    assert result.status == "not attempted" and "NotImplementedError" in result.message
    assert capsys.readouterr().out.startswith("TODO double:")


def test_quiet_prints_nothing(capsys):
    check_double(lambda x: x * 2, quiet=True)
    assert capsys.readouterr().out == ""


def test_learner_exceptions_become_hints_without_traceback():
    result = check_double(lambda x: x.undefined_method(), quiet=True)
    assert result.status == "failed"
    assert "AttributeError" in result.message and "a torch.float32 tensor of shape (3,)" in result.message
    assert "Traceback" not in result.message


def test_missing_return_and_wrong_shape():
    assert "forget to return" in check_double(lambda x: None, quiet=True).message
    result = check_double(lambda x: (2 * x)[None], quiet=True)
    assert "expected shape (3,), got (1, 3)" in result.message


def test_not_a_function():
    assert "expected a function, got 3" in check_double(3, quiet=True).message


def test_expect_close_reports_where_and_by_how_much():
    want = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    expect_close(want + 1e-7, want, "x")
    with pytest.raises(Hint) as error:
        expect_close(torch.tensor([[1.0, 2.0], [3.0, 4.5]]), want, "x")
    assert "0.5" in str(error.value) and "(1, 1)" in str(error.value) and "4.5" in str(error.value)
    with pytest.raises(Hint, match="inf or NaN"):
        expect_close(torch.tensor([[1.0, float("nan")], [3.0, 4.0]]), want, "x")


def test_call_turns_not_implemented_into_not_attempted():
    def stub():
        raise NotImplementedError

    with pytest.raises(NotAttempted):
        call(stub)


def test_describe():
    assert describe(torch.zeros(2, 3)) == "a torch.float32 tensor of shape (2, 3)"
    assert describe(1.5) == "1.5" and describe(None) == "None" and describe([1]) == "a list"


def test_verdict_strings_and_notebook_display():
    assert str(CheckResult("x", "not attempted")) == "TODO x: not attempted"
    assert str(CheckResult("x", "failed", "hint")) == "FAILED x: hint"
    assert CheckResult("x", "passed")._ipython_display_() is None  # the checker printed already
