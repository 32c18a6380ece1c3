"""The exercise framework itself (course_utils.exercises): verdicts, hints, and the helpers checkers use."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from course_utils.exercises import (
    Case,
    CheckResult,
    Hint,
    Mistake,
    NotAttempted,
    as_int,
    as_number,
    call,
    check_cases,
    describe,
    exercise,
    expect_close,
    expect_gradients,
    expect_tensor,
    hidden_cases,
    name_mistake,
    same,
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
    assert "4.0" not in str(error.value) and "expected 4" not in str(error.value)  # never the expected value
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
    assert describe(np.zeros((2, 3), np.float32)) == "a numpy float32 array of shape (2, 3)"
    assert describe(np.float32(1)) == "a numpy float32 scalar"


def test_verdict_strings_and_notebook_display():
    assert str(CheckResult("x", "not attempted")) == "TODO x: not attempted"
    assert str(CheckResult("x", "failed", "hint")) == "FAILED x: hint"
    assert CheckResult("x", "passed")._ipython_display_() is None  # the checker printed already


# ---------------------------------------------------------------------------------------------
# The rules every checker runs under
# ---------------------------------------------------------------------------------------------

def reference_softmax(x: torch.Tensor) -> torch.Tensor:
    return (x - x.max(-1, keepdim=True).values).exp() / (x - x.max(-1, keepdim=True).values).exp().sum(-1, keepdim=True)


MISTAKES = (Mistake("over dim 0", lambda x: torch.softmax(x, 0), "normalise over the last dim"),
            Mistake("not normalised", lambda x: x.exp(), "divide by the row sums"))


@exercise("softmax", solution=reference_softmax, hidden=2, mistakes=MISTAKES, forbidden=(torch.softmax, F.softmax,
                                                                                         torch.Tensor.softmax),
          gradients=True)
def check_softmax(answer) -> None:
    cases = [Case((torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]),), "softmax of 2 rows")]
    cases += hidden_cases(lambda g: ((torch.randn(4, 5, generator=g),), "x (4, 5)"), 2)
    check_cases(answer, cases, reference_softmax, mistakes=MISTAKES)
    expect_gradients(answer, reference_softmax, cases[0])


def test_a_correct_answer_in_float64_passes_and_reports_its_seed() -> None:
    result = check_softmax(lambda x: reference_softmax(x.double()), quiet=True)
    assert result.passed and isinstance(result.seed, int)
    assert check_softmax.hidden_cases_run == 2


def test_hidden_cases_change_with_the_seed_and_repeat_with_it() -> None:
    seen = {}

    def record(seed):
        inputs = []
        check_softmax(lambda x: inputs.append(x) or reference_softmax(x), quiet=True, seed=seed)
        seen.setdefault(seed, []).append(inputs)

    record(1), record(1), record(2)
    assert all(torch.equal(a, b) for a, b in zip(*seen[1]))
    assert not torch.equal(seen[1][0][1], seen[2][0][1])  # calls: the fixed case, then the two hidden ones
    assert torch.equal(seen[1][0][0], seen[2][0][0])  # the fixed case is the same


def test_a_hard_coded_answer_fails_on_the_hidden_cases() -> None:
    fixed = reference_softmax(torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]]))
    result = check_softmax(lambda x: fixed if x.shape == fixed.shape else torch.full(x.shape, 0.2), quiet=True)
    assert result.status == "failed" and "hidden case" in result.message


def test_an_input_changed_in_place_is_named() -> None:
    def softmax(logits):
        logits -= logits.max(-1, keepdim=True).values
        return logits.exp() / logits.exp().sum(-1, keepdim=True)

    result = check_softmax(softmax, quiet=True)
    assert "changed its input `logits` in place" in result.message
    # a list argument counts too
    assert "in place" in check_listed(lambda sizes: sizes.append(3) or len(sizes), quiet=True).message


@exercise("listed")
def check_listed(answer) -> None:
    got = call(answer, [1, 2])
    if got != 2:
        raise Hint("count the items")


@pytest.mark.parametrize("shortcut, name", [
    (lambda x: torch.softmax(x, -1), "torch.softmax"),
    (lambda x: F.softmax(x, dim=-1), "F.softmax"),
    (lambda x: x.softmax(-1), "Tensor.softmax"),
    (lambda x: nn.Softmax(dim=-1)(x), "F.softmax"),
])
def test_a_forbidden_function_is_named_however_it_is_reached(shortcut, name) -> None:
    result = check_softmax(shortcut, quiet=True)
    assert result.status == "failed" and f"`{name}`" in result.message


def test_a_forbidden_python_function_is_caught_through_any_import() -> None:
    @exercise("abs_max", forbidden=(helper_max,))
    def check(answer):
        if call(answer, torch.tensor([1.0, -3.0])) != 3:
            raise Hint("the largest absolute value")

    alias = helper_max
    assert "helper_max" in check(lambda x: alias(x), quiet=True).message
    assert check(lambda x: x.abs().max(), quiet=True).passed


def helper_max(x: torch.Tensor) -> torch.Tensor:
    return x.abs().max()


def test_a_detached_or_numpy_result_fails_the_gradient_check() -> None:
    detached = check_softmax(lambda x: reference_softmax(x).detach(), quiet=True)
    assert "cut off from autograd" in detached.message

    def through_numpy(x):
        e = np.exp(x.detach().numpy() - x.detach().numpy().max(-1, keepdims=True))
        return torch.from_numpy(e / e.sum(-1, keepdims=True))

    assert "cut off from autograd" in check_softmax(through_numpy, quiet=True).message


def test_an_in_place_step_that_breaks_backward_is_explained() -> None:
    def softmax(x):
        y = (x - x.max(-1, keepdim=True).values).exp()
        y /= y.sum(-1, keepdim=True)
        return y

    assert "overwrote a value that autograd needs" in check_softmax(softmax, quiet=True).message


def test_a_loss_with_a_detached_input_names_that_input() -> None:
    def loss(a, scale):
        return (a * scale).sum()

    case = Case((torch.randn(3), torch.tensor(2.0)), "a case")
    expect_gradients(loss, loss, case)
    with pytest.raises(Hint, match="no gradient reaches `scale`"):
        expect_gradients(lambda a, scale: (a * scale.detach()).sum(), loss, case)
    with pytest.raises(Hint, match="no gradient reaches `scale`"):
        expect_gradients(lambda a, scale: (a * scale.item()).sum(), loss, case)


def test_the_learners_line_is_named() -> None:
    def softmax(x):
        shifted = x - x.max(dim=-1)
        return shifted.exp()

    message = check_softmax(softmax, quiet=True).message
    assert "in `softmax`, line" in message and "test_exercises.py" in message and "x.max(dim=-1)" in message
    assert "returns a pair (values, indices)" in message  # the known error's plain meaning


def test_not_implemented_from_inside_torch_is_not_called_not_attempted() -> None:
    def calls_a_module_without_forward(x):
        return nn.Module()(x)  # torch raises NotImplementedError: "missing the required forward function"

    result = check_softmax(calls_a_module_without_forward, quiet=True)
    assert result.status == "failed" and "NotImplementedError" in result.message
    assert "line" in result.message and "nn.Module()(x)" in result.message


def test_a_call_past_the_time_limit_is_stopped() -> None:
    start = time.monotonic()
    result = check_softmax(lambda x: time.sleep(5), quiet=True, time_limit=0.2)
    assert time.monotonic() - start < 2
    assert result.status == "failed" and "more than 0.2 s and was stopped" in result.message


def test_an_endless_loop_off_the_main_thread_is_stopped() -> None:
    def endless(x):
        while True:
            x = x + 0

    results = []
    worker = threading.Thread(target=lambda: results.append(check_softmax(endless, quiet=True, time_limit=0.2)))
    worker.start()
    worker.join(5)
    assert not worker.is_alive() and "was stopped" in results[0].message


def test_a_mistake_is_named_only_when_it_matches_every_case() -> None:
    cases = [Case((torch.tensor([[0.0, 1.0]]),), "one"), Case((torch.tensor([[2.0, 0.0]]),), "two")]
    first = torch.tensor([[0.0, 1.0]]).exp()
    name_mistake(MISTAKES, cases, [first, torch.zeros(1, 2)])  # matches "not normalised" on one case only: no hint
    with pytest.raises(Hint, match="divide by the row sums"):
        name_mistake(MISTAKES, cases, [c.args[0].exp() for c in cases])


def test_same_accepts_the_valid_alternatives() -> None:
    want = torch.tensor([0.25, 0.75])
    assert same(want.double(), want) and not same(want[None], want) and not same(want.numpy(), want)
    assert same(np.float32(0.5), 0.5) and same(torch.tensor([0.5]), 0.5) and same(np.array(0.5), 0.5)
    assert not same(True, 1.0) and not same("0.5", 0.5)
    assert same((want, 1.0), (want.double(), np.float64(1.0)))
    assert same(torch.tensor([float("nan"), float("inf")]), torch.tensor([float("nan"), float("inf")]))


def test_numbers_from_every_kind_of_scalar() -> None:
    assert as_number(np.float32(0.5), "x") == 0.5 and as_number(torch.tensor([2.0]), "x") == 2.0
    assert as_int(np.int64(3), "x") == 3 and as_int(torch.tensor(3), "x") == 3
    for bad in (True, torch.tensor([1.0, 2.0]), "3"):
        with pytest.raises(Hint):
            as_number(bad, "x")
    with pytest.raises(Hint, match="whole number"):
        as_int(3.0, "x")


def test_the_rules_change_nothing_outside_a_checker() -> None:
    x = torch.tensor([1.0, 2.0])
    assert torch.equal(call(lambda t: t * 2, x), 2 * x)
    assert torch.softmax(x, 0).sum() == pytest.approx(1.0)  # no mode or profiler left behind


def test_checking_leaves_the_notebooks_random_numbers_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    check_softmax(lambda x: reference_softmax(x) + 0 * torch.rand(1), quiet=True)  # the answer draws numbers
    assert torch.equal(torch.rand(3), expected)
