"""The checkers of notebook 05: they accept the model answers and other correct versions, name each typical
mistake on every case, reject shortcuts, in-place edits, detached results and hard-coded answers, and wait
for a stub."""
from __future__ import annotations

import math
from typing import Any, Callable

import pytest
import torch
from learner_answers import rejects as _rejects
from learner_answers import stub
from torch import nn
from torch.nn import functional as F

from course_utils import attention as library
from course_utils.exercises import CHECKERS, softmax
from course_utils.exercises import attention as ex

INFOS = {info.name: info for info in CHECKERS if info.module == ex.__name__}
NAMES = ["stable_softmax", "attention", "masked_attention", "split_heads", "merge_heads"]


def _map(value: Any, f: Callable[[torch.Tensor], Any]) -> Any:
    """``f`` applied to a result: one tensor, or each tensor of a pair."""
    return tuple(f(v) for v in value) if isinstance(value, tuple) else f(value)


# ---------------------------------------------------------------------------------------------
# Model answers agree with the library and with torch
# ---------------------------------------------------------------------------------------------

def test_model_answers_agree_with_the_library_and_torch():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 3, 8, generator=g), torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 4, generator=g)
    out, weights = ex.attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close((out, weights), library.scaled_dot_product_attention(q, k, v))
    mask = library.causal_mask(3, 5)
    out, weights = ex.masked_attention(q, k, v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    torch.testing.assert_close((out, weights), library.scaled_dot_product_attention(q, k, v, mask))
    assert bool((weights[..., ~mask] == 0).all())
    x = torch.randn(2, 5, 12, generator=g)
    split = ex.split_heads(x, 3)
    assert torch.equal(split, library.split_heads(x, 3)) and torch.equal(split[:, 1, 2], x[:, 2, 4:8])
    assert torch.equal(ex.merge_heads(split), x) and torch.equal(library.merge_heads(split), x)


def test_the_registry_lists_every_checker_of_notebook_05():
    assert list(INFOS) == NAMES
    info = INFOS["stable_softmax"]  # the shared softmax exercise, as in notebook 01
    assert (info.solution, info.hidden, info.mistakes, info.forbidden, info.gradients) == \
        (softmax.stable_softmax, softmax.HIDDEN, softmax.SOFTMAX_MISTAKES, softmax.SOFTMAX_FORBIDDEN, True)
    assert all(i.gradients and i.hidden >= 2 and i.mistakes and i.forbidden for i in INFOS.values())


# ---------------------------------------------------------------------------------------------
# Every checker: the model answer and variants pass, a stub is "not attempted"
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_checker_accepts_the_model_answer_and_runs_its_hidden_cases(name):
    info = INFOS[name]
    result = info.checker(info.solution, quiet=True)
    assert result.status == "passed", result.message
    assert str(result) == f"PASSED {name}" and isinstance(result.seed, int)
    assert info.checker.hidden_cases_run == info.hidden


@pytest.mark.parametrize("name", NAMES)
def test_checker_accepts_a_float64_result(name):
    info = INFOS[name]
    result = info.checker(lambda *args: _map(info.solution(*args), torch.Tensor.double), quiet=True)
    assert result.passed, result.message


@pytest.mark.parametrize("name", NAMES)
def test_checker_reports_a_stub_as_not_attempted(name, capsys):
    result = INFOS[name].checker(stub)
    assert result.status == "not attempted" and "NotImplementedError" in result.message
    assert capsys.readouterr().out.startswith(f"TODO {name}: not attempted yet")


def test_checkers_accept_other_correct_versions():
    def with_torch(q, k, v, mask=None):
        scores = q @ k.mT / q.shape[-1] ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, -1e9)  # a big negative number works as well as -inf
        weights = scores.softmax(dim=-1)
        return weights @ v, weights

    def as_list(q, k, v):
        return list(ex.attention(q, k, v))

    assert ex.check_attention(with_torch, quiet=True).passed
    assert ex.check_attention(as_list, quiet=True).passed
    assert ex.check_attention(lambda q, k, v: ex.attention((q / math.sqrt(q.shape[-1])), k * math.sqrt(k.shape[-1]),
                                                           v), quiet=True).passed
    assert ex.check_masked_attention(with_torch, quiet=True).passed
    assert ex.check_masked_attention(lambda q, k, v, m: ex.masked_attention(q, k, v, m == 1), quiet=True).passed
    assert ex.check_split_heads(lambda x, h: x.unflatten(-1, (h, -1)).permute(0, 2, 1, 3), quiet=True).passed
    assert ex.check_merge_heads(lambda x: x.transpose(1, 2).flatten(2), quiet=True).passed
    assert ex.check_merge_heads(lambda x: x.permute(0, 2, 1, 3).contiguous().view(x.shape[0], x.shape[2], -1),
                                quiet=True).passed


# ---------------------------------------------------------------------------------------------
# The rules: mistakes named on every case, shortcuts, in-place edits, gradients, hard-coding
# ---------------------------------------------------------------------------------------------

MISTAKES = [pytest.param(name, mistake, id=f"{name}: {mistake.name}") for name in NAMES
            for mistake in INFOS[name].mistakes]


@pytest.mark.parametrize("name, mistake", MISTAKES)
def test_each_mistake_gets_its_own_hint(name, mistake):
    result = INFOS[name].checker(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint


@pytest.mark.parametrize("name, shortcut, called", [
    ("attention", lambda q, k, v: library.scaled_dot_product_attention(q, k, v),
     "course_utils.attention.scaled_dot_product_attention"),
    ("attention", lambda q, k, v: (F.scaled_dot_product_attention(q, k, v), ex.attention(q, k, v)[1]),
     "scaled_dot_product_attention"),
    ("masked_attention", library.scaled_dot_product_attention, "course_utils.attention.scaled_dot_product_attention"),
    ("masked_attention", lambda q, k, v, m: (F.scaled_dot_product_attention(q, k, v, attn_mask=m),
                                             ex.masked_attention(q, k, v, m)[1]), "scaled_dot_product_attention"),
    ("attention", lambda q, k, v: library.MultiHeadAttention(q.shape[-1], 1)(q, k, k),
     "course_utils.attention.MultiHeadAttention.forward"),
    ("attention", lambda q, k, v: nn.MultiheadAttention(q.shape[-1], 1, batch_first=True)(q, k, k),
     "MultiheadAttention.forward"),
    ("split_heads", library.split_heads, "course_utils.attention.split_heads"),
    ("split_heads", lambda x, h: library.MultiHeadAttention(x.shape[-1], h).split_heads(x),
     "course_utils.attention.MultiHeadAttention.split_heads"),
    ("merge_heads", library.merge_heads, "course_utils.attention.merge_heads"),
    ("merge_heads", lambda x: library.MultiHeadAttention(x.shape[1] * x.shape[3], x.shape[1]).merge_heads(x),
     "course_utils.attention.MultiHeadAttention.merge_heads"),
    ("stable_softmax", lambda x: torch.softmax(x, dim=-1), "torch.softmax"),
])
def test_a_forbidden_shortcut_is_named(name, shortcut, called):
    _rejects(INFOS[name].checker, shortcut, "your code calls", called)


def _in_place_softmax(scores):
    scores -= scores.max(dim=-1, keepdim=True).values
    return scores.exp() / scores.exp().sum(dim=-1, keepdim=True)


def _in_place_attention(q, k, v, mask=None):
    q /= math.sqrt(q.shape[-1])
    return ex.attention(q, k, v) if mask is None else ex.masked_attention(q, k, v, mask)


def _in_place_split(x, num_heads):
    x[0, 0, 0] = 0.0
    return ex.split_heads(x, num_heads)


def _in_place_merge(x):
    x.add_(0.5)
    return ex.merge_heads(x - 0.5)


@pytest.mark.parametrize("name, answer, argument", [
    ("stable_softmax", _in_place_softmax, "scores"), ("attention", _in_place_attention, "q"),
    ("masked_attention", _in_place_attention, "q"), ("split_heads", _in_place_split, "x"),
    ("merge_heads", _in_place_merge, "x"),
])
def test_an_input_changed_in_place_is_rejected(name, answer, argument):
    _rejects(INFOS[name].checker, answer, f"changed its input `{argument}` in place")


@pytest.mark.parametrize("name", NAMES)
def test_a_detached_result_is_rejected(name):
    info = INFOS[name]
    _rejects(info.checker, lambda *args: _map(info.solution(*args), torch.Tensor.detach), "cut off from autograd")


def test_attention_through_numpy_is_rejected():
    def weights_in_numpy(q, k, v):
        weights = torch.from_numpy(ex.attention(q, k, v)[1].detach().numpy())
        return weights @ v, weights

    _rejects(ex.check_attention, weights_in_numpy, "no gradient reaches `q`")


# ---------------------------------------------------------------------------------------------
# stable_softmax
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, word", [
    (lambda x: x.exp() / x.exp().sum(-1, keepdim=True), "overflow"),
    (lambda x: ex.stable_softmax(x.movedim(1, -1)).movedim(-1, 1), "dim=-1"),
    (lambda x: ex.stable_softmax(x.movedim(0, -1)).movedim(-1, 0), "dim 0"),
    (lambda x: x.exp(), "normalised"),
])
def test_stable_softmax_rejects(answer, word):
    _rejects(ex.check_stable_softmax, answer, word)


# ---------------------------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------------------------

def _weights(weights: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights @ v, weights) for already-normalised ``weights``."""
    return weights @ v, weights


def _naive_softmax(x):
    return x.exp() / x.exp().sum(dim=-1, keepdim=True)


def _scores(q, k, scale=None):
    return q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale is None else scale)


@pytest.mark.parametrize("answer, word", [
    (lambda q, k, v: _weights(torch.softmax(_scores(q, k, 1.0), -1), v), "sqrt(d_k)"),
    (lambda q, k, v: _weights(torch.softmax(_scores(q, k, q.shape[-1]), -1), v), "square root"),
    (lambda q, k, v: _weights(torch.softmax(_scores(q, k), -2), v), "wrong axis"),
    (lambda q, k, v: _weights(torch.softmax(_scores(q, k), 0), v), "batch"),
    (lambda q, k, v: _weights(_scores(q, k), v), "no softmax"),
    (lambda q, k, v: _weights(_naive_softmax(_scores(q, k)), v), "overflow"),
    (lambda q, k, v: tuple(reversed(ex.attention(q, k, v))), "swapped"),
    (lambda q, k, v: ex.attention(q, k, v)[0], "return two"),
    (lambda q, k, v: (*ex.attention(q, k, v), None), "expected a pair"),
    (lambda q, k, v: _weights(torch.softmax(_scores(q, k), -1) * 0.5, v), "rows of your weights sum to"),
    (lambda q, k, v: (ex.attention(q, k, v)[0] + 0.1, ex.attention(q, k, v)[1]), "output: differs from the reference"),
])
def test_attention_rejects(answer, word):
    _rejects(ex.check_attention, answer, word)


def test_swapped_results_with_other_errors_still_get_the_swapped_hint():
    _rejects(ex.check_attention, lambda q, k, v: tuple(reversed(_weights(torch.softmax(_scores(q, k, 1.0), -1), v))),
             "swapped")


def test_a_mistake_on_one_case_only_is_not_named():
    def unscaled_on_the_first_case(q, k, v):
        scale = 1.0 if q.shape == (2, 3, 4) else None
        return _weights(torch.softmax(_scores(q, k, scale), -1), v)

    message = _rejects(ex.check_attention, unscaled_on_the_first_case, "differs from the reference")
    assert ex.NO_SCALE not in message


# ---------------------------------------------------------------------------------------------
# masked_attention
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, word", [
    (lambda q, k, v, m: _weights(torch.softmax(_scores(q, k), -1) * m, v), "after the softmax"),
    (lambda q, k, v, m: _weights(torch.softmax(_scores(q, k), -1).masked_fill(~m, 0.0), v), "after the softmax"),
    (lambda q, k, v, m: _weights(torch.softmax(_scores(q, k).masked_fill(m, float("-inf")), -1), v), "inverted"),
    (lambda q, k, v, m: _weights(torch.softmax(_scores(q, k).masked_fill(~m, 0.0), -1), v), "exp(0)"),
    (lambda q, k, v, m: _weights(torch.softmax(_scores(q, k) * m, -1), v), "exp(0)"),
    (lambda q, k, v, m: _weights(torch.softmax(_scores(q, k) + m, -1), v), "additive"),
    (lambda q, k, v, m: ex.attention(q, k, v), "ignored"),
    (lambda q, k, v, m: _weights(torch.softmax(_scores(q, k, 1.0).masked_fill(~m, float("-inf")), -1), v),
     "sqrt(d_k)"),
    (lambda q, k, v, m: _weights(_naive_softmax(_scores(q, k).masked_fill(~m, float("-inf"))), v), "overflow"),
    (lambda q, k, v, m: _weights(torch.softmax(_scores(q, k).masked_fill(~m, -3.0), -1), v),
     "masked positions get weight"),
])
def test_masked_attention_rejects(answer, word):
    _rejects(ex.check_masked_attention, answer, word)


# ---------------------------------------------------------------------------------------------
# split_heads / merge_heads
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, word", [
    (lambda x, h: x.view(x.shape[0], h, x.shape[1], x.shape[2] // h), "mixes positions"),
    (lambda x, h: x.view(x.shape[0], x.shape[1], h, x.shape[2] // h), "transpose(1, 2)"),
    (lambda x, h: x.view(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2), "contiguous block"),
    (lambda x, h: x.view(x.shape[0], x.shape[1], h, x.shape[2] // h).transpose(1, 2).flip(1), "differs"),
    (lambda x, h: x.view(x.shape[0], x.shape[1], h, -1).transpose(1, 2).view(x.shape[0], h, -1), "contiguous"),
])
def test_split_heads_rejects(answer, word):
    _rejects(ex.check_split_heads, answer, word)


@pytest.mark.parametrize("answer, word", [
    (lambda x: x.contiguous().view(x.shape[0], x.shape[2], -1), "mixes positions"),
    (lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1), "interleaved"),
    (lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1), "contiguous"),
    (lambda x: x.transpose(1, 2).flip(2).reshape(x.shape[0], x.shape[2], -1), "does not invert"),
    (lambda x: x.transpose(1, 2), "expected shape"),
])
def test_merge_heads_rejects(answer, word):
    _rejects(ex.check_merge_heads, answer, word)
