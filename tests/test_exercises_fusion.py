"""The checkers of notebook 06: they accept the reference, name each typical mistake, and wait for a stub."""
from __future__ import annotations

import pytest
import torch

from course_utils import fusion as library
from course_utils.exercises import fusion
from course_utils.exercises.fusion import CLIP_MISTAKES, GATE_MISTAKES, RECALL_MISTAKES


def stub(*args):
    raise NotImplementedError("write this function")


@pytest.mark.parametrize("checker", [fusion.check_gated_fusion, fusion.check_clip_loss, fusion.check_recall_at_k])
def test_stub_is_not_attempted(checker):
    assert checker(stub, quiet=True).status == "not attempted"


@pytest.mark.parametrize("checker, reference", [(fusion.check_gated_fusion, fusion.gated_fusion),
                                                (fusion.check_clip_loss, fusion.clip_loss),
                                                (fusion.check_recall_at_k, fusion.recall_at_k),
                                                (fusion.check_clip_loss, library.clip_loss)])
def test_accepts_reference(checker, reference):
    assert checker(reference, quiet=True).passed


@pytest.mark.parametrize("checker, mistakes", [(fusion.check_gated_fusion, GATE_MISTAKES),
                                               (fusion.check_clip_loss, CLIP_MISTAKES),
                                               (fusion.check_recall_at_k, RECALL_MISTAKES)])
def test_names_each_typical_mistake(checker, mistakes):
    for mistake, hint in mistakes:
        result = checker(mistake, quiet=True)
        assert result.status == "failed" and result.message == hint, (mistake.__name__, result.message)


def test_gated_fusion_hint_words():
    words = {"swapped": GATE_MISTAKES[0][0], "tanh": GATE_MISTAKES[1][0], "sigmoid": GATE_MISTAKES[2][0],
             "softmax": GATE_MISTAKES[3][0], "gate is missing": GATE_MISTAKES[4][0]}
    for word, answer in words.items():
        assert word in fusion.check_gated_fusion(answer, quiet=True).message


def test_clip_loss_hint_words():
    messages = [fusion.check_clip_loss(mistake, quiet=True).message for mistake, _ in CLIP_MISTAKES]
    for word, message in zip(["image->text direction", "text->image direction", "temperature is missing", "log(1/T)",
                              "do not divide", "normalise", "arange", "average"], messages):
        assert word in message


def test_other_wrong_answers():
    result = fusion.check_gated_fusion(lambda a, b, *w: a, quiet=True)
    assert result.status == "failed" and "expected shape" in result.message
    result = fusion.check_gated_fusion(lambda *x: fusion.gated_fusion(*x) + 0.1, quiet=True)
    assert result.status == "failed" and "differs from the reference" in result.message
    result = fusion.check_clip_loss(lambda i, t, s: torch.zeros(3), quiet=True)
    assert result.status == "failed" and "scalar" in result.message
    result = fusion.check_clip_loss(lambda i, t, s: fusion.clip_loss(i, t, s) + 0.5, quiet=True)
    assert result.status == "failed" and "differs from the reference" in result.message
    result = fusion.check_recall_at_k(lambda s, k: "all of them", quiet=True)
    assert result.status == "failed" and "expected a float" in result.message
    result = fusion.check_recall_at_k(lambda s, k: 0.5, quiet=True)
    assert result.status == "failed" and "expected" in result.message


def test_recall_accepts_a_tensor_scalar():
    assert fusion.check_recall_at_k(lambda s, k: torch.tensor(fusion.recall_at_k(s, k)), quiet=True).passed
