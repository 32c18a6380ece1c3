"""Exercises of notebook 05 (attention maths): softmax, attention, masked attention, head split/merge.

Each checker compares the learner's function with the library's
(:func:`course_utils.attention.scaled_dot_product_attention`, :func:`course_utils.attention.split_heads`,
:func:`course_utils.attention.merge_heads`) on fixed inputs (queries and keys of different lengths, so
that a wrong axis shows) and on hidden random ones, names the typical mistake that gives the
learner's results on every case, and compares the gradients. :func:`attention`,
:func:`masked_attention`, :func:`split_heads` and :func:`merge_heads` below are model answers, written
as a learner would, without the functions the exercises forbid.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..attention import MultiHeadAttention, causal_mask, scaled_dot_product_attention
from ..attention import merge_heads as library_merge_heads
from ..attention import split_heads as library_split_heads
from . import (
    Case,
    Hint,
    Mistake,
    check_cases,
    describe,
    exercise,
    expect_close,
    expect_gradients,
    expect_tensor,
    hidden_cases,
    same,
)
from .softmax import HIDDEN, SOFTMAX_FORBIDDEN, SOFTMAX_MISTAKES, check_softmax_cases, stable_softmax

__all__ = ["stable_softmax", "attention", "masked_attention", "split_heads", "merge_heads",
           "check_stable_softmax", "check_attention", "check_masked_attention", "check_split_heads",
           "check_merge_heads"]

# ---------------------------------------------------------------------------------------------
# Model answers (``stable_softmax`` is the shared one of softmax.py)
# ---------------------------------------------------------------------------------------------


def attention(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d_k)) v: q ``(..., Tq, dk)``, k ``(..., Tk, dk)``, v ``(..., Tk, dv)``.

    Returns (output ``(..., Tq, dv)``, weights ``(..., Tq, Tk)``); each row of the weights sums to 1.
    """
    weights = stable_softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]))
    return weights @ v, weights


def masked_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`attention` where ``mask`` (bool, broadcastable to ``(..., Tq, Tk)``, True = may attend)
    removes the other keys BEFORE the softmax: their weight is exactly 0 and each row still sums to 1."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    weights = stable_softmax(scores.masked_fill(~mask, float("-inf")))
    return weights @ v, weights


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(B, T, D)`` -> ``(B, H, T, D // H)``: head h gets features ``h*D/H .. (h+1)*D/H`` of every position."""
    batch, length, dim = x.shape
    return x.view(batch, length, num_heads, dim // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """``(B, H, T, Dh)`` -> ``(B, T, H * Dh)``, the inverse of :func:`split_heads`."""
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def _int(generator: torch.Generator, low: int, high: int) -> int:
    """A random int in ``[low, high]``."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _same_pair(got: Any, want: Any) -> bool:
    """Equal results within the tolerance of float32 attention on large scores (tuples element by element)."""
    return same(got, want, atol=1e-4, rtol=1e-4)


def _scores(q: Tensor, k: Tensor, scale: float | None = None) -> Tensor:
    """``q k^T / scale`` (default scale sqrt(d_k)): the mistakes below start from it."""
    return q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale is None else scale)


def _naive_softmax(x: Tensor) -> Tensor:
    """exp / sum(exp) over the last dim without subtracting the max: overflows for logits above ~88 in float32."""
    return x.exp() / x.exp().sum(dim=-1, keepdim=True)


def _from_weights(weights: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    return weights @ v, weights


def _explain_pair(got: Any, want: tuple[Tensor, Tensor], case: Case) -> None:
    """Raise the hint for a wrong (output, weights) pair: its type, order, shapes, NaN, masked weight, row sums."""
    what = case.what
    if isinstance(got, Tensor):
        raise Hint(f"{what}: you returned one tensor ({describe(got)}); return two: (output, weights)")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Hint(f"{what}: expected a pair (output, weights), got {describe(got)}")
    out, weights = got
    want_out, want_weights = want
    if (isinstance(out, Tensor) and isinstance(weights, Tensor) and want_out.shape != want_weights.shape
            and out.shape == want_weights.shape and weights.shape == want_out.shape):
        raise Hint(f"{what}: {SWAPPED}")
    expect_tensor(out, tuple(want_out.shape), f"{what}, output")
    expect_tensor(weights, tuple(want_weights.shape), f"{what}, weights")
    if not (torch.isfinite(out).all() and torch.isfinite(weights).all()):
        raise Hint(f"{what}: your result has inf or NaN; is exp() overflowing? Subtract each row's max "
                   "before exp (or use torch.softmax)")
    if len(case.args) == 4 and bool((weights.detach().masked_fill(case.args[3], 0.0).abs() > 1e-6).any()):
        raise Hint(f"{what}: masked positions get weight; they must get exactly 0")
    row_sums = weights.detach().double().sum(dim=-1)
    if not torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-4):
        raise Hint(f"{what}: the rows of your weights sum to {row_sums.flatten()[:3].tolist()}..., not 1; "
                   "the softmax must be the last step that touches the weights")
    expect_close(weights, want_weights, f"{what}, weights", atol=1e-4)
    expect_close(out, want_out, f"{what}, output", atol=1e-4)


NO_SCALE = ("the scores are not scaled: divide q @ k^T by sqrt(d_k) (d_k = q.shape[-1]) before the "
            "softmax, or large d_k saturates it")
OVERFLOW = "exp() overflows for large scores; subtract each row's max before exp (or use torch.softmax)"
SWAPPED = "the two results are swapped; return (output, weights) in that order"

# Writing attention is the exercise: the library's attention (torch's or the course's) would do it all.
ATTENTION_FORBIDDEN = (F.scaled_dot_product_attention, scaled_dot_product_attention, nn.MultiheadAttention.forward,
                       MultiHeadAttention.forward)

# ---------------------------------------------------------------------------------------------
# Exercise 1: softmax over the keys, stable for large scores
# ---------------------------------------------------------------------------------------------


@exercise("stable_softmax", solution=stable_softmax, hidden=HIDDEN, mistakes=SOFTMAX_MISTAKES,
          forbidden=SOFTMAX_FORBIDDEN, gradients=True)
def check_stable_softmax(answer: Callable[[Tensor], Tensor]) -> None:
    """Check ``answer(scores)`` -> softmax over the last dim of ``(B, Tq, Tk)`` scores, stable for big ones."""
    generator = torch.Generator().manual_seed(5)
    check_softmax_cases(answer, [
        Case((torch.randn(2, 3, 4, generator=generator),), "softmax of (2, 3, 4) scores"),
        Case((torch.randn(3, 2, 5, generator=generator),), "softmax of (3, 2, 5) scores"),
        Case((torch.tensor([[[1000.0, 1001.0, 1002.0], [-1000.0, -999.0, -998.0]]]),),
             "softmax of (1, 2, 3) scores [[1000, 1001, 1002], [-1000, -999, -998]]"),
    ])


# ---------------------------------------------------------------------------------------------
# Exercise 2: scaled dot-product attention
# ---------------------------------------------------------------------------------------------

ATTENTION_MISTAKES: tuple[Mistake, ...] = (
    Mistake("not scaled", lambda q, k, v: _from_weights(torch.softmax(_scores(q, k, 1.0), dim=-1), v), NO_SCALE),
    Mistake("divided by d_k", lambda q, k, v: _from_weights(torch.softmax(_scores(q, k, q.shape[-1]), dim=-1), v),
            "you divided by d_k; divide by its square root, sqrt(d_k): that is what brings the variance of "
            "q . k back to 1"),
    Mistake("scaled by sqrt(d_v)",
            lambda q, k, v: _from_weights(torch.softmax(_scores(q, k, math.sqrt(v.shape[-1])), dim=-1), v),
            "you scaled by sqrt of v's size; d_k is the size of the queries and keys, q.shape[-1]"),
    Mistake("softmax over the queries", lambda q, k, v: _from_weights(torch.softmax(_scores(q, k), dim=-2), v),
            "the softmax is over the wrong axis (the queries, dim=-2); each query's weights over the keys "
            "must sum to 1: softmax over the last dim"),
    Mistake("softmax over the batch", lambda q, k, v: _from_weights(torch.softmax(_scores(q, k), dim=0), v),
            "the softmax is over the batch (dim 0); take it over the keys, the last dim"),
    Mistake("no softmax", lambda q, k, v: _from_weights(_scores(q, k), v),
            "there is no softmax: the weights must be softmax(q k^T / sqrt(d_k)) over the last dim"),
    Mistake("no max subtracted", lambda q, k, v: _from_weights(_naive_softmax(_scores(q, k)), v), OVERFLOW),
    Mistake("swapped pair", lambda q, k, v: attention(q, k, v)[::-1], SWAPPED),
)


def _hidden_attention(generator: torch.Generator) -> tuple[tuple[Tensor, Tensor, Tensor], str]:
    """q ``(B, Tq, dk)``, k ``(B, Tk, dk)``, v ``(B, Tk, dv)`` of random sizes, Tq != Tk and dv != Tk."""
    batch, length_q = _int(generator, 1, 3), _int(generator, 2, 5)
    dim_k, dim_v = _int(generator, 2, 8), _int(generator, 2, 8)
    length_k = length_q + _int(generator, 1, 3)
    dim_v += dim_v == length_k  # so that swapped results show in their shapes
    q, k = (torch.randn(batch, n, dim_k, generator=generator) * 1.5 for n in (length_q, length_k))
    v = torch.randn(batch, length_k, dim_v, generator=generator)
    return (q, k, v), f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"


@exercise("attention", solution=attention, hidden=2, mistakes=ATTENTION_MISTAKES, forbidden=ATTENTION_FORBIDDEN,
          gradients=True)
def check_attention(answer: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """Check ``answer(q, k, v)`` -> (output ``(B, Tq, dv)``, weights ``(B, Tq, Tk)``)."""
    generator = torch.Generator().manual_seed(7)
    cases = [
        Case((torch.randn(2, 3, 4, generator=generator), torch.randn(2, 5, 4, generator=generator),
              torch.randn(2, 5, 6, generator=generator)), "attention with q (2, 3, 4), k (2, 5, 4), v (2, 5, 6)"),
        Case((torch.randn(1, 2, 16, generator=generator) * 2, torch.randn(1, 3, 16, generator=generator) * 2,
              torch.randn(1, 3, 2, generator=generator)), "attention with q (1, 2, 16), k (1, 3, 16), v (1, 3, 2)"),
        Case((torch.randn(1, 2, 4, generator=generator) * 30, torch.randn(1, 2, 4, generator=generator) * 30,
              torch.randn(1, 2, 3, generator=generator)), "attention with large scores, q and k (1, 2, 4) times 30"),
    ]
    cases += hidden_cases(_hidden_attention, 2)
    check_cases(answer, cases, scaled_dot_product_attention, mistakes=ATTENTION_MISTAKES, equal=_same_pair,
                explain=_explain_pair)
    expect_gradients(answer, scaled_dot_product_attention, cases[0])


# ---------------------------------------------------------------------------------------------
# Exercise 3: masked attention
# ---------------------------------------------------------------------------------------------

MASKED_MISTAKES: tuple[Mistake, ...] = (
    Mistake("mask after the softmax",
            lambda q, k, v, m: _from_weights(torch.softmax(_scores(q, k), dim=-1) * m, v),
            "the mask is applied after the softmax: the rows of the weights no longer sum to 1. Fill the "
            "masked scores with -inf BEFORE the softmax (scores.masked_fill(~mask, float('-inf')))"),
    Mistake("inverted mask",
            lambda q, k, v, m: _from_weights(torch.softmax(_scores(q, k).masked_fill(m, float("-inf")), dim=-1), v),
            "the mask is inverted: True means 'may attend', so fill the scores where the mask is False: "
            "scores.masked_fill(~mask, float('-inf'))"),
    Mistake("masked scores set to 0",
            lambda q, k, v, m: _from_weights(torch.softmax(_scores(q, k).masked_fill(~m, 0.0), dim=-1), v),
            "masked scores set to 0 (by masked_fill(..., 0) or by multiplying with the mask) still get weight, "
            "since exp(0) = 1; fill them with -inf so that exp gives 0"),
    Mistake("bool mask added", lambda q, k, v, m: _from_weights(torch.softmax(_scores(q, k) + m, dim=-1), v),
            "a bool mask is not an additive mask: adding True/False adds 1/0 to the scores. Use "
            "scores.masked_fill(~mask, float('-inf'))"),
    Mistake("mask ignored", lambda q, k, v, m: attention(q, k, v),
            "the mask was ignored: the masked positions still get weight"),
    Mistake("not scaled",
            lambda q, k, v, m: _from_weights(torch.softmax(_scores(q, k, 1.0).masked_fill(~m, float("-inf")), -1), v),
            NO_SCALE),
    Mistake("no max subtracted",
            lambda q, k, v, m: _from_weights(_naive_softmax(_scores(q, k).masked_fill(~m, float("-inf"))), v),
            OVERFLOW),
    Mistake("swapped pair", lambda q, k, v, m: masked_attention(q, k, v, m)[::-1], SWAPPED),
)


def _hidden_masked(generator: torch.Generator) -> tuple[tuple[Tensor, ...], str]:
    """Random q, k, v (Tq != Tk) with a causal ``(Tq, Tk)`` or a padding ``(B, 1, Tk)`` mask; no row all masked."""
    (q, k, v), shapes = _hidden_attention(generator)
    batch, length_q, length_k = q.shape[0], q.shape[1], k.shape[1]
    if torch.rand((), generator=generator) < 0.5:
        return (q, k, v, causal_mask(length_q, length_k)), f"causal mask ({length_q}, {length_k}), {shapes}"
    lengths = torch.randint(1, length_k + 1, (batch, 1, 1), generator=generator)   # real keys per sequence
    mask = torch.arange(length_k) < lengths
    return (q, k, v, mask), f"padding mask ({batch}, 1, {length_k}), {shapes}"


@exercise("masked_attention", solution=masked_attention, hidden=2, mistakes=MASKED_MISTAKES,
          forbidden=ATTENTION_FORBIDDEN, gradients=True)
def check_masked_attention(answer: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """Check ``answer(q, k, v, mask)`` (bool mask, True = may attend) -> (output, weights)."""
    generator = torch.Generator().manual_seed(11)
    causal = causal_mask(4)
    padding = torch.tensor([[True, True, True, True, True], [True, True, True, False, False]])[:, None, :]
    cases = [
        Case((torch.randn(2, 4, 3, generator=generator), torch.randn(2, 4, 3, generator=generator),
              torch.randn(2, 4, 3, generator=generator), causal), "causal mask (4, 4), q k v (2, 4, 3)"),
        Case((torch.randn(2, 3, 4, generator=generator), torch.randn(2, 5, 4, generator=generator),
              torch.randn(2, 5, 4, generator=generator), padding),
             "padding mask (2, 1, 5), q (2, 3, 4), k v (2, 5, 4)"),
        Case((torch.randn(1, 3, 4, generator=generator) * 30, torch.randn(1, 3, 4, generator=generator) * 30,
              torch.randn(1, 3, 2, generator=generator), causal[:3, :3]),
             "causal mask (3, 3) with large scores (q and k times 30)"),
    ]
    cases += hidden_cases(_hidden_masked, 2)
    check_cases(answer, cases, scaled_dot_product_attention, mistakes=MASKED_MISTAKES, equal=_same_pair,
                explain=_explain_pair)
    expect_gradients(answer, scaled_dot_product_attention, cases[0])


# ---------------------------------------------------------------------------------------------
# Exercise 4: split into heads, and merge back
# ---------------------------------------------------------------------------------------------

HEADS_FORBIDDEN = (library_split_heads, library_merge_heads, MultiHeadAttention.split_heads,
                   MultiHeadAttention.merge_heads)

KNOWN_ERRORS = {  # a piece of torch's error message -> what it means here
    "view size is not compatible": "view() needs a contiguous tensor and transpose() makes a non-contiguous "
                                   "one: use .reshape(...) or call .contiguous() before .view(...)",
}


def _split_view_only(x: Tensor, h: int) -> Tensor:
    b, t, d = x.shape
    return x.reshape(b, h, t, d // h)


def _split_no_transpose(x: Tensor, h: int) -> Tensor:
    b, t, d = x.shape
    return x.reshape(b, t, h, d // h)


def _split_interleaved(x: Tensor, h: int) -> Tensor:
    b, t, d = x.shape
    return x.reshape(b, t, d // h, h).permute(0, 3, 1, 2)


SPLIT_MISTAKES: tuple[Mistake, ...] = (
    Mistake("plain view, no transpose", _split_view_only,
            "a plain view(B, H, T, D // H) without transpose mixes positions: each 'head' gets pieces of "
            "several tokens. View as (B, T, H, D // H), then transpose(1, 2)"),
    Mistake("heads after the positions", _split_no_transpose,
            "got (B, T, H, D // H); transpose(1, 2) to put the heads before the positions: (B, H, T, D // H)"),
    Mistake("interleaved features", _split_interleaved,
            "each head must take a contiguous block of D // H features: view as (B, T, H, D // H) (heads "
            "before head_dim), then transpose(1, 2)"),
)

MERGE_MISTAKES: tuple[Mistake, ...] = (
    Mistake("plain reshape, no transpose", lambda x: x.reshape(x.shape[0], x.shape[2], -1),
            "a plain reshape/view of (B, H, T, Dh) to (B, T, H * Dh) without transpose mixes positions, so it "
            "does not invert split_heads. transpose(1, 2) first, then reshape"),
    Mistake("interleaved features", lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
            "the features come out interleaved (head index last), so it does not invert split_heads: "
            "transpose(1, 2) to (B, T, H, Dh), then reshape to (B, T, H * Dh)"),
)


def _head_inputs() -> list[tuple[Tensor, int]]:
    """(x (B, T, D), num_heads) fixed inputs with T different from H, so a wrong order shows in the shape."""
    generator = torch.Generator().manual_seed(13)
    return [(torch.randn(2, 5, 12, generator=generator), 3), (torch.randn(1, 3, 8, generator=generator), 2)]


def _hidden_heads(generator: torch.Generator) -> tuple[Tensor, int]:
    """A random x ``(B, T, H * Dh)`` and H, with H >= 2 and T > H."""
    batch, heads, head_dim = _int(generator, 1, 3), _int(generator, 2, 4), _int(generator, 2, 4)
    length = heads + _int(generator, 1, 3)
    return torch.randn(batch, length, heads * head_dim, generator=generator), heads


def _hidden_split(generator: torch.Generator) -> tuple[tuple[Tensor, int], str]:
    x, heads = _hidden_heads(generator)
    return (x, heads), f"x {tuple(x.shape)} into {heads} heads"


def _hidden_merge(generator: torch.Generator) -> tuple[tuple[Tensor], str]:
    x, heads = _hidden_heads(generator)
    split = library_split_heads(x, heads).contiguous()
    return (split,), f"x {tuple(split.shape)}"


@exercise("split_heads", solution=split_heads, hidden=2, mistakes=SPLIT_MISTAKES, forbidden=HEADS_FORBIDDEN,
          gradients=True)
def check_split_heads(answer: Callable[[Tensor, int], Tensor]) -> None:
    """Check ``answer(x, num_heads)``: ``(B, T, D)`` -> ``(B, H, T, D // H)``."""
    cases = [Case((x, heads), f"split_heads of x {tuple(x.shape)} into {heads} heads") for x, heads in _head_inputs()]
    cases += hidden_cases(_hidden_split, 2)
    check_cases(answer, cases, library_split_heads, mistakes=SPLIT_MISTAKES, known_errors=KNOWN_ERRORS)
    expect_gradients(answer, library_split_heads, cases[0])


@exercise("merge_heads", solution=merge_heads, hidden=2, mistakes=MERGE_MISTAKES, forbidden=HEADS_FORBIDDEN,
          gradients=True)
def check_merge_heads(answer: Callable[[Tensor], Tensor]) -> None:
    """Check ``answer(x)``: ``(B, H, T, Dh)`` -> ``(B, T, H * Dh)``, and merge_heads(split_heads(x)) == x."""
    # contiguous, like the output of attention (weights @ v)
    cases = [Case((library_split_heads(x, heads).contiguous(),),
                  f"merge_heads(split_heads(x)) for x {tuple(x.shape)} and {heads} heads")
             for x, heads in _head_inputs()]
    cases += hidden_cases(_hidden_merge, 2)

    def explain(got: Any, want: Tensor, case: Case) -> None:
        expect_tensor(got, tuple(want.shape), case.what)
        raise Hint(f"{case.what}: your result does not invert split_heads (merge_heads(split_heads(x)) must give x "
                   "back): transpose(1, 2), then reshape to (B, T, H * Dh)")

    check_cases(answer, cases, library_merge_heads, mistakes=MERGE_MISTAKES, explain=explain,
                known_errors=KNOWN_ERRORS)
    expect_gradients(answer, library_merge_heads, cases[0])
