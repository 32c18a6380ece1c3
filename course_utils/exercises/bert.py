"""Checkers for notebook 04 (BERT on images and text), with the references they compare against.

- :func:`check_mean_pool`: one sentence vector from BERT's token vectors, padding left out (reference:
  :func:`course_utils.text.mean_pool`);
- :func:`check_causal_mask`: the decoder's mask, each word sees itself and the words before it
  (reference: :func:`course_utils.attention.causal_mask`);
- :func:`check_greedy_step`: one step of greedy decoding, finished captions get padding (reference:
  :func:`course_utils.captioning.greedy_step`);
- :func:`check_visual_inputs`: ``inputs_embeds``, ``token_type_ids`` and ``attention_mask`` for
  [text tokens; image tokens] given to a ``BertModel``.

The library's functions are forbidden in their own exercise, so each ``solution_*`` here is a model
answer written from plain tensor operations, the way a learner would.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .. import attention, captioning, text
from ..captioning import EOS_ID, PAD_ID
from . import Case, Hint, Mistake, call, describe, exercise, hidden_cases
from .comparing import check_cases, expect_close, expect_gradients, expect_tensor, name_mistake, same

# ---------------------------------------------------------------------------------------------
# Model answers and references
# ---------------------------------------------------------------------------------------------


def solution_mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden (B, T, D)`` over the positions where ``attention_mask (B, T)`` is 1 -> ``(B, D)``."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)          # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1)


def solution_causal_mask(length: int) -> torch.Tensor:
    """Bool ``(length, length)``: True where query i may attend to key j, that is j <= i."""
    return torch.ones(length, length, dtype=torch.bool).tril()


def solution_greedy_step(logits: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
    """Next token ids ``(B,)`` int64 from the last position's ``logits (B, V)``; ``PAD_ID`` where ``finished (B,)``."""
    return torch.where(finished, PAD_ID, logits.argmax(-1))


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


def _draw(g: torch.Generator, low: int, high: int) -> int:
    """A random int in ``[low, high]``."""
    return int(torch.randint(low, high + 1, (), generator=g))


def _padding_mask(lengths: list[int], t: int) -> torch.Tensor:
    """``(B, T)`` int64: 1 for the first ``lengths[b]`` positions of row b, 0 after (padding)."""
    return (torch.arange(t) < torch.tensor(lengths).unsqueeze(1)).long()


def _random_mask(g: torch.Generator, b: int, t: int) -> torch.Tensor:
    """A padding mask ``(B, T)`` with 1 to T real tokens per row; row 0 padded when T > 1."""
    lengths = [_draw(g, 1, t) for _ in range(b)]
    lengths[0] = _draw(g, 1, t - 1) if t > 1 else 1
    return _padding_mask(lengths, t)


# ---------------------------------------------------------------------------------------------
# mean pooling
# ---------------------------------------------------------------------------------------------

def pool_cases() -> list[Case]:
    """The fixed case: 3 sentences of 5 positions (5, 3 and 2 real tokens), width 4."""
    g = torch.Generator().manual_seed(4)
    hidden = torch.randn(3, 5, 4, generator=g)
    mask = _padding_mask([5, 3, 2], 5)
    return [Case((hidden, mask), "mean_pool(hidden (3, 5, 4), mask (3, 5))")]


def _hidden_pool(g: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor], str]:
    """2-4 sentences (two or more, so a count over the whole batch shows) of 2-7 positions, width 1-6, each with
    1 to T real tokens."""
    b, t, d = _draw(g, 2, 4), _draw(g, 2, 7), _draw(g, 1, 6)
    return (torch.randn(b, t, d, generator=g), _random_mask(g, b, t)), f"hidden ({b}, {t}, {d}), mask ({b}, {t})"


def _masked_sum(h: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return (h * m.unsqueeze(-1)).sum(1)


POOL_MISTAKES: tuple[Mistake, ...] = (
    Mistake("padding averaged in", lambda h, m: h.mean(1),
            "the padding positions are averaged in: multiply by the mask before summing and divide by the number "
            "of REAL tokens"),
    Mistake("sum, not mean", _masked_sum,
            "you summed the real tokens but did not divide by how many there are (mask.sum(1))"),
    Mistake("divided by T", lambda h, m: _masked_sum(h, m) / h.shape[1],
            "you divided by T, the padded length: divide by the number of real tokens of each sentence"),
    Mistake("divided by the batch's count", lambda h, m: _masked_sum(h, m) / m.sum(),
            "you divided by mask.sum(), the real tokens of the whole batch: divide each sentence by its own count, "
            "mask.sum(1, keepdim=True)"),
    Mistake("the [CLS] vector", lambda h, m: h[:, 0],
            "that is the [CLS] vector alone: mean pooling averages all real tokens"),
)
POOL_HIDDEN = 2


@exercise("mean_pool", solution=solution_mean_pool, hidden=POOL_HIDDEN, mistakes=POOL_MISTAKES,
          forbidden=(text.mean_pool,), gradients=True)
def check_mean_pool(answer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(hidden (B, T, D), attention_mask (B, T))`` -> ``(B, D)`` against :func:`text.mean_pool`."""
    cases = [*pool_cases(), *hidden_cases(_hidden_pool, POOL_HIDDEN)]
    check_cases(answer, cases, text.mean_pool, mistakes=POOL_MISTAKES)
    expect_gradients(answer, text.mean_pool, cases[0])


# ---------------------------------------------------------------------------------------------
# causal mask
# ---------------------------------------------------------------------------------------------

MASK_LENGTHS = (4, 6, 1)


def mask_cases() -> list[Case]:
    """The fixed lengths 4, 6 and 1."""
    return [Case((n,), f"causal_mask({n})") for n in MASK_LENGTHS]


def _hidden_mask(g: torch.Generator) -> tuple[tuple[int], str]:
    """A length of 7 to 16, longer than the fixed ones."""
    n = _draw(g, 7, 16)
    return (n,), f"length {n}"


def _ones(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool)


MASK_MISTAKES: tuple[Mistake, ...] = (
    Mistake("upper triangle", lambda n: _ones(n).triu(),
            "True is ABOVE the diagonal: each word would see the words after it (the future); use the lower "
            "triangle"),
    Mistake("True where masked", lambda n: _ones(n).triu(1),
            "True marks the keys a query may NOT see, the opposite convention (that of nn.Transformer's masks); "
            "in the course's attention True means 'may attend': keys 0..i for query i"),
    Mistake("diagonal left out", lambda n: _ones(n).tril(-1),
            "the diagonal is False: a word must be able to attend to itself (word 0 would see nothing)"),
    Mistake("nothing masked", _ones,
            "everything is True: nothing is masked, the decoder would read the word it must predict"),
)
MASK_HIDDEN = 2


def _same_bool(got: Any, want: torch.Tensor) -> bool:
    """True when ``got`` is a bool tensor equal to ``want``."""
    return isinstance(got, torch.Tensor) and got.dtype == torch.bool and got.shape == want.shape \
        and torch.equal(got.cpu(), want)


def _explain_mask(got: Any, want: torch.Tensor, case: Case) -> None:
    got = expect_tensor(got, tuple(want.shape), case.what)
    if got.dtype != torch.bool:
        raise Hint(f"{case.what}: expected a bool tensor (True = may attend), got {got.dtype}; the course's attention "
                   "also takes bool masks")
    query, key = (got.cpu() != want).nonzero()[0].tolist()
    raise Hint(f"{case.what} is wrong at (query, key) = ({query}, {key}), where yours is {bool(got[query, key])}: "
               "query i may attend to keys 0..i only")


@exercise("causal_mask", solution=solution_causal_mask, hidden=MASK_HIDDEN, mistakes=MASK_MISTAKES,
          forbidden=(attention.causal_mask,))
def check_causal_mask(answer: Callable[[int], torch.Tensor]) -> None:
    """Check ``answer(length)`` -> bool ``(length, length)`` against :func:`attention.causal_mask`."""
    cases = [*mask_cases(), *hidden_cases(_hidden_mask, MASK_HIDDEN)]
    check_cases(answer, cases, attention.causal_mask, mistakes=MASK_MISTAKES, equal=_same_bool, explain=_explain_mask)


# ---------------------------------------------------------------------------------------------
# greedy step
# ---------------------------------------------------------------------------------------------

def _logits(g: torch.Generator, b: int, v: int) -> torch.Tensor:
    """Random ``(B, V)`` logits; padding is never the model's favourite."""
    logits = torch.randn(b, v, generator=g)
    logits[:, PAD_ID] -= 5
    return logits


def step_cases() -> list[Case]:
    """The fixed case: 5 captions (the 2nd and 5th finished), a vocabulary of 7."""
    logits = _logits(torch.Generator().manual_seed(5), 5, 7)
    finished = torch.tensor([False, True, False, False, True])
    return [Case((logits, finished), "greedy_step(logits (5, 7), finished (5,))")]


def _hidden_step(g: torch.Generator) -> tuple[tuple[torch.Tensor, torch.Tensor], str]:
    """2-8 captions over a vocabulary of 4-12, each finished with probability 0.4 (at least one of each)."""
    b, v = _draw(g, 2, 8), _draw(g, 4, 12)
    finished = torch.rand(b, generator=g) < 0.4
    finished[0], finished[-1] = False, True
    order = torch.randperm(b, generator=g)
    return (_logits(g, b, v), finished[order]), f"logits ({b}, {v}), finished ({b},)"


STEP_MISTAKES: tuple[Mistake, ...] = (
    Mistake("no padding for finished captions", lambda logits, f: logits.argmax(-1),
            "finished captions must get the padding id (PAD_ID), not a new word"),
    Mistake("argmin", lambda logits, f: torch.where(f, PAD_ID, logits.argmin(-1)),
            "argmin picks the LEAST likely token: greedy takes the argmax"),
    Mistake("<eos> instead of padding", lambda logits, f: torch.where(f, EOS_ID, logits.argmax(-1)),
            f"finished captions get PAD_ID ({PAD_ID}), not <eos> again"),
    Mistake("padding for the unfinished captions", lambda logits, f: torch.where(~f, PAD_ID, logits.argmax(-1)),
            "finished is True for the captions that are done: those get PAD_ID, the others their argmax"),
)
STEP_HIDDEN = 3


def _same_ints(got: Any, want: torch.Tensor) -> bool:
    """True when ``got`` is an integer (or bool) tensor of ``want``'s shape and values."""
    return isinstance(got, torch.Tensor) and not got.is_floating_point() and not got.is_complex() \
        and got.shape == want.shape and torch.equal(got.cpu().long(), want)


def _explain_step(got: Any, want: torch.Tensor, case: Case) -> None:
    logits, finished = case.args
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        raise Hint(f"{case.what}: expected a tensor of shape {tuple(want.shape)}, one token per caption, got "
                   f"{describe(got)} (argmax over the LAST dim, the vocabulary)")
    if got.is_floating_point() or got.is_complex():
        raise Hint(f"{case.what}: token ids must be integers (int64), got {got.dtype}: argmax returns them, "
                   "softmax probabilities are not ids")
    i = int((got.cpu().long() != want).nonzero()[0])
    state = "finished" if finished[i] else "not finished"
    raise Hint(f"{case.what}: caption {i} ({state}) gets token {int(got[i])} from your code: a finished caption "
               "gets PAD_ID, the others the most likely token")


@exercise("greedy_step", solution=solution_greedy_step, hidden=STEP_HIDDEN, mistakes=STEP_MISTAKES,
          forbidden=(captioning.greedy_step,))
def check_greedy_step(answer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(logits (B, V), finished (B,))`` -> ids ``(B,)`` against :func:`captioning.greedy_step`."""
    cases = [*step_cases(), *hidden_cases(_hidden_step, STEP_HIDDEN)]
    check_cases(answer, cases, captioning.greedy_step, mistakes=STEP_MISTAKES, equal=_same_ints,
                explain=_explain_step)


# ---------------------------------------------------------------------------------------------
# visual inputs for BERT
# ---------------------------------------------------------------------------------------------

def _visual_what(b: int, t: int, n: int, d: int) -> str:
    return f"text ({b}, {t}, {d}), text_mask ({b}, {t}), image ({b}, {n}, {d})"


def visual_cases() -> list[Case]:
    """The fixed case: 2 questions of 4 tokens (the second padded), 3 image tokens, width 8."""
    g = torch.Generator().manual_seed(6)
    text_embeds = torch.randn(2, 4, 8, generator=g)
    mask = _padding_mask([4, 3], 4)
    image = torch.randn(2, 3, 8, generator=g)
    return [Case((text_embeds, mask, image), _visual_what(2, 4, 3, 8))]


def _hidden_visual(g: torch.Generator) -> tuple[tuple[torch.Tensor, ...], str]:
    """1-4 questions of 2-6 tokens (padded at random), 1-5 image tokens, width 2-8."""
    b, t, n, d = _draw(g, 1, 4), _draw(g, 2, 6), _draw(g, 1, 5), _draw(g, 2, 8)
    args = (torch.randn(b, t, d, generator=g), _random_mask(g, b, t), torch.randn(b, n, d, generator=g))
    return args, _visual_what(b, t, n, d)


def _replace(part: int, value: Callable[..., torch.Tensor]) -> Callable[..., tuple[torch.Tensor, ...]]:
    """The reference answer with output ``part`` (0 embeds, 1 token types, 2 attention mask) replaced by ``value``."""
    def answer(text_embeds: torch.Tensor, text_mask: torch.Tensor,
               image_embeds: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = list(visual_inputs(text_embeds, text_mask, image_embeds))
        outputs[part] = value(text_embeds, text_mask, image_embeds)
        return tuple(outputs)
    return answer


def _segments(m: torch.Tensor, i: torch.Tensor, text: int, image: int) -> torch.Tensor:
    """``(B, T+N)`` int64: ``text`` on the text positions, ``image`` on the image positions."""
    b, n = i.shape[:2]
    return torch.cat([torch.full_like(m, text), torch.full((b, n), image, dtype=m.dtype)], 1).long()


def _after_mask(m: torch.Tensor, i: torch.Tensor, image: int) -> torch.Tensor:
    """``(B, T+N)`` int64: the text mask, then ``image`` on the image positions."""
    return torch.cat([m, torch.full(i.shape[:2], image, dtype=m.dtype)], 1).long()


EMBED_MISTAKES: tuple[Mistake, ...] = (
    Mistake("image first", _replace(0, lambda t, m, i: torch.cat([i, t], 1)),
            "inputs_embeds: the text ([CLS] question [SEP]) goes FIRST, then the image tokens, so that [CLS] is at "
            "position 0"),
)
TYPE_MISTAKES: tuple[Mistake, ...] = (
    Mistake("segments swapped", _replace(1, lambda t, m, i: _segments(m, i, 1, 0)),
            "token_type_ids are swapped: text tokens are segment 0, image tokens segment 1"),
    Mistake("one segment", _replace(1, lambda t, m, i: _segments(m, i, 0, 0)),
            "token_type_ids are all 0: give the image tokens segment 1 so BERT can tell them from text"),
    Mistake("the text mask as segments", _replace(1, lambda t, m, i: _after_mask(m, i, 1)),
            "token_type_ids mark the segment, not the padding: 0 for every text position (padding included), "
            "1 for every image token"),
)
ATTENTION_MISTAKES: tuple[Mistake, ...] = (
    Mistake("all-ones mask", _replace(2, lambda t, m, i: _segments(m, i, 1, 1)),
            "attention_mask is all 1: keep the text's own mask, its padding positions must stay 0"),
    Mistake("image tokens masked out", _replace(2, lambda t, m, i: _after_mask(m, i, 0)),
            "attention_mask is 0 on the image tokens: BERT would ignore the image; they must be 1"),
)
VISUAL_MISTAKES = EMBED_MISTAKES + TYPE_MISTAKES + ATTENTION_MISTAKES
VISUAL_HIDDEN = 2
OUTPUTS = ("inputs_embeds", "token_type_ids", "attention_mask")

CONCAT_ERRORS = {"Sizes of tensors must match": "torch.cat failed: join text and image tokens along dim=1, "
                                                "the sequence (dim 0 is the batch, dim 2 the hidden size)"}


def _same_part(part: int) -> Callable[[Any, Any], bool]:
    """Compares output ``part`` of the learner's triple with that of the reference (or of a mistake)."""
    def equal(got: Any, want: tuple[torch.Tensor, ...]) -> bool:
        return (same if part == 0 else _same_ints)(got[part], want[part])
    return equal


def _as_triple(got: Any, what: str) -> tuple[Any, Any, Any]:
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise Hint(f"{what}: expected a tuple (inputs_embeds, token_type_ids, attention_mask), got {describe(got)}")
    return tuple(got)


def _explain_ids(name: str, got: Any, want: torch.Tensor, case: Case) -> None:
    """The hint for a wrong ``token_type_ids`` or ``attention_mask``: shape, dtype, then the first wrong position."""
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
        raise Hint(f"{case.what}: {name}: expected a tensor of shape {tuple(want.shape)}, one entry per token, got "
                   f"{describe(got)}")
    if got.is_floating_point() or got.is_complex():
        raise Hint(f"{case.what}: {name}: expected integers (int64), got {got.dtype}; BERT's embedding looks "
                   "token types up by index")
    b, position = (got.cpu().long() != want).nonzero()[0].tolist()
    text_mask = case.args[1]
    kind = "an image token" if position >= text_mask.shape[1] else \
        "a real text token" if text_mask[b, position] else "a padding text token"
    raise Hint(f"{case.what}: {name} is wrong at (batch {b}, position {position}), {kind}, where yours is "
               f"{int(got[b, position])}")


@exercise("visual_inputs", solution=visual_inputs, hidden=VISUAL_HIDDEN, mistakes=VISUAL_MISTAKES, gradients=True)
def check_visual_inputs(answer: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
    """Check ``answer(text_embeds (B, T, D), text_mask (B, T), image_embeds (B, N, D))`` -> ``(inputs_embeds
    (B, T+N, D), token_type_ids (B, T+N), attention_mask (B, T+N))``; each output is checked on all cases, and its
    own typical mistakes named, before the next."""
    cases = [*visual_cases(), *hidden_cases(_hidden_visual, VISUAL_HIDDEN)]
    got = [_as_triple(call(answer, *case.args, known_errors=CONCAT_ERRORS), case.what) for case in cases]
    want = [visual_inputs(*case.args) for case in cases]
    for part, mistakes in enumerate((EMBED_MISTAKES, TYPE_MISTAKES, ATTENTION_MISTAKES)):
        equal = _same_part(part)
        if all(equal(g, w) for g, w in zip(got, want)):
            continue
        name_mistake(mistakes, cases, got, equal)
        g, w, case = next((g, w, c) for g, w, c in zip(got, want, cases) if not equal(g, w))
        if part == 0:
            expect_close(g[0], w[0], f"{case.what}: inputs_embeds")
            raise Hint(f"{case.what}: inputs_embeds differs from the reference")
        _explain_ids(OUTPUTS[part], g[part], w[part], case)
    expect_gradients(answer, visual_inputs, cases[0])
