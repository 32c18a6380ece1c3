"""Checkers for notebook 03 (Vision Transformer), with the reference solutions they compare against.

- :func:`check_patchify`: cut images into flattened patches ``(B, N, C*P*P)``;
- :func:`check_add_cls_and_positions`: put the CLS token in front and add position embeddings;
- :func:`check_vit_parameter_count`: count a ViT's parameters from its settings.
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


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, N, C*P*P)``: patches in reading order (row by row), each flattened
    channel first, then rows, then columns (the layout of a ``Conv2d`` weight ``(D, C, P, P)``)."""
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)          # (B, C, rows, P, cols, P)
    x = x.permute(0, 2, 4, 1, 3, 5)                         # (B, rows, cols, C, P, P)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def add_cls_and_positions(patch_tokens: torch.Tensor, cls_token: torch.Tensor,
                          pos_embed: torch.Tensor) -> torch.Tensor:
    """``(B, N, D)`` patch tokens, ``(1, 1, D)`` CLS token, ``(1, N+1, D)`` position embeddings -> ``(B, N+1, D)``.

    The CLS token goes in FRONT (position 0) and every token, CLS included, gets its position's embedding.
    """
    cls = cls_token.expand(patch_tokens.shape[0], -1, -1)
    return torch.cat([cls, patch_tokens], dim=1) + pos_embed


def vit_parameter_count(image_size: int, patch_size: int, channels: int, embed_dim: int, depth: int,
                        num_heads: int, mlp_hidden: int, num_classes: int) -> int:
    """Parameters of :class:`course_utils.vit.VisionTransformer` with these settings.

    Patch projection ``C*P*P*D + D``; CLS token ``D``; position embeddings ``(N+1) * D``; per block two
    LayerNorms ``2 * 2D``, four ``D x D`` projections with biases ``4 * (D*D + D)`` and the MLP
    ``D*M + M + M*D + D``; the final LayerNorm ``2D``; the head ``D*K + K``. The number of heads does not
    change the count: the heads split the same projections.
    """
    d, n = embed_dim, (image_size // patch_size) ** 2
    block = 2 * 2 * d + 4 * (d * d + d) + (d * mlp_hidden + mlp_hidden + mlp_hidden * d + d)
    embedding = (channels * patch_size ** 2 * d + d) + d + (n + 1) * d      # patches, CLS, positions
    return embedding + depth * block + 2 * d + (d * num_classes + num_classes)


# ---------------------------------------------------------------------------------------------
# patchify
# ---------------------------------------------------------------------------------------------

def _patch_inputs() -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(3)
    return [(torch.rand(2, 1, 8, 8, generator=g), 4), (torch.rand(2, 3, 12, 12, generator=g), 4),
            (torch.rand(1, 3, 6, 9, generator=g), 3)]


def _channels_last(images: torch.Tensor, p: int) -> torch.Tensor:
    b, c, h, w = images.shape
    return images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, c * p * p)


def _columns_first(images: torch.Tensor, p: int) -> torch.Tensor:
    b, c, h, w = images.shape
    return images.reshape(b, c, h // p, p, w // p, p).permute(0, 4, 2, 1, 3, 5).reshape(b, -1, c * p * p)


def _reshape_only(images: torch.Tensor, p: int) -> torch.Tensor:
    b, c, h, w = images.shape
    return images.reshape(b, (h // p) * (w // p), c * p * p)


PATCH_MISTAKES: list[tuple[Callable[[torch.Tensor, int], torch.Tensor], str]] = [
    (_reshape_only, "a plain reshape of (B, C, H, W) does not cut square patches: it takes runs of consecutive "
                    "pixels along each row. Reshape to (B, C, H/P, P, W/P, P), permute the grid axes to the "
                    "front, then flatten"),
    (_channels_last, "your patches are flattened channels-last (rows, columns, then C); flatten each patch "
                     "channel first (C, then rows, then columns), the layout of a Conv2d weight (D, C, P, P)"),
    (_columns_first, "your patches come column by column; number them row by row (reading order: left to "
                     "right along the top row of patches first)"),
    (lambda x, p: F.unfold(x, p, stride=p), "you returned (B, C*P*P, N), the layout of F.unfold; transpose "
                                            "the last two dimensions to get one row per patch, (B, N, C*P*P)"),
]


@exercise("patchify")
def check_patchify(answer: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Check ``answer(images (B, C, H, W), patch_size) -> (B, N, C*P*P)`` against :func:`patchify`."""
    for images, p in _patch_inputs():
        what = f"patchify of images {tuple(images.shape)} with P={p}"
        got, want = call(answer, images.clone(), p), patchify(images, p)
        if isinstance(got, torch.Tensor) and not (got.shape == want.shape and torch.allclose(got, want)):
            for mistake, hint in PATCH_MISTAKES:
                wrong = mistake(images, p)
                if got.shape == wrong.shape and torch.allclose(got, wrong):
                    raise Hint(hint)
        expect_close(got, want, what)


# ---------------------------------------------------------------------------------------------
# add_cls_and_positions
# ---------------------------------------------------------------------------------------------

TOKEN_ERRORS = {
    "must match the size of tensor b": "a shape does not fit: the position embeddings have N+1 rows (one for "
                                       "CLS), so add them AFTER putting the CLS token in front",
    "Sizes of tensors must match": "torch.cat needs the CLS token copied for every image in the batch: "
                                   "cls_token.expand(B, -1, -1) gives (B, 1, D)",
    "Tensors must have same number of dimensions": "keep the CLS token 3-D, (1, 1, D) -> (B, 1, D), to "
                                                   "concatenate it with the (B, N, D) patch tokens",
}


@exercise("add_cls_and_positions")
def check_add_cls_and_positions(answer: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(patch_tokens (B, N, D), cls_token (1, 1, D), pos_embed (1, N+1, D))`` -> ``(B, N+1, D)``."""
    g = torch.Generator().manual_seed(4)
    for b, n, d in [(2, 4, 3), (3, 16, 8)]:
        tokens, cls, pos = (torch.randn(b, n, d, generator=g), torch.randn(1, 1, d, generator=g),
                            torch.randn(1, n + 1, d, generator=g))
        got = call(answer, tokens.clone(), cls.clone(), pos.clone(), known_errors=TOKEN_ERRORS)
        what = f"tokens ({b}, {n}, {d}), CLS (1, 1, {d}), positions (1, {n + 1}, {d})"
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (b, n, d):
            raise Hint(f"{what}: got {tuple(got.shape)}, the patch tokens alone; put the CLS token in front "
                       f"to get (B, N+1, D) = {(b, n + 1, d)}")
        got = expect_tensor(got, (b, n + 1, d), what)
        cls_all = cls.expand(b, -1, -1)
        if torch.allclose(got, torch.cat([tokens, cls_all], 1) + pos):
            raise Hint("the CLS token goes in FRONT (position 0): the head reads token 0")
        if torch.allclose(got, torch.cat([cls_all, tokens], 1)):
            raise Hint("the position embeddings are missing: add pos_embed to every token")
        if torch.allclose(got, torch.cat([cls_all, tokens + pos[:, 1:]], 1)):
            raise Hint("the CLS token gets a position embedding too (row 0 of pos_embed): add pos_embed after "
                       "the concatenation")
        expect_close(got, add_cls_and_positions(tokens, cls, pos), what)


# ---------------------------------------------------------------------------------------------
# vit_parameter_count
# ---------------------------------------------------------------------------------------------

COUNT_CASES = [(28, 7, 1, 64, 4, 4, 128, 10), (32, 4, 3, 96, 6, 3, 384, 100), (224, 16, 3, 768, 12, 12, 3072, 1000),
               (28, 14, 1, 16, 1, 2, 16, 10)]


def _without(**drop: bool) -> Callable[..., int]:
    """The reference count with some parts left out, a typical mistake."""
    def count(s: int, p: int, c: int, d: int, depth: int, h: int, m: int, k: int) -> int:
        total = vit_parameter_count(s, p, c, d, depth, h, m, k)
        n = (s // p) ** 2
        total -= drop.get("cls", False) * d + drop.get("pos", False) * (n + 1) * d
        total -= drop.get("norms", False) * (depth * 4 * d + 2 * d)
        total -= drop.get("final_norm", False) * 2 * d
        total -= drop.get("biases", False) * (d + depth * (4 * d + m + d) + k)
        total -= drop.get("out_proj", False) * depth * (d * d + d)
        total += drop.get("per_head", False) * (h - 1) * depth * 4 * (d * d + d)
        return total
    return count


COUNT_MISTAKES: list[tuple[Callable[..., int], str]] = [
    (_without(pos=True, cls=True), "the CLS token (D) and the position embeddings ((N+1) x D) are parameters too"),
    (_without(pos=True), "the position embeddings are learned parameters: (N+1) x D of them"),
    (_without(cls=True), "D parameters are missing: the CLS token is a learned vector of D numbers, and there "
                         "are N+1 position embeddings (one for the CLS token as well)"),
    (_without(norms=True), "each LayerNorm has a weight and a bias (2D): two per block, plus the final one"),
    (_without(final_norm=True), "the final LayerNorm before the head has 2D parameters"),
    (_without(biases=True), "the Linear layers and the patch projection have biases too"),
    (_without(out_proj=True), "attention has FOUR D x D projections: query, key, value and the output projection"),
    (_without(per_head=True), "the heads split the same D x D projections; more heads do not add parameters"),
]


@exercise("vit_parameter_count")
def check_vit_parameter_count(answer: Callable[..., int]) -> None:
    """Check ``answer(image_size, patch_size, channels, embed_dim, depth, num_heads, mlp_hidden, num_classes)``."""
    got = [call(answer, *case) for case in COUNT_CASES]
    for case, g in zip(COUNT_CASES, got):
        if isinstance(g, bool) or not isinstance(g, numbers.Integral):
            raise Hint(f"vit_parameter_count{case} returned {describe(g)}; return a Python int")
    want = [vit_parameter_count(*case) for case in COUNT_CASES]
    name_mistake(COUNT_MISTAKES, COUNT_CASES, got, want)
    for case, g, r in zip(COUNT_CASES, got, want):
        if g != r:
            raise Hint(f"vit_parameter_count{case} should be {r:,}, got {g:,} (off by {g - r:+,})")
