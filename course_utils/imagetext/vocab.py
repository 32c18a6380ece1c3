"""The caption vocabulary, and the one definition of its special tokens' ids.

:mod:`course_utils.captioning` (the model and greedy decoding) imports ``PAD_ID``, ``BOS_ID`` and
``EOS_ID`` from here, so that the captioner and :class:`CaptionVocab` always agree.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .words import join_tokens, tokens

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(len(SPECIALS))


class CaptionVocab:
    """Word-level vocabulary: ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3, then the words.

    Build it from the TRAINING captions only: the test split must not shape anything the model is built
    from. The captioner can then emit only words it was trained on (all it could learn anyway); a word
    of the held-out test wordings encodes as ``<unk>``.
    """

    SPECIALS = SPECIALS
    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_captions(cls, captions: Sequence[str]) -> "CaptionVocab":
        """Every token of ``captions``, sorted (so the same captions give the same ids)."""
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise TypeError("captions: expected a list of str")
        return cls(sorted({token for caption in captions for token in tokens(caption)}))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, captions: Sequence[str], max_len: int | None = None) -> torch.Tensor:
        """Token ids ``(N, L)`` on the CPU: ``<bos>`` words ``<eos>`` then ``<pad>``; L = ``max_len`` or the
        longest + 2."""
        if isinstance(captions, str) or not captions or not all(isinstance(c, str) for c in captions):
            raise TypeError("captions: expected a non-empty list of str")
        split = [tokens(c) for c in captions]
        longest = max(len(s) for s in split) + 2
        length = longest if max_len is None else max_len
        if length < longest:
            raise ValueError(f"max_len={max_len} is too short: the longest caption needs {longest} ids "
                             "(its tokens plus <bos> and <eos>)")
        ids = torch.full((len(captions), length), PAD_ID, dtype=torch.int64)
        for row, words in zip(ids, split):
            row[:len(words) + 2] = torch.tensor([BOS_ID] + [self.index.get(w, UNK_ID) for w in words] + [EOS_ID])
        return ids

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Captions from ids ``(N, L)`` on any device: stops at ``<eos>``, skips ``<pad>`` and ``<bos>``."""
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point():
            got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids: expected an integer tensor (N, L) (one caption: ids[None]), got {got}")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"ids: expected values in [0, {len(self)}), got [{ids.min()}, {ids.max()}]")
        captions = []
        for row in ids.tolist():
            row = row[:row.index(EOS_ID)] if EOS_ID in row else row
            captions.append(join_tokens([self.words[i] for i in row if i not in (PAD_ID, BOS_ID)]))
        return captions
