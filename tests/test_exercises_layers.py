"""The layer checkers of notebook 09 (max-pool, dropout forward and backward, LayerNorm): the model answers agree
with torch, valid alternatives pass, a stub is "not attempted", each typical mistake gets its hint.
The reference, a stub and every named mistake are run for every checker in tests/test_exercises_rules.py."""
from __future__ import annotations

import pytest
import torch
from learner_answers import rejects
from torch.nn import functional as F

from course_utils.exercises import CHECKERS
from course_utils.exercises import layers as ex

INFOS = {info.name: info for info in CHECKERS if info.module == ex.__name__}
NAMES = ["max_pool", "dropout_forward", "dropout_backward", "layer_norm"]


def test_the_registry_lists_the_four_layer_checkers():
    assert list(INFOS) == NAMES
    assert all(i.hidden >= 2 and len(i.mistakes) >= 4 and i.forbidden for i in INFOS.values())


def test_the_model_answers_agree_with_torch():
    x = torch.randn(2, 3, 7, 9)
    torch.testing.assert_close(ex.solution_max_pool(x, 2), F.max_pool2d(x, 2))
    torch.testing.assert_close(ex.solution_max_pool(x, 3), F.max_pool2d(x, 3))
    w, b = torch.randn(9), torch.randn(9)
    torch.testing.assert_close(ex.solution_layer_norm(x, w, b, 1e-5), F.layer_norm(x, (9,), w, b, 1e-5))
    u = torch.rand(2, 3, 7, 9)
    leaf = x.clone().requires_grad_(True)
    out = ex.solution_dropout_forward(leaf, u, 0.3, True)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    torch.testing.assert_close(ex.solution_dropout_backward(grad_out, u, 0.3), leaf.grad)
    kept = (u >= 0.3).float().mean()
    assert abs(float(kept) - 0.7) < 0.1  # keeps about 1 - p of the entries
    assert ex.solution_dropout_forward(x, u, 0.3, False) is x


@pytest.mark.parametrize("name, answer", [
    ("max_pool", lambda x, k: x.unfold(2, k, k).unfold(3, k, k).amax(dim=(-2, -1))),
    ("max_pool", lambda x, k: ex.solution_max_pool(x.double(), k)),
    ("dropout_forward", lambda x, u, p, t: torch.where(u >= p, x / (1 - p), torch.zeros_like(x)) if t else x.clone()),
    ("dropout_backward", lambda g, u, p: g * (u >= p).double() / (1 - p)),
    ("layer_norm", lambda x, w, b, e: (x - x.mean(-1, keepdim=True)) * torch.rsqrt(
        x.var(-1, unbiased=False, keepdim=True) + e) * w + b),
])
def test_valid_alternatives_pass(name, answer):
    result = INFOS[name].checker(answer, quiet=True)
    assert result.passed, result.message


@pytest.mark.parametrize("name, answer, words", [
    ("max_pool", lambda x, k: F.max_pool2d(x, k), ["your code calls", "max_pool2d"]),
    ("max_pool", lambda x, k: ex.solution_max_pool(x, k)[:, :, :-1], ["expected shape"]),
    ("dropout_forward", lambda x, u, p, t: F.dropout(x, p, t), ["your code calls", "dropout"]),
    ("dropout_forward", lambda x, u, p, t: (x * (u >= p) / (1 - p)).detach() if t else x, ["autograd"]),
    ("dropout_backward", lambda g, u, p: g * (u > 0.5), []),
    ("layer_norm", lambda x, w, b, e: F.layer_norm(x, x.shape[-1:], w, b, e), ["your code calls", "layer_norm"]),
    ("layer_norm", lambda x, w, b, e: ex.solution_layer_norm(x, w, b, e) + 1e-3, ["differs from the reference"]),
])
def test_wrong_answers_fail(name, answer, words):
    assert "Traceback" not in rejects(INFOS[name].checker, answer, *words)
