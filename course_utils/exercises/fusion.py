"""Checkers for notebook 06 (multimodal fusion and contrastive alignment), with their reference solutions.

- :func:`check_gated_fusion`: a gated multimodal unit from explicit weight matrices;
- :func:`check_clip_loss`: CLIP's symmetric InfoNCE loss with a learned temperature;
- :func:`check_recall_at_k`: recall@k of a retrieval similarity matrix.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from . import Hint, call, describe, exercise, expect_close, expect_tensor

# ---------------------------------------------------------------------------------------------
# Reference solutions
# ---------------------------------------------------------------------------------------------


def gated_fusion(a: torch.Tensor, b: torch.Tensor, w_a: torch.Tensor, w_b: torch.Tensor,
                 w_z: torch.Tensor) -> torch.Tensor:
    """``z * tanh(a W_a^T) + (1 - z) * tanh(b W_b^T)`` with ``z = sigmoid([a; b] W_z^T)``: ``(B, D)``."""
    z = torch.sigmoid(torch.cat([a, b], dim=1) @ w_z.T)
    return z * torch.tanh(a @ w_a.T) + (1 - z) * torch.tanh(b @ w_b.T)


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of the image->text and text->image cross-entropies of ``exp(logit_scale) * cos`` logits."""
    logits = logit_scale.exp() * F.normalize(image_emb, dim=1) @ F.normalize(text_emb, dim=1).T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def recall_at_k(similarity: torch.Tensor, k: int) -> float:
    """Fraction of rows whose diagonal entry is among the row's ``k`` largest."""
    top = similarity.topk(k, dim=1).indices
    return (top == torch.arange(len(similarity))[:, None]).any(1).float().mean().item()


# ---------------------------------------------------------------------------------------------
# gated fusion
# ---------------------------------------------------------------------------------------------

def _gated_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(6)
    a, b = torch.randn(5, 3, generator=g), torch.randn(5, 4, generator=g)
    return a, b, torch.randn(6, 3, generator=g), torch.randn(6, 4, generator=g), torch.randn(6, 7, generator=g)


def _gate_swapped(a, b, w_a, w_b, w_z):
    z = torch.sigmoid(torch.cat([a, b], 1) @ w_z.T)
    return (1 - z) * torch.tanh(a @ w_a.T) + z * torch.tanh(b @ w_b.T)


def _no_tanh(a, b, w_a, w_b, w_z):
    z = torch.sigmoid(torch.cat([a, b], 1) @ w_z.T)
    return z * (a @ w_a.T) + (1 - z) * (b @ w_b.T)


def _no_sigmoid(a, b, w_a, w_b, w_z):
    z = torch.cat([a, b], 1) @ w_z.T
    return z * torch.tanh(a @ w_a.T) + (1 - z) * torch.tanh(b @ w_b.T)


def _softmax_gate(a, b, w_a, w_b, w_z):
    z = torch.softmax(torch.cat([a, b], 1) @ w_z.T, dim=1)
    return z * torch.tanh(a @ w_a.T) + (1 - z) * torch.tanh(b @ w_b.T)


def _half_half(a, b, w_a, w_b, w_z):
    return 0.5 * torch.tanh(a @ w_a.T) + 0.5 * torch.tanh(b @ w_b.T)


GATE_MISTAKES = (
    (_gate_swapped, "z and 1 - z are swapped: z multiplies the FIRST input a, 1 - z the second input b"),
    (_no_tanh, "the projected inputs go through tanh before they are mixed: tanh(a @ w_a.T), tanh(b @ w_b.T)"),
    (_no_sigmoid, "the gate must lie in (0, 1): apply torch.sigmoid to [a; b] @ w_z.T"),
    (_softmax_gate, "use a sigmoid for the gate, not a softmax: each feature has its own independent gate in (0, 1)"),
    (_half_half, "the gate is missing: z = sigmoid(cat([a, b], dim=1) @ w_z.T) decides the mix per example"),
)


@exercise("gated_fusion")
def check_gated_fusion(answer) -> None:
    inputs = _gated_inputs()
    got = call(answer, *inputs)
    want = gated_fusion(*inputs)
    expect_tensor(got, tuple(want.shape), "gated_fusion(a (5, 3), b (5, 4), ...)")
    for mistake, hint in GATE_MISTAKES:
        if torch.allclose(got.detach().double(), mistake(*inputs).double(), atol=1e-5):
            raise Hint(hint)
    expect_close(got, want, "gated_fusion(a, b, w_a, w_b, w_z)")


# ---------------------------------------------------------------------------------------------
# clip loss
# ---------------------------------------------------------------------------------------------

def _clip_inputs() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    return [(3 * torch.randn(6, 5, generator=g), 2 * torch.randn(6, 5, generator=g), torch.tensor(math.log(1 / 0.07))),
            (torch.randn(4, 8, generator=g) + 1, torch.randn(4, 8, generator=g), torch.tensor(1.3))]


def _one_direction(image, text_, scale):
    logits = scale.exp() * F.normalize(image, dim=1) @ F.normalize(text_, dim=1).T
    return F.cross_entropy(logits, torch.arange(len(logits)))


def _other_direction(image, text_, scale):
    logits = scale.exp() * F.normalize(image, dim=1) @ F.normalize(text_, dim=1).T
    return F.cross_entropy(logits.T, torch.arange(len(logits)))


def _no_temperature(image, text_, scale):
    return clip_loss(image, text_, torch.tensor(0.0))


def _scale_not_exp(image, text_, scale):
    return clip_loss(image, text_, scale.log())


def _divided_by_scale(image, text_, scale):
    return _with_logits(F.normalize(image, dim=1) @ F.normalize(text_, dim=1).T / scale.exp())


def _not_normalised(image, text_, scale):
    return _with_logits(scale.exp() * image @ text_.T)


def _zero_labels(image, text_, scale):
    logits = scale.exp() * F.normalize(image, dim=1) @ F.normalize(text_, dim=1).T
    zeros = torch.zeros(len(logits), dtype=torch.long)
    return (F.cross_entropy(logits, zeros) + F.cross_entropy(logits.T, zeros)) / 2


def _summed(image, text_, scale):
    return 2 * clip_loss(image, text_, scale)


def _with_logits(logits):
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


CLIP_MISTAKES = (
    (_one_direction,
     "only the image->text direction: average it with the text->image loss (cross-entropy of logits.T)"),
    (_other_direction,
     "only the text->image direction: average it with the image->text loss (cross-entropy of logits)"),
    (_no_temperature, "the temperature is missing: multiply the cosine similarities by logit_scale.exp()"),
    (_scale_not_exp, "logit_scale holds log(1/T): multiply by logit_scale.exp(), not by logit_scale itself"),
    (_divided_by_scale, "multiply the similarities by logit_scale.exp() (= 1/T); do not divide by it"),
    (_not_normalised, "normalise both embeddings to unit length first (F.normalize(x, dim=1)): the logits are "
                      "scaled COSINE similarities"),
    (_zero_labels, "the targets are torch.arange(B): pair i matches row i, not class 0"),
    (_summed, "average the two directions ((loss_i + loss_t) / 2), do not add them"),
)


@exercise("clip_loss")
def check_clip_loss(answer) -> None:
    cases = _clip_inputs()
    got = [call(answer, *case) for case in cases]
    for value, case in zip(got, cases):
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise Hint(f"expected a scalar tensor (one number for the batch), got {describe(value)}")
    values = [float(v) for v in got]
    for mistake, hint in CLIP_MISTAKES:
        if all(math.isclose(v, float(mistake(*case)), rel_tol=1e-4, abs_tol=1e-5) for v, case in zip(values, cases)):
            raise Hint(hint)
    for value, case in zip(got, cases):
        expect_close(value.reshape(()), clip_loss(*case), "clip_loss on a batch", atol=1e-4)


# ---------------------------------------------------------------------------------------------
# recall@k
# ---------------------------------------------------------------------------------------------

def _recall_cases() -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(8)
    sim = torch.randn(12, 12, generator=g) + 1.5 * torch.eye(12)
    return [(sim, 1), (sim, 3), (sim, 5), (torch.randn(9, 9, generator=g).T + torch.eye(9), 2)]


def _ascending(sim, k):
    return recall_at_k(-sim, k)


def _columns(sim, k):
    return recall_at_k(sim.T, k)


def _k_minus_one(sim, k):
    return recall_at_k(sim, k - 1) if k > 1 else 0.0


def _k_plus_one(sim, k):
    return recall_at_k(sim, k + 1)


def _percent(sim, k):
    return 100 * recall_at_k(sim, k)


RECALL_MISTAKES = (
    (_ascending, "you ranked the SMALLEST similarities first: take the k largest (topk, or argsort descending)"),
    (_columns, "you ranked the columns (dim=0): each ROW is a query, rank along dim=1"),
    (_k_minus_one, "off by one: the match must be among the top k, so rank k (the k-th largest) still counts"),
    (_k_plus_one, "off by one: you counted the top k + 1; keep exactly k items per row"),
    (_percent, "return a fraction in [0, 1], not a percentage"),
)


@exercise("recall_at_k")
def check_recall_at_k(answer) -> None:
    cases = _recall_cases()
    got = [call(answer, *case) for case in cases]
    for value in got:
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise Hint(f"expected a float (the fraction of rows), got {describe(value)}")
    values = [float(v) for v in got]
    want = [recall_at_k(*case) for case in cases]
    if all(math.isclose(v, w, abs_tol=1e-6) for v, w in zip(values, want)):
        return
    for mistake, hint in RECALL_MISTAKES:
        if all(math.isclose(v, mistake(*case), abs_tol=1e-6) for v, case in zip(values, cases)):
            raise Hint(hint)
    case, value, w = next((c, v, w) for c, v, w in zip(cases, values, want) if not math.isclose(v, w, abs_tol=1e-6))
    raise Hint(f"recall@{case[1]} of a {len(case[0])}x{len(case[0])} matrix: got {value:.4f}, expected {w:.4f}")
