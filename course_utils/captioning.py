"""A small image captioner for notebook 04: a CNN image encoder and a transformer decoder, plus greedy decoding.

The image encoder (:class:`~course_utils.models.PatchEncoder`) turns a digit into 16 feature
tokens (a 4x4 grid). The decoder reads the caption so far and writes the next word: each of its
blocks has

1. causal self-attention over the caption tokens (word ``t`` sees words ``0..t`` only),
2. cross-attention from the caption tokens to the 16 image tokens (where the picture comes in),
3. a two-layer MLP,

each pre-norm with a residual connection. Training uses teacher forcing
(:func:`teacher_forcing_pairs`, :func:`caption_loss`): the model reads the true caption shifted
by one and predicts every next word at once. Inference has no true caption, so
:func:`greedy_decode` writes one word at a time, feeding each prediction back in.

Token ids are those of :class:`course_utils.imagetext.CaptionVocab` (``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2):
``PAD_ID``, ``BOS_ID`` and ``EOS_ID`` are imported from :mod:`course_utils.imagetext.vocab`, which owns them.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .attention import MultiHeadAttention
from .imagetext.vocab import BOS_ID, EOS_ID, PAD_ID
from .models import PatchEncoder, check_floating, device_of
from .training import evaluating


class DecoderBlock(nn.Module):
    """Pre-norm decoder block: causal self-attention, cross-attention to the image, MLP.

    ``forward(x (B, L, D), memory (B, N, D), pad_mask (B, L) or None)`` -> ``(x (B, L, D),
    cross-attention weights (B, H, L, N))``.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = MultiHeadAttention(width, heads)
        self.cross_attn = MultiHeadAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, memory: Tensor, pad_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        width = self.norm1.normalized_shape[0]
        for name, tokens in (("x", x), ("memory", memory)):
            if not isinstance(tokens, Tensor) or tokens.dim() != 3 or tokens.shape[2] != width \
                    or len(tokens) != len(x) or tokens.shape[1] == 0:
                got = tuple(tokens.shape) if isinstance(tokens, Tensor) else f"a {type(tokens).__name__}"
                raise ValueError(f"{name}: expected tokens shaped (B, T, {width}) with T >= 1, the same B for x "
                                 f"and memory, got {got}")
            check_floating(tokens, name, self.norm1.weight.dtype)
        if pad_mask is not None and (not isinstance(pad_mask, Tensor) or pad_mask.dtype != torch.bool
                                     or pad_mask.shape != x.shape[:2]):
            got = f"{pad_mask.dtype} {tuple(pad_mask.shape)}" if isinstance(pad_mask, Tensor) \
                else f"a {type(pad_mask).__name__}"
            raise ValueError(f"pad_mask: expected bool (B, L) = {tuple(x.shape[:2])}, True = a real token, got {got}")
        h = self.norm1(x)
        x = x + self.dropout(self.self_attn(h, causal=True, key_padding_mask=pad_mask)[0])
        seen, weights = self.cross_attn(self.norm2(x), memory)
        x = x + self.dropout(seen)
        return x + self.dropout(self.mlp(self.norm3(x))), weights


class ImageCaptioner(nn.Module):
    """PatchEncoder (16 image tokens) + a transformer decoder that writes a caption word by word.

    ``forward(images (B, 1, 28, 28), tokens (B, L))`` -> next-word logits ``(B, L, vocab_size)``.

    Args:
        vocab_size: ``len(CaptionVocab)``.
        width: size of every token vector (image and word); the encoder's width.
        depth: decoder blocks.
        heads: attention heads per block.
        max_len: longest token sequence (``<bos>`` included) the position embeddings cover.
        encoder: an image encoder ``(B, 1, 28, 28) -> (B, N, width)``, e.g. a trained PatchEncoder;
            a fresh ``PatchEncoder(width)`` if None.
    """

    def __init__(self, vocab_size: int, width: int = 64, depth: int = 2, heads: int = 4, max_len: int = 16,
                 encoder: nn.Module | None = None) -> None:
        super().__init__()
        self.max_len = max_len
        self.encoder = PatchEncoder(width) if encoder is None else encoder
        self.image_norm = nn.LayerNorm(width)
        self.image_pos = nn.Parameter(torch.zeros(1, 16, width))
        self.embed = nn.Embedding(vocab_size, width, padding_idx=PAD_ID)
        self.pos = nn.Parameter(torch.zeros(1, max_len, width))
        nn.init.trunc_normal_(self.image_pos, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(DecoderBlock(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def encode(self, images: Tensor) -> Tensor:
        """``(B, 1, 28, 28)`` -> image tokens ``(B, N, width)`` (the decoder's memory), N at most 16."""
        tokens = self.image_norm(self.encoder(images))
        if tokens.shape[1] > self.image_pos.shape[1]:
            raise ValueError(f"images: {tuple(images.shape)} give {tokens.shape[1]} image tokens, more than the "
                             f"{self.image_pos.shape[1]} positions the captioner has; expected (B, 1, 28, 28)")
        return tokens + self.image_pos[:, :tokens.shape[1]]

    def decode(self, tokens: Tensor, memory: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Next-word logits ``(B, L, V)`` for caption ``tokens (B, L)`` given image tokens ``memory (B, N, D)``.

        With ``return_attention``, also the last block's cross-attention averaged over heads ``(B, L, N)``.
        """
        _check_ids(tokens, "tokens", self.embed.num_embeddings)
        if not 1 <= tokens.shape[1] <= self.max_len:
            raise ValueError(f"tokens: 1 to max_len={self.max_len} per caption, got {tokens.shape[1]}")
        width = self.embed.embedding_dim
        if not isinstance(memory, Tensor) or memory.dim() != 3 or memory.shape[0] != len(tokens) \
                or memory.shape[2] != width or memory.shape[1] == 0:
            got = tuple(memory.shape) if isinstance(memory, Tensor) else f"a {type(memory).__name__}"
            raise ValueError(f"memory: expected image tokens ({len(tokens)}, N >= 1, {width}) from encode, got {got}")
        check_floating(memory, "memory", self.embed.weight.dtype)
        x = self.embed(tokens) + self.pos[:, :tokens.shape[1]]
        pad_mask = tokens != PAD_ID
        for block in self.blocks:
            x, weights = block(x, memory, pad_mask)
        logits = self.head(self.norm(x))
        return (logits, weights.mean(1)) if return_attention else logits

    def forward(self, images: Tensor, tokens: Tensor) -> Tensor:
        return self.decode(tokens, self.encode(images))


def _check_ids(ids: object, name: str, vocab_size: int | None = None) -> None:
    """Raise unless ``ids`` is an integer tensor ``(B, L)`` (with values in ``[0, vocab_size)`` when given)."""
    if not isinstance(ids, Tensor) or ids.dim() != 2:
        got = tuple(ids.shape) if isinstance(ids, Tensor) else f"a {type(ids).__name__}"
        raise ValueError(f"{name}: expected token ids shaped (B, L) (one caption: {name}[None]), got {got}")
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}: expected int64 (or int32) token ids, got {ids.dtype}")
    if vocab_size is not None and bool(((ids < 0) | (ids >= vocab_size)).any()):
        raise ValueError(f"{name}: expected ids in [0, {vocab_size}) (the vocabulary), got values from "
                         f"{int(ids.min())} to {int(ids.max())}")


def teacher_forcing_pairs(ids: Tensor) -> tuple[Tensor, Tensor]:
    """Split captions ``(B, L)`` (``<bos>`` ... ``<eos>`` ``<pad>``...) into decoder input and target,
    each ``(B, L-1)``.

    The input is every token but the last, the target every token but the first: at position ``t``
    the model reads tokens ``0..t`` and must predict token ``t+1``. Needs ``L >= 2``.
    """
    _check_ids(ids, "ids")
    if ids.shape[1] < 2:
        raise ValueError(f"ids: expected captions of at least 2 tokens (<bos> and one more), got {tuple(ids.shape)}")
    return ids[:, :-1], ids[:, 1:]


def caption_loss(logits: Tensor, targets: Tensor, pad_id: int = PAD_ID) -> Tensor:
    """Mean cross-entropy of next-word ``logits (B, L, V)`` against ``targets (B, L)``, padding ignored.

    ``targets`` must hold ids in ``[0, V)`` and at least one that is not ``pad_id`` (else ``ValueError``).
    """
    if not isinstance(logits, Tensor) or logits.dim() != 3 or not logits.is_floating_point():
        got = f"{logits.dtype} {tuple(logits.shape)}" if isinstance(logits, Tensor) else f"a {type(logits).__name__}"
        raise ValueError(f"logits: expected floating-point next-word scores (B, L, V), got {got}")
    _check_ids(targets, "targets", logits.shape[2])
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"targets: expected one id per position of the logits, {tuple(logits.shape[:2])}, "
                         f"got {tuple(targets.shape)}")
    if not bool((targets != pad_id).any()):
        raise ValueError(f"targets: every position is padding (pad_id={pad_id}), so there is no word to score")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long(), ignore_index=pad_id)


def greedy_step(logits: Tensor, finished: Tensor, pad_id: int = PAD_ID) -> Tensor:
    """Next token ``(B,)`` int64 from the last position's ``logits (B, V)``: the argmax, or ``pad_id`` where
    ``finished (B,)`` (a caption that already wrote ``<eos>``)."""
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[1] == 0 or not logits.is_floating_point():
        got = f"{logits.dtype} {tuple(logits.shape)}" if isinstance(logits, Tensor) else f"a {type(logits).__name__}"
        raise ValueError(f"logits: expected the last position's floating-point scores (B, V) with V >= 1, got {got}")
    if not isinstance(finished, Tensor) or finished.dtype != torch.bool or finished.shape != logits.shape[:1]:
        got = f"{finished.dtype} {tuple(finished.shape)}" if isinstance(finished, Tensor) \
            else f"a {type(finished).__name__}"
        raise ValueError(f"finished: expected a bool tensor ({len(logits)},), one per caption, got {got}")
    return torch.where(finished, torch.full_like(logits[:, 0], pad_id, dtype=torch.long), logits.argmax(-1))


@torch.no_grad()
def greedy_decode(model: ImageCaptioner, images: Tensor, max_len: int | None = None, batch_size: int = 500,
                  bos_id: int = BOS_ID, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> Tensor:
    """Write a caption for each image, always taking the most likely next word.

    Starts from ``<bos>``; at each step runs the decoder on the tokens so far and appends the
    argmax of the last position's logits. A caption that has produced ``<eos>`` gets ``<pad>``
    afterwards. Stops when every caption is finished or ``max_len`` tokens are written.

    Args:
        images: ``(B, 1, 28, 28)`` on any device; each batch is moved to the model's device and
            decoded there, in eval mode.
        max_len: longest output, ``<bos>`` included (default ``model.max_len``); at least 1.
        batch_size: images decoded at a time, at least 1.
    Returns:
        ids ``(B, L)`` int64 on the CPU, starting with ``<bos>``; decode them with ``CaptionVocab.decode``.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or len(images) == 0:
        got = tuple(images.shape) if isinstance(images, Tensor) else f"a {type(images).__name__}"
        raise ValueError(f"images: expected (B, 1, 28, 28) with B >= 1, got {got}")
    for name, value in (("batch_size", batch_size), ("max_len", max_len)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}: expected an int of at least 1, got {value!r}")
    max_len = model.max_len if max_len is None else min(max_len, model.max_len)
    device = device_of(model)
    outputs = []
    with evaluating(model):
        for start in range(0, len(images), batch_size):
            memory = model.encode(images[start:start + batch_size].to(device))  # (b, N, D)
            ids = torch.full((len(memory), 1), bos_id, dtype=torch.long, device=device)
            finished = torch.zeros(len(memory), dtype=torch.bool, device=device)
            while ids.shape[1] < max_len:
                next_id = greedy_step(model.decode(ids, memory)[:, -1], finished, pad_id)  # (b,)
                ids = torch.cat([ids, next_id[:, None]], dim=1)
                finished |= next_id == eos_id
                if finished.all():
                    break
            outputs.append(F.pad(ids, (0, max_len - ids.shape[1]), value=pad_id).cpu())
    return torch.cat(outputs)
