"""The checkers of notebook 03: they accept the reference and its valid variants, name each typical mistake
(only when it fits every case), and reject in-place edits, forbidden shortcuts, detached and hard-coded answers."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from learner_answers import only_on_the_first_case, stub
from torch import nn
from torch.nn import functional as F

import course_utils.vit
from course_utils.exercises import vit

CHECKERS = [vit.check_patchify, vit.check_add_cls_and_positions, vit.check_vit_parameter_count]
SOLUTIONS = [vit.solution_patchify, vit.add_cls_and_positions, vit.vit_parameter_count]
FIXED = [vit.patch_cases, vit.token_cases, vit.count_cases]


def test_the_model_answer_equals_the_librarys_patchify():
    x = torch.rand(2, 3, 12, 12)
    assert torch.equal(vit.solution_patchify(x, 4), course_utils.vit.patchify(x, 4))
    assert torch.equal(vit.solution_patchify(x, 4), F.unfold(x, 4, stride=4).transpose(1, 2))


@pytest.mark.parametrize("checker", CHECKERS)
def test_stub_is_not_attempted(checker):
    assert checker(stub, quiet=True).status == "not attempted"


@pytest.mark.parametrize("checker, solution", list(zip(CHECKERS, SOLUTIONS)))
def test_the_reference_passes_and_runs_its_hidden_cases(checker, solution):
    assert checker(solution, quiet=True).passed
    assert checker.hidden_cases_run >= (3 if checker is vit.check_vit_parameter_count else 2)


@pytest.mark.parametrize("checker, solution", list(zip(CHECKERS[:2], SOLUTIONS[:2])))
def test_a_float64_result_passes(checker, solution):
    assert checker(lambda *a: solution(*a).double(), quiet=True).passed


@pytest.mark.parametrize("checker, solution", list(zip(CHECKERS[:2], SOLUTIONS[:2])))
def test_a_detached_result_fails(checker, solution):
    result = checker(lambda *a: solution(*a).detach(), quiet=True)
    assert result.status == "failed" and "cut off from autograd" in result.message


# ---------------------------------------------------------------------------------------------
# patchify
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mistake", vit.PATCH_MISTAKES, ids=lambda m: m.name)
def test_patchify_names_each_mistake(mistake):
    result = vit.check_patchify(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint


def test_patchify_names_a_mistake_only_when_it_fits_every_case():
    columns_first = vit.PATCH_MISTAKES[2]
    answer = only_on_the_first_case(columns_first.compute, vit.patch_cases, lambda x, p: vit.solution_patchify(x, p))
    result = vit.check_patchify(answer, quiet=True)
    assert result.status == "failed" and result.message != columns_first.hint
    assert result.message.startswith("patchify of images (2, 1, 8, 8) with P=4: differs from the reference")


@pytest.mark.parametrize("shortcut, name", [
    (lambda x, p: F.unfold(x, p, stride=p).transpose(1, 2), "F.unfold"),
    (lambda x, p: nn.Unfold(p, stride=p)(x).transpose(1, 2), "F.unfold"),
    (lambda x, p: x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(len(x), -1, x.shape[1] * p * p),
     "Tensor.unfold"),
    (lambda x, p: F.conv2d(x, torch.eye(x.shape[1] * p * p).reshape(-1, x.shape[1], p, p), stride=p)
     .flatten(2).transpose(1, 2), "conv2d"),
    (lambda x, p: F.pixel_unshuffle(x, p).flatten(2).transpose(1, 2), "pixel_unshuffle"),
    (lambda x, p: course_utils.vit.patchify(x, p), "course_utils.vit.patchify"),
])
def test_patchify_names_a_forbidden_shortcut(shortcut, name):
    result = vit.check_patchify(shortcut, quiet=True)
    assert result.status == "failed" and name in result.message and "your code calls" in result.message


def test_patchify_rejects_an_input_changed_in_place():
    def patchify(images, patch_size):
        patches = vit.solution_patchify(images, patch_size)
        images.zero_()
        return patches.clone()

    result = vit.check_patchify(patchify, quiet=True)
    assert result.status == "failed" and "changed its input `images` in place" in result.message


def test_patchify_other_wrong_answers():
    result = vit.check_patchify(lambda x, p: x.flatten(1), quiet=True)
    assert result.status == "failed" and "expected shape (2, 4, 16), got (2, 64)" in result.message
    result = vit.check_patchify(lambda x, p: vit.solution_patchify(x, p) * 2, quiet=True)
    assert result.status == "failed" and "differs from the reference" in result.message


# ---------------------------------------------------------------------------------------------
# add_cls_and_positions
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mistake", vit.TOKEN_MISTAKES, ids=lambda m: m.name)
def test_add_cls_and_positions_names_each_mistake(mistake):
    result = vit.check_add_cls_and_positions(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint


def test_add_cls_and_positions_names_a_mistake_only_when_it_fits_every_case():
    at_the_end = vit.TOKEN_MISTAKES[0]
    answer = only_on_the_first_case(at_the_end.compute, vit.token_cases, vit.add_cls_and_positions)
    result = vit.check_add_cls_and_positions(answer, quiet=True)
    assert result.status == "failed" and result.message != at_the_end.hint and "differs" in result.message


def _front(t, c):
    return torch.cat([c.expand(len(t), -1, -1), t], 1)


@pytest.mark.parametrize("answer, words", [
    (lambda t, c, p: t, "the CLS token is missing"),
    (lambda t, c, p: t + p[:, 1:], "the CLS token is missing"),
    (lambda t, c, p: torch.cat([c.expand(len(t), -1, -1), t + p], 1), "AFTER putting the CLS token"),
    (lambda t, c, p: torch.cat([c, t], 1) + p, "expand(B, -1, -1)"),
    (lambda t, c, p: _front(t, c) + 2 * p, "differs from the reference"),
])
def test_add_cls_and_positions_typical_errors(answer, words):
    result = vit.check_add_cls_and_positions(answer, quiet=True)
    assert result.status == "failed" and words in result.message, result.message


def test_add_cls_and_positions_needs_gradients_to_reach_the_learned_tokens():
    def cls_detached(patch_tokens, cls_token, pos_embed):
        return _front(patch_tokens, cls_token.detach()) + pos_embed

    def positions_detached(patch_tokens, cls_token, pos_embed):
        return _front(patch_tokens, cls_token) + pos_embed.detach()

    assert "no gradient reaches `cls_token`" in vit.check_add_cls_and_positions(cls_detached, quiet=True).message
    assert "no gradient reaches `pos_embed`" in vit.check_add_cls_and_positions(positions_detached, quiet=True).message


def test_add_cls_and_positions_rejects_an_input_changed_in_place():
    def add(patch_tokens, cls_token, pos_embed):
        pos_embed[:, 1:] += patch_tokens.mean(0)
        return torch.cat([cls_token.expand(len(patch_tokens), -1, -1), patch_tokens * 0], 1) + pos_embed

    result = vit.check_add_cls_and_positions(add, quiet=True)
    assert result.status == "failed" and "changed its input `pos_embed` in place" in result.message


# ---------------------------------------------------------------------------------------------
# vit_parameter_count
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mistake", vit.COUNT_MISTAKES, ids=lambda m: m.name)
def test_vit_parameter_count_names_each_mistake(mistake):
    result = vit.check_vit_parameter_count(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint


def test_vit_parameter_count_names_a_mistake_only_when_it_fits_every_case():
    no_biases = vit.COUNT_MISTAKES[5]
    answer = only_on_the_first_case(no_biases.compute, vit.count_cases, vit.vit_parameter_count)
    result = vit.check_vit_parameter_count(answer, quiet=True)
    assert result.status == "failed" and result.message != no_biases.hint and "too small" in result.message


def test_vit_parameter_count_hints_say_which_settings_and_which_way_not_the_count():
    want = vit.vit_parameter_count(*vit.COUNT_CASES[0])
    result = vit.check_vit_parameter_count(lambda *a: vit.vit_parameter_count(*a) + 1, quiet=True)
    assert result.message == f"vit_parameter_count{vit.COUNT_CASES[0]}: your count {want + 1:,} is too large"
    result = vit.check_vit_parameter_count(lambda *a: vit.vit_parameter_count(*a) - 7, quiet=True)
    assert result.message.endswith("is too small")
    for message in (result.message, vit.check_vit_parameter_count(lambda *a: 0, quiet=True).message):
        assert f"{want:,}" not in message and str(want) not in message and "should be" not in message


def test_vit_parameter_count_accepts_numpy_and_tensor_ints_but_not_floats():
    check = vit.check_vit_parameter_count
    assert check(lambda *a: np.int64(vit.vit_parameter_count(*a)), quiet=True).passed
    assert check(lambda *a: torch.tensor(vit.vit_parameter_count(*a)), quiet=True).passed
    result = check(lambda *a: float(vit.vit_parameter_count(*a)), quiet=True)
    assert result.status == "failed" and "return a whole number (an int)" in result.message


def test_vit_parameter_count_forbids_building_a_model_and_stops_at_once():
    def by_model(image_size, patch_size, channels, embed_dim, depth, num_heads, mlp_hidden, num_classes):
        model = course_utils.vit.VisionTransformer(image_size, patch_size, channels, num_classes, embed_dim, depth,
                                                   num_heads, mlp_hidden / embed_dim)
        return sum(p.numel() for p in model.parameters())

    start = time.monotonic()
    result = vit.check_vit_parameter_count(by_model, quiet=True)
    assert time.monotonic() - start < 2  # it stops after the first (small) model, before ViT-Base
    assert result.status == "failed" and "`nn.Module.__init__`" in result.message
    assert "that builds a model" in result.message
    result = vit.check_vit_parameter_count(lambda *a: nn.Linear(2, 2).weight.numel(), quiet=True)
    assert "that builds a model" in result.message


def test_vit_parameter_count_is_quick_under_the_watch_for_forbidden_calls():
    start = time.monotonic()
    for _ in range(10):
        assert vit.check_vit_parameter_count(vit.vit_parameter_count, quiet=True).passed
    assert time.monotonic() - start < 1
