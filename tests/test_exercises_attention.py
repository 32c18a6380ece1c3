"""The checkers of notebook 05: they accept the reference, name each typical mistake, and wait for a stub."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from course_utils.attention import scaled_dot_product_attention
from course_utils.exercises import attention as ex


def stub(*args):
    raise NotImplementedError("write this function")


def _weights(scores: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights @ v, weights) for already-normalised ``scores``."""
    return scores @ v, scores


# ---------------------------------------------------------------------------------------------
# References agree with torch
# ---------------------------------------------------------------------------------------------

def test_references_agree_with_torch():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 3, 8, generator=g), torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 4, generator=g)
    out, weights = ex.attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    mask = torch.ones(3, 5, dtype=torch.bool).tril()
    out, weights = ex.masked_attention(q, k, v, mask)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert bool((weights[..., ~mask] == 0).all())
    x = torch.randn(2, 5, 12, generator=g)
    split = ex.split_heads(x, 3)
    assert split.shape == (2, 3, 5, 4)
    torch.testing.assert_close(split[:, 1, 2], x[:, 2, 4:8])  # head 1, position 2 = features 4..7 of token 2
    torch.testing.assert_close(ex.merge_heads(split), x)


CHECKERS = [
    (ex.check_stable_softmax, ex.stable_softmax),
    (ex.check_attention, ex.attention),
    (ex.check_masked_attention, ex.masked_attention),
    (ex.check_split_heads, ex.split_heads),
    (ex.check_merge_heads, ex.merge_heads),
]


@pytest.mark.parametrize("checker, reference", CHECKERS)
def test_checker_accepts_the_reference(checker, reference):
    result = checker(reference, quiet=True)
    assert result.status == "passed", result.message


@pytest.mark.parametrize("checker, reference", CHECKERS)
def test_checker_reports_a_stub_as_not_attempted(checker, reference):
    result = checker(stub, quiet=True)
    assert result.status == "not attempted"
    assert "NotImplementedError" in result.message


def test_checkers_accept_other_correct_versions():
    assert ex.check_stable_softmax(lambda x: torch.softmax(x, dim=-1), quiet=True).passed

    def with_torch(q, k, v, mask=None):
        scores = q @ k.mT / q.shape[-1] ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask, -1e9)  # a big negative number works as well as -inf
        weights = scores.softmax(dim=-1)
        return weights @ v, weights

    assert ex.check_attention(with_torch, quiet=True).passed
    assert ex.check_masked_attention(with_torch, quiet=True).passed
    assert ex.check_attention(scaled_dot_product_attention, quiet=True).passed          # the course's own
    assert ex.check_masked_attention(scaled_dot_product_attention, quiet=True).passed
    assert ex.check_split_heads(lambda x, h: x.unflatten(-1, (h, -1)).permute(0, 2, 1, 3), quiet=True).passed
    assert ex.check_merge_heads(lambda x: x.transpose(1, 2).flatten(2), quiet=True).passed


def _rejects(checker, answer, word: str) -> None:
    result = checker(answer, quiet=True)
    assert result.status == "failed", result.message
    assert word in result.message, result.message


# ---------------------------------------------------------------------------------------------
# stable_softmax
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, word", [
    (lambda x: x.exp() / x.exp().sum(-1, keepdim=True), "overflow"),
    (lambda x: torch.softmax(x, dim=1), "dim=-1"),
    (lambda x: torch.softmax(x, dim=0), "dim 0"),
    (lambda x: x.exp(), "normalised"),
])
def test_stable_softmax_rejects(answer, word):
    _rejects(ex.check_stable_softmax, answer, word)


# ---------------------------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------------------------

def _scores(q, k, scale):
    return q @ k.transpose(-2, -1) / scale


@pytest.mark.parametrize("answer, word", [
    (lambda q, k, v: _weights(torch.softmax(_scores(q, k, 1.0), -1), v), "sqrt(d_k)"),
    (lambda q, k, v: _weights(torch.softmax(_scores(q, k, q.shape[-1]), -1), v), "square root"),
    (lambda q, k, v: _weights(torch.softmax(_scores(q, k, math.sqrt(q.shape[-1])), -2), v), "wrong axis"),
    (lambda q, k, v: _weights(torch.softmax(_scores(q, k, math.sqrt(q.shape[-1])), 0), v), "batch"),
    (lambda q, k, v: _weights(_scores(q, k, math.sqrt(q.shape[-1])), v), "no softmax"),
    (lambda q, k, v: _weights(ex._naive_softmax(_scores(q, k, math.sqrt(q.shape[-1]))), v), "overflow"),
    (lambda q, k, v: tuple(reversed(ex.attention(q, k, v))), "swapped"),
    (lambda q, k, v: ex.attention(q, k, v)[0], "return two"),
])
def test_attention_rejects(answer, word):
    _rejects(ex.check_attention, answer, word)


# ---------------------------------------------------------------------------------------------
# masked_attention
# ---------------------------------------------------------------------------------------------

def _sm(q, k):
    return _scores(q, k, math.sqrt(q.shape[-1]))


@pytest.mark.parametrize("answer, word", [
    (lambda q, k, v, m: _weights(torch.softmax(_sm(q, k), -1) * m, v), "after the softmax"),
    (lambda q, k, v, m: _weights(torch.softmax(_sm(q, k), -1).masked_fill(~m, 0.0), v), "after the softmax"),
    (lambda q, k, v, m: _weights(torch.softmax(_sm(q, k).masked_fill(m, float("-inf")), -1), v), "inverted"),
    (lambda q, k, v, m: _weights(torch.softmax(_sm(q, k).masked_fill(~m, 0.0), -1), v), "exp(0)"),
    (lambda q, k, v, m: _weights(torch.softmax(_sm(q, k) * m, -1), v), "exp(0)"),
    (lambda q, k, v, m: _weights(torch.softmax(_sm(q, k) + m, -1), v), "additive"),
    (lambda q, k, v, m: ex.attention(q, k, v), "ignored"),
    (lambda q, k, v, m: _weights(torch.softmax(_scores(q, k, 1.0).masked_fill(~m, float("-inf")), -1), v),
     "sqrt(d_k)"),
    (lambda q, k, v, m: _weights(ex._naive_softmax(_sm(q, k).masked_fill(~m, float("-inf"))), v), "overflow"),
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
    (lambda x, h: x.view(x.shape[0], x.shape[1], h, x.shape[2] // h).transpose(1, 2).contiguous().view(
        x.shape[0], h, -1, x.shape[2] // h).flip(1), "differs"),
])
def test_split_heads_rejects(answer, word):
    _rejects(ex.check_split_heads, answer, word)


@pytest.mark.parametrize("answer, word", [
    (lambda x: x.contiguous().view(x.shape[0], x.shape[2], -1), "mixes positions"),
    (lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1), "interleaved"),
    (lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1), "contiguous"),
    (lambda x: x.transpose(1, 2).flip(2).reshape(x.shape[0], x.shape[2], -1), "does not invert"),
])
def test_merge_heads_rejects(answer, word):
    _rejects(ex.check_merge_heads, answer, word)
