"""Checkers for notebook 02 (convolutional networks), with the reference solutions they compare against.

- :func:`check_conv2d_loops`: a multi-channel convolution (cross-correlation) written with loops;
- :func:`check_conv_output_size`: the output-size formula ``floor((n + 2p - k) / s) + 1``;
- :func:`check_conv_param_count`: how many parameters an ``nn.Conv2d`` holds.

Each checker runs the learner's function on a few inputs, compares with the reference, and when
the answer matches a known mistake (a flipped kernel, a forgotten ``+ 1``...) says which one.
"""
from __future__ import annotations

import numbers
from typing import Callable

import torch
from torch.nn import functional as F

from . import Hint, call, describe, exercise, expect_close, expect_tensor, name_mistake

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


# ---------------------------------------------------------------------------------------------
# conv2d_loops
# ---------------------------------------------------------------------------------------------

def _conv_inputs(seed: int, c_in: int, c_out: int, h: int, w: int, kh: int, kw: int):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(c_in, h, w, generator=g), torch.randn(c_out, c_in, kh, kw, generator=g),
            torch.randn(c_out, generator=g))


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    return tuple(got.shape) == tuple(want.shape) and torch.allclose(got.detach().double(), want.double(), atol=1e-4)


def _diagnose_conv(got: torch.Tensor, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> None:
    """Raise the hint of the first known mistake that ``got`` matches."""
    flipped = F.conv2d(x[None], w.flip(-2, -1), b)[0]
    if _close(got, flipped) or _close(got, flipped - b[:, None, None]):
        raise Hint("you flipped the kernel: that is the textbook convolution. A deep-learning 'convolution' "
                   "(nn.Conv2d) is a cross-correlation: multiply x[c, i+u, j+v] by w[o, c, u, v] with the "
                   "kernel as it is, no flip")
    plain = F.conv2d(x[None], w)[0]
    if _close(got, plain):
        raise Hint("the bias is missing: add b[o] to every output of channel o")
    singles = [F.conv2d(x[None, c:c + 1], w[:, c:c + 1], b)[0] for c in range(x.shape[0])]
    singles += [F.conv2d(x[None, c:c + 1], w[:, c:c + 1])[0] for c in range(x.shape[0])]
    mean = F.conv2d(x[None], w)[0] / x.shape[0] + b[:, None, None]
    if any(_close(got, s) for s in singles) or _close(got, mean):
        raise Hint("each output must sum over ALL input channels: out[o, i, j] = b[o] + the sum over c, u, v "
                   "of x[c, i+u, j+v] * w[o, c, u, v] (your result uses only one channel, or averages them)")


def _check_conv_shape(got: torch.Tensor, want: tuple[int, ...], sizes: tuple[int, int, int, int], what: str) -> None:
    """Raise a hint naming the mistake when ``got`` has the wrong shape (off by one, kH/kW mixed up)."""
    if tuple(got.shape) == want:
        return
    h, w, kh, kw = sizes
    shape = tuple(got.shape)
    if got.ndim == 3 and shape[0] == want[0]:
        if shape[1:] in ((h - kh, w - kw), (h - kh + 2, w - kw + 2)):
            raise Hint(f"{what}: expected an output of shape {want}, got {shape}: off by one. A kernel of size "
                       "k fits at H - k + 1 positions (the last one starts at H - k)")
        if kh != kw and shape[1:] in ((h - kh + 1, w - kh + 1), (h - kw + 1, w - kw + 1)):
            raise Hint(f"{what}: expected an output of shape {want}, got {shape}: the height comes from H and "
                       "kH = w.shape[2], the width from W and kW = w.shape[3]")
    expect_tensor(got, want, what)


@exercise("conv2d_loops")
def check_conv2d_loops(answer: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(x (C_in, H, W), w (C_out, C_in, kH, kW), b (C_out,))`` against ``F.conv2d``."""
    cases = [((0, 2, 3, 5, 6, 3, 3), "x (2, 5, 6), w (3, 2, 3, 3)"),
             ((1, 3, 2, 6, 5, 2, 3), "x (3, 6, 5) with a 2x3 kernel w (2, 3, 2, 3)")]
    for (seed, c_in, c_out, h, w_, kh, kw), what in cases:
        x, w, b = _conv_inputs(seed, c_in, c_out, h, w_, kh, kw)
        got = call(answer, x.clone(), w.clone(), b.clone())
        want = F.conv2d(x[None], w, b)[0]
        if not isinstance(got, torch.Tensor):
            raise Hint(f"{what}: expected a tensor, got {describe(got)} (did you forget to return it?)")
        _check_conv_shape(got, tuple(want.shape), (h, w_, kh, kw), what)
        _diagnose_conv(got, x, w, b)
        expect_close(got, want, what, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# conv_output_size
# ---------------------------------------------------------------------------------------------

# (n, k, p, s), chosen so that each typical mistake gives a different answer somewhere.
SIZE_CASES = [(28, 3, 1, 1), (28, 5, 0, 1), (7, 2, 0, 2), (28, 3, 1, 2), (32, 5, 2, 2), (10, 3, 0, 3), (224, 7, 3, 2)]

SIZE_MISTAKES: list[tuple[Callable[[int, int, int, int], float], str]] = [
    (lambda n, k, p, s: (n + 2 * p - k) // s,
     "you forgot the + 1: with n = k and no padding the kernel still fits once, so the output has 1 pixel"),
    (lambda n, k, p, s: (n + p - k) // s + 1,
     "padding is added on BOTH sides of the image: use n + 2p, not n + p"),
    (lambda n, k, p, s: (n + 2 * p) // s - k + 1,
     "subtract the kernel size before dividing by the stride: (n + 2p - k) is how far the kernel can "
     "slide, and the stride divides that distance"),
    (lambda n, k, p, s: -(-(n + 2 * p - k) // s) + 1,
     "round DOWN (floor), not up: a last step that would run past the edge is not taken"),
]


@exercise("conv_output_size")
def check_conv_output_size(answer: Callable[[int, int, int, int], int]) -> None:
    """Check ``answer(n, k, p, s)`` on :data:`SIZE_CASES`."""
    got = [call(answer, *case) for case in SIZE_CASES]
    want = [conv_output_size(*case) for case in SIZE_CASES]
    for case, g, r in zip(SIZE_CASES, got, want):
        if isinstance(g, bool) or not isinstance(g, numbers.Real):
            raise Hint(f"conv_output_size{case} returned {describe(g)}; return a Python int")
        if not isinstance(g, numbers.Integral):
            if float(g) == r:
                raise Hint(f"conv_output_size{case} returned the float {g!r}: a size is a whole number; "
                           "use floor division // (or int(...)) and return an int")
            if float(g) != int(g):
                raise Hint(f"conv_output_size{case} returned {g!r}, not a whole number: the formula takes the "
                           "floor of (n + 2p - k) / s; use // for it")
    name_mistake(SIZE_MISTAKES, SIZE_CASES, got, want)
    for case, g, r in zip(SIZE_CASES, got, want):
        if g != r:
            n, k, p, s = case
            raise Hint(f"conv_output_size(n={n}, k={k}, p={p}, s={s}) should be {r}, got {g!r}")


# ---------------------------------------------------------------------------------------------
# conv_param_count
# ---------------------------------------------------------------------------------------------

PARAM_CASES = [(1, 32, 3, True), (32, 64, 3, False), (3, 16, 5, True), (64, 128, 3, True), (2, 4, 1, False)]

PARAM_MISTAKES: list[tuple[Callable[[int, int, int, bool], int], str]] = [
    (lambda i, o, k, bias: o * i * k * k,
     "the bias is missing: with bias=True each output channel (filter) has one bias"),
    (lambda i, o, k, bias: o * i * k * k + o,
     "with bias=False there is no bias: add out_channels only when bias is True"),
    (lambda i, o, k, bias: o * k * k + (o if bias else 0),
     "each filter spans ALL input channels: it has in_channels * k * k weights, not k * k"),
    (lambda i, o, k, bias: o * i * k + (o if bias else 0),
     "a k x k kernel has k * k weights per input channel, not k"),
    (lambda i, o, k, bias: o * i * k * k + (i if bias else 0),
     "there is one bias per OUTPUT channel (per filter), not per input channel"),
]


@exercise("conv_param_count")
def check_conv_param_count(answer: Callable[[int, int, int, bool], int]) -> None:
    """Check ``answer(in_channels, out_channels, k, bias)`` against ``nn.Conv2d``'s parameter count."""
    got = [call(answer, *case) for case in PARAM_CASES]
    want = [conv_param_count(*case) for case in PARAM_CASES]
    for case, g in zip(PARAM_CASES, got):
        if isinstance(g, bool) or not isinstance(g, numbers.Integral):
            raise Hint(f"conv_param_count{case} returned {describe(g)}; return a Python int")
    name_mistake(PARAM_MISTAKES, PARAM_CASES, got, want)
    for case, g, r in zip(PARAM_CASES, got, want):
        if g != r:
            i, o, k, bias = case
            raise Hint(f"conv_param_count(in_channels={i}, out_channels={o}, k={k}, bias={bias}) should be {r} "
                       f"(what nn.Conv2d holds), got {g}")
