"""The checkers of notebook 03: they accept the reference, name each typical mistake, and wait for a stub."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from course_utils.exercises import vit
from course_utils.exercises.vit import COUNT_MISTAKES, PATCH_MISTAKES


def stub(*args):
    raise NotImplementedError("write this function")


def test_reference_patchify_matches_unfold():
    x = torch.rand(2, 3, 12, 12)
    assert torch.equal(vit.patchify(x, 4), F.unfold(x, 4, stride=4).transpose(1, 2))


CHECKERS = [vit.check_patchify, vit.check_add_cls_and_positions, vit.check_vit_parameter_count]


@pytest.mark.parametrize("checker", CHECKERS)
def test_stub_is_not_attempted(checker):
    assert checker(stub, quiet=True).status == "not attempted"


def test_patchify_accepts_reference_and_names_mistakes():
    assert vit.check_patchify(vit.patchify, quiet=True).passed
    for mistake, hint in PATCH_MISTAKES:
        result = vit.check_patchify(mistake, quiet=True)
        assert result.status == "failed" and result.message == hint


def test_patchify_other_wrong_answers():
    result = vit.check_patchify(lambda x, p: x.flatten(1), quiet=True)
    assert result.status == "failed" and "expected shape" in result.message
    result = vit.check_patchify(lambda x, p: vit.patchify(x, p) * 2, quiet=True)
    assert result.status == "failed" and "differs from the reference" in result.message


def test_add_cls_and_positions():
    check = vit.check_add_cls_and_positions
    assert check(vit.add_cls_and_positions, quiet=True).passed
    cases = {
        "patch tokens alone": lambda t, c, p: t,
        "in FRONT": lambda t, c, p: torch.cat([t, c.expand(len(t), -1, -1)], 1) + p,
        "position embeddings are missing": lambda t, c, p: torch.cat([c.expand(len(t), -1, -1), t], 1),
        "CLS token gets a position embedding too":
            lambda t, c, p: torch.cat([c.expand(len(t), -1, -1), t + p[:, 1:]], 1),
        "AFTER putting the CLS token": lambda t, c, p: torch.cat([c.expand(len(t), -1, -1), t + p], 1),
        "expand(B, -1, -1)": lambda t, c, p: torch.cat([c, t], 1) + p,
    }
    for words, answer in cases.items():
        result = check(answer, quiet=True)
        assert result.status == "failed" and words in result.message, (words, result.message)


def test_vit_parameter_count():
    check = vit.check_vit_parameter_count
    assert check(vit.vit_parameter_count, quiet=True).passed
    for mistake, hint in COUNT_MISTAKES:
        result = check(mistake, quiet=True)
        assert result.status == "failed" and result.message == hint
    result = check(lambda *a: vit.vit_parameter_count(*a) + 1, quiet=True)
    assert result.status == "failed" and "off by +1" in result.message
    result = check(lambda *a: float(vit.vit_parameter_count(*a)), quiet=True)
    assert result.status == "failed" and "Python int" in result.message
