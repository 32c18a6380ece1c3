"""Checkers for notebook 04 (BERT on images and text), with the reference solutions they compare against.

- :func:`check_mean_pool`: one sentence vector from BERT's token vectors, padding left out;
- :func:`check_causal_mask`: the decoder's mask, each word sees itself and the words before it;
- :func:`check_greedy_step`: one step of greedy decoding, finished captions get padding;
- :func:`check_visual_inputs`: ``inputs_embeds``, ``token_type_ids`` and ``attention_mask`` for
  [text tokens; image tokens] given to a ``BertModel``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..attention import causal_mask
from ..captioning import PAD_ID, greedy_step
from ..text import mean_pool
from . import Hint, call, describe, exercise, expect_close, expect_tensor

# ---------------------------------------------------------------------------------------------
# Reference solutions
# ---------------------------------------------------------------------------------------------


# mean_pool (course_utils.text), causal_mask (course_utils.attention) and greedy_step
# (course_utils.captioning) are the library's own functions, imported above.


def visual_inputs(text_embeds: torch.Tensor, text_mask: torch.Tensor,
                  image_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs of a ``BertModel`` for the sequence [text tokens; image tokens].

    Args:
        text_embeds: ``(B, T, D)`` word embeddings of ``[CLS] question [SEP]`` (padded).
        text_mask: ``(B, T)`` int64, 1 for a real text token, 0 for padding.
        image_embeds: ``(B, N, D)`` image tokens already projected to BERT's hidden size D.
    Returns:
        ``inputs_embeds (B, T+N, D)``; ``token_type_ids (B, T+N)`` int64, 0 for text, 1 for image;
        ``attention_mask (B, T+N)`` int64, the text's mask then 1 for every image token.
    """
    b, n = image_embeds.shape[:2]
    inputs_embeds = torch.cat([text_embeds, image_embeds], dim=1)
    token_type_ids = torch.cat([torch.zeros_like(text_mask), torch.ones(b, n, dtype=text_mask.dtype)], dim=1)
    attention_mask = torch.cat([text_mask, torch.ones(b, n, dtype=text_mask.dtype)], dim=1)
    return inputs_embeds, token_type_ids.long(), attention_mask.long()


# ---------------------------------------------------------------------------------------------
# mean pooling
# ---------------------------------------------------------------------------------------------

def _pool_case() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(3, 5, 4, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    return hidden, mask


POOL_MISTAKES: list[tuple[Callable[..., torch.Tensor], str]] = [
    (lambda h, m: h.mean(1), "the padding positions are averaged in: multiply by the mask before summing "
                             "and divide by the number of REAL tokens"),
    (lambda h, m: (h * m.unsqueeze(-1)).sum(1), "you summed the real tokens but did not divide by how many "
                                                "there are (mask.sum(1))"),
    (lambda h, m: (h * m.unsqueeze(-1)).sum(1) / h.shape[1], "you divided by T, the padded length: divide by "
                                                              "the number of real tokens of each sentence"),
    (lambda h, m: h[:, 0], "that is the [CLS] vector alone: mean pooling averages all real tokens"),
]


@exercise("mean_pool")
def check_mean_pool(answer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    hidden, mask = _pool_case()
    got = call(answer, hidden.clone(), mask.clone())
    expect_tensor(got, (3, 4), "mean_pool(hidden (3, 5, 4), mask (3, 5))")
    for mistake, hint in POOL_MISTAKES:
        if torch.allclose(got.double(), mistake(hidden, mask).double(), atol=1e-5) and \
                not torch.allclose(got, mean_pool(hidden, mask), atol=1e-5):
            raise Hint(hint)
    expect_close(got, mean_pool(hidden, mask), "mean_pool")


# ---------------------------------------------------------------------------------------------
# causal mask
# ---------------------------------------------------------------------------------------------

MASK_MISTAKES: list[tuple[Callable[[int], torch.Tensor], str]] = [
    (lambda n: torch.ones(n, n, dtype=torch.bool).triu(), "True is ABOVE the diagonal: each word would see the "
                                                          "words after it (the future); use the lower triangle"),
    (lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), "the diagonal is False: a word must be able to "
                                                            "attend to itself (word 0 would see nothing)"),
    (lambda n: torch.ones(n, n, dtype=torch.bool), "everything is True: nothing is masked, the decoder would "
                                                   "read the word it must predict"),
]


@exercise("causal_mask")
def check_causal_mask(answer: Callable[[int], torch.Tensor]) -> None:
    for length in (4, 6, 1):
        got = call(answer, length)
        if not isinstance(got, torch.Tensor):
            raise Hint(f"causal_mask({length}): expected a tensor, got {describe(got)}")
        if tuple(got.shape) != (length, length):
            raise Hint(f"causal_mask({length}): expected shape ({length}, {length}), got {tuple(got.shape)}")
        if got.dtype != torch.bool:
            raise Hint(f"causal_mask({length}): expected a bool tensor (True = may attend), got {got.dtype}; "
                       "the course's attention also takes bool masks")
        for mistake, hint in MASK_MISTAKES:
            if length > 1 and torch.equal(got, mistake(length)):
                raise Hint(hint)
        if not torch.equal(got, causal_mask(length)):
            wrong = (got != causal_mask(length)).nonzero()[0].tolist()
            raise Hint(f"causal_mask({length}) is wrong at (query, key) = {tuple(wrong)}: query i may attend to "
                       "keys 0..i only")


# ---------------------------------------------------------------------------------------------
# greedy step
# ---------------------------------------------------------------------------------------------

def _step_case() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(5, 7, generator=g)
    logits[:, PAD_ID] -= 5                       # padding is never the model's favourite
    finished = torch.tensor([False, True, False, False, True])
    return logits, finished


STEP_MISTAKES: list[tuple[Callable[..., torch.Tensor], str]] = [
    (lambda logits, f: logits.argmax(-1), "finished captions must get the padding id (PAD_ID), not a new word"),
    (lambda logits, f: torch.where(f, 0, logits.argmin(-1)),
     "argmin picks the LEAST likely token: greedy takes the argmax"),
    (lambda logits, f: torch.where(f, 2, logits.argmax(-1)), "finished captions get PAD_ID (0), not <eos> again"),
]


@exercise("greedy_step")
def check_greedy_step(answer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    logits, finished = _step_case()
    got = call(answer, logits.clone(), finished.clone())
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != (5,):
        raise Hint(f"greedy_step(logits (5, 7), finished (5,)): expected a tensor of shape (5,), one token per "
                   f"caption, got {describe(got)} (argmax over the LAST dim, the vocabulary)")
    if got.is_floating_point():
        raise Hint("token ids must be integers (int64): argmax returns them, softmax probabilities are not ids")
    want = greedy_step(logits, finished)
    for mistake, hint in STEP_MISTAKES:
        if torch.equal(got.long(), mistake(logits, finished).long()) and not torch.equal(got.long(), want):
            raise Hint(hint)
    if not torch.equal(got.long(), want):
        raise Hint(f"expected {want.tolist()}, got {got.tolist()}")


# ---------------------------------------------------------------------------------------------
# visual inputs for BERT
# ---------------------------------------------------------------------------------------------

def _visual_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(6)
    text = torch.randn(2, 4, 8, generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    image = torch.randn(2, 3, 8, generator=g)
    return text, mask, image


def _as_triple(got: Any) -> tuple[Any, Any, Any]:
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise Hint(f"expected a tuple (inputs_embeds, token_type_ids, attention_mask), got {describe(got)}")
    return tuple(got)


@exercise("visual_inputs")
def check_visual_inputs(answer: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    text, mask, image = _visual_case()
    concat_hint = {"Sizes of tensors must match": "torch.cat failed: join text and image tokens along dim=1, "
                                                  "the sequence (dim 0 is the batch, dim 2 the hidden size)"}
    embeds, types, attention = _as_triple(call(answer, text.clone(), mask.clone(), image.clone(),
                                               known_errors=concat_hint))
    want_embeds, want_types, want_attention = visual_inputs(text, mask, image)
    expect_tensor(embeds, (2, 7, 8), "inputs_embeds for text (2, 4, 8) + image (2, 3, 8)")
    if torch.equal(embeds, torch.cat([image, text], 1)):
        raise Hint("inputs_embeds: the text ([CLS] question [SEP]) goes FIRST, then the image tokens, "
                   "so that [CLS] is at position 0")
    expect_close(embeds, want_embeds, "inputs_embeds")
    for name, got, want in (("token_type_ids", types, want_types), ("attention_mask", attention, want_attention)):
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != (2, 7):
            raise Hint(f"{name}: expected a tensor of shape (2, 7), one entry per token, got {describe(got)}")
        if got.is_floating_point():
            raise Hint(f"{name}: expected integers (int64); an nn.Embedding looks token types up by index")
    if torch.equal(types.long(), 1 - want_types):
        raise Hint("token_type_ids are swapped: text tokens are segment 0, image tokens segment 1")
    if not types.any():
        raise Hint("token_type_ids are all 0: give the image tokens segment 1 so BERT can tell them from text")
    if not torch.equal(types.long(), want_types):
        raise Hint(f"token_type_ids: expected {want_types.tolist()}, got {types.tolist()}")
    if attention.all():
        raise Hint("attention_mask is all 1: keep the text's own mask, its padding positions must stay 0")
    if torch.equal(attention.long(), torch.cat([mask, torch.zeros(2, 3, dtype=torch.long)], 1)):
        raise Hint("attention_mask is 0 on the image tokens: BERT would ignore the image; they must be 1")
    if not torch.equal(attention.long(), want_attention):
        raise Hint(f"attention_mask: expected {want_attention.tolist()}, got {attention.tolist()}")
