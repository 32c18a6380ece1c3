"""The detection checkers of notebook 09 (IoU, NMS): the model answers agree with torchvision, valid alternatives
pass, a stub is "not attempted", each typical mistake gets its hint.
The reference, a stub and every named mistake are run for every checker in tests/test_exercises_rules.py."""
from __future__ import annotations

import pytest
import torch
from learner_answers import rejects
from torchvision import ops

from course_utils.exercises import CHECKERS
from course_utils.exercises import detection as ex

INFOS = {info.name: info for info in CHECKERS if info.module == ex.__name__}
NAMES = ["box_iou", "nms"]


def test_the_registry_lists_the_two_detection_checkers():
    assert list(INFOS) == NAMES
    assert all(i.hidden >= 2 and len(i.mistakes) >= 4 and i.forbidden for i in INFOS.values())


@pytest.mark.parametrize("seed", range(5))
def test_the_model_answers_agree_with_torchvision(seed):
    generator = torch.Generator().manual_seed(seed)
    a, b = ex._boxes(generator, 6), ex._boxes(generator, 4)
    torch.testing.assert_close(ex.solution_box_iou(a, b), ops.box_iou(a, b))
    for case in [*ex.NMS_CASES, ex._cluster_case(seed, 4, 5, 0.4)]:
        boxes, scores, threshold = case.args
        assert torch.equal(ex.solution_nms(boxes, scores, threshold), ops.nms(boxes, scores, threshold))


def test_the_chain_case_separates_the_suppressed_boxes_mistake():
    boxes, scores, threshold = ex.NMS_CASES[0].args
    assert ex.solution_nms(boxes, scores, threshold).tolist() == [0, 2, 3]
    assert ex._nms_suppressed_count(boxes, scores, threshold).tolist() == [0, 3]


@pytest.mark.parametrize("name, answer", [
    ("box_iou", lambda a, b: ex.solution_box_iou(a.double(), b.double())),
    ("nms", lambda b, s, t: ex.solution_nms(b, s, t).tolist()),
    ("nms", lambda b, s, t: ex.solution_nms(b.double(), s.double(), t).int()),
])
def test_valid_alternatives_pass(name, answer):
    result = INFOS[name].checker(answer, quiet=True)
    assert result.passed, result.message


@pytest.mark.parametrize("name, answer, words", [
    ("box_iou", lambda a, b: ops.box_iou(a, b), ["your code calls", "box_iou"]),
    ("box_iou", lambda a, b: ex.solution_box_iou(a, b).T, ["expected shape"]),
    ("nms", lambda b, s, t: ops.nms(b, s, t), ["your code calls", "nms"]),
    ("nms", lambda b, s, t: ex.solution_nms(b, s, t).float(), ["int64"]),
    ("nms", lambda b, s, t: torch.arange(len(s)), ["you keep 4 boxes, indices [0, 1, 2, 3]"]),
])
def test_wrong_answers_fail(name, answer, words):
    assert "Traceback" not in rejects(INFOS[name].checker, answer, *words)
