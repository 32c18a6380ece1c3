"""Quantisation, pruning, distillation, size and latency, ensembles (course_utils.compression)."""
from __future__ import annotations

import time
import warnings

import pytest
import torch
from torch import nn

from course_utils import compression as cp
from course_utils.models import CNN, MLP
from course_utils.runsize import set_seed
from course_utils.training import fit_tensors
from course_utils.vit import VisionTransformer


def _plain_mlp() -> nn.Sequential:
    """The course MLP's layers (784 -> 512 -> 256 -> 10) as a plain Sequential."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                         nn.Linear(256, 10))


# ---------------------------------------------------------------------------------------------
# Quantisation and size
# ---------------------------------------------------------------------------------------------

def test_int8_quantisation_shrinks_the_linear_layers_quietly_and_keeps_the_outputs():
    set_seed(0)
    model = _plain_mlp()
    images = torch.rand(16, 1, 28, 28)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small = cp.quantize_dynamic_int8(model)
        outputs = small(images)
    assert not [str(w.message) for w in caught]  # the deprecation notices are silenced, nothing else raised
    assert cp.size_on_disk(small) / cp.size_on_disk(model) < 0.3
    assert torch.allclose(outputs, model(images), atol=0.02)
    assert isinstance(model[1], nn.Linear) and not small.training  # the original is untouched
    assert not any(type(m) is nn.Linear for m in small.modules())


def test_int8_quantisation_of_the_cnn_converts_its_head_only():
    set_seed(0)
    model = CNN()
    model.eval()
    small = cp.quantize_dynamic_int8(model)
    images = torch.rand(4, 1, 28, 28)
    assert torch.allclose(small(images), model(images), atol=0.05)
    assert isinstance(small[0][0], nn.Conv2d) and type(small[5]) is not nn.Linear
    assert 0.8 < cp.size_on_disk(small) / cp.size_on_disk(model) < 1.0  # mostly convolutions: little saved
    with pytest.raises(ValueError, match="has none"):
        cp.quantize_dynamic_int8(nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(TypeError, match="nn.Module"):
        cp.quantize_dynamic_int8("model")


def test_int8_quantisation_of_the_course_mlp():
    model = MLP()
    small = cp.quantize_dynamic_int8(model)
    images = torch.rand(4, 1, 28, 28)
    assert torch.allclose(small(images), model.eval()(images), atol=0.02)


def test_int8_quantisation_of_the_course_vit():
    """Its attention projections become int8 layers too; the blocks still take float32 tokens (notebook 08)."""
    set_seed(0)
    model = VisionTransformer(patch_size=7, embed_dim=32, depth=2, num_heads=4).eval()
    small = cp.quantize_dynamic_int8(model)
    images = torch.rand(4, 1, 28, 28)
    assert type(small.blocks[0].attn.q_proj) is not nn.Linear
    assert torch.allclose(small(images), model(images), atol=0.05)
    with pytest.raises(TypeError, match="expected torch.float32"):
        small(images.double())


def test_size_on_disk_counts_the_saved_state_dict():
    model = nn.Linear(100, 10)
    size = cp.size_on_disk(model)
    assert 1100 * 4 < size < 1100 * 4 + 2000  # 1,100 float32 numbers and the file's overhead
    assert cp.size_on_disk(nn.Linear(1000, 10)) - size == pytest.approx(9000 * 4, rel=0.01)


# ---------------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------------

class _Counting(nn.Module):
    """Counts its calls and records the mode and grad state it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.calls, self.modes, self.grad = 0, set(), set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.modes.add(self.training)
        self.grad.add(torch.is_grad_enabled())
        return self.linear(x)


class _Sleeping(nn.Module):
    """Takes 10 ms a call, whatever the batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.01)
        return x


def test_latency_per_image_warms_up_runs_in_eval_mode_and_divides_by_the_batch():
    model = _Counting()
    model.train()
    seconds = cp.latency_per_image(model, torch.rand(8, 4), repeats=5, warmup=2)
    assert model.calls == 7 and model.modes == {False} and model.grad == {False} and model.training
    assert 0 < seconds < 0.01
    assert 0.001 <= cp.latency_per_image(_Sleeping(), torch.rand(10, 4), repeats=3, warmup=0) < 0.005
    with pytest.raises(ValueError, match="repeats: expected an int of at least 1"):
        cp.latency_per_image(model, torch.rand(8, 4), repeats=0)
    with pytest.raises(ValueError, match="images: expected a tensor with a batch of at least one"):
        cp.latency_per_image(model, torch.rand(0, 4))


# ---------------------------------------------------------------------------------------------
# Pruning
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("amount", [0.0, 0.5, 0.9])
def test_magnitude_pruning_zeroes_the_smallest_weights_globally_and_permanently(amount):
    set_seed(0)
    model = CNN(channels=(4, 8, 8))
    pruned = cp.magnitude_prune(model, amount)
    assert cp.sparsity(pruned) == pytest.approx(amount, abs=1e-3) and cp.sparsity(model) == 0
    assert set(pruned.state_dict()) == set(model.state_dict())  # no masks or weight_orig left
    weights = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, cp.PRUNABLE)]).abs()
    kept = torch.cat([m.weight.flatten() for m in pruned.modules() if isinstance(m, cp.PRUNABLE)]).abs()
    if amount > 0:
        assert weights[kept == 0].max() <= weights[kept != 0].min()  # global: smallest magnitudes overall
    assert torch.equal(kept[kept != 0], weights[kept != 0])  # the rest is untouched
    assert cp.size_on_disk(pruned) == pytest.approx(cp.size_on_disk(model), rel=0.01)  # zeros weigh as much


def test_pruning_and_sparsity_check_their_input():
    with pytest.raises(ValueError, match=r"sparsity: expected a number in \[0, 1\]"):
        cp.magnitude_prune(nn.Linear(2, 2), 1.5)
    with pytest.raises(ValueError, match="has none"):
        cp.magnitude_prune(nn.ReLU(), 0.5)
    with pytest.raises(ValueError, match="has none"):
        cp.sparsity(nn.ReLU())


# ---------------------------------------------------------------------------------------------
# Distillation
# ---------------------------------------------------------------------------------------------

def test_distillation_loss_by_hand():
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    teacher = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 1])
    T, alpha = 2.0, 0.3
    p_t = torch.softmax(teacher / T, 1)
    p_s = torch.softmax(student / T, 1)
    kl = (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    ce = -torch.log_softmax(student, 1)[[0, 1], [0, 1]].mean()
    expected = alpha * T ** 2 * kl + (1 - alpha) * ce
    assert cp.distillation_loss(student, teacher, labels, T, alpha).item() == pytest.approx(expected.item(), rel=1e-5)
    assert cp.distillation_loss(student, teacher, labels, T, 0.0).item() == pytest.approx(ce.item(), rel=1e-5)
    assert cp.distillation_loss(teacher, teacher, labels, T, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    s = student.clone().requires_grad_(True)
    t = teacher.clone().requires_grad_(True)
    cp.distillation_loss(s, t, labels).backward()
    assert s.grad is not None and t.grad is None  # the teacher is a fixed target


def test_distillation_checks_its_input_and_trains_with_fit_tensors():
    student, teacher, labels = torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="T: expected a temperature above 0"):
        cp.distillation_loss(student, teacher, labels, T=0)
    with pytest.raises(ValueError, match=r"alpha: expected a number in \[0, 1\]"):
        cp.distillation_step(alpha=1.5)
    with pytest.raises(ValueError, match=r"teacher_logits: expected the student's shape \(2, 3\)"):
        cp.distillation_loss(student, torch.zeros(2, 4), labels)
    with pytest.raises(ValueError, match=r"labels: expected int64 classes \(2,\)"):
        cp.distillation_loss(student, teacher, labels[:1])
    set_seed(0)
    images, labels = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    teacher_logits = torch.randn(16, 10)
    model = MLP(hidden=(16,))
    history = fit_tensors(model, (images, labels, teacher_logits), cp.distillation_step(4.0, 0.7), epochs=2,
                          batch_size=8, progress=False)
    assert len(history.rows) == 2 and 0 <= history["train_acc"][-1] <= 1


def test_distillation_loss_on_unlabelled_rows_uses_the_teacher_alone():
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 2.0, 1.0]], requires_grad=True)
    teacher = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    labels = torch.tensor([0, cp.UNLABELLED, 2])
    T, alpha = 2.0, 0.4
    soft = cp.distillation_loss(student, teacher, labels, T, 1.0)              # every row, labelled or not
    full = cp.distillation_loss(student, teacher, torch.tensor([0, 1, 2]), T, 1.0)
    assert soft.item() == pytest.approx(full.item(), rel=1e-6)
    ce = nn.functional.cross_entropy(student[[0, 2]], torch.tensor([0, 2]))    # the labelled rows only
    mixed = cp.distillation_loss(student, teacher, labels, T, alpha)
    assert mixed.item() == pytest.approx((alpha * soft + (1 - alpha) * ce).item(), rel=1e-5)
    # alpha 0 (the labels alone): an unlabelled row gets no gradient
    cp.distillation_loss(student, teacher, labels, T, 0.0).backward()
    assert student.grad[1].abs().max() == 0 and student.grad[0].abs().max() > 0
    # a batch with no label at all: the label term is 0, and backward still works
    none = cp.distillation_loss(student, teacher, torch.full((3,), cp.UNLABELLED), T, 0.5)
    assert none.item() == pytest.approx(0.5 * soft.item(), rel=1e-5)
    none.backward()
    with pytest.raises(ValueError, match=r"labels: expected classes in \[0, 3\) or UNLABELLED \(-100\), got \[-1, 3\]"):
        cp.distillation_loss(student, teacher, torch.tensor([0, -1, 3]))


def test_distillation_step_counts_unlabelled_rows_against_the_teachers_top_class():
    set_seed(0)
    model = MLP(hidden=(16,)).eval()
    images, teacher = torch.rand(6, 1, 28, 28), torch.randn(6, 10)
    labels = torch.tensor([0, 1, cp.UNLABELLED, 3, cp.UNLABELLED, 5])
    _, right = cp.distillation_step(2.0, 0.5)(model, images, labels, teacher)
    predicted = model(images).argmax(1)
    targets = torch.tensor([0, 1, int(teacher[2].argmax()), 3, int(teacher[4].argmax()), 5])
    assert int(right) == int((predicted == targets).sum())


def test_distillation_step_augments_the_students_batch_and_keeps_the_teachers_logits():
    set_seed(0)
    model = MLP(hidden=(16,)).eval()
    images, labels, teacher = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]), torch.randn(4, 10)
    flipped = cp.distillation_step(2.0, 0.5, augment=lambda x: x.flip(-1))(model, images, labels, teacher)
    expected = cp.distillation_loss(model(images.flip(-1)), teacher, labels, 2.0, 0.5)
    assert torch.allclose(flipped[0], expected)
    assert int(flipped[1]) == int((model(images.flip(-1)).argmax(1) == labels).sum())
    plain = cp.distillation_step(2.0, 0.0)(model, images, labels, teacher)[0]    # alpha 0: the labels alone
    assert torch.allclose(plain, nn.functional.cross_entropy(model(images), labels))
    with pytest.raises(ValueError, match="augment: expected a function"):
        cp.distillation_step(augment="shift")


# ---------------------------------------------------------------------------------------------
# Ensembles
# ---------------------------------------------------------------------------------------------

def test_the_ensemble_averages_probabilities_and_costs_the_sum_of_its_members():
    set_seed(0)
    members = [MLP(hidden=(32,)), MLP(hidden=(64,))]
    images = torch.rand(8, 1, 28, 28)
    ensemble = cp.Ensemble(members).eval()
    expected = (torch.softmax(members[0](images), 1) + torch.softmax(members[1](images), 1)) / 2
    assert torch.allclose(ensemble(images).exp(), expected, atol=1e-6)
    cost = cp.ensemble_cost(members, images, repeats=3)
    assert cost["members"] == 2
    assert cost["parameters"] == sum(p.numel() for m in members for p in m.parameters())
    assert cost["seconds_per_image"] > 0 and cost["member_seconds_per_image"] > 0
    assert cp.ensemble_cost(ensemble.members, images, repeats=1)["members"] == 2   # another ensemble's ModuleList
    with pytest.raises(ValueError, match="non-empty list of nn.Module"):
        cp.Ensemble([])
    with pytest.raises(ValueError, match="non-empty list of nn.Module"):
        cp.Ensemble(members[0])                                                # one model, not a list
    with pytest.raises(ValueError, match="non-empty list of nn.Module"):
        cp.ensemble_cost([members[0], "model"], images)
