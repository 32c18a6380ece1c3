"""Checkers for notebook 06 (multimodal fusion and contrastive alignment), with their model answers.

- :func:`check_gated_fusion`: a gated multimodal unit from explicit weight matrices (the library's
  :class:`course_utils.fusion.GatedFusion` holds the same matrices in ``nn.Linear`` layers);
- :func:`check_clip_loss`: CLIP's symmetric InfoNCE loss with a learned temperature, compared with
  :func:`course_utils.contrastive.clip_loss`, gradients included;
- :func:`check_recall_at_k`: recall@k of a retrieval similarity matrix, compared with
  :func:`course_utils.contrastive.recall_at_k`.

Each check runs fixed and hidden random cases and names the typical mistake that gives the learner's
results on every case. The model answers below are written as a learner would, without the library
functions the exercises forbid.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from .. import contrastive
from ..contrastive import MAX_LOGIT_SCALE
from ..fusion import GatedFusion
from . import Case, Hint, Mistake, as_number, check_cases, describe, exercise, expect_gradients, hidden_cases, same

# ---------------------------------------------------------------------------------------------
# Model answers
# ---------------------------------------------------------------------------------------------


def gated_fusion(a: Tensor, b: Tensor, w_a: Tensor, w_b: Tensor, w_z: Tensor) -> Tensor:
    """``z * tanh(a W_a^T) + (1 - z) * tanh(b W_b^T)`` with ``z = sigmoid([a; b] W_z^T)``.

    a ``(B, Da)``, b ``(B, Db)``, w_a ``(D, Da)``, w_b ``(D, Db)``, w_z ``(D, Da + Db)`` -> ``(B, D)``.
    """
    z = torch.sigmoid(torch.cat([a, b], dim=1) @ w_z.T)
    return z * torch.tanh(a @ w_a.T) + (1 - z) * torch.tanh(b @ w_b.T)


def _symmetric_cross_entropy(logits: Tensor) -> Tensor:
    """Mean of the row and column cross-entropies of ``(B, B)`` logits whose diagonal holds the matches."""
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _cosines(image_emb: Tensor, text_emb: Tensor) -> Tensor:
    """``(B, B)`` cosine similarities of the rows of ``image_emb`` and ``text_emb``."""
    return F.normalize(image_emb, dim=1) @ F.normalize(text_emb, dim=1).T


def clip_loss(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor) -> Tensor:
    """Mean of the image->text and text->image cross-entropies of ``exp(logit_scale) * cos`` logits.

    image_emb, text_emb ``(B, D)``, logit_scale a scalar tensor ``log(1 / T)`` -> a scalar tensor.
    """
    return _symmetric_cross_entropy(logit_scale.exp() * _cosines(image_emb, text_emb))


def _hits(similarity: Tensor, k: int) -> Tensor:
    """``(N,)`` bool: whether each row's diagonal entry is among its ``k`` largest."""
    top = similarity.topk(k, dim=1).indices
    return (top == torch.arange(len(similarity))[:, None]).any(1)


def recall_at_k(similarity: Tensor, k: int) -> float:
    """Fraction of the rows of an ``(N, N)`` similarity whose diagonal entry is among the row's ``k`` largest."""
    return _hits(similarity, k).float().mean().item()


def _int(generator: torch.Generator, low: int, high: int) -> int:
    """A random int in ``[low, high]``."""
    return int(torch.randint(low, high + 1, (), generator=generator))


# ---------------------------------------------------------------------------------------------
# gated fusion
# ---------------------------------------------------------------------------------------------

def _gated_args(generator: torch.Generator, batch: int, dim_a: int, dim_b: int, width: int) -> tuple[Tensor, ...]:
    """a ``(B, Da)``, b ``(B, Db)``, w_a ``(D, Da)``, w_b ``(D, Db)``, w_z ``(D, Da + Db)``."""
    return (torch.randn(batch, dim_a, generator=generator), torch.randn(batch, dim_b, generator=generator),
            torch.randn(width, dim_a, generator=generator), torch.randn(width, dim_b, generator=generator),
            torch.randn(width, dim_a + dim_b, generator=generator))


def _describe_gated(args: tuple[Tensor, ...]) -> str:
    """``gated_fusion(a (B, Da), ...)`` with the shapes of ``args``."""
    names = ("a", "b", "w_a", "w_b", "w_z")
    return "gated_fusion(" + ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, args)) + ")"


def _hidden_gated(generator: torch.Generator) -> tuple[tuple[Tensor, ...], str]:
    """Random B, Da, Db and D, with Da != Db so that swapped inputs fail."""
    batch, dim_a, width = _int(generator, 2, 6), _int(generator, 2, 5), _int(generator, 2, 6)
    args = _gated_args(generator, batch, dim_a, dim_a + _int(generator, 1, 3), width)
    return args, _describe_gated(args)


def _gate_logits(a: Tensor, b: Tensor, w_z: Tensor) -> Tensor:
    return torch.cat([a, b], 1) @ w_z.T


def _mix(z: Tensor, from_a: Tensor, from_b: Tensor) -> Tensor:
    return z * from_a + (1 - z) * from_b


GATE_MISTAKES: tuple[Mistake, ...] = (
    Mistake("gate swapped", lambda a, b, w_a, w_b, w_z: _mix(1 - torch.sigmoid(_gate_logits(a, b, w_z)),
                                                             torch.tanh(a @ w_a.T), torch.tanh(b @ w_b.T)),
            "z and 1 - z are swapped: z multiplies the FIRST input a, 1 - z the second input b"),
    Mistake("no tanh", lambda a, b, w_a, w_b, w_z: _mix(torch.sigmoid(_gate_logits(a, b, w_z)), a @ w_a.T, b @ w_b.T),
            "the projected inputs go through tanh before they are mixed: tanh(a @ w_a.T), tanh(b @ w_b.T)"),
    Mistake("no sigmoid", lambda a, b, w_a, w_b, w_z: _mix(_gate_logits(a, b, w_z), torch.tanh(a @ w_a.T),
                                                           torch.tanh(b @ w_b.T)),
            "the gate must lie in (0, 1): apply torch.sigmoid to [a; b] @ w_z.T"),
    Mistake("softmax gate", lambda a, b, w_a, w_b, w_z: _mix(torch.softmax(_gate_logits(a, b, w_z), dim=1),
                                                             torch.tanh(a @ w_a.T), torch.tanh(b @ w_b.T)),
            "use a sigmoid for the gate, not a softmax: each feature has its own independent gate in (0, 1)"),
    Mistake("no gate", lambda a, b, w_a, w_b, w_z: (torch.tanh(a @ w_a.T) + torch.tanh(b @ w_b.T)) / 2,
            "the gate is missing: z = sigmoid(cat([a, b], dim=1) @ w_z.T) decides the mix per example"),
)


@exercise("gated_fusion", solution=gated_fusion, hidden=2, mistakes=GATE_MISTAKES, forbidden=(GatedFusion.forward,),
          gradients=True)
def check_gated_fusion(answer: Callable[..., Tensor]) -> None:
    """Check ``answer(a, b, w_a, w_b, w_z)`` -> ``(B, D)``, and its gradients with respect to all five inputs."""
    fixed = _gated_args(torch.Generator().manual_seed(6), 5, 3, 4, 6)
    cases = [Case(fixed, _describe_gated(fixed)), *hidden_cases(_hidden_gated, 2)]
    check_cases(answer, cases, gated_fusion, mistakes=GATE_MISTAKES)
    expect_gradients(answer, gated_fusion, cases[0])


# ---------------------------------------------------------------------------------------------
# clip loss
# ---------------------------------------------------------------------------------------------

def _scaled_cosines(image: Tensor, text: Tensor, scale: Tensor) -> Tensor:
    return scale.exp() * _cosines(image, text)


def _zero_labels(image: Tensor, text: Tensor, scale: Tensor) -> Tensor:
    logits = _scaled_cosines(image, text, scale)
    zeros = torch.zeros(len(logits), dtype=torch.long)
    return (F.cross_entropy(logits, zeros) + F.cross_entropy(logits.T, zeros)) / 2


CLIP_MISTAKES: tuple[Mistake, ...] = (
    Mistake("image->text only", lambda i, t, s: F.cross_entropy(_scaled_cosines(i, t, s), torch.arange(len(i))),
            "only the image->text direction: average it with the text->image loss (cross-entropy of logits.T)"),
    Mistake("text->image only", lambda i, t, s: F.cross_entropy(_scaled_cosines(i, t, s).T, torch.arange(len(i))),
            "only the text->image direction: average it with the image->text loss (cross-entropy of logits)"),
    Mistake("no temperature", lambda i, t, s: _symmetric_cross_entropy(_cosines(i, t)),
            "the temperature is missing: multiply the cosine similarities by logit_scale.exp()"),
    Mistake("scale not exponentiated", lambda i, t, s: _symmetric_cross_entropy(s * _cosines(i, t)),
            "logit_scale holds log(1/T): multiply by logit_scale.exp(), not by logit_scale itself"),
    Mistake("divided by the scale", lambda i, t, s: _symmetric_cross_entropy(_cosines(i, t) / s.exp()),
            "multiply the similarities by logit_scale.exp() (= 1/T); do not divide by it"),
    Mistake("not normalised", lambda i, t, s: _symmetric_cross_entropy(s.exp() * i @ t.T),
            "normalise both embeddings to unit length first (F.normalize(x, dim=1)): the logits are "
            "scaled COSINE similarities"),
    Mistake("class 0 as every target", _zero_labels,
            "the targets are torch.arange(B): pair i matches row i, not class 0"),
    Mistake("directions summed", lambda i, t, s: 2 * clip_loss(i, t, s),
            "average the two directions ((loss_i + loss_t) / 2), do not add them"),
)


def _same_loss(got: Any, want: Tensor) -> bool:
    """A one-element tensor equal to the reference loss (a float or numpy number has no gradient: not equal)."""
    return isinstance(got, Tensor) and got.numel() == 1 and same(got.reshape(()), want, atol=1e-4, rtol=1e-4)


def _explain_loss(got: Any, want: Tensor, case: Case) -> None:
    """The hint for a loss that differs: its type, else whether it is larger or smaller than the reference."""
    if isinstance(got, Tensor) and got.numel() == 1:
        value = float(got.detach().reshape(()))
        direction = "larger" if value > float(want) else "smaller"
        raise Hint(f"{case.what}: your loss {value:.6g} is {direction} than the reference loss")
    try:
        as_number(got, case.what)
    except Hint:
        raise Hint(f"{case.what}: expected a scalar tensor (one number for the batch), got {describe(got)}") from None
    raise Hint(f"{case.what}: you returned {describe(got)}, a plain number; return the loss as a scalar tensor, so "
               "that backward() can train through it (no .item(), float() or numpy)")


def _hidden_clip(generator: torch.Generator) -> tuple[tuple[Tensor, Tensor, Tensor], str]:
    """Random ``(B, D)`` embeddings of random lengths and a logit scale between 0.5 and log(100)."""
    batch, dim = _int(generator, 3, 8), _int(generator, 3, 8)
    image = torch.randn(batch, dim, generator=generator) * (1 + 2 * torch.rand((), generator=generator))
    text = torch.randn(batch, dim, generator=generator) + torch.randn(dim, generator=generator)
    scale = 0.5 + torch.rand((), generator=generator) * (MAX_LOGIT_SCALE - 0.5)
    return (image, text, scale), f"image_emb and text_emb ({batch}, {dim})"


@exercise("clip_loss", solution=clip_loss, hidden=2, mistakes=CLIP_MISTAKES, forbidden=(contrastive.clip_loss,),
          gradients=True)
def check_clip_loss(answer: Callable[[Tensor, Tensor, Tensor], Tensor]) -> None:
    """Check ``answer(image_emb (B, D), text_emb (B, D), logit_scale ())`` -> a scalar tensor, and its gradients
    with respect to both embeddings and the temperature."""
    generator = torch.Generator().manual_seed(7)
    cases = [
        Case((3 * torch.randn(6, 5, generator=generator), 2 * torch.randn(6, 5, generator=generator),
              torch.tensor(math.log(1 / 0.07))), "clip_loss of image_emb and text_emb (6, 5), logit_scale log(1/0.07)"),
        Case((torch.randn(4, 8, generator=generator) + 1, torch.randn(4, 8, generator=generator), torch.tensor(1.3)),
             "clip_loss of image_emb and text_emb (4, 8), logit_scale 1.3"),
        *hidden_cases(_hidden_clip, 2),
    ]
    check_cases(answer, cases, contrastive.clip_loss, mistakes=CLIP_MISTAKES, equal=_same_loss, explain=_explain_loss)
    expect_gradients(answer, contrastive.clip_loss, cases[0])


# ---------------------------------------------------------------------------------------------
# recall@k
# ---------------------------------------------------------------------------------------------

RECALL_MISTAKES: tuple[Mistake, ...] = (
    Mistake("smallest first", lambda s, k: recall_at_k(-s, k),
            "you ranked the SMALLEST similarities first: take the k largest (topk, or argsort descending)"),
    Mistake("columns ranked", lambda s, k: recall_at_k(s.T, k),
            "you ranked the columns (dim=0): each ROW is a query, rank along dim=1"),
    Mistake("top k - 1", lambda s, k: recall_at_k(s, k - 1) if k > 1 else 0.0,
            "off by one: the match must be among the top k, so rank k (the k-th largest) still counts"),
    Mistake("top k + 1", lambda s, k: recall_at_k(s, k + 1),
            "off by one: you counted the top k + 1; keep exactly k items per row"),
    Mistake("percentage", lambda s, k: 100 * recall_at_k(s, k), "return a fraction in [0, 1], not a percentage"),
    Mistake("count", lambda s, k: len(s) * recall_at_k(s, k),
            "that is the number of rows with their match in the top k; divide by the number of rows N for a "
            "fraction in [0, 1]"),
    Mistake("hits not averaged", _hits,
            "these are the per-row hits; return their mean, the fraction of rows (one number)"),
)


def _explain_recall(got: Any, want: float, case: Case) -> None:
    """The hint for a result that is no number; a number gets the usual larger/smaller hint."""
    try:
        as_number(got, case.what)
    except Hint:
        raise Hint(f"{case.what}: expected a float (the fraction of rows), got {describe(got)}") from None


def _hidden_recall(generator: torch.Generator) -> tuple[tuple[Tensor, int], str]:
    """A random ``(N, N)`` similarity with a boosted diagonal, and a random k < N."""
    n = _int(generator, 6, 15)
    boost = 0.5 + 2 * torch.rand((), generator=generator)
    similarity = torch.randn(n, n, generator=generator) + boost * torch.eye(n)
    return (similarity, _int(generator, 1, n - 1)), f"similarity ({n}, {n})"


@exercise("recall_at_k", solution=recall_at_k, hidden=3, mistakes=RECALL_MISTAKES,
          forbidden=(contrastive.recall_at_k,))
def check_recall_at_k(answer: Callable[[Tensor, int], float]) -> None:
    """Check ``answer(similarity (N, N), k)`` -> the fraction of rows whose diagonal entry is in the row's top k."""
    generator = torch.Generator().manual_seed(8)
    similarity = torch.randn(12, 12, generator=generator) + 1.5 * torch.eye(12)
    cases = [Case((similarity, k), f"recall@{k} of a 12x12 similarity matrix") for k in (1, 3, 5)]
    cases.append(Case((torch.randn(9, 9, generator=generator).T + torch.eye(9), 2),
                      "recall@2 of a 9x9 similarity matrix"))
    cases += hidden_cases(_hidden_recall, 3)
    check_cases(answer, cases, contrastive.recall_at_k, mistakes=RECALL_MISTAKES, explain=_explain_recall)
