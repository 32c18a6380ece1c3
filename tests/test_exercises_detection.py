"""The detection checkers of notebook 09 (IoU, NMS): the model answers agree with torchvision, valid alternatives
pass, a stub is "not attempted", each typical mistake gets its hint."""
from __future__ import annotations

import pytest
import torch
from learner_answers import rejects, stub
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


@pytest.mark.parametrize("name", NAMES)
def test_checker_accepts_the_model_answer_and_reports_a_stub(name, capsys):
    info = INFOS[name]
    assert info.checker(info.solution, quiet=True).passed
    assert info.checker(stub).status == "not attempted"
    assert capsys.readouterr().out.startswith(f"TODO {name}:")


@pytest.mark.parametrize("name, mistake", [(n, m) for n in NAMES for m in INFOS[n].mistakes],
                         ids=lambda v: v if isinstance(v, str) else v.name)
def test_each_named_mistake_gets_its_own_hint(name, mistake):
    result = INFOS[name].checker(mistake.compute, quiet=True)
    assert result.status == "failed" and result.message == mistake.hint


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


def _double(value):
    if isinstance(value, torch.Tensor):
        return value.double() if value.is_floating_point() else value
    return tuple(_double(v) for v in value)


@pytest.mark.parametrize("name", NAMES)
def test_a_float64_result_passes(name):
    info = INFOS[name]
    result = info.checker(lambda *args: _double(info.solution(*args)), quiet=True)
    assert result.passed, result.message
