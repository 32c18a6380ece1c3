"""Exercises of notebook 05 (attention maths): softmax, attention, masked attention, head split/merge.

Each ``check_*`` function takes the learner's function, compares it with the reference
implementation below on small inputs (queries and keys of different lengths, so that a wrong axis
shows), and recognises the usual mistakes: it recomputes each typical wrong answer on the same
inputs and, when the learner's output matches one, says what that mistake is and how to fix it.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from . import Hint, call, describe, exercise, expect_close, expect_tensor
from .mlp import Mistake, _diagnose, _matches, expect_softmax, stable_softmax

__all__ = ["stable_softmax", "attention", "masked_attention", "split_heads", "merge_heads",
           "check_stable_softmax", "check_attention", "check_masked_attention", "check_split_heads",
           "check_merge_heads"]

# ---------------------------------------------------------------------------------------------
# Reference implementations (``stable_softmax`` is notebook 01's, imported above)
# ---------------------------------------------------------------------------------------------


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d_k)) v: q ``(..., Tq, dk)``, k ``(..., Tk, dk)``, v ``(..., Tk, dv)``.

    Returns (output ``(..., Tq, dv)``, weights ``(..., Tq, Tk)``); each row of the weights sums to 1.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    weights = stable_softmax(scores)
    return weights @ v, weights


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`attention` where ``mask`` (bool, broadcastable to ``(..., Tq, Tk)``, True = may attend)
    removes the other keys BEFORE the softmax: their weight is exactly 0 and each row still sums to 1."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    weights = stable_softmax(scores.masked_fill(~mask, float("-inf")))
    return weights @ v, weights


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, T, D)`` -> ``(B, H, T, D // H)``: head h gets features ``h*D/H .. (h+1)*D/H`` of every position."""
    batch, length, dim = x.shape
    return x.view(batch, length, num_heads, dim // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, Dh)`` -> ``(B, T, H * Dh)``, the inverse of :func:`split_heads`."""
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _pair(got: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The learner's (output, weights) pair; a hint when it is something else."""
    if isinstance(got, torch.Tensor):
        raise Hint(f"{what}: you returned one tensor ({describe(got)}); return two: (output, weights)")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Hint(f"{what}: expected a pair (output, weights), got {describe(got)}")
    return got[0], got[1]


def _diagnose_pair(got: tuple[Any, Any], args: tuple[Any, ...], mistakes: Sequence[Mistake], what: str) -> None:
    """Raise the hint of the first mistake whose (output, weights) equal ``got`` on ``args``."""
    for mistaken, hint in mistakes:
        try:
            out, weights = mistaken(*args)
        except Exception:  # this mistake cannot run on these inputs, so it is not the one
            continue
        if _matches(got[0], out) and _matches(got[1], weights):
            raise Hint(f"{what}: {hint}")


def _check_pair(got: Any, want: tuple[torch.Tensor, torch.Tensor], args: tuple[Any, ...],
                mistakes: Sequence[Mistake], what: str) -> None:
    """Compare the learner's (output, weights) with the reference pair ``want``."""
    out, weights = _pair(got, what)
    want_out, want_weights = want
    if (isinstance(out, torch.Tensor) and isinstance(weights, torch.Tensor)
            and out.shape == want_weights.shape and weights.shape == want_out.shape):
        raise Hint(f"{what}: the two results are swapped; return (output, weights) in that order")
    expect_tensor(out, tuple(want_out.shape), f"{what}, output")
    expect_tensor(weights, tuple(want_weights.shape), f"{what}, weights")
    if _matches(out, want_out) and _matches(weights, want_weights):
        return
    _diagnose_pair((out, weights), args, mistakes, what)
    if not (torch.isfinite(out).all() and torch.isfinite(weights).all()):
        raise Hint(f"{what}: your result has inf or NaN; is exp() overflowing? Subtract each row's max "
                   "before exp (or use torch.softmax)")
    row_sums = weights.detach().double().sum(dim=-1)
    if not torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-4):
        raise Hint(f"{what}: the rows of the weights sum to {row_sums.flatten()[:3].tolist()}..., not 1; "
                   "the softmax must be the last step that touches the weights")
    expect_close(weights, want_weights, f"{what}, weights", atol=1e-4)
    expect_close(out, want_out, f"{what}, output", atol=1e-4)


def _scores(q: torch.Tensor, k: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """``q k^T / scale`` (default scale sqrt(d_k)): the mistakes below start from it."""
    return q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale is None else scale)


def _naive_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """exp / sum(exp) without subtracting the max: overflows for logits above ~88 in float32."""
    return x.exp() / x.exp().sum(dim=dim, keepdim=True)


def _from_weights(weights: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return weights @ v, weights


NO_SCALE = ("the scores are not scaled: divide q @ k^T by sqrt(d_k) (d_k = q.shape[-1]) before the "
            "softmax, or large d_k saturates it")

# ---------------------------------------------------------------------------------------------
# Exercise 1: softmax over the keys, stable for large scores
# ---------------------------------------------------------------------------------------------


@exercise("stable_softmax")
def check_stable_softmax(answer: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(scores)`` -> softmax over the last dim of ``(B, Tq, Tk)`` scores, stable for big ones."""
    generator = torch.Generator().manual_seed(5)
    cases = [
        ("softmax of (2, 3, 4) scores", torch.randn(2, 3, 4, generator=generator)),
        ("softmax of (3, 2, 5) scores", torch.randn(3, 2, 5, generator=generator)),
        ("softmax of (1, 2, 3) scores [[1000, 1001, 1002], [-1000, -999, -998]]",
         torch.tensor([[[1000.0, 1001.0, 1002.0], [-1000.0, -999.0, -998.0]]])),
    ]
    expect_softmax(answer, cases)


# ---------------------------------------------------------------------------------------------
# Exercise 2: scaled dot-product attention
# ---------------------------------------------------------------------------------------------

ATTENTION_MISTAKES: list[Mistake] = [
    (lambda q, k, v: _from_weights(torch.softmax(_scores(q, k, 1.0), dim=-1), v), NO_SCALE),
    (lambda q, k, v: _from_weights(torch.softmax(_scores(q, k, q.shape[-1]), dim=-1), v),
     "you divided by d_k; divide by its square root, sqrt(d_k): that is what brings the variance of "
     "q . k back to 1"),
    (lambda q, k, v: _from_weights(torch.softmax(_scores(q, k, math.sqrt(v.shape[-1])), dim=-1), v),
     "you scaled by sqrt of v's size; d_k is the size of the queries and keys, q.shape[-1]"),
    (lambda q, k, v: _from_weights(torch.softmax(_scores(q, k), dim=-2), v),
     "the softmax is over the wrong axis (the queries, dim=-2); each query's weights over the keys "
     "must sum to 1: softmax over the last dim"),
    (lambda q, k, v: _from_weights(torch.softmax(_scores(q, k), dim=0), v),
     "the softmax is over the batch (dim 0); take it over the keys, the last dim"),
    (lambda q, k, v: _from_weights(_scores(q, k), v),
     "there is no softmax: the weights must be softmax(q k^T / sqrt(d_k)) over the last dim"),
]


@exercise("attention")
def check_attention(answer: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Check ``answer(q, k, v)`` -> (output ``(B, Tq, dv)``, weights ``(B, Tq, Tk)``)."""
    generator = torch.Generator().manual_seed(7)
    cases = [
        ("attention with q (2, 3, 4), k (2, 5, 4), v (2, 5, 6)",
         torch.randn(2, 3, 4, generator=generator), torch.randn(2, 5, 4, generator=generator),
         torch.randn(2, 5, 6, generator=generator)),
        ("attention with q (1, 2, 16), k (1, 3, 16), v (1, 3, 2)",
         torch.randn(1, 2, 16, generator=generator) * 2, torch.randn(1, 3, 16, generator=generator) * 2,
         torch.randn(1, 3, 2, generator=generator)),
        ("attention with large scores, q and k (1, 2, 4) times 30",
         torch.randn(1, 2, 4, generator=generator) * 30, torch.randn(1, 2, 4, generator=generator) * 30,
         torch.randn(1, 2, 3, generator=generator)),
    ]
    for what, q, k, v in cases:
        got = call(answer, q.clone(), k.clone(), v.clone())
        _check_pair(got, attention(q, k, v), (q, k, v), ATTENTION_MISTAKES, what)


# ---------------------------------------------------------------------------------------------
# Exercise 3: masked attention
# ---------------------------------------------------------------------------------------------


def _after_softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mistake: softmax first, then zero the masked weights (rows no longer sum to 1)."""
    return _from_weights(torch.softmax(_scores(q, k), dim=-1) * mask, v)


MASK_AFTER = ("the mask is applied after the softmax: the rows of the weights no longer sum to 1. "
              "Fill the masked scores with -inf BEFORE the softmax (scores.masked_fill(~mask, float('-inf')))")

MASKED_MISTAKES: list[Mistake] = [
    (_after_softmax, MASK_AFTER),
    (lambda q, k, v, m: _from_weights(torch.softmax(_scores(q, k).masked_fill(m, float("-inf")), dim=-1), v),
     "the mask is inverted: True means 'may attend', so fill the scores where the mask is False: "
     "scores.masked_fill(~mask, float('-inf'))"),
    (lambda q, k, v, m: _from_weights(torch.softmax(_scores(q, k).masked_fill(~m, 0.0), dim=-1), v),
     "masked scores set to 0 (by masked_fill(..., 0) or by multiplying with the mask) still get weight, "
     "since exp(0) = 1; fill them with -inf so that exp gives 0"),
    (lambda q, k, v, m: _from_weights(torch.softmax(_scores(q, k) + m, dim=-1), v),
     "a bool mask is not an additive mask: adding True/False adds 1/0 to the scores. Use "
     "scores.masked_fill(~mask, float('-inf'))"),
    (lambda q, k, v, m: attention(q, k, v),
     "the mask was ignored: the masked positions still get weight"),
    (lambda q, k, v, m: _from_weights(torch.softmax(_scores(q, k, 1.0).masked_fill(~m, float("-inf")), dim=-1), v),
     NO_SCALE),
    (lambda q, k, v, m: _from_weights(_naive_softmax(_scores(q, k).masked_fill(~m, float("-inf"))), v),
     "exp() overflows for large scores; subtract each row's max before exp (or use torch.softmax)"),
]


def _mask_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(what, q, k, v, mask) cases: a causal mask, a padding mask, large scores with a causal mask."""
    generator = torch.Generator().manual_seed(11)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    padding = torch.tensor([[True, True, True, True, True], [True, True, True, False, False]])[:, None, :]
    return [
        ("causal mask (4, 4), q k v (2, 4, 3)", torch.randn(2, 4, 3, generator=generator),
         torch.randn(2, 4, 3, generator=generator), torch.randn(2, 4, 3, generator=generator), causal),
        ("padding mask (2, 1, 5), q (2, 3, 4), k v (2, 5, 4)", torch.randn(2, 3, 4, generator=generator),
         torch.randn(2, 5, 4, generator=generator), torch.randn(2, 5, 4, generator=generator), padding),
        ("causal mask (3, 3) with large scores (q and k times 30)", torch.randn(1, 3, 4, generator=generator) * 30,
         torch.randn(1, 3, 4, generator=generator) * 30, torch.randn(1, 3, 2, generator=generator),
         causal[:3, :3]),
    ]


@exercise("masked_attention")
def check_masked_attention(answer: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Check ``answer(q, k, v, mask)`` (bool mask, True = may attend) -> (output, weights)."""
    for what, q, k, v, mask in _mask_cases():
        got = call(answer, q.clone(), k.clone(), v.clone(), mask.clone())
        want = masked_attention(q, k, v, mask)
        _check_pair(got, want, (q, k, v, mask), MASKED_MISTAKES, what)
        weights = got[1].detach()
        if bool((weights.masked_fill(mask, 0.0).abs() > 1e-6).any()):
            raise Hint(f"{what}: masked positions get weight; they must get exactly 0")


# ---------------------------------------------------------------------------------------------
# Exercise 4: split into heads, and merge back
# ---------------------------------------------------------------------------------------------


def _split_view_only(x: torch.Tensor, h: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.reshape(b, h, t, d // h)


def _split_interleaved(x: torch.Tensor, h: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.reshape(b, t, d // h, h).permute(0, 3, 1, 2)


SPLIT_MISTAKES: list[Mistake] = [
    (_split_view_only,
     "a plain view(B, H, T, D // H) without transpose mixes positions: each 'head' gets pieces of "
     "several tokens. View as (B, T, H, D // H), then transpose(1, 2)"),
    (_split_interleaved,
     "each head must take a contiguous block of D // H features: view as (B, T, H, D // H) (heads "
     "before head_dim), then transpose(1, 2)"),
]

MERGE_MISTAKES: list[Mistake] = [
    (lambda x: x.reshape(x.shape[0], x.shape[2], -1),
     "a plain reshape/view of (B, H, T, Dh) to (B, T, H * Dh) without transpose mixes positions, so it "
     "does not invert split_heads. transpose(1, 2) first, then reshape"),
    (lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
     "the features come out interleaved (head index last), so it does not invert split_heads: "
     "transpose(1, 2) to (B, T, H, Dh), then reshape to (B, T, H * Dh)"),
]

KNOWN_ERRORS = {  # a piece of torch's error message -> what it means here
    "view size is not compatible": "view() needs a contiguous tensor and transpose() makes a non-contiguous "
                                   "one: use .reshape(...) or call .contiguous() before .view(...)",
}


def _call(answer: Callable[..., Any], *args: Any) -> Any:
    """:func:`call`, with the errors these exercises often hit turned into a plain hint."""
    return call(answer, *args, known_errors=KNOWN_ERRORS)


def _head_inputs() -> list[tuple[torch.Tensor, int]]:
    """(x (B, T, D), num_heads) cases with T different from H, so a wrong order shows in the shape."""
    generator = torch.Generator().manual_seed(13)
    return [(torch.randn(2, 5, 12, generator=generator), 3), (torch.randn(1, 3, 8, generator=generator), 2)]


@exercise("split_heads")
def check_split_heads(answer: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Check ``answer(x, num_heads)``: ``(B, T, D)`` -> ``(B, H, T, D // H)``."""
    for x, heads in _head_inputs():
        b, t, d = x.shape
        what = f"split_heads of x {tuple(x.shape)} into {heads} heads"
        got = _call(answer, x.clone(), heads)
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (b, t, heads, d // heads):
            raise Hint(f"{what}: got (B, T, H, D // H); transpose(1, 2) to put the heads before the "
                       "positions: (B, H, T, D // H)")
        want = split_heads(x, heads)
        expect_tensor(got, tuple(want.shape), what)
        if not _matches(got, want, atol=1e-6):
            _diagnose(got, (x, heads), SPLIT_MISTAKES, what)
            expect_close(got, want, what)


@exercise("merge_heads")
def check_merge_heads(answer: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(x)``: ``(B, H, T, Dh)`` -> ``(B, T, H * Dh)``, and merge_heads(split_heads(x)) == x."""
    for x, heads in _head_inputs():
        what = f"merge_heads(split_heads(x)) for x {tuple(x.shape)} and {heads} heads"
        split = split_heads(x, heads).contiguous()  # contiguous, like the output of attention (weights @ v)
        got = _call(answer, split.clone())
        expect_tensor(got, tuple(x.shape), what)
        if not _matches(got, x, atol=1e-6):
            _diagnose(got, (split,), MERGE_MISTAKES, what)
            raise Hint(f"{what}: does not give x back, so merge does not invert split_heads; "
                       "transpose(1, 2), then reshape to (B, T, H * Dh)")
