"""The checkers of notebook 04: they accept the reference and its valid variants, name each typical mistake
(only when it fits every case), and reject in-place edits, the library's own functions, detached and
hard-coded answers; no hint prints the expected ids or masks."""
from __future__ import annotations

import pytest
import torch
from learner_answers import only_on_the_first_case, stub

from course_utils import attention, captioning, text
from course_utils.exercises import bert

CHECKERS = [bert.check_mean_pool, bert.check_causal_mask, bert.check_greedy_step, bert.check_visual_inputs]
SOLUTIONS = [bert.solution_mean_pool, bert.solution_causal_mask, bert.solution_greedy_step, bert.visual_inputs]
FIXED = [bert.pool_cases, bert.mask_cases, bert.step_cases, bert.visual_cases]
MISTAKES = [bert.POOL_MISTAKES, bert.MASK_MISTAKES, bert.STEP_MISTAKES, bert.VISUAL_MISTAKES]
NAMED_MISTAKES = [(checker, mistake) for checker, mistakes in zip(CHECKERS, MISTAKES) for mistake in mistakes]


def test_the_model_answers_equal_the_librarys_functions():
    hidden, mask = bert.pool_cases()[0].args
    assert torch.allclose(bert.solution_mean_pool(hidden, mask), text.mean_pool(hidden, mask))
    assert torch.equal(bert.solution_causal_mask(5), attention.causal_mask(5))
    logits, finished = bert.step_cases()[0].args
    assert torch.equal(bert.solution_greedy_step(logits, finished), captioning.greedy_step(logits, finished))


def test_reference_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert text.mean_pool(hidden, torch.tensor([[1, 1, 0]])).item() == 2.0


@pytest.mark.parametrize("checker", CHECKERS)
def test_stub_is_not_attempted(checker):
    assert checker(stub, quiet=True).status == "not attempted"


@pytest.mark.parametrize("checker, solution", list(zip(CHECKERS, SOLUTIONS)))
def test_the_reference_passes_and_runs_its_hidden_cases(checker, solution):
    assert checker(solution, quiet=True).passed
    assert checker.hidden_cases_run >= (3 if checker is bert.check_greedy_step else 2)


@pytest.mark.parametrize("checker, mistake", NAMED_MISTAKES, ids=[m.name for _, m in NAMED_MISTAKES])
def test_each_typical_mistake_gets_its_own_hint(checker, mistake):
    result = checker(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint, (mistake.name, result.message)


@pytest.mark.parametrize("checker, mistakes, fixed, solution", list(zip(CHECKERS, MISTAKES, FIXED, SOLUTIONS)))
def test_a_mistake_is_named_only_when_it_fits_every_case(checker, mistakes, fixed, solution):
    for mistake in mistakes:
        result = checker(only_on_the_first_case(mistake.compute, fixed, solution), quiet=True)
        assert result.status == "failed" and mistake.hint not in result.message, mistake.name
        assert result.message.startswith(fixed()[0].what), result.message


@pytest.mark.parametrize("checker, library, name", [
    (bert.check_mean_pool, lambda h, m: text.mean_pool(h, m), "course_utils.text.mean_pool"),
    (bert.check_causal_mask, attention.causal_mask, "course_utils.attention.causal_mask"),
    (bert.check_greedy_step, captioning.greedy_step, "course_utils.captioning.greedy_step"),
])
def test_the_librarys_own_function_is_forbidden(checker, library, name):
    result = checker(library, quiet=True)
    assert result.status == "failed" and f"your code calls `{name}`" in result.message


# ---------------------------------------------------------------------------------------------
# mean_pool
# ---------------------------------------------------------------------------------------------

def test_mean_pool_accepts_float64_and_a_bool_mask():
    assert bert.check_mean_pool(lambda h, m: bert.solution_mean_pool(h.double(), m), quiet=True).passed
    assert bert.check_mean_pool(lambda h, m: bert.solution_mean_pool(h, m.bool()), quiet=True).passed


def test_mean_pool_rejects_masking_in_place():
    def mean_pool(hidden, mask):
        hidden *= mask[..., None]
        return hidden.sum(1) / mask.sum(1, keepdim=True)

    result = bert.check_mean_pool(mean_pool, quiet=True)
    assert result.status == "failed" and "changed its input `hidden` in place" in result.message


def test_mean_pool_checks_gradients():
    result = bert.check_mean_pool(lambda h, m: bert.solution_mean_pool(h, m).detach(), quiet=True)
    assert result.status == "failed" and "cut off from autograd" in result.message
    result = bert.check_mean_pool(lambda h, m: torch.tensor(bert.solution_mean_pool(h, m).tolist()), quiet=True)
    assert result.status == "failed" and "cut off from autograd" in result.message


def test_mean_pool_other_wrong_answers():
    result = bert.check_mean_pool(lambda h, m: h.mean(2), quiet=True)
    assert result.message == "mean_pool(hidden (3, 5, 4), mask (3, 5)): expected shape (3, 4), got (3, 5)"
    result = bert.check_mean_pool(lambda h, m: bert.solution_mean_pool(h, m) + 0.1, quiet=True)
    assert "differs from the reference by up to 0.1" in result.message


# ---------------------------------------------------------------------------------------------
# causal_mask
# ---------------------------------------------------------------------------------------------

def test_causal_mask_wants_a_bool_tensor():
    result = bert.check_causal_mask(lambda n: torch.ones(n, n).tril(), quiet=True)
    assert result.status == "failed" and "expected a bool tensor" in result.message
    result = bert.check_causal_mask(lambda n: torch.ones(n, n, dtype=torch.bool).tril()[:-1], quiet=True)
    assert result.message == "causal_mask(4): expected shape (4, 4), got (3, 4)"


def test_causal_mask_hint_names_the_first_wrong_entry_not_the_expected_mask():
    result = bert.check_causal_mask(lambda n: torch.ones(n, n, dtype=torch.bool).tril(1), quiet=True)
    assert result.message == ("causal_mask(4) is wrong at (query, key) = (0, 1), where yours is True: query i may "
                              "attend to keys 0..i only")
    assert "tensor(" not in result.message and "[[" not in result.message


# ---------------------------------------------------------------------------------------------
# greedy_step
# ---------------------------------------------------------------------------------------------

def test_greedy_step_accepts_int32_ids():
    assert bert.check_greedy_step(lambda lg, f: bert.solution_greedy_step(lg, f).int(), quiet=True).passed


def test_greedy_step_rejects_in_place_edits():
    def masks_the_logits(logits, finished):
        logits[finished] = -1e9
        logits[finished, bert.PAD_ID] = 0
        return logits.argmax(-1)

    def marks_finished(logits, finished):
        ids = torch.where(finished, bert.PAD_ID, logits.argmax(-1))
        finished |= ids != bert.PAD_ID
        return ids

    assert "changed its input `logits` in place" in bert.check_greedy_step(masks_the_logits, quiet=True).message
    assert "changed its input `finished` in place" in bert.check_greedy_step(marks_finished, quiet=True).message


def test_greedy_step_hints_never_print_the_expected_ids():
    logits, finished = bert.step_cases()[0].args
    want = captioning.greedy_step(logits, finished)
    result = bert.check_greedy_step(lambda lg, f: torch.where(f, 1, lg.argmax(-1)), quiet=True)
    assert result.message == ("greedy_step(logits (5, 7), finished (5,)): caption 1 (finished) gets token 1 from "
                              "your code: a finished caption gets PAD_ID, the others the most likely token")
    for answer in (lambda lg, f: torch.zeros(len(lg), dtype=torch.long), lambda lg, f: lg[:, :3].argmax(-1)):
        message = bert.check_greedy_step(answer, quiet=True).message
        assert str(want.tolist()) not in message and "expected [" not in message


def test_greedy_step_other_wrong_answers():
    result = bert.check_greedy_step(lambda lg, f: lg.softmax(-1), quiet=True)
    assert result.status == "failed" and "shape (5,)" in result.message
    result = bert.check_greedy_step(lambda lg, f: bert.solution_greedy_step(lg, f).float(), quiet=True)
    assert result.status == "failed" and "must be integers" in result.message


# ---------------------------------------------------------------------------------------------
# visual_inputs
# ---------------------------------------------------------------------------------------------

_replace = bert._replace


def _ones(t, m, i):
    return torch.ones(len(t), i.shape[1], dtype=torch.long)


def test_visual_inputs_accepts_float64_embeddings_and_int32_ids():
    def answer(t, m, i):
        embeds, types, mask = bert.visual_inputs(t, m, i)
        return embeds.double(), types.int(), mask.int()

    assert bert.check_visual_inputs(answer, quiet=True).passed


def test_visual_inputs_names_an_output_mistake_whatever_the_others_are():
    def image_first_throughout(t, m, i):
        return torch.cat([i, t], 1), torch.cat([_ones(t, m, i), 0 * m], 1), torch.cat([_ones(t, m, i), m], 1)

    result = bert.check_visual_inputs(image_first_throughout, quiet=True)
    assert result.message == bert.EMBED_MISTAKES[0].hint


@pytest.mark.parametrize("answer, words", [
    (_replace(0, lambda t, m, i: torch.cat([t, i], 2)), "dim=1"),
    (_replace(0, lambda t, m, i: torch.cat([t, t[:, :i.shape[1]]], 1)), "inputs_embeds: differs from the reference"),
    (_replace(1, lambda t, m, i: torch.cat([0 * m, _ones(t, m, i)], 1).float()), "integers"),
    (_replace(1, lambda t, m, i: torch.cat([0 * m, 2 * _ones(t, m, i)], 1)),
     "token_type_ids is wrong at (batch 0, position 4), an image token, where yours is 2"),
    (_replace(2, lambda t, m, i: torch.cat([1 - m, _ones(t, m, i)], 1)),
     "attention_mask is wrong at (batch 0, position 0), a real text token, where yours is 0"),
    (_replace(2, lambda t, m, i: torch.cat([m, _ones(t, m, i)], 1)[:, 1:]), "attention_mask: expected a tensor of "
                                                                             "shape (2, 7)"),
    (lambda t, m, i: torch.cat([t, i], 1), "expected a tuple"),
])
def test_visual_inputs_other_wrong_answers(answer, words):
    result = bert.check_visual_inputs(answer, quiet=True)
    assert result.status == "failed" and words in result.message, (words, result.message)
    assert "[[" not in result.message and "tolist" not in result.message


def test_visual_inputs_checks_gradients_into_both_embeddings():
    result = bert.check_visual_inputs(lambda t, m, i: tuple(x.detach() for x in bert.visual_inputs(t, m, i)),
                                      quiet=True)
    assert result.status == "failed" and "cut off from autograd" in result.message

    def image_detached(text_embeds, text_mask, image_embeds):
        return bert.visual_inputs(text_embeds, text_mask, image_embeds.detach())

    result = bert.check_visual_inputs(image_detached, quiet=True)
    assert result.status == "failed" and "no gradient reaches `image_embeds`" in result.message


def test_visual_inputs_rejects_an_input_changed_in_place():
    def answer(text_embeds, text_mask, image_embeds):
        outputs = bert.visual_inputs(text_embeds, text_mask, image_embeds)
        text_mask.fill_(1)
        return outputs

    result = bert.check_visual_inputs(answer, quiet=True)
    assert result.status == "failed" and "changed its input `text_mask` in place" in result.message
