"""The checkers of notebook 04: they accept the reference, name each typical mistake, and wait for a stub."""
from __future__ import annotations

import pytest
import torch

from course_utils.exercises import bert
from course_utils.exercises.bert import MASK_MISTAKES, POOL_MISTAKES, STEP_MISTAKES

CHECKERS = [bert.check_mean_pool, bert.check_causal_mask, bert.check_greedy_step, bert.check_visual_inputs]


def stub(*args):
    raise NotImplementedError("write this function")


@pytest.mark.parametrize("checker", CHECKERS)
def test_stub_is_not_attempted(checker):
    assert checker(stub, quiet=True).status == "not attempted"


@pytest.mark.parametrize("checker, reference", list(zip(CHECKERS, [bert.mean_pool, bert.causal_mask, bert.greedy_step,
                                                                   bert.visual_inputs])))
def test_reference_passes(checker, reference):
    assert checker(reference, quiet=True).passed


def test_reference_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert bert.mean_pool(hidden, torch.tensor([[1, 1, 0]])).item() == 2.0


@pytest.mark.parametrize("mistakes, checker", [(POOL_MISTAKES, bert.check_mean_pool),
                                               (MASK_MISTAKES, bert.check_causal_mask),
                                               (STEP_MISTAKES, bert.check_greedy_step)])
def test_typical_mistakes_get_their_hint(mistakes, checker):
    for mistake, hint in mistakes:
        result = checker(mistake, quiet=True)
        assert result.status == "failed" and result.message == hint, (hint, result.message)


def test_other_wrong_answers():
    result = bert.check_mean_pool(lambda h, m: h.mean(2), quiet=True)
    assert result.status == "failed" and "expected shape" in result.message
    result = bert.check_causal_mask(lambda n: torch.ones(n, n).tril(), quiet=True)
    assert result.status == "failed" and "bool" in result.message
    result = bert.check_greedy_step(lambda logits, f: logits.softmax(-1), quiet=True)
    assert result.status == "failed" and "shape (5,)" in result.message


def _visual(embeds=None, types=None, mask=None):
    """The reference answer with one of its three outputs replaced by ``f(text, text_mask, image)``."""
    def answer(text, text_mask, image):
        want = list(bert.visual_inputs(text, text_mask, image))
        for i, f in enumerate((embeds, types, mask)):
            if f is not None:
                want[i] = f(text, text_mask, image)
        return tuple(want)
    return answer


def _ones(t, m, i):
    return torch.ones(len(t), i.shape[1], dtype=torch.long)


@pytest.mark.parametrize("answer, words", [
    (_visual(embeds=lambda t, m, i: torch.cat([i, t], 1)), "FIRST"),
    (_visual(embeds=lambda t, m, i: torch.cat([t, i], 2)), "dim=1"),
    (_visual(embeds=lambda t, m, i: torch.cat([t, t[:, :3]], 1)), "differs from the reference"),
    (_visual(types=lambda t, m, i: torch.cat([torch.ones_like(m), 0 * _ones(t, m, i)], 1)), "swapped"),
    (_visual(types=lambda t, m, i: torch.zeros(len(t), t.shape[1] + i.shape[1], dtype=torch.long)), "all 0"),
    (_visual(types=lambda t, m, i: torch.cat([m, _ones(t, m, i)], 1)), "token_type_ids: expected"),
    (_visual(types=lambda t, m, i: torch.cat([0 * m, _ones(t, m, i)], 1).float()), "integers"),
    (_visual(mask=lambda t, m, i: torch.ones(len(t), t.shape[1] + i.shape[1], dtype=torch.long)), "text's own mask"),
    (_visual(mask=lambda t, m, i: torch.cat([m, 0 * _ones(t, m, i)], 1)), "ignore the image"),
    (lambda t, m, i: torch.cat([t, i], 1), "expected a tuple"),
])
def test_visual_inputs_mistakes(answer, words):
    result = bert.check_visual_inputs(answer, quiet=True)
    assert result.status == "failed" and words in result.message, (words, result.message)
