"""The optimisation checkers of notebook 07: they accept the model answers and other correct versions, name each
typical mistake on every case, and reject shortcuts, in-place edits and hard-coded answers.
The reference, its float64 variant, a stub and each named mistake run for every checker in
tests/test_exercises_rules.py."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from learner_answers import rejects, same_inputs
from torch import nn
from torch.nn import functional as F

from course_utils import optimisation as library
from course_utils.exercises import CHECKERS
from course_utils.exercises import optimisation as ex

INFOS = {info.name: info for info in CHECKERS if info.module == ex.__name__}
NAMES = ["bce_grad", "decay_groups", "warmup_cosine"]


def test_the_registry_lists_the_three_checkers_of_notebook_07():
    assert list(INFOS) == NAMES
    assert all(i.hidden >= 2 and len(i.mistakes) >= 5 and i.forbidden for i in INFOS.values())


# ---------------------------------------------------------------------------------------------
# The model answers agree with autograd and the library
# ---------------------------------------------------------------------------------------------

def test_the_bce_gradient_is_what_autograd_gives():
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(5, 3, generator=g) * 4).requires_grad_(True)
    targets = (torch.rand(5, 3, generator=g) < 0.5).float()
    F.binary_cross_entropy_with_logits(logits, targets).backward()
    torch.testing.assert_close(ex.solution_bce_grad(logits.detach(), targets), logits.grad)


def test_the_model_answers_agree_with_the_library():
    model = ex.DECAY_CASES[0].args[0]
    mine, theirs = ex.solution_decay_groups(model, 0.05), library.decay_groups(model, 0.05)
    assert [[id(p) for p in g["params"]] for g in mine] == [[id(p) for p in g["params"]] for g in theirs]
    for warmup, total, final in [(4, 20, 0.0), (3, 10, 0.1), (0, 6, 0.2), (7, 7, 0.0)]:
        for step in range(total + 3):
            assert ex.solution_lr_at(step, warmup, total, final) == \
                pytest.approx(library.warmup_cosine_factor(step, warmup, total, final), abs=1e-12)


def test_a_case_model_equals_its_copy_until_it_is_changed():
    model = ex.DECAY_CASES[0].args[0]
    twin = copy.deepcopy(model)
    assert twin == model and twin is not model and len({model, twin}) == 2
    twin["proj"].bias.requires_grad_(False)
    assert twin != model
    values = [tuple(p.flatten()[:2].tolist()) for p in model.parameters()]
    assert len(set(values)) == len(values)  # every parameter has its own values: the checker tells them apart


def test_building_the_fixed_model_leaves_torchs_random_numbers_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ex._fixed_model()
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", NAMES)
def test_the_same_mistake_on_only_some_cases_is_not_named(name):
    """A mistake is named only when it gives the learner's results on every case; on the first case alone it is
    reported as a plain difference."""
    info = INFOS[name]
    mistake = info.mistakes[0]
    first = {"bce_grad": ex.BCE_GRAD_CASES[0].args, "decay_groups": ex.DECAY_CASES[0].args,
             "warmup_cosine": (1, 4, 20, 0.0)}[name]

    def answer(*args):
        return (mistake.compute if same_inputs(args, first) else info.solution)(*args)

    result = info.checker(answer, quiet=True)
    assert result.status == "failed" and result.message != mistake.hint


# ---------------------------------------------------------------------------------------------
# bce_grad
# ---------------------------------------------------------------------------------------------

def test_bce_grad_refuses_autograd():
    def with_autograd(logits, targets):
        z = logits.clone().requires_grad_(True)
        F.binary_cross_entropy_with_logits(z, targets).backward()
        return z.grad

    rejects(ex.check_bce_grad, with_autograd, "`Tensor.backward`", "derive the gradient by hand")

    def with_grad(logits, targets):
        z = logits.clone().requires_grad_(True)
        return torch.autograd.grad(F.binary_cross_entropy_with_logits(z, targets), z)[0]

    rejects(ex.check_bce_grad, with_grad, "`torch.autograd.grad`")


@pytest.mark.parametrize("answer, words", [
    (lambda z, y: ((torch.sigmoid(z) - y) / z.numel()).sum(1), ["expected shape (4, 3), got (4,)"]),
    (lambda z, y: (torch.sigmoid(z) - y) / z.numel() + 1e-3, ["differs from the reference by up to 0.001"]),
    (lambda z, y: ((torch.sigmoid(z) - y) / z.numel()).numpy(), ["expected a tensor", "numpy"]),
    (lambda z, y: (y - torch.sigmoid(z)), []),
])
def test_bce_grad_rejects_wrong_answers(answer, words):
    message = rejects(ex.check_bce_grad, answer, *words)
    assert "Traceback" not in message


@pytest.mark.parametrize("answer", [
    lambda z, y: (1 / (1 + torch.exp(-z)) - y) / (z.shape[0] * z.shape[1]),
    lambda z, y: (torch.sigmoid(z.double()) - y.double()) / z.numel(),
    lambda z, y: ((torch.sigmoid(z) - y) / len(z)) / z.shape[1],
])
def test_bce_grad_accepts_valid_alternatives(answer):
    result = ex.check_bce_grad(answer, quiet=True)
    assert result.passed, result.message


def test_bce_grad_rejects_changing_the_logits_in_place():
    def in_place(logits, targets):
        logits.sigmoid_()
        return (logits - targets) / logits.numel()

    rejects(ex.check_bce_grad, in_place, "changed its input `logits` in place")


# ---------------------------------------------------------------------------------------------
# decay_groups
# ---------------------------------------------------------------------------------------------

NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def by_module_type(model, weight_decay):
    """A valid alternative: biases by name, normalisation weights by their module's type."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                (no_decay if name == "bias" or isinstance(module, NORMS) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def three_groups(model, weight_decay):
    """A valid alternative: biases and normalisation weights in groups of their own, as tuples, with extra keys."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return ({"params": tuple(p for n, p in trainable if p.ndim >= 2), "weight_decay": np.float64(weight_decay),
             "lr": 1e-3},
            {"params": [p for n, p in trainable if n.endswith("bias")], "weight_decay": 0},
            {"params": [p for n, p in trainable if p.ndim < 2 and not n.endswith("bias")], "weight_decay": 0.0})


def generator_of_params(model, weight_decay):
    groups = ex.solution_decay_groups(model, weight_decay)
    return [{**group, "params": iter(group["params"])} for group in groups]


@pytest.mark.parametrize("answer", [by_module_type, three_groups, generator_of_params])
def test_decay_groups_accepts_valid_alternatives(answer):
    result = ex.check_decay_groups(answer, quiet=True)
    assert result.passed, result.message


def bert_recipe(model, weight_decay):
    """The recipe of BERT's scripts: names containing "bias" or "LayerNorm.weight" are exempt. The names here
    are not BERT's, so it misses every normalisation layer."""
    no_decay = ["bias", "LayerNorm.weight"]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [{"params": [p for n, p in named if not any(nd in n for nd in no_decay)], "weight_decay": weight_decay},
            {"params": [p for n, p in named if any(nd in n for nd in no_decay)], "weight_decay": 0.0}]


def detached(model, weight_decay):
    return [{**g, "params": [p.detach() for p in g["params"]]} for g in ex.solution_decay_groups(model, weight_decay)]


def freezes(model, weight_decay):
    groups = ex.solution_decay_groups(model, weight_decay)
    next(model.parameters()).requires_grad_(False)
    return groups


def fresh_model(model, weight_decay):
    return ex.solution_decay_groups(nn.Linear(3, 3), weight_decay)


@pytest.mark.parametrize("answer, words", [
    (bert_recipe, ["normalisation layers' weights", "p.ndim"]),
    (lambda m, wd: library.decay_groups(m, wd), ["your code calls `course_utils.optimisation.decay_groups`"]),
    (lambda m, wd: ex.solution_decay_groups(m, wd)[0], ["expected a list of parameter groups", "a dict"]),
    (lambda m, wd: [g["params"] for g in ex.solution_decay_groups(m, wd)], ["group 1 is a list"]),
    (lambda m, wd: [{"params": g["params"]} for g in ex.solution_decay_groups(m, wd)], ["no 'weight_decay'", "0.01"]),
    (lambda m, wd: ex.solution_decay_groups(m, wd)[:1], ["`conv.bias` (Conv2d, shape (4,)) is in no group"]),
    (lambda m, wd: [{**g, "weight_decay": 0.01} for g in ex.solution_decay_groups(m, wd)],
     ["`embed.weight` (Embedding, shape (12, 8)) has weight decay 0.01", "passed in"]),
    (detached, ["not a parameter", "model's parameters themselves"]),
    (fresh_model, ["not one of this model's"]),
    (freezes, ["changed its input `model` in place"]),
])
def test_decay_groups_rejects_wrong_answers(answer, words):
    rejects(ex.check_decay_groups, answer, *words)


def test_decay_groups_names_a_frozen_parameter_and_a_bias_in_the_wrong_group():
    def frozen_head_too(model, weight_decay):
        groups = ex.solution_decay_groups(model, weight_decay)
        groups[0]["params"].append(next(p for p in model.parameters() if not p.requires_grad))
        return groups

    rejects(ex.check_decay_groups, frozen_head_too, "`backbone.weight`", "frozen (requires_grad=False)")

    def bias_decayed(model, weight_decay):
        decay, no_decay = ex.solution_decay_groups(model, weight_decay)
        head_bias = model["head"].bias if "head" in model else no_decay["params"][-1]
        return [{"params": decay["params"] + [head_bias], "weight_decay": weight_decay},
                {"params": [p for p in no_decay["params"] if p is not head_bias], "weight_decay": 0.0}]

    rejects(ex.check_decay_groups, bias_decayed, "`head.bias` (Linear, shape (3,)) has weight decay 0.05",
            "biases and normalisation weights")


def test_decay_groups_rejects_a_hard_coded_answer():
    recorded = ex.solution_decay_groups(*ex.DECAY_CASES[0].args)
    rejects(ex.check_decay_groups, lambda m, wd: recorded, "a hidden case", "not one of this model's")


def test_decay_groups_hidden_models_hold_every_kind_the_mistakes_need():
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        (model, weight_decay), what = ex._hidden_model(generator)
        params = list(model.parameters())
        assert 0.01 <= weight_decay <= 0.3 and str(weight_decay) in what
        assert any(not p.requires_grad for p in params)
        assert any(p.requires_grad and p.ndim >= 2 for p in params)
        assert any(p.requires_grad and isinstance(m, nn.LayerNorm) for m in model.modules() for p in m.parameters())
        assert any(p.requires_grad and n.endswith("bias") and not isinstance(model.get_submodule(n.rpartition(".")[0]),
                                                                           NORMS) for n, p in model.named_parameters())


# ---------------------------------------------------------------------------------------------
# warmup_cosine
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    lambda t, w, n, f: torch.tensor(ex.solution_lr_at(t, w, n, f)),
    lambda t, w, n, f: np.float32(ex.solution_lr_at(t, w, n, f)),
    lambda t, w, n, f: t / w if t < w else f + (1 - f) * math.cos(math.pi / 2 * min(1, (t - w) / (n - w))) ** 2,
])
def test_warmup_cosine_accepts_valid_alternatives(answer):
    result = ex.check_warmup_cosine(answer, quiet=True)
    assert result.passed, result.message


@pytest.mark.parametrize("answer, words", [
    (lambda t, w, n, f: library.warmup_cosine_factor(t, w, n, f),
     ["your code calls `course_utils.optimisation.warmup_cosine_factor`"]),
    (lambda t, w, n, f: 100 * ex.solution_lr_at(t, w, n, f), ["step 1 of a 20-step run with 4 warmup steps",
                                                              "larger than the reference"]),
    (lambda t, w, n, f: t / w if t < w else f, ["step 4 of a 20-step run"]),
    (lambda t, w, n, f: t / w, ["ZeroDivisionError", "line"]),
    (lambda t, w, n, f: "0.5", ["expected a number"]),
])
def test_warmup_cosine_rejects_wrong_answers(answer, words):
    rejects(ex.check_warmup_cosine, answer, *words)


def test_warmup_cosine_rejects_a_hard_coded_answer():
    table = {(t, w, n, f): ex.solution_lr_at(t, w, n, f) for w, n, f in ex.WARMUP_RUNS for t in range(n + 1)}
    rejects(ex.check_warmup_cosine, lambda *args: table.get(args, 0.5), "a hidden case")


def test_warmup_cosine_hidden_steps_are_never_at_zero():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        (step, warmup, total, final), _ = ex._hidden_step(generator)
        assert 1 <= warmup <= total // 3 and 1 <= step <= total and 0.05 <= final <= 0.3
        assert ex.solution_lr_at(step, warmup, total, final) > 0
