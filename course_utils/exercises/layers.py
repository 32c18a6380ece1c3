"""Checkers for notebook 09's layer exercises (interview classics), with the model answers they are tested against.

- :func:`check_max_pool`: 2-D max pooling, window ``k``, stride ``k``, no padding (``F.max_pool2d`` forbidden);
- :func:`check_dropout_forward`: inverted dropout from a given uniform draw, and its identity at test time;
- :func:`check_dropout_backward`: the gradient of that dropout, by hand (autograd forbidden);
- :func:`check_layer_norm`: LayerNorm over the last dimension, with its scale and shift (``F.layer_norm`` forbidden).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import Case, Mistake, check_cases, exercise, expect_gradients, hidden_cases

__all__ = ["solution_max_pool", "solution_dropout_forward", "solution_dropout_backward", "solution_layer_norm",
           "check_max_pool", "check_dropout_forward", "check_dropout_backward", "check_layer_norm"]


def _draw(generator: torch.Generator, low: int, high: int) -> int:
    """One random int in ``[low, high)``."""
    return int(torch.randint(low, high, (), generator=generator))


# ---------------------------------------------------------------------------------------------
# Max pooling
# ---------------------------------------------------------------------------------------------


def solution_max_pool(x: Tensor, k: int) -> Tensor:
    """Max over each ``k x k`` window, stride ``k``, no padding: ``(B, C, H, W)`` -> ``(B, C, H // k, W // k)``.

    Rows and columns left over when ``k`` does not divide ``H`` or ``W`` are dropped (``F.max_pool2d``'s default).
    """
    b, c, h, w = x.shape
    h2, w2 = h // k, w // k
    return x[:, :, :h2 * k, :w2 * k].reshape(b, c, h2, k, w2, k).amax(dim=(3, 5))


def _avg_pool(x: Tensor, k: int) -> Tensor:
    b, c, h, w = x.shape
    return x[:, :, :h // k * k, :w // k * k].reshape(b, c, h // k, k, w // k, k).mean(dim=(3, 5))


def _ceil_pool(x: Tensor, k: int) -> Tensor:
    """Max pooling that keeps the partial windows at the border (``ceil_mode=True``)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (0, (-w) % k, 0, (-h) % k), value=float("-inf"))
    return solution_max_pool(padded, k)


POOL_MISTAKES: tuple[Mistake, ...] = (
    Mistake("average, not max", _avg_pool,
            "your windows are averaged: max pooling keeps the largest value of each k x k window"),
    Mistake("stride 1", lambda x, k: x.unfold(2, k, 1).unfold(3, k, 1).amax(dim=(-2, -1)),
            "your windows overlap (stride 1): max pooling here moves by k, so the output is H // k by W // k"),
    Mistake("partial windows kept", _ceil_pool,
            "when k does not divide H or W your output keeps a partial window at the border; drop the leftover "
            "rows and columns (floor), as F.max_pool2d does by default"),
    Mistake("max over the channels too", lambda x, k: solution_max_pool(x, k).amax(dim=1, keepdim=True)
            .expand(-1, x.shape[1], -1, -1),
            "your result takes the max across the channels as well: pooling works on each channel separately"),
)

POOL_FORBIDDEN = (F.max_pool2d, torch.max_pool2d, nn.MaxPool2d.forward, F.adaptive_max_pool2d,
                  F.max_pool2d_with_indices)


def _pool_case(seed: int, shape: tuple[int, int, int, int], k: int) -> Case:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return Case((x, k), f"x {shape}, k={k}")


POOL_CASES = (_pool_case(0, (2, 3, 4, 4), 2), _pool_case(1, (1, 2, 7, 5), 2), _pool_case(2, (2, 1, 9, 9), 3))


def _hidden_pool(generator: torch.Generator) -> tuple[tuple[Tensor, int], str]:
    k = _draw(generator, 2, 4)
    shape = (_draw(generator, 1, 3), _draw(generator, 2, 4), _draw(generator, 2 * k, 4 * k + 2),
             _draw(generator, 2 * k, 4 * k + 2))
    return (torch.randn(*shape, generator=generator), k), f"x {shape}, k={k}"


@exercise("max_pool", solution=solution_max_pool, hidden=2, mistakes=POOL_MISTAKES, forbidden=POOL_FORBIDDEN,
          gradients=True)
def check_max_pool(answer: Callable[[Tensor, int], Tensor]) -> None:
    """Check ``answer(x (B, C, H, W), k)`` -> ``(B, C, H // k, W // k)``, and its gradient."""
    cases = [*POOL_CASES, *hidden_cases(_hidden_pool, 2)]
    check_cases(answer, cases, solution_max_pool, mistakes=POOL_MISTAKES)
    expect_gradients(answer, solution_max_pool, cases[0], names=["x", "k"])


# ---------------------------------------------------------------------------------------------
# Dropout, forward and backward
# ---------------------------------------------------------------------------------------------


def solution_dropout_forward(x: Tensor, u: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout of ``x`` (any shape): keep an entry where its uniform draw ``u >= p`` (probability
    ``1 - p``) and divide the kept ones by ``1 - p``, so the expected output is ``x``; at test time return ``x``."""
    if not training:
        return x
    return x * (u >= p) / (1 - p)


def _scaled_at_test(x: Tensor, u: Tensor, p: float, training: bool) -> Tensor:
    return solution_dropout_forward(x, u, p, True) if training else x * (1 - p)


DROPOUT_MISTAKES: tuple[Mistake, ...] = (
    Mistake("no rescaling", lambda x, u, p, t: x * (u >= p) if t else x,
            "the kept entries are not rescaled, so the output's expected value shrinks to (1 - p) x in training; "
            "inverted dropout divides what it keeps by 1 - p"),
    Mistake("scaled by p", lambda x, u, p, t: x * (u >= p) / p if t else x,
            "you divide by p; each entry is kept with probability 1 - p, so divide by that to keep the expectation"),
    Mistake("keeps the wrong entries", lambda x, u, p, t: x * (u < p) / (1 - p) if t else x,
            "you keep the entries whose draw is below p, i.e. a fraction p of them; p is the probability of "
            "DROPPING an entry"),
    Mistake("dropout at test time too", lambda x, u, p, t: solution_dropout_forward(x, u, p, True),
            "with training=False your function still drops entries; at test time dropout is the identity (that "
            "is what model.eval() switches)"),
    Mistake("old-style scaling at test time", _scaled_at_test,
            "at test time your output is x * (1 - p): with inverted dropout the rescaling happens in training, "
            "so evaluation returns x unchanged"),
)

DROPOUT_FORBIDDEN = (F.dropout, torch.dropout, nn.Dropout.forward, torch.bernoulli, F.alpha_dropout)


def _dropout_case(seed: int, shape: tuple[int, ...], p: float, training: bool) -> Case:
    g = torch.Generator().manual_seed(seed)
    x, u = torch.randn(*shape, generator=g), torch.rand(*shape, generator=g)
    return Case((x, u, p, training), f"x {shape}, p={p}, training={training}")


DROPOUT_CASES = (_dropout_case(0, (4, 6), 0.5, True), _dropout_case(1, (2, 3, 5), 0.2, True),
                 _dropout_case(2, (3, 4), 0.3, False))


def _hidden_dropout(generator: torch.Generator) -> tuple[tuple[Tensor, Tensor, float, bool], str]:
    shape = (_draw(generator, 2, 6), _draw(generator, 3, 9))
    p = round(0.1 + 0.7 * float(torch.rand((), generator=generator)), 3)
    return ((torch.randn(*shape, generator=generator), torch.rand(*shape, generator=generator), p, True),
            f"x {shape}, p={p}, training=True")


@exercise("dropout_forward", solution=solution_dropout_forward, hidden=2, mistakes=DROPOUT_MISTAKES,
          forbidden=DROPOUT_FORBIDDEN, gradients=True)
def check_dropout_forward(answer: Callable[[Tensor, Tensor, float, bool], Tensor]) -> None:
    """Check ``answer(x, u, p, training)`` -> inverted dropout of ``x`` with the draws ``u`` (same shape)."""
    cases = [*DROPOUT_CASES, *hidden_cases(_hidden_dropout, 2)]
    check_cases(answer, cases, solution_dropout_forward, mistakes=DROPOUT_MISTAKES)
    expect_gradients(answer, solution_dropout_forward, cases[0], names=["x", "u", "p", "training"])


def solution_dropout_backward(grad_out: Tensor, u: Tensor, p: float) -> Tensor:
    """dL/dx of training-mode inverted dropout, from dL/d(output) ``grad_out`` and the same draws ``u`` (any shape):
    the gradient flows only through the kept entries, scaled by ``1 / (1 - p)`` like the values were."""
    return grad_out * (u >= p) / (1 - p)


_AUTOGRAD = ("derive this gradient by hand: dropout multiplies each entry by a constant, so its gradient is that "
             "constant")
BACKWARD_FORBIDDEN = ((torch.autograd.grad, _AUTOGRAD), (torch.autograd.backward, _AUTOGRAD),
                      (torch.Tensor.backward, _AUTOGRAD), *DROPOUT_FORBIDDEN)

BACKWARD_MISTAKES: tuple[Mistake, ...] = (
    Mistake("gradient not rescaled", lambda g, u, p: g * (u >= p),
            "the forward pass divided the kept entries by 1 - p; the gradient is multiplied by the same factor"),
    Mistake("gradient through dropped entries", lambda g, u, p: g / (1 - p),
            "your gradient reaches the dropped entries: their output was 0 whatever x was, so their gradient is 0"),
    Mistake("gradient unchanged", lambda g, u, p: g,
            "you pass the gradient through unchanged: dropout multiplied each entry by 0 or 1 / (1 - p), and the "
            "gradient is multiplied by the same"),
    Mistake("mask inverted", lambda g, u, p: g * (u < p) / (1 - p),
            "your gradient flows through the DROPPED entries (draw below p) instead of the kept ones"),
)


def _backward_case(seed: int, shape: tuple[int, ...], p: float) -> Case:
    g = torch.Generator().manual_seed(seed)
    return Case((torch.randn(*shape, generator=g), torch.rand(*shape, generator=g), p), f"grad_out {shape}, p={p}")


BACKWARD_CASES = (_backward_case(0, (4, 6), 0.5), _backward_case(1, (2, 3, 5), 0.25))


def _hidden_backward(generator: torch.Generator) -> tuple[tuple[Tensor, Tensor, float], str]:
    (x, u, p, _), what = _hidden_dropout(generator)
    return (x, u, p), what.replace("x ", "grad_out ").replace(", training=True", "")


@exercise("dropout_backward", solution=solution_dropout_backward, hidden=2, mistakes=BACKWARD_MISTAKES,
          forbidden=BACKWARD_FORBIDDEN)
def check_dropout_backward(answer: Callable[[Tensor, Tensor, float], Tensor]) -> None:
    """Check ``answer(grad_out, u, p)`` -> dL/dx of training-mode inverted dropout with draws ``u``."""
    cases = [*BACKWARD_CASES, *hidden_cases(_hidden_backward, 2)]
    check_cases(answer, cases, solution_dropout_backward, mistakes=BACKWARD_MISTAKES)


# ---------------------------------------------------------------------------------------------
# LayerNorm by hand
# ---------------------------------------------------------------------------------------------


def solution_layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """LayerNorm over the last dimension: ``(x - mean) / sqrt(var + eps) * weight + bias``, with the biased
    variance (divide by D), each token on its own: x ``(..., D)``, weight and bias ``(D,)`` -> ``(..., D)``."""
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _norm(x: Tensor, dim: int | tuple[int, ...], unbiased: bool = False, eps_inside: bool = True,
          eps: float = 1e-5) -> Tensor:
    """x normalised over ``dim`` the way a mistake does it."""
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, unbiased=unbiased)
    return (x - mean) / (torch.sqrt(var + eps) if eps_inside else torch.sqrt(var) + eps)


NORM_MISTAKES: tuple[Mistake, ...] = (
    Mistake("unbiased variance", lambda x, w, b, e: _norm(x, -1, unbiased=True, eps=e) * w + b,
            "you divide the variance by D - 1 (torch.var's default, the unbiased estimate); LayerNorm divides by D: "
            "pass unbiased=False or compute the mean of the squared deviations"),
    Mistake("eps outside the square root", lambda x, w, b, e: _norm(x, -1, eps_inside=False, eps=e) * w + b,
            "your eps is added to the standard deviation; LayerNorm adds it to the variance, inside the square root"),
    Mistake("over the batch (BatchNorm)", lambda x, w, b, e: _norm(x, 0, eps=e) * w + b,
            "you normalise each feature over the batch (dim 0): that is BatchNorm. LayerNorm normalises each token "
            "over its own D features (the last dim), so it does not depend on the batch"),
    Mistake("no scale and shift", lambda x, w, b, e: _norm(x, -1, eps=e),
            "the learned scale (weight) and shift (bias) are missing: multiply by weight, then add bias"),
    Mistake("over every dimension", lambda x, w, b, e: _norm(x, tuple(range(x.ndim)), eps=e) * w + b,
            "you normalise over the whole tensor at once; LayerNorm normalises each token (each row of the last "
            "dim) separately: mean and variance over dim=-1 with keepdim=True"),
)

NORM_FORBIDDEN = (F.layer_norm, torch.layer_norm, nn.LayerNorm.forward, F.group_norm, F.batch_norm, F.normalize,
                  torch.var_mean, F.rms_norm)


def _norm_case(seed: int, shape: tuple[int, ...], eps: float) -> Case:
    g = torch.Generator().manual_seed(seed)
    d = shape[-1]
    x = torch.randn(*shape, generator=g) * 3 + 1
    return Case((x, 1 + 0.5 * torch.randn(d, generator=g), 0.5 * torch.randn(d, generator=g), eps),
                f"x {shape}, weight and bias ({d},), eps={eps}")


NORM_CASES = (_norm_case(0, (4, 6), 1e-5), _norm_case(1, (2, 3, 5), 1e-5), _norm_case(2, (3, 4), 0.5))


def _hidden_norm(generator: torch.Generator) -> tuple[tuple[Tensor, Tensor, Tensor, float], str]:
    shape = (_draw(generator, 2, 5), _draw(generator, 2, 5), _draw(generator, 3, 9))
    d = shape[-1]
    x = torch.randn(*shape, generator=generator) * 2 - 1
    weight, bias = 1 + 0.5 * torch.randn(d, generator=generator), 0.5 * torch.randn(d, generator=generator)
    return (x, weight, bias, 0.1), f"x {shape}, weight and bias ({d},), eps=0.1"


@exercise("layer_norm", solution=solution_layer_norm, hidden=2, mistakes=NORM_MISTAKES, forbidden=NORM_FORBIDDEN,
          gradients=True)
def check_layer_norm(answer: Callable[[Tensor, Tensor, Tensor, float], Tensor]) -> None:
    """Check ``answer(x (..., D), weight (D,), bias (D,), eps)`` -> LayerNorm of x, and its gradients."""
    cases = [*NORM_CASES, *hidden_cases(_hidden_norm, 2)]
    check_cases(answer, cases, solution_layer_norm, mistakes=NORM_MISTAKES)
    expect_gradients(answer, solution_layer_norm, cases[0], names=["x", "weight", "bias", "eps"])
