"""Checkers for notebook 02 (convolutional networks), with the reference solutions they compare against.

- :func:`check_conv2d_loops`: a multi-channel convolution (cross-correlation) written with loops;
- :func:`check_conv_output_size`: the output-size formula ``floor((n + 2p - k) / s) + 1``;
- :func:`check_conv_param_count`: how many parameters an ``nn.Conv2d`` holds.

Each checker runs the learner's function on fixed cases and on hidden random ones, compares with
the reference, and when the answer matches a known mistake (a flipped kernel, a forgotten ``+ 1``...)
on every case says which one.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import Case, Hint, Mistake, as_int, as_number, check_cases, describe, exercise, expect_tensor, hidden_cases, same

__all__ = ["conv2d_loops", "conv_output_size", "conv_param_count", "check_conv2d_loops", "check_conv_output_size",
           "check_conv_param_count"]

# ---------------------------------------------------------------------------------------------
# Reference solutions
# ---------------------------------------------------------------------------------------------


def conv2d_loops(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """What ``nn.Conv2d`` computes (stride 1, no padding), written with loops.

    ``out[o, i, j] = b[o] + sum over c, u, v of x[c, i + u, j + v] * w[o, c, u, v]``: the kernel
    slides over the input as it is (cross-correlation, no flip).

    Args:
        x: ``(C_in, H, W)`` one image.
        w: ``(C_out, C_in, kH, kW)`` kernels.
        b: ``(C_out,)`` biases.
    Returns:
        ``(C_out, H - kH + 1, W - kW + 1)``.
    """
    c_out, _, kh, kw = w.shape
    h_out, w_out = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = torch.zeros(c_out, h_out, w_out, dtype=x.dtype)
    for o in range(c_out):
        for i in range(h_out):
            for j in range(w_out):
                out[o, i, j] = (x[:, i:i + kh, j:j + kw] * w[o]).sum() + b[o]
    return out


def conv_output_size(n: int, k: int, p: int = 0, s: int = 1) -> int:
    """Output size along one side: ``floor((n + 2p - k) / s) + 1``.

    Args:
        n: input size (pixels), k: kernel size, p: zero padding on EACH side, s: stride.
    """
    return (n + 2 * p - k) // s + 1


def conv_param_count(in_channels: int, out_channels: int, k: int, bias: bool = True) -> int:
    """Parameters of ``nn.Conv2d(in_channels, out_channels, k, bias=bias)``.

    Each of the ``out_channels`` filters has ``in_channels * k * k`` weights, plus one bias.
    """
    return out_channels * in_channels * k * k + (out_channels if bias else 0)


def _draw(generator: torch.Generator, *ranges: tuple[int, int]) -> list[int]:
    """One random int from each ``[low, high)`` range (for the hidden cases)."""
    return [int(torch.randint(low, high, (), generator=generator)) for low, high in ranges]


# ---------------------------------------------------------------------------------------------
# conv2d_loops
# ---------------------------------------------------------------------------------------------

def _conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """What ``F.conv2d`` gives for one image, one kernel offset at a time (the checkers' reference, and the
    mistakes' start): x ``(C_in, H, W)``, w ``(C_out, C_in, kH, kW)``, b ``(C_out,)`` or None -> ``(C_out, H', W')``."""
    c_out, _, kh, kw = w.shape
    h_out, w_out = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = sum(torch.einsum("chw,oc->ohw", x[:, u:u + h_out, v:v + w_out], w[:, :, u, v])
              for u in range(kh) for v in range(kw))
    return out if b is None else out + b[:, None, None]


_FLIPPED = ("you flipped the kernel: that is the textbook convolution. A deep-learning 'convolution' (nn.Conv2d) is a "
            "cross-correlation: multiply x[c, i+u, j+v] by w[o, c, u, v] with the kernel as it is, no flip")
_ALL_CHANNELS = "each output must sum over ALL input channels: out[o, i, j] = b[o] + the sum over c, u, v of " \
                "x[c, i+u, j+v] * w[o, c, u, v]"
_OFF_BY_ONE = "off by one. A kernel of size k fits at H - k + 1 positions (the last one starts at H - k)"

CONV_MISTAKES: tuple[Mistake, ...] = (
    Mistake("flipped kernel", lambda x, w, b: _conv(x, w.flip(-2, -1), b), _FLIPPED),
    Mistake("flipped kernel, no bias", lambda x, w, b: _conv(x, w.flip(-2, -1), None),
            f"{_FLIPPED}; and add the bias b[o] to every output of channel o"),
    Mistake("no bias", lambda x, w, b: _conv(x, w, None), "the bias is missing: add b[o] to every output of channel o"),
    Mistake("first input channel only", lambda x, w, b: _conv(x[:1], w[:, :1], b),
            f"your result uses only the first input channel; {_ALL_CHANNELS}"),
    Mistake("channels averaged", lambda x, w, b: _conv(x, w, None) / x.shape[0] + b[:, None, None],
            f"you averaged over the input channels; {_ALL_CHANNELS}"),
    Mistake("one position short", lambda x, w, b: _conv(x, w, b)[:, :-1, :-1],
            f"your output is one row and one column short: {_OFF_BY_ONE}"),
)

CONV_FORBIDDEN = (F.conv2d, torch.convolution, F.unfold, torch.Tensor.unfold, nn.Conv2d.forward)


def _conv_case(seed: int, c_in: int, c_out: int, h: int, w: int, kh: int, kw: int, what: str) -> Case:
    """A fixed case: random x ``(c_in, h, w)``, w ``(c_out, c_in, kh, kw)``, b ``(c_out,)`` from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return Case((torch.randn(c_in, h, w, generator=g), torch.randn(c_out, c_in, kh, kw, generator=g),
                 torch.randn(c_out, generator=g)), what)


CONV_CASES: tuple[Case, ...] = (
    _conv_case(0, 2, 3, 5, 6, 3, 3, "x (2, 5, 6), w (3, 2, 3, 3)"),
    _conv_case(1, 3, 2, 6, 5, 2, 3, "x (3, 6, 5) with a 2x3 kernel w (2, 3, 2, 3)"),
)


def _hidden_conv(generator: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], str]:
    """Random sizes: 1..3 channels in and out, kernels 1..3 on each side (often not square), 3..6 outputs a side."""
    c_in, c_out, kh, kw, extra_h, extra_w = _draw(generator, *[(1, 4)] * 4, (2, 6), (2, 6))
    h, w = kh + extra_h, kw + extra_w
    args = (torch.randn(c_in, h, w, generator=generator), torch.randn(c_out, c_in, kh, kw, generator=generator),
            torch.randn(c_out, generator=generator))
    return args, f"x ({c_in}, {h}, {w}), w ({c_out}, {c_in}, {kh}, {kw})"


def _same_conv(got: Any, want: Any) -> bool:
    """:func:`same` with the tolerance of float32 sums in another order."""
    return same(got, want, atol=1e-4)


def _explain_conv_shape(got: Any, want: torch.Tensor, case: Case) -> None:
    """Raise a hint naming the mistake when ``got`` is not a tensor of ``want``'s shape (off by one, kH/kW mixed)."""
    expected = tuple(want.shape)
    if not isinstance(got, torch.Tensor) or tuple(got.shape) == expected:
        return
    x, w, _ = case.args
    h, width, kh, kw = x.shape[1], x.shape[2], w.shape[2], w.shape[3]
    shape = tuple(got.shape)
    if got.ndim == 3 and shape[0] == expected[0]:
        if shape[1:] in ((h - kh, width - kw), (h - kh + 2, width - kw + 2)):
            raise Hint(f"{case.what}: expected an output of shape {expected}, got {shape}: {_OFF_BY_ONE}")
        if kh != kw and shape[1:] in ((h - kh + 1, width - kh + 1), (h - kw + 1, width - kw + 1)):
            raise Hint(f"{case.what}: expected an output of shape {expected}, got {shape}: the height comes from H and "
                       "kH = w.shape[2], the width from W and kW = w.shape[3]")
    expect_tensor(got, expected, case.what)


@exercise("conv2d_loops", solution=conv2d_loops, hidden=2, mistakes=CONV_MISTAKES, forbidden=CONV_FORBIDDEN)
def check_conv2d_loops(answer: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(x (C_in, H, W), w (C_out, C_in, kH, kW), b (C_out,))`` -> what ``F.conv2d`` gives."""
    cases = [*CONV_CASES, *hidden_cases(_hidden_conv, 2)]
    check_cases(answer, cases, _conv, mistakes=CONV_MISTAKES, equal=_same_conv, explain=_explain_conv_shape)


# ---------------------------------------------------------------------------------------------
# Whole-number answers: conv_output_size and conv_param_count
# ---------------------------------------------------------------------------------------------

def _same_int(got: Any, want: int) -> bool:
    """True when ``got`` is a whole number (int, numpy integer, one-element integer tensor) equal to ``want``."""
    try:
        return as_int(got, "") == want
    except Hint:
        return False


def _explain_int(got: Any, want: int, case: Case) -> None:
    """The hint for a wrong whole-number answer: not a number, not an int, or too large / too small for ``case``."""
    if isinstance(got, (bool, np.bool_)) or not isinstance(got, (numbers.Real, np.number, torch.Tensor)):
        raise Hint(f"{case.what} returned {describe(got)}; return a Python int")
    value = as_number(got, case.what)
    try:
        mine = as_int(got, case.what)
    except Hint:
        if not value.is_integer():
            raise Hint(f"{case.what} returned {value:g}, not a whole number: divide with floor division // "
                       "and return an int") from None
        shown = repr(got) if isinstance(got, float) else f"{value!r} ({describe(got)})"
        raise Hint(f"{case.what} returned the float {shown}: sizes and counts are whole numbers; use floor "
                   "division // (or int(...)) and return an int") from None
    raise Hint(f"{case.what} returned {mine}, which is too {'large' if mine > want else 'small'}")


# (n, k, p, s), chosen so that each typical mistake gives a different answer somewhere.
SIZE_CASES = [(28, 3, 1, 1), (28, 5, 0, 1), (7, 2, 0, 2), (28, 3, 1, 2), (32, 5, 2, 2), (10, 3, 0, 3), (224, 7, 3, 2)]

SIZE_MISTAKES: tuple[Mistake, ...] = (
    Mistake("forgot + 1", lambda n, k, p, s: (n + 2 * p - k) // s,
            "you forgot the + 1: with n = k and no padding the kernel still fits once, so the output has 1 pixel"),
    Mistake("padding on one side", lambda n, k, p, s: (n + p - k) // s + 1,
            "padding is added on BOTH sides of the image: use n + 2p, not n + p"),
    Mistake("divided before subtracting k", lambda n, k, p, s: (n + 2 * p) // s - k + 1,
            "subtract the kernel size before dividing by the stride: (n + 2p - k) is how far the kernel can slide, "
            "and the stride divides that distance"),
    Mistake("rounded up", lambda n, k, p, s: -(-(n + 2 * p - k) // s) + 1,
            "round DOWN (floor), not up: a last step that would run past the edge is not taken"),
)


def _size_what(n: int, k: int, p: int, s: int) -> str:
    return f"conv_output_size(n={n}, k={k}, p={p}, s={s})"


def _hidden_size(generator: torch.Generator) -> tuple[tuple[int, int, int, int], str]:
    """A random input size 8..64, kernel 1..7, padding 0..3 and stride 1..4."""
    n, k, p, s = _draw(generator, (8, 65), (1, 8), (0, 4), (1, 5))
    return (n, k, p, s), _size_what(n, k, p, s)


@exercise("conv_output_size", solution=conv_output_size, hidden=3, mistakes=SIZE_MISTAKES,
          forbidden=(nn.Conv2d.__init__, nn.MaxPool2d.__init__, F.conv2d))
def check_conv_output_size(answer: Callable[[int, int, int, int], int]) -> None:
    """Check ``answer(n, k, p, s)`` on :data:`SIZE_CASES` and hidden random settings."""
    cases = [*(Case(case, _size_what(*case)) for case in SIZE_CASES), *hidden_cases(_hidden_size, 3)]
    check_cases(answer, cases, conv_output_size, mistakes=SIZE_MISTAKES, equal=_same_int, explain=_explain_int)


# (in_channels, out_channels, k, bias), chosen so that each typical mistake gives a different answer somewhere.
PARAM_CASES = [(1, 32, 3, True), (32, 64, 3, False), (3, 16, 5, True), (64, 128, 3, True), (2, 4, 1, False)]

PARAM_MISTAKES: tuple[Mistake, ...] = (
    Mistake("no bias", lambda i, o, k, bias: o * i * k * k,
            "the bias is missing: with bias=True each output channel (filter) has one bias"),
    Mistake("bias even when bias=False", lambda i, o, k, bias: o * i * k * k + o,
            "with bias=False there is no bias: add out_channels only when bias is True"),
    Mistake("one input channel per filter", lambda i, o, k, bias: o * k * k + (o if bias else 0),
            "each filter spans ALL input channels: it has in_channels * k * k weights, not k * k"),
    Mistake("k instead of k * k", lambda i, o, k, bias: o * i * k + (o if bias else 0),
            "a k x k kernel has k * k weights per input channel, not k"),
    Mistake("one bias per input channel", lambda i, o, k, bias: o * i * k * k + (i if bias else 0),
            "there is one bias per OUTPUT channel (per filter), not per input channel"),
)


def _param_what(i: int, o: int, k: int, bias: bool) -> str:
    return f"conv_param_count(in_channels={i}, out_channels={o}, k={k}, bias={bias})"


def _hidden_params(generator: torch.Generator) -> tuple[tuple[int, int, int, bool], str]:
    """Random channels 1..64 in and 1..128 out, a kernel 1..7, with or without bias."""
    i, o, k, bias = _draw(generator, (1, 65), (1, 129), (1, 8), (0, 2))
    return (i, o, k, bool(bias)), _param_what(i, o, k, bool(bias))


@exercise("conv_param_count", solution=conv_param_count, hidden=3, mistakes=PARAM_MISTAKES,
          forbidden=(nn.Conv2d.__init__,))
def check_conv_param_count(answer: Callable[[int, int, int, bool], int]) -> None:
    """Check ``answer(in_channels, out_channels, k, bias)`` against ``nn.Conv2d``'s parameter count."""
    cases = [*(Case(case, _param_what(*case)) for case in PARAM_CASES), *hidden_cases(_hidden_params, 3)]
    check_cases(answer, cases, conv_param_count, mistakes=PARAM_MISTAKES, equal=_same_int, explain=_explain_int)
