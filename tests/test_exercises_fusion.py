"""The checkers of notebook 06: they accept the model answers and the library's, name each typical mistake on
every case, reject shortcuts, in-place edits, detached results and hard-coded answers, and wait for a stub."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from learner_answers import rejects as _rejects
from learner_answers import stub
from torch.nn import functional as F

from course_utils import contrastive
from course_utils import fusion as library
from course_utils.exercises import CHECKERS
from course_utils.exercises import fusion as ex

INFOS = {info.name: info for info in CHECKERS if info.module == ex.__name__}
NAMES = ["gated_fusion", "clip_loss", "recall_at_k"]


# ---------------------------------------------------------------------------------------------
# Model answers agree with the library
# ---------------------------------------------------------------------------------------------

def test_gated_fusion_equals_the_library_layer_with_those_weights():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=g), torch.randn(4, 5, generator=g)
    layer = library.GatedFusion(3, 5, 6)
    got = ex.gated_fusion(a, b, layer.proj_a.weight, layer.proj_b.weight, layer.gate.weight)
    torch.testing.assert_close(got, layer(a, b))


def test_clip_loss_and_recall_equal_the_library():
    g = torch.Generator().manual_seed(1)
    image, text, scale = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g), torch.tensor(2.0)
    torch.testing.assert_close(ex.clip_loss(image, text, scale), contrastive.clip_loss(image, text, scale))
    similarity = torch.randn(10, 10, generator=g) + torch.eye(10)
    for k in (1, 3, 9):
        assert ex.recall_at_k(similarity, k) == contrastive.recall_at_k(similarity, k)


def test_the_registry_lists_every_checker_of_notebook_06():
    assert list(INFOS) == NAMES
    assert [INFOS[name].hidden for name in NAMES] == [2, 2, 3]
    assert [INFOS[name].gradients for name in NAMES] == [True, True, False]
    assert [INFOS[name].forbidden for name in NAMES] == [(library.GatedFusion.forward,), (contrastive.clip_loss,),
                                                          (contrastive.recall_at_k,)]


# ---------------------------------------------------------------------------------------------
# Every checker: the model answer and variants pass, a stub is "not attempted"
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_checker_accepts_the_model_answer_and_runs_its_hidden_cases(name):
    info = INFOS[name]
    result = info.checker(info.solution, quiet=True)
    assert result.passed and str(result) == f"PASSED {name}", result.message
    assert info.checker.hidden_cases_run == info.hidden


@pytest.mark.parametrize("name", NAMES)
def test_checker_reports_a_stub_as_not_attempted(name, capsys):
    result = INFOS[name].checker(stub)
    assert result.status == "not attempted" and "NotImplementedError" in result.message
    assert capsys.readouterr().out.startswith(f"TODO {name}: not attempted yet")


@pytest.mark.parametrize("name, answer", [
    ("gated_fusion", lambda *args: ex.gated_fusion(*args).double()),
    ("gated_fusion", lambda *args: ex.gated_fusion(*(t.double() for t in args))),
    ("clip_loss", lambda *args: ex.clip_loss(*args).double()),
    ("clip_loss", lambda *args: ex.clip_loss(*args).reshape(1)),       # a one-element tensor is a loss too
    ("recall_at_k", lambda s, k: np.float32(ex.recall_at_k(s, k))),
    ("recall_at_k", lambda s, k: np.float64(ex.recall_at_k(s, k))),
    ("recall_at_k", lambda s, k: torch.tensor([ex.recall_at_k(s, k)])),
    ("recall_at_k", lambda s, k: torch.tensor(ex.recall_at_k(s, k), dtype=torch.float64)),
    ("recall_at_k", lambda s, k: (s.argsort(dim=1, descending=True)[:, :k] == torch.arange(len(s))[:, None])
     .any(1).float().mean()),
    ("recall_at_k", lambda s, k: sum(int(i in s[i].topk(k).indices) for i in range(len(s))) / len(s)),
])
def test_checker_accepts_other_correct_versions(name, answer):
    result = INFOS[name].checker(answer, quiet=True)
    assert result.passed, result.message


# ---------------------------------------------------------------------------------------------
# The rules: mistakes named on every case, shortcuts, in-place edits, gradients, hard-coding
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, mistake", [pytest.param(name, mistake, id=f"{name}: {mistake.name}")
                                           for name in NAMES for mistake in INFOS[name].mistakes])
def test_each_mistake_gets_its_own_hint(name, mistake):
    result = INFOS[name].checker(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint


def _through_the_layer(a, b, w_a, w_b, w_z):
    layer = library.GatedFusion(a.shape[1], b.shape[1], len(w_a))
    with torch.no_grad():
        layer.proj_a.weight.copy_(w_a), layer.proj_b.weight.copy_(w_b), layer.gate.weight.copy_(w_z)
    return layer(a, b)


@pytest.mark.parametrize("name, shortcut, called", [
    ("gated_fusion", _through_the_layer, "course_utils.fusion.GatedFusion.forward"),
    ("clip_loss", contrastive.clip_loss, "course_utils.contrastive.clip_loss"),
    ("clip_loss", lambda i, t, s: library.clip_loss(i, t, s), "course_utils.contrastive.clip_loss"),
    ("recall_at_k", contrastive.recall_at_k, "course_utils.contrastive.recall_at_k"),
    ("recall_at_k", lambda s, k: library.recall_at_k(s, k), "course_utils.contrastive.recall_at_k"),
])
def test_a_forbidden_shortcut_is_named(name, shortcut, called):
    _rejects(INFOS[name].checker, shortcut, f"your code calls `{called}`")


def _in_place_gated(a, b, w_a, w_b, w_z):
    a *= 2.0
    return ex.gated_fusion(a / 2, b, w_a, w_b, w_z)


def _in_place_clip(image_emb, text_emb, logit_scale):
    image_emb /= image_emb.norm(dim=1, keepdim=True)
    return ex.clip_loss(image_emb, text_emb, logit_scale)


def _in_place_recall(similarity, k):
    similarity[:, 0] = similarity[:, 0]  # any write counts, even one that keeps the values...
    similarity -= 1.0                    # ...and this one does not
    return ex.recall_at_k(similarity, k)


@pytest.mark.parametrize("name, answer, argument", [
    ("gated_fusion", _in_place_gated, "a"), ("clip_loss", _in_place_clip, "image_emb"),
    ("recall_at_k", _in_place_recall, "similarity"),
])
def test_an_input_changed_in_place_is_rejected(name, answer, argument):
    _rejects(INFOS[name].checker, answer, f"changed its input `{argument}` in place")


@pytest.mark.parametrize("name", ["gated_fusion", "clip_loss"])
def test_a_detached_result_is_rejected(name):
    _rejects(INFOS[name].checker, lambda *args: INFOS[name].solution(*args).detach(), "cut off from autograd")


def _symmetric_ce(logits):
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def _cosines(image_emb, text_emb):
    return F.normalize(image_emb, dim=1) @ F.normalize(text_emb, dim=1).T


@pytest.mark.parametrize("answer", [
    lambda image_emb, text_emb, logit_scale: _symmetric_ce(logit_scale.detach().exp() * _cosines(image_emb, text_emb)),
    lambda image_emb, text_emb, logit_scale: _symmetric_ce(math.exp(logit_scale.item())
                                                           * _cosines(image_emb, text_emb)),
    lambda image_emb, text_emb, logit_scale: _symmetric_ce(torch.tensor(float(logit_scale)).exp()
                                                           * _cosines(image_emb, text_emb)),
])
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_clip_loss_with_a_detached_temperature_is_rejected_naming_it(answer):
    _rejects(ex.check_clip_loss, answer, "no gradient reaches `logit_scale`")


def _numpy_clip_loss(image_emb, text_emb, logit_scale, detach=True):
    image, text = (x.detach().numpy() if detach else x.numpy() for x in (image_emb, text_emb))
    image, text = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (image, text))
    logits = np.exp(float(logit_scale)) * image @ text.T

    def cross_entropy(rows):
        shifted = rows - rows.max(axis=1, keepdims=True)
        return -np.diag(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))).mean()

    return torch.tensor((cross_entropy(logits) + cross_entropy(logits.T)) / 2)


def test_clip_loss_through_numpy_is_rejected():
    _rejects(ex.check_clip_loss, _numpy_clip_loss, "cut off from autograd")
    _rejects(ex.check_clip_loss, lambda *args: _numpy_clip_loss(*args).item(), "plain number", "no .item()")
    _rejects(ex.check_clip_loss, lambda i, t, s: _numpy_clip_loss(i, t, s, detach=False), "goes through numpy")


def test_gated_fusion_with_a_detached_weight_is_rejected_naming_it():
    _rejects(ex.check_gated_fusion, lambda a, b, w_a, w_b, w_z: ex.gated_fusion(a, b, w_a, w_b, w_z.detach()),
             "no gradient reaches `w_z`")


# ---------------------------------------------------------------------------------------------
# Plain hints, and no false match
# ---------------------------------------------------------------------------------------------

def test_gated_fusion_hints():
    _rejects(ex.check_gated_fusion, lambda a, b, *w: a, "expected shape (5, 6), got (5, 3)")
    _rejects(ex.check_gated_fusion, lambda *x: ex.gated_fusion(*x) + 0.1, "differs from the reference")
    _rejects(ex.check_gated_fusion, lambda a, b, w_a, w_b, w_z: torch.tanh(a @ w_a),  # w_a not transposed
             "raised RuntimeError in `<lambda>`", "a @ w_a")
    _rejects(ex.check_gated_fusion, lambda a, b, w_a, w_b, w_z: torch.sigmoid(torch.cat([a, b], 1) @ w_z.T)
             * torch.tanh(a @ w_a.T) + torch.tanh(b @ w_b.T), "differs from the reference")


def test_clip_loss_hints():
    _rejects(ex.check_clip_loss, lambda i, t, s: torch.zeros(3), "expected a scalar tensor", "shape (3,)")
    _rejects(ex.check_clip_loss, lambda i, t, s: "loss", "expected a scalar tensor")
    first: list[float] = []

    def half_more(image_emb, text_emb, logit_scale):
        first.append(float(ex.clip_loss(image_emb, text_emb, logit_scale)))
        return ex.clip_loss(image_emb, text_emb, logit_scale) + 0.5

    message = _rejects(ex.check_clip_loss, half_more, "clip_loss of image_emb and text_emb (6, 5)", "is larger than")
    assert f"{first[0]:.6g}" not in message and f"{first[0] + 0.5:.6g}" in message  # the learner's value only
    _rejects(ex.check_clip_loss, lambda i, t, s: ex.clip_loss(i, t, s) * 0.9, "is smaller than the reference")


def test_recall_hints_never_print_the_expected_recall():
    _rejects(ex.check_recall_at_k, lambda s, k: "all of them", "expected a float (the fraction of rows)")
    _rejects(ex.check_recall_at_k, lambda s, k: None, "expected a float", "None")
    message = _rejects(ex.check_recall_at_k, lambda s, k: 0.5, "recall@1 of a 12x12", "your 0.5 is larger")
    assert "expected 0" not in message and "reference value" in message
    _rejects(ex.check_recall_at_k, lambda s, k: True, "expected a float")


def test_a_mistake_on_one_case_only_is_not_named():
    def percentage_for_k_1(similarity, k):
        return ex.recall_at_k(similarity, k) * (100 if k == 1 else 1)

    def unnormalised_on_the_first_case(image_emb, text_emb, logit_scale):
        if image_emb.shape == (6, 5):
            return _symmetric_ce(logit_scale.exp() * image_emb @ text_emb.T)
        return ex.clip_loss(image_emb, text_emb, logit_scale)

    def swapped_gate_on_the_fixed_case(a, b, w_a, w_b, w_z):
        z = torch.sigmoid(torch.cat([a, b], 1) @ w_z.T)
        z = 1 - z if a.shape == (5, 3) else z
        return z * torch.tanh(a @ w_a.T) + (1 - z) * torch.tanh(b @ w_b.T)

    for checker, answer, mistakes in [(ex.check_recall_at_k, percentage_for_k_1, ex.RECALL_MISTAKES),
                                      (ex.check_clip_loss, unnormalised_on_the_first_case, ex.CLIP_MISTAKES),
                                      (ex.check_gated_fusion, swapped_gate_on_the_fixed_case, ex.GATE_MISTAKES)]:
        message = _rejects(checker, answer)
        assert all(mistake.hint not in message for mistake in mistakes), message
