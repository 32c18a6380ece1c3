"""Checkers for notebook 03 (Vision Transformer), with the references they compare against.

- :func:`check_patchify`: cut images into flattened patches ``(B, N, C*P*P)`` (reference: the
  library's :func:`course_utils.vit.patchify`);
- :func:`check_add_cls_and_positions`: put the CLS token in front and add position embeddings;
- :func:`check_vit_parameter_count`: count a ViT's parameters from its settings, without building one.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from .. import vit as library
from . import Case, Hint, Mistake, as_int, check_cases, exercise, expect_gradients, hidden_cases

# ---------------------------------------------------------------------------------------------
# Model answers (what a learner may write) and references
# ---------------------------------------------------------------------------------------------


def solution_patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """A model answer with reshape and permute only: ``(B, C, H, W)`` -> ``(B, N, C*P*P)``.

    The check compares with the library's :func:`course_utils.vit.patchify` (``F.unfold``), which the
    exercise forbids.
    """
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

def patch_cases() -> list[Case]:
    """The fixed cases: one channel, three channels, and a grid of 2 rows by 3 columns."""
    g = torch.Generator().manual_seed(3)
    inputs = [(torch.rand(2, 1, 8, 8, generator=g), 4), (torch.rand(2, 3, 12, 12, generator=g), 4),
              (torch.rand(1, 3, 6, 9, generator=g), 3)]
    return [Case((images, p), f"patchify of images {tuple(images.shape)} with P={p}") for images, p in inputs]


def _hidden_patches(g: torch.Generator) -> tuple[tuple[torch.Tensor, int], str]:
    """Random images ``(B, C, rows*P, cols*P)``: 1-3 images and channels, P 2-5, a grid of 1-4 by 1-4."""
    b, c, p, rows, cols = (int(torch.randint(low, high, (), generator=g))
                           for low, high in ((1, 4), (1, 4), (2, 6), (1, 5), (1, 5)))
    images = torch.rand(b, c, rows * p, cols * p, generator=g)
    return (images, p), f"images {tuple(images.shape)} with P={p}"


def _grid(images: torch.Tensor, p: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, rows, P, cols, P)``."""
    b, c, h, w = images.shape
    return images.reshape(b, c, h // p, p, w // p, p)


PATCH_MISTAKES: tuple[Mistake, ...] = (
    Mistake("a plain reshape", lambda x, p: x.reshape(len(x), -1, x.shape[1] * p * p),
            "a plain reshape of (B, C, H, W) does not cut square patches: it takes runs of consecutive pixels "
            "along each row. Reshape to (B, C, H/P, P, W/P, P), permute the grid axes to the front, then flatten"),
    Mistake("flattened channels-last",
            lambda x, p: _grid(x, p).permute(0, 2, 4, 3, 5, 1).reshape(len(x), -1, x.shape[1] * p * p),
            "your patches are flattened channels-last (rows, columns, then C); flatten each patch channel first "
            "(C, then rows, then columns), the layout of a Conv2d weight (D, C, P, P)"),
    Mistake("patches column by column",
            lambda x, p: _grid(x, p).permute(0, 4, 2, 1, 3, 5).reshape(len(x), -1, x.shape[1] * p * p),
            "your patches come column by column; number them row by row (reading order: left to right along "
            "the top row of patches first)"),
    Mistake("one column per patch (B, C*P*P, N)", lambda x, p: solution_patchify(x, p).transpose(1, 2),
            "you returned (B, C*P*P, N), one column per patch (the layout of F.unfold); transpose the last two "
            "dimensions to get one row per patch, (B, N, C*P*P)"),
)

PATCH_FORBIDDEN = (F.unfold, torch.Tensor.unfold, F.conv2d, F.pixel_unshuffle, library.patchify)
PATCH_HIDDEN = 2


@exercise("patchify", solution=solution_patchify, hidden=PATCH_HIDDEN, mistakes=PATCH_MISTAKES,
          forbidden=PATCH_FORBIDDEN, gradients=True)
def check_patchify(answer: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Check ``answer(images (B, C, H, W), patch_size) -> (B, N, C*P*P)`` against :func:`course_utils.vit.patchify`."""
    cases = [*patch_cases(), *hidden_cases(_hidden_patches, PATCH_HIDDEN)]
    check_cases(answer, cases, library.patchify, mistakes=PATCH_MISTAKES)
    expect_gradients(answer, library.patchify, cases[1])


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


def _tokens(b: int, n: int, d: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random patch tokens ``(B, N, D)``, CLS token ``(1, 1, D)`` and position embeddings ``(1, N+1, D)``."""
    return (torch.randn(b, n, d, generator=g), torch.randn(1, 1, d, generator=g),
            torch.randn(1, n + 1, d, generator=g))


def _tokens_what(b: int, n: int, d: int) -> str:
    return f"tokens ({b}, {n}, {d}), CLS (1, 1, {d}), positions (1, {n + 1}, {d})"


def token_cases() -> list[Case]:
    """The fixed cases: 2 images of 4 patches of width 3, and 3 images of 16 patches of width 8."""
    g = torch.Generator().manual_seed(4)
    return [Case(_tokens(b, n, d, g), _tokens_what(b, n, d)) for b, n, d in [(2, 4, 3), (3, 16, 8)]]


def _hidden_tokens(g: torch.Generator) -> tuple[tuple[torch.Tensor, ...], str]:
    """1-4 images, 1-9 patches, width 2-8."""
    b, n, d = (int(torch.randint(low, high, (), generator=g)) for low, high in ((1, 5), (1, 10), (2, 9)))
    return _tokens(b, n, d, g), _tokens_what(b, n, d)


def _in_front(t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return torch.cat([c.expand(len(t), -1, -1), t], 1)


TOKEN_MISTAKES: tuple[Mistake, ...] = (
    Mistake("CLS at the end", lambda t, c, p: torch.cat([t, c.expand(len(t), -1, -1)], 1) + p,
            "the CLS token goes in FRONT (position 0): the head reads token 0"),
    Mistake("no position embeddings", lambda t, c, p: _in_front(t, c),
            "the position embeddings are missing: add pos_embed to every token"),
    Mistake("CLS without a position", lambda t, c, p: torch.cat([c.expand(len(t), -1, -1), t + p[:, 1:]], 1),
            "the CLS token gets a position embedding too (row 0 of pos_embed): add pos_embed after the "
            "concatenation"),
)
TOKEN_HIDDEN = 2


@exercise("add_cls_and_positions", solution=add_cls_and_positions, hidden=TOKEN_HIDDEN, mistakes=TOKEN_MISTAKES,
          gradients=True)
def check_add_cls_and_positions(answer: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(patch_tokens (B, N, D), cls_token (1, 1, D), pos_embed (1, N+1, D))`` -> ``(B, N+1, D)``,
    and that gradients reach the learned ``cls_token`` and ``pos_embed``."""
    cases = [*token_cases(), *hidden_cases(_hidden_tokens, TOKEN_HIDDEN)]

    def explain(got: Any, want: torch.Tensor, case: Case) -> None:
        b, n, d = case.args[0].shape
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (b, n, d):
            raise Hint(f"{case.what}: got {(b, n, d)}, one token per patch: the CLS token is missing; put it in "
                       f"front to get (B, N+1, D) = {(b, n + 1, d)}")

    check_cases(answer, cases, add_cls_and_positions, mistakes=TOKEN_MISTAKES, explain=explain,
                known_errors=TOKEN_ERRORS)
    expect_gradients(answer, add_cls_and_positions, cases[0])


# ---------------------------------------------------------------------------------------------
# vit_parameter_count
# ---------------------------------------------------------------------------------------------

COUNT_CASES = [(28, 7, 1, 64, 4, 4, 128, 10), (32, 4, 3, 96, 6, 3, 384, 100), (224, 16, 3, 768, 12, 12, 3072, 1000),
               (28, 14, 1, 16, 1, 2, 16, 10)]


def _settings(case: tuple[int, ...]) -> str:
    return f"vit_parameter_count{case}"


def count_cases() -> list[Case]:
    """The fixed settings, ViT-Base/16 among them."""
    return [Case(case, _settings(case)) for case in COUNT_CASES]


def _hidden_count(g: torch.Generator) -> tuple[tuple[int, ...], str]:
    """Random settings: a grid of 1-8 patches of 1-8 pixels, 1-4 channels, 1-8 heads of width 1-16, 1-12 blocks,
    an MLP 1-4 times as wide, 2-999 classes (the count stays far below 2**31)."""
    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (), generator=g))

    grid, patch, channels, heads, head_dim = draw(1, 8), draw(1, 8), draw(1, 4), draw(1, 8), draw(1, 16)
    d = heads * head_dim
    case = (grid * patch, patch, channels, d, draw(1, 12), heads, d * draw(1, 4), draw(2, 999))
    return case, _settings(case)


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


COUNT_MISTAKES: tuple[Mistake, ...] = (
    Mistake("no CLS token, no positions", _without(pos=True, cls=True),
            "the CLS token (D) and the position embeddings ((N+1) x D) are parameters too"),
    Mistake("no position embeddings", _without(pos=True),
            "the position embeddings are learned parameters: (N+1) x D of them"),
    Mistake("no CLS token", _without(cls=True),
            "D parameters are missing: the CLS token is a learned vector of D numbers, and there are N+1 position "
            "embeddings (one for the CLS token as well)"),
    Mistake("no LayerNorms", _without(norms=True),
            "each LayerNorm has a weight and a bias (2D): two per block, plus the final one"),
    Mistake("no final LayerNorm", _without(final_norm=True), "the final LayerNorm before the head has 2D parameters"),
    Mistake("no biases", _without(biases=True), "the Linear layers and the patch projection have biases too"),
    Mistake("no output projection", _without(out_proj=True),
            "attention has FOUR D x D projections: query, key, value and the output projection"),
    Mistake("projections per head", _without(per_head=True),
            "the heads split the same D x D projections; more heads do not add parameters"),
)
COUNT_HIDDEN = 3


def _whole_and_equal(got: Any, want: int) -> bool:
    """True when ``got`` is a whole number (an int, numpy integer or one-element integer tensor) equal to ``want``."""
    try:
        return as_int(got, "") == want
    except Hint:
        return False


@exercise("vit_parameter_count", solution=vit_parameter_count, hidden=COUNT_HIDDEN, mistakes=COUNT_MISTAKES,
          forbidden=((nn.Module.__init__, "that builds a model: count the parameters from the settings alone, "
                                          "part by part, without building one"),))
def check_vit_parameter_count(answer: Callable[..., int]) -> None:
    """Check ``answer(image_size, patch_size, channels, embed_dim, depth, num_heads, mlp_hidden, num_classes)``,
    counted from the settings alone (building a model, any ``nn.Module``, is not allowed)."""
    cases = [*count_cases(), *hidden_cases(_hidden_count, COUNT_HIDDEN)]

    def explain(got: Any, want: int, case: Case) -> None:
        value = as_int(got, case.what)
        raise Hint(f"{case.what}: your count {value:,} is too {'large' if value > want else 'small'}")

    check_cases(answer, cases, vit_parameter_count, mistakes=COUNT_MISTAKES, equal=_whole_and_equal, explain=explain)
