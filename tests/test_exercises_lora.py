"""The LoRA checkers of notebook 07: they accept the model answers and other correct versions, name each typical
mistake, explain shape errors, reject the library's shortcuts, in-place edits, detached results and hard-coded
answers, and wait for a stub.
The reference, its float64 variant, a stub and each named mistake run for every checker in
tests/test_exercises_rules.py."""
from __future__ import annotations

import pytest
import torch
from learner_answers import rejects as _rejects
from torch import nn
from torch.nn import functional as F

from course_utils.exercises import CHECKERS
from course_utils.exercises import lora as ex
from course_utils.lora import LoRALinear, merge_lora

INFOS = {info.name: info for info in CHECKERS if info.module == ex.__name__}
NAMES = ["lora_forward", "lora_merge"]


def _layer(weight, bias, A, B, alpha, r) -> LoRALinear:
    """The library's layer holding these weights."""
    layer = LoRALinear(nn.Linear(weight.shape[1], weight.shape[0]), r=r, alpha=alpha)
    with torch.no_grad():
        for mine, value in ((layer.base.weight, weight), (layer.base.bias, bias), (layer.lora_A, A),
                            (layer.lora_B, B)):
            mine.copy_(value)
    return layer


# ---------------------------------------------------------------------------------------------
# Model answers agree with the library
# ---------------------------------------------------------------------------------------------

def test_model_answers_agree_with_the_library_layer():
    g = torch.Generator().manual_seed(0)
    x, weight, bias = torch.randn(2, 3, 6, generator=g), torch.randn(5, 6, generator=g), torch.randn(5, generator=g)
    A, B = torch.randn(2, 6, generator=g), torch.randn(5, 2, generator=g)
    layer = _layer(weight, bias, A, B, alpha=6, r=2)
    torch.testing.assert_close(ex.lora_forward(x, weight, bias, A, B, 6, 2), layer(x))
    torch.testing.assert_close(ex.lora_merge(weight, A, B, 6, 2), layer.merged().weight)
    torch.testing.assert_close(x @ ex.lora_merge(weight, A, B, 6, 2).T + bias, layer(x))


def test_the_registry_lists_both_checkers_for_notebook_07():
    from course_utils.exercises import NOTEBOOKS

    assert list(INFOS) == NAMES and NOTEBOOKS["lora"] == "07"
    assert INFOS["lora_forward"].gradients and not INFOS["lora_merge"].gradients
    assert all(i.hidden == 2 and len(i.mistakes) >= 5 and i.forbidden for i in INFOS.values())


def test_checkers_accept_other_correct_versions():
    def with_linear(x, weight, bias, A, B, alpha, r):
        return F.linear(x, weight, bias) + F.linear(F.linear(x, A), B) * alpha / r

    def merged_first(x, weight, bias, A, B, alpha, r):
        return x @ (weight + alpha / r * B @ A).T + bias

    def scaling_first(x, weight, bias, A, B, alpha, r):
        scaling = alpha / r
        return torch.matmul(x, weight.t()) + bias + scaling * torch.matmul(torch.matmul(x, A.t()), B.t())

    for answer in (with_linear, merged_first, scaling_first):
        assert ex.check_lora_forward(answer, quiet=True).passed, answer.__name__
    assert ex.check_lora_merge(lambda w, A, B, alpha, r: w + torch.mm(B, A) * (alpha / r), quiet=True).passed
    assert ex.check_lora_merge(lambda w, A, B, alpha, r: torch.addmm(w, B, A, alpha=alpha / r), quiet=True).passed
    assert ex.check_lora_merge(lambda w, A, B, alpha, r: w + (A.T @ B.T).T * alpha / r, quiet=True).passed


# ---------------------------------------------------------------------------------------------
# Mistakes, shape errors, shortcuts, in-place edits, gradients, hard-coding
# ---------------------------------------------------------------------------------------------

def test_the_hints_are_distinct():
    for info in INFOS.values():
        hints = [m.hint for m in info.mistakes]
        assert len(set(hints)) == len(hints), info.name


@pytest.mark.parametrize("answer, words", [
    (lambda x, w, b, A, B, alpha, r: w @ x + b + x @ A.T @ B.T * alpha / r, ["sizes do not fit", "A is (r, in)"]),
    (lambda x, w, b, A, B, alpha, r: x @ w.T + b[:, None] + x @ A.T @ B.T * alpha / r,
     ["different shapes are added", "bias (out,)"]),
    (lambda x, w, b, A, B, alpha, r: torch.mm(x, w.T) + b + torch.mm(torch.mm(x, A.T), B.T) * alpha / r,
     ["torch.mm takes 2-D matrices only"]),
    (lambda x, w, b, A, B, alpha, r: x @ w.T + b + (x @ A.T) * alpha / r, ["differs from the reference"]),
    (lambda x, w, b, A, B, alpha, r: x @ w.T + b + x @ A @ B.T * alpha / r, ["differs from the reference"]),
    (lambda x, w, b, A, B, alpha, r: x @ w.T + b + x @ A.T @ B.T * alpha / r + 0.01, ["differs from the reference"]),
    (lambda x, w, b, A, B, alpha, r: (x @ w.T + b + x @ A.T @ B.T * alpha / r)[..., :-1], ["expected shape"]),
    # right when in = out = r, wrong once they differ: caught by the second round
    (lambda x, w, b, A, B, alpha, r: x @ w.T + b.expand(x.shape) + x @ A.T @ B.T * alpha / r,
     ["(2, 4, 6)", "raised RuntimeError"]),
    (lambda x, w, b, A, B, alpha, r: x @ w.T + b + x @ A.T @ B.T * alpha / A.shape[1],
     ["x (2, 4, 6)", "differs from the reference"]),
])
def test_lora_forward_rejects(answer, words):
    _rejects(ex.check_lora_forward, answer, *words)


@pytest.mark.parametrize("answer, words", [
    (lambda w, A, B, alpha, r: w.T + B @ A * alpha / r, ["differs from the reference"]),
    (lambda w, A, B, alpha, r: w - B @ A * alpha / r, ["differs from the reference"]),
    (lambda w, A, B, alpha, r: w + B * A * alpha / r, ["differs from the reference"]),
    (lambda w, A, B, alpha, r: (w + B @ A * alpha / r)[:, :-1], ["expected shape"]),
    # right when in = out = r, wrong once they differ: caught by the second round
    (lambda w, A, B, alpha, r: w + B @ A * alpha / A.shape[1], ["weight (5, 6)", "differs from the reference"]),
    (lambda w, A, B, alpha, r: w + B @ A.reshape(A.shape[1], -1) * alpha / r, ["sizes do not fit"]),
])
def test_lora_merge_rejects(answer, words):
    _rejects(ex.check_lora_merge, answer, *words)


def test_a_mistake_on_one_case_only_is_not_named():
    def unscaled_on_the_first_case(x, weight, bias, A, B, alpha, r):
        scaling = 1.0 if x.shape == (2, 3, 4) else alpha / r
        return x @ weight.T + bias + x @ A.T @ B.T * scaling

    message = _rejects(ex.check_lora_forward, unscaled_on_the_first_case, "differs from the reference")
    assert ex.NO_SCALING not in message


def _library_forward(x, weight, bias, A, B, alpha, r):
    return _layer(weight, bias, A, B, alpha, r)(x)


@pytest.mark.parametrize("name, shortcut, called", [
    ("lora_forward", _library_forward, "course_utils.lora.LoRALinear.forward"),
    ("lora_forward", lambda x, w, b, A, B, alpha, r: F.linear(x, _layer(w, b, A, B, alpha, r).merged().weight, b),
     "course_utils.lora.LoRALinear.merged"),
    ("lora_merge", lambda w, A, B, alpha, r: _layer(w, torch.zeros(len(w)), A, B, alpha, r).merged().weight,
     "course_utils.lora.LoRALinear.merged"),
    ("lora_merge", lambda w, A, B, alpha, r: merge_lora(_layer(w, torch.zeros(len(w)), A, B, alpha, r)).weight,
     "course_utils.lora.merge_lora"),
])
def test_a_forbidden_shortcut_is_named(name, shortcut, called):
    _rejects(INFOS[name].checker, shortcut, "your code calls", called)


def _merge_in_place(weight, A, B, alpha, r):
    weight += alpha / r * B @ A
    return weight


def test_a_merge_into_the_input_weight_is_rejected():
    _rejects(ex.check_lora_merge, _merge_in_place, "changed its input `weight` in place")


def test_a_detached_forward_is_rejected():
    _rejects(ex.check_lora_forward, lambda *args: ex.lora_forward(*args).detach(), "cut off from autograd")


def test_a_forward_that_stops_the_gradient_of_a_is_rejected():
    def a_detached(x, weight, bias, A, B, alpha, r):
        return x @ weight.T + bias + x @ A.detach().T @ B.T * alpha / r

    _rejects(ex.check_lora_forward, a_detached, "no gradient reaches `A`")


def test_hidden_cases_change_with_the_seed_and_repeat_with_it():
    def inputs_seen(seed: int) -> list[torch.Tensor]:
        seen: list[torch.Tensor] = []
        ex.check_lora_forward(lambda *args: seen.append(args[0].clone()) or ex.lora_forward(*args), quiet=True,
                              seed=seed)
        return seen

    def equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[bool]:
        return [x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b)]

    first, again, other = inputs_seen(1), inputs_seen(1), inputs_seen(2)
    assert len(first) == 7 and all(equal(first, again))               # 2 + 1 hidden, 2 + 1 hidden, 1 gradient call
    assert equal(first, other) == [True, True, False, True, True, False, True]
