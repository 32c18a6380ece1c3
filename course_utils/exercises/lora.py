"""Exercises of notebook 07 (fine-tuning): the LoRA forward pass, and merging LoRA into the base weight.

- :func:`check_lora_forward`: ``lora_forward(x, weight, bias, A, B, alpha, r)`` -> ``(..., out)``, what
  :class:`course_utils.lora.LoRALinear` computes (without dropout);
- :func:`check_lora_merge`: ``merge(weight, A, B, alpha, r)`` -> the merged weight ``(out, in)``, what
  :meth:`course_utils.lora.LoRALinear.merged` holds.

The shapes are those of ``nn.Linear`` and ``peft``: ``x`` ``(..., in)``, ``weight`` ``(out, in)``, ``bias``
``(out,)``, ``A`` ``(r, in)``, ``B`` ``(out, r)``. Each check runs two rounds: first cases where in = out = r,
on which a swapped or transposed product still runs, so that its typical mistake can be named rather than
reported as a shape error; then cases where in, out and r all differ, as in a real model. :func:`lora_forward`
and :func:`lora_merge` below are the model answers, written as a learner would.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..lora import LoRALinear, merge_lora
from . import Case, Mistake, check_cases, exercise, expect_gradients, hidden_cases, same

__all__ = ["lora_forward", "lora_merge", "check_lora_forward", "check_lora_merge"]


# ---------------------------------------------------------------------------------------------
# Model answers
# ---------------------------------------------------------------------------------------------

def lora_forward(x: Tensor, weight: Tensor, bias: Tensor, A: Tensor, B: Tensor, alpha: float, r: int) -> Tensor:
    """``x`` ``(..., in)`` -> ``(..., out)``: the frozen layer ``x W^T + b`` plus the low-rank path ``x A^T B^T``,
    scaled by ``alpha / r``."""
    return x @ weight.T + bias + (x @ A.T @ B.T) * (alpha / r)


def lora_merge(weight: Tensor, A: Tensor, B: Tensor, alpha: float, r: int) -> Tensor:
    """The merged weight ``(out, in)``: ``weight + (alpha / r) * B @ A``, so that ``x @ merged.T + bias`` gives
    :func:`lora_forward`'s result at the cost of one Linear layer."""
    return weight + (alpha / r) * (B @ A)


# ---------------------------------------------------------------------------------------------
# Cases: round 1 with in = out = r, round 2 with in, out and r all different
# ---------------------------------------------------------------------------------------------

def _int(generator: torch.Generator, low: int, high: int) -> int:
    """A random int in ``[low, high]``."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _layer(generator: torch.Generator, batch: tuple[int, ...], d_in: int, d_out: int, r: int
           ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Random ``x`` ``(*batch, in)``, ``weight`` ``(out, in)``, ``bias`` ``(out,)``, ``A`` ``(r, in)``, ``B``
    ``(out, r)``; ``B`` is not zero (as after some training), so that the low-rank path shows."""
    return (torch.randn(*batch, d_in, generator=generator), torch.randn(d_out, d_in, generator=generator),
            torch.randn(d_out, generator=generator), torch.randn(r, d_in, generator=generator),
            torch.randn(d_out, r, generator=generator))


def _settings(weight: Tensor, A: Tensor, B: Tensor, alpha: int, r: int, bias: Tensor | None = None) -> str:
    """The shapes and settings of a case, in the order of the arguments, for its hints."""
    bias_shape = "" if bias is None else f", bias {tuple(bias.shape)}"
    return f"weight {tuple(weight.shape)}{bias_shape}, A {tuple(A.shape)}, B {tuple(B.shape)}, alpha={alpha}, r={r}"


# (batch shape of x, in, out, r, alpha): round 1 has alpha / r = 1.5 (not a whole number) and 4; round 2 has in,
# out and r all different.
SQUARE = (((2, 3), 4, 4, 4, 6), ((5,), 3, 3, 3, 12))
RECTANGULAR = (((2, 4), 6, 5, 2, 4), ((3,), 8, 5, 3, 8))


def _forward_case(generator: torch.Generator, batch: tuple[int, ...], d_in: int, d_out: int, r: int, alpha: int
                  ) -> tuple[tuple, str]:
    x, weight, bias, A, B = _layer(generator, batch, d_in, d_out, r)
    return (x, weight, bias, A, B, alpha, r), f"x {tuple(x.shape)}, {_settings(weight, A, B, alpha, r, bias)}"


def _merge_case(generator: torch.Generator, d_in: int, d_out: int, r: int, alpha: int) -> tuple[tuple, str]:
    weight, A, B = (torch.randn(*shape, generator=generator) for shape in ((d_out, d_in), (r, d_in), (d_out, r)))
    return (weight, A, B, alpha, r), _settings(weight, A, B, alpha, r)


def _hidden_square(generator: torch.Generator) -> tuple[int, int, int, int]:
    """in = out = r in 2..5, alpha in 1..16."""
    size = _int(generator, 2, 5)
    return size, size, size, _int(generator, 1, 16)


def _hidden_rectangular(generator: torch.Generator) -> tuple[int, int, int, int]:
    """r < in, out, the three different, in 2..9; alpha in 1..16."""
    r, *sizes = sorted(int(v) + 2 for v in torch.randperm(8, generator=generator)[:3])
    d_in, d_out = sizes if torch.rand((), generator=generator) < 0.5 else sizes[::-1]
    return d_in, d_out, r, _int(generator, 1, 16)


def _batch(generator: torch.Generator) -> tuple[int, ...]:
    """One or two leading dims of 1-4."""
    return tuple(_int(generator, 1, 4) for _ in range(_int(generator, 1, 2)))


SHAPES = ("weight is (out, in), A is (r, in) and B is (out, r), each laid out like an nn.Linear weight "
          "(out_features, in_features); write the shape beside each step")
_PRODUCT = f"a matrix product's sizes do not fit: {SHAPES}; x is (..., in), with one or more leading dims"
SHAPE_ERRORS = {  # a product or a sum whose sizes do not fit
    "cannot be multiplied": _PRODUCT,
    "size mismatch": _PRODUCT,
    "Expected size for first two dimensions of batch2 tensor": _PRODUCT,
    "must match the size of tensor": f"two terms of different shapes are added: {SHAPES}; the bias (out,) adds to "
                                     f"the last dim of a (..., out) result",
    "self must be a matrix": "torch.mm takes 2-D matrices only, and x may have several leading dims (..., in): "
                             "use @ (torch.matmul), which works on the last two dims",
}

# ---------------------------------------------------------------------------------------------
# Exercise 1: the forward pass
# ---------------------------------------------------------------------------------------------


def _path(x: Tensor, A: Tensor, B: Tensor) -> Tensor:
    """The unscaled low-rank path ``x A^T B^T``: ``(..., out)``."""
    return x @ A.T @ B.T


def _base(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    return x @ weight.T + bias


NO_SCALING = ("the low-rank path is not scaled: multiply it by alpha / r, so that changing r does not change how "
              "big the update starts")
INVERTED = "the scaling is upside down: it is alpha divided by r, not r divided by alpha"
ALPHA_ONLY = "the low-rank path is scaled by alpha alone: the scaling is alpha / r"
FLOOR = ("alpha // r is integer division: 6 // 4 is 1, not 1.5. The scaling is alpha / r, a true division (a "
         "float)")
WHOLE_SCALED = ("the scaling multiplies the frozen layer's output too: only the low-rank path is scaled by alpha / r; "
                "the base output x W^T + b is added as it is")

FORWARD_MISTAKES: tuple[Mistake, ...] = (
    Mistake("no scaling", lambda x, w, b, A, B, alpha, r: _base(x, w, b) + _path(x, A, B), NO_SCALING),
    Mistake("scaling inverted (r / alpha)",
            lambda x, w, b, A, B, alpha, r: _base(x, w, b) + _path(x, A, B) * (r / alpha), INVERTED),
    Mistake("scaled by alpha only", lambda x, w, b, A, B, alpha, r: _base(x, w, b) + _path(x, A, B) * alpha,
            ALPHA_ONLY),
    Mistake("integer division alpha // r",
            lambda x, w, b, A, B, alpha, r: _base(x, w, b) + _path(x, A, B) * (alpha // r), FLOOR),
    Mistake("whole output scaled",
            lambda x, w, b, A, B, alpha, r: (_base(x, w, b) + _path(x, A, B)) * (alpha / r), WHOLE_SCALED),
    Mistake("base output left out", lambda x, w, b, A, B, alpha, r: _path(x, A, B) * (alpha / r),
            "only the low-rank path is returned: LoRA ADDS it to the frozen layer's output x W^T + b, which "
            "carries everything the pretrained layer knows"),
    Mistake("bias left out", lambda x, w, b, A, B, alpha, r: x @ w.T + _path(x, A, B) * (alpha / r),
            "the bias of the frozen layer is missing: its output is x W^T + b"),
    Mistake("weight not transposed", lambda x, w, b, A, B, alpha, r: x @ w + b + _path(x, A, B) * (alpha / r),
            "the frozen layer is applied as x @ weight: weight is (out, in), as in nn.Linear, so the layer "
            "computes x @ weight.T + bias (it only runs here because in = out)"),
    Mistake("update not transposed (x @ B @ A)",
            lambda x, w, b, A, B, alpha, r: _base(x, w, b) + x @ B @ A * (alpha / r),
            "the low-rank update is applied as x @ (B @ A): B @ A is (out, in), like weight, so it must be "
            "transposed the same way; go down to r dims with A first, then up with B (it only runs here "
            "because in = out)"),
    Mistake("A and B swapped (x @ B.T @ A.T)",
            lambda x, w, b, A, B, alpha, r: _base(x, w, b) + x @ B.T @ A.T * (alpha / r),
            "A and B are used in the wrong order: A (r, in) takes x down to r dims, then B (out, r) brings it "
            "up to out dims (it only runs here because in = out = r)"),
    Mistake("A and B not transposed (x @ A @ B)",
            lambda x, w, b, A, B, alpha, r: _base(x, w, b) + x @ A @ B * (alpha / r),
            f"x @ A @ B treats A as (in, r) and B as (r, out); {SHAPES} (it only runs here because in = out = r)"),
)

FORWARD_FORBIDDEN = ((LoRALinear.forward, "that is the library's LoRA layer: write the formula with matrix "
                                          "products"),
                     (LoRALinear.merged, "that is the library's merge: write the forward pass itself"))
HIDDEN = 2  # one hidden case in each round


def _equal(got: object, want: object) -> bool:
    """Equal within float32's rounding of sums of a few products (order of the products free)."""
    return same(got, want, atol=1e-4, rtol=1e-4)


@exercise("lora_forward", solution=lora_forward, hidden=HIDDEN, mistakes=FORWARD_MISTAKES, forbidden=FORWARD_FORBIDDEN,
          gradients=True)
def check_lora_forward(answer: Callable[..., Tensor]) -> None:
    """Check ``answer(x (..., in), weight (out, in), bias (out,), A (r, in), B (out, r), alpha, r)`` -> ``(..., out)``,
    and the gradients that reach x, weight, bias, A and B."""
    generator = torch.Generator().manual_seed(15)

    def hidden(shape: Callable[[torch.Generator], tuple[int, int, int, int]]) -> list[Case]:
        def make(g: torch.Generator) -> tuple[tuple, str]:
            d_in, d_out, r, alpha = shape(g)
            return _forward_case(g, _batch(g), d_in, d_out, r, alpha)
        return hidden_cases(make, 1)

    square = [Case(*_forward_case(generator, *case)) for case in SQUARE]
    check_cases(answer, [*square, *hidden(_hidden_square)], lora_forward, mistakes=FORWARD_MISTAKES, equal=_equal,
                known_errors=SHAPE_ERRORS)
    rectangular = [Case(*_forward_case(generator, *case)) for case in RECTANGULAR]
    check_cases(answer, [*rectangular, *hidden(_hidden_rectangular)], lora_forward, mistakes=FORWARD_MISTAKES,
                equal=_equal, known_errors=SHAPE_ERRORS)
    expect_gradients(answer, lora_forward, rectangular[0])


# ---------------------------------------------------------------------------------------------
# Exercise 2: merging B @ A into the weight
# ---------------------------------------------------------------------------------------------

MERGE_MISTAKES: tuple[Mistake, ...] = (
    Mistake("A @ B instead of B @ A", lambda w, A, B, alpha, r: w + (alpha / r) * (A @ B),
            "the update is A @ B: the product must have weight's shape (out, in), and only B (out, r) @ A (r, in) "
            "does (A @ B only runs here because in = out = r)"),
    Mistake("update transposed", lambda w, A, B, alpha, r: w + (alpha / r) * (B @ A).T,
            "the update is transposed: B @ A is already (out, in), like weight (it only runs transposed here "
            "because in = out)"),
    Mistake("no scaling", lambda w, A, B, alpha, r: w + B @ A,
            "the update is not scaled: the layer adds (alpha / r) * B @ A to the weight, so the merge must too"),
    Mistake("scaling inverted (r / alpha)", lambda w, A, B, alpha, r: w + (r / alpha) * (B @ A), INVERTED),
    Mistake("scaled by alpha only", lambda w, A, B, alpha, r: w + alpha * (B @ A), ALPHA_ONLY),
    Mistake("integer division alpha // r", lambda w, A, B, alpha, r: w + (alpha // r) * (B @ A), FLOOR),
    Mistake("base weight replaced", lambda w, A, B, alpha, r: (alpha / r) * (B @ A),
            "the merged weight is the update alone: the pretrained weight is kept and the update ADDED to it"),
    Mistake("weight scaled too", lambda w, A, B, alpha, r: (w + B @ A) * (alpha / r),
            "the scaling multiplies the pretrained weight too: only the update B @ A is scaled by alpha / r"),
)

MERGE_ERRORS = {
    "cannot be multiplied": f"a matrix product's sizes do not fit: {SHAPES}",
    "must match the size of tensor": f"two terms of different shapes are added: {SHAPES}; the merged weight has "
                                     f"weight's shape (out, in)",
}
MERGE_FORBIDDEN = ((LoRALinear.merged, "that is the library's merge: compute the merged weight yourself"),
                   (merge_lora, "that is the library's merge: compute the merged weight yourself"))


@exercise("lora_merge", solution=lora_merge, hidden=HIDDEN, mistakes=MERGE_MISTAKES, forbidden=MERGE_FORBIDDEN)
def check_lora_merge(answer: Callable[..., Tensor]) -> None:
    """Check ``answer(weight (out, in), A (r, in), B (out, r), alpha, r)`` -> the merged weight ``(out, in)``."""
    generator = torch.Generator().manual_seed(16)

    def hidden(shape: Callable[[torch.Generator], tuple[int, int, int, int]]) -> list[Case]:
        return hidden_cases(lambda g: _merge_case(g, *shape(g)), 1)

    square = [Case(*_merge_case(generator, *case[1:])) for case in SQUARE]
    check_cases(answer, [*square, *hidden(_hidden_square)], lora_merge, mistakes=MERGE_MISTAKES, equal=_equal,
                known_errors=MERGE_ERRORS)
    rectangular = [Case(*_merge_case(generator, *case[1:])) for case in RECTANGULAR]
    check_cases(answer, [*rectangular, *hidden(_hidden_rectangular)], lora_merge, mistakes=MERGE_MISTAKES,
                equal=_equal, known_errors=MERGE_ERRORS)
