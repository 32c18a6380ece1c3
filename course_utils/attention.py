"""Scaled dot-product attention and multi-head attention, written out so that they can be read.

The results match :func:`torch.nn.functional.scaled_dot_product_attention` and
:class:`torch.nn.MultiheadAttention` (``batch_first=True``); ``tests/test_attention.py`` checks it.
:func:`split_heads` and :func:`merge_heads` cut tokens ``(B, T, D)`` into heads ``(B, H, T, D // H)`` and back.
:func:`blockwise_attention` computes the same output over blocks of keys with the online softmax (notebook 05).

Masks follow torch's ``scaled_dot_product_attention``: a bool mask where True means "may attend",
or a float mask added to the scores. An integer mask is refused with a ``TypeError`` (is its 1
"may attend" or "add 1"?). A query row whose keys are all masked gets all-zero weights and a zero
output (torch returns NaN there).
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor, nn

from .models import autocasting, check_floating, linear_input_dtype


def _check_mask(mask: object, scores_shape: torch.Size) -> Tensor:
    """Return ``mask`` if it is a bool tensor or a floating (additive) one that broadcasts to ``scores_shape``
    ``(..., Tq, Tk)``; raise ``TypeError`` for another kind, ``ValueError`` for a shape that does not."""
    if not isinstance(mask, Tensor) or (mask.dtype != torch.bool and not mask.is_floating_point()):
        got = mask.dtype if isinstance(mask, Tensor) else f"a {type(mask).__name__}"
        raise TypeError(f"mask: expected a bool tensor (True = may attend) or an additive float tensor, got "
                        f"{got}; an integer tensor is ambiguous: pass mask.bool() (True = may attend) "
                        "or an additive float mask (0 = attend, -inf = blocked)")
    try:
        shape = torch.broadcast_shapes(mask.shape, scores_shape)
    except RuntimeError:
        shape = None
    if shape != scores_shape:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
                         f"{tuple(scores_shape)} (..., Tq, Tk) of q and k")
    return mask


def _check_qkv(q: object, k: object, v: object) -> torch.Size:
    """Raise ``TypeError`` unless q, k, v are floating tensors of one dtype (mixed ones only under autocast),
    ``ValueError`` unless they are ``q (..., Tq, d)``, ``k (..., Tk, d)``, ``v (..., Tk, dv)`` with Tk >= 1 and
    leading dims that broadcast; return the broadcast leading shape ``(...)``."""
    if not all(isinstance(t, Tensor) for t in (q, k, v)):
        raise TypeError(f"q, k, v must be tensors, got {type(q).__name__}, {type(k).__name__}, {type(v).__name__}")
    if not (q.is_floating_point() and k.is_floating_point() and v.is_floating_point()):
        raise TypeError(f"q, k, v must be floating-point tensors, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not q.dtype == k.dtype == v.dtype and not autocasting(q.device):
        raise TypeError(f"q, k, v must have one dtype (outside autocast), got {q.dtype}, {k.dtype}, {v.dtype}")
    if min(q.dim(), k.dim(), v.dim()) < 2:
        raise ValueError(f"q, k, v need at least 2 dims (T, d); got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"last dim of q {tuple(q.shape)} and k {tuple(k.shape)} must be equal (d)")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must have the same number of keys (Tk)")
    if k.shape[-2] == 0:
        raise ValueError(f"k and v: expected at least one key to attend to, got k {tuple(k.shape)}")
    try:
        lead = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(f"leading dims of q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} "
                         "do not broadcast") from None
    return lead


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor,
                                 mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """softmax(q k^T / sqrt(d) + mask) v.

    ``q (..., Tq, d)``, ``k (..., Tk, d)``, ``v (..., Tk, dv)``, all of one floating dtype (mixed ones
    only under autocast); the leading dims broadcast. ``mask``: bool (True = may attend) or float
    (added to the scores, in their dtype), broadcastable to ``(..., Tq, Tk)``; any other dtype raises
    ``TypeError``. Returns ``(output (..., Tq, dv), weights (..., Tq, Tk))``.

    The row max is subtracted before ``exp``, so large logits do not overflow. A query row whose keys
    are all masked gets weights of zero and an output of zero instead of NaN.
    """
    lead = _check_qkv(q, k, v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])            # (..., Tq, Tk)
    scores = scores.expand(*lead, *scores.shape[-2:])
    if mask is not None:
        mask = _check_mask(mask, scores.shape)
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask.to(scores.dtype)
    row_max = scores.amax(dim=-1, keepdim=True)
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    exp = torch.exp(scores - row_max)                                     # 0 where masked
    total = exp.sum(dim=-1, keepdim=True)
    weights = exp / torch.where(total > 0, total, torch.ones_like(total))  # fully masked row -> 0
    return weights @ v, weights


def blockwise_attention(q: Tensor, k: Tensor, v: Tensor, block_size: int) -> Tensor:
    """softmax(q k^T / sqrt(d)) v, reading the keys ``block_size`` at a time: the online softmax.

    ``q (..., Tq, d)``, ``k (..., Tk, d)``, ``v (..., Tk, dv)`` as for :func:`scaled_dot_product_attention`
    (no mask); ``block_size`` an int >= 1. Returns the output ``(..., Tq, dv)``, equal to that function's up
    to rounding. Per query row it keeps a running max ``m (..., Tq, 1)``, a running sum of exponentials
    ``l (..., Tq, 1)`` and a running weighted sum of values ``acc (..., Tq, dv)``, each relative to ``m``;
    when a block raises the max from ``m`` to ``m'``, ``l`` and ``acc`` are multiplied by ``exp(m - m')``.
    The largest table it holds is ``(..., Tq, block_size)``, never ``(..., Tq, Tk)``: the idea of fused
    (flash) attention kernels, which also tile the queries and do it all in one kernel.
    Raises ``TypeError`` / ``ValueError`` for inputs :func:`scaled_dot_product_attention` refuses, and for a
    ``block_size`` that is no int >= 1.
    """
    _check_qkv(q, k, v)
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral):
        raise TypeError(f"block_size: expected an int (keys per block), got {block_size!r}")
    if block_size < 1:
        raise ValueError(f"block_size: expected at least 1 key per block, got {block_size}")
    block_size, scale = int(block_size), 1 / math.sqrt(q.shape[-1])
    row_max = row_sum = acc = None
    for start in range(0, k.shape[-2], block_size):
        scores = q @ k[..., start:start + block_size, :].transpose(-2, -1) * scale   # (..., Tq, block)
        block_max = scores.amax(dim=-1, keepdim=True)
        new_max = block_max if row_max is None else torch.maximum(row_max, block_max)
        exp = torch.exp(scores - new_max)
        block_sum, block_values = exp.sum(dim=-1, keepdim=True), exp @ v[..., start:start + block_size, :]
        if row_max is None:
            row_sum, acc = block_sum, block_values
        else:
            rescale = torch.exp(row_max - new_max)                          # <= 1: the max only grows
            row_sum, acc = row_sum * rescale + block_sum, acc * rescale + block_values
        row_max = new_max
    return acc / row_sum


def _shape(x: object) -> str:
    """``x``'s shape as a tuple, or its type name when it is no tensor (for error messages)."""
    return str(tuple(x.shape)) if isinstance(x, Tensor) else f"a {type(x).__name__}"


def causal_mask(t_q: int, t_k: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Bool ``(Tq, Tk)`` mask, True on and below the diagonal: query i may attend to keys 0..i.

    Aligned at the top left like torch's ``is_causal=True``. ``t_q`` and ``t_k`` are ints >= 0.
    """
    t_k = t_q if t_k is None else t_k
    for name, value in (("t_q", t_q), ("t_k", t_k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected a length (an int >= 0), got {value!r}")
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril()


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(B, T, D) -> (B, H, T, D // H)``: head h holds features ``h * D // H`` to ``(h + 1) * D // H - 1`` of
    every token.

    Raises ``TypeError`` when ``x`` is no tensor or ``num_heads`` no int, ``ValueError`` when ``x`` is not
    3-d or ``num_heads`` is below 1 or does not divide D.
    """
    if isinstance(num_heads, bool) or not isinstance(num_heads, numbers.Integral):
        raise TypeError(f"num_heads: expected an int, got {num_heads!r}")
    num_heads = int(num_heads)
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a tensor shaped (B, T, D), got a {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"x: expected a tensor shaped (B, T, D), got {tuple(x.shape)}"
                         + ("; for one sequence (T, D) pass x[None]" if x.dim() == 2 else ""))
    batch, length, dim = x.shape
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"num_heads: expected a divisor of x's last dim D = {dim} (at least 1), got {num_heads}")
    return x.reshape(batch, length, num_heads, dim // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """``(B, H, T, Dh) -> (B, T, H * Dh)``: the inverse of :func:`split_heads`.

    Raises ``TypeError`` when ``x`` is no tensor, ``ValueError`` when it is not 4-d.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected heads shaped (B, H, T, Dh), got a {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x: expected heads shaped (B, H, T, Dh), got {tuple(x.shape)}")
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


def _combine(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """Combine two masks: bool & bool stays bool; otherwise both become additive floats and add."""
    if a is None or b is None:
        return a if b is None else b
    if a.dtype == torch.bool and b.dtype == torch.bool:
        return a & b
    as_float = [torch.zeros_like(m, dtype=torch.float32).masked_fill(~m, float("-inf"))
                if m.dtype == torch.bool else m for m in (a, b)]
    return as_float[0] + as_float[1]


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate q/k/v projections and an output projection.

    ``forward(query (B, Tq, D), key (B, Tk, D), value (B, Tk, D))`` -> ``(out (B, Tq, D),
    weights (B, H, Tq, Tk))``. Each of the H heads attends in its own ``D/H``-dim subspace.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True) -> None:
        super().__init__()
        if embed_dim < 1 or num_heads < 1:
            raise ValueError(f"embed_dim and num_heads must be at least 1, got {embed_dim} and {num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """``(B, T, D) -> (B, H, T, D/H)``: :func:`split_heads` into this layer's heads."""
        self._check_tokens(x, "x")
        return split_heads(x, self.num_heads)

    def merge_heads(self, x: Tensor) -> Tensor:
        """``(B, H, T, D/H) -> (B, T, D)``: the inverse of :meth:`split_heads` (:func:`merge_heads`)."""
        head_dim = self.embed_dim // self.num_heads
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != self.num_heads or x.shape[3] != head_dim:
            raise ValueError(f"x: expected heads shaped (B, {self.num_heads}, T, {head_dim}), "
                             f"got {_shape(x)}")
        return merge_heads(x)

    def _check_tokens(self, x: object, name: str) -> None:
        """Raise ``ValueError`` unless ``x`` is a tensor ``(B, T, D)`` with ``D = embed_dim``."""
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != self.embed_dim:
            one = isinstance(x, Tensor) and x.dim() == 2
            raise ValueError(f"{name}: expected a tensor shaped (B, T, {self.embed_dim}), got {_shape(x)}"
                             + (f"; for one sequence (T, D) pass {name}[None]" if one else ""))

    def forward(self, query: Tensor, key: Tensor | None = None, value: Tensor | None = None,
                mask: Tensor | None = None, causal: bool = False,
                key_padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Self-attention when ``key`` is omitted (it defaults to ``query``; ``value`` defaults to ``key``).

        ``mask``: bool (True = may attend) or float (added), broadcastable to ``(B, H, Tq, Tk)``, e.g.
        ``(Tq, Tk)`` or ``(B, 1, Tq, Tk)``. ``causal=True`` adds :func:`causal_mask`.
        ``key_padding_mask``: bool ``(B, Tk)``, True = a real key (note: torch's is the opposite).
        An integer mask, or a float ``key_padding_mask``, raises ``TypeError`` (pass ``.bool()``).
        Returns ``(out (B, Tq, D), weights (B, H, Tq, Tk))``.
        """
        key = query if key is None else key
        value = key if value is None else value
        for name, x in (("query", query), ("key", key), ("value", value)):
            self._check_tokens(x, name)
            check_floating(x, name, linear_input_dtype(self.q_proj))
        if key.shape[0] != query.shape[0] or value.shape[:2] != key.shape[:2] or key.shape[1] == 0:
            raise ValueError(f"expected query (B, Tq, D), key and value (B, Tk, D) with the same B and Tk >= 1, got "
                             f"query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}")
        if mask is not None:
            mask = _check_mask(mask, torch.Size((len(query), self.num_heads, query.shape[1], key.shape[1])))
        if causal:
            mask = _combine(mask, causal_mask(query.shape[1], key.shape[1], device=query.device))
        if key_padding_mask is not None:
            if not isinstance(key_padding_mask, Tensor) or key_padding_mask.dtype != torch.bool:
                got = key_padding_mask.dtype if isinstance(key_padding_mask, Tensor) \
                    else f"a {type(key_padding_mask).__name__}"
                raise TypeError(f"key_padding_mask: expected a bool tensor (B, Tk), True = a real key, got {got}; "
                                "for a 0/1 mask pass key_padding_mask.bool()")
            if key_padding_mask.shape != key.shape[:2]:
                raise ValueError(f"key_padding_mask: expected shape (B, Tk) = {tuple(key.shape[:2])}, "
                                 f"got {tuple(key_padding_mask.shape)}")
            mask = _combine(mask, key_padding_mask[:, None, None, :])
        q = self.split_heads(self.q_proj(query))
        k = self.split_heads(self.k_proj(key))
        v = self.split_heads(self.v_proj(value))
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(self.merge_heads(out)), weights

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """A copy of torch's module (same embed dim for q, k, v), giving identical outputs."""
        if mha.in_proj_weight is None:
            raise ValueError("from_torch needs an nn.MultiheadAttention with kdim == vdim == embed_dim")
        new = cls(mha.embed_dim, mha.num_heads, bias=mha.in_proj_bias is not None)
        with torch.no_grad():
            for proj, w in zip((new.q_proj, new.k_proj, new.v_proj), mha.in_proj_weight.chunk(3)):
                proj.weight.copy_(w)
            if mha.in_proj_bias is not None:
                for proj, b in zip((new.q_proj, new.k_proj, new.v_proj), mha.in_proj_bias.chunk(3)):
                    proj.bias.copy_(b)
                new.out_proj.bias.copy_(mha.out_proj.bias)
            new.out_proj.weight.copy_(mha.out_proj.weight)
        return new.to(mha.in_proj_weight.device)

    def to_torch(self) -> nn.MultiheadAttention:
        """An ``nn.MultiheadAttention(batch_first=True)`` with these weights packed into ``in_proj_weight``."""
        bias = self.q_proj.bias is not None
        mha = nn.MultiheadAttention(self.embed_dim, self.num_heads, bias=bias, batch_first=True)
        projections = (self.q_proj, self.k_proj, self.v_proj)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([p.weight for p in projections]))
            mha.out_proj.weight.copy_(self.out_proj.weight)
            if bias:
                mha.in_proj_bias.copy_(torch.cat([p.bias for p in projections]))
                mha.out_proj.bias.copy_(self.out_proj.bias)
        return mha.to(self.q_proj.weight.device)
