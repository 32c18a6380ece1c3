"""Class imbalance and label noise (course_utils.label_problems)."""
from __future__ import annotations

import math

import pytest
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from course_utils import label_problems as lp
from course_utils.data import ImageSet
from course_utils.models import MLP
from course_utils.runsize import set_seed
from course_utils.training import fit


def _balanced(per_class: int = 20, num_classes: int = 4) -> ImageSet:
    """``per_class`` tiny images of each class; pixel (0, 0) holds the row's index."""
    n = per_class * num_classes
    images = torch.zeros(n, 1, 4, 4)
    images[:, 0, 0, 0] = torch.arange(n).float()
    labels = torch.arange(n) % num_classes
    return ImageSet(images, labels, [f"c{k}" for k in range(num_classes)])


# ---------------------------------------------------------------------------------------------
# Imbalance
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio", [1, 10, 100])
def test_make_imbalanced_keeps_a_geometric_share_per_class(ratio):
    data = _balanced(per_class=200)
    smaller = lp.make_imbalanced(data, ratio, seed=0)
    counts = torch.bincount(smaller.labels, minlength=4).tolist()
    assert counts == [max(1, round(200 * ratio ** (-k / 3))) for k in range(4)]
    assert counts[0] / counts[-1] == pytest.approx(ratio, rel=0.05)
    rows = smaller.images[:, 0, 0, 0].long()  # each kept image stays with its own label, in the original order
    assert torch.equal(data.labels[rows], smaller.labels) and bool((rows.diff() > 0).all())
    assert torch.equal(lp.make_imbalanced(data, ratio, seed=0).images, smaller.images)
    if ratio > 1:
        assert not torch.equal(lp.make_imbalanced(data, ratio, seed=1).images, smaller.images)


def test_make_imbalanced_starts_from_the_smallest_class_and_refuses_bad_input():
    data = _balanced(per_class=10)
    uneven = ImageSet(data.images[4:], data.labels[4:], data.classes)  # one example fewer of each class
    assert torch.bincount(lp.make_imbalanced(uneven, 1).labels).tolist() == [9, 9, 9, 9]
    with pytest.raises(ValueError, match="ratio: expected a number >= 1"):
        lp.make_imbalanced(data, 0.5)
    with pytest.raises(ValueError, match="ratio"):
        lp.make_imbalanced(data, float("nan"))
    missing = ImageSet(data.images[data.labels != 2], data.labels[data.labels != 2], data.classes)
    with pytest.raises(ValueError, match=r"classes \[2\] have none"):
        lp.make_imbalanced(missing, 10)
    with pytest.raises(TypeError, match="ImageSet"):
        lp.make_imbalanced(data.images, 10)


def test_class_weights_are_inverse_frequencies_of_mean_one():
    labels = torch.tensor([0] * 8 + [1] * 4 + [2] * 2 + [3] * 1)
    weights = lp.class_weights(labels, 4)
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights.tolist() == pytest.approx([w / (15 / 32) for w in (1 / 8, 1 / 4, 1 / 2, 1)])
    with pytest.raises(ValueError, match=r"classes \[4\] have no example"):
        lp.class_weights(labels, 5)
    with pytest.raises(ValueError, match="class indices 0 to 2"):
        lp.class_weights(labels, 3)
    with pytest.raises(TypeError, match="int64 tensor"):
        lp.class_weights(labels.float(), 4)
    with pytest.raises(ValueError, match="num_classes"):
        lp.class_weights(labels, 1)


def test_the_balanced_sampler_draws_every_class_about_equally_and_resample_makes_a_set():
    labels = torch.tensor([0] * 900 + [1] * 90 + [2] * 10)
    images = torch.arange(1000).float().view(-1, 1, 1, 1)
    data = ImageSet(images, labels, ["a", "b", "c"])
    sampler = lp.balanced_sampler(labels, seed=0, num_samples=3000)
    drawn = lp.resample(data, sampler)
    counts = torch.bincount(drawn.labels).float() / 3000
    assert len(drawn) == 3000 and torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.04)
    assert torch.equal(labels[drawn.images.flatten().long()], drawn.labels)  # images keep their labels
    assert torch.equal(lp.resample(data, lp.balanced_sampler(labels, seed=0, num_samples=3000)).labels, drawn.labels)
    assert len(lp.resample(data, lp.balanced_sampler(labels))) == 1000
    with pytest.raises(TypeError, match="Sampler"):
        lp.resample(data, [0, 1])
    with pytest.raises(ValueError, match="num_samples"):
        lp.balanced_sampler(labels, num_samples=0)
    with pytest.raises(ValueError, match="expected at least one index in 0..1"):
        lp.resample(ImageSet(images[:2], labels[:2], ["a", "b", "c"]), lp.balanced_sampler(labels))


def test_adjust_logits_subtracts_tau_log_priors_and_favours_rare_classes():
    logits = torch.tensor([[2.0, 1.0], [0.5, 0.0]])
    priors = torch.tensor([0.9, 0.1])
    adjusted = lp.adjust_logits(logits, priors, tau=1.0)
    assert torch.allclose(adjusted, logits - priors.log())
    assert adjusted.argmax(1).tolist() == [1, 1] and logits.argmax(1).tolist() == [0, 0]
    assert torch.allclose(lp.adjust_logits(logits, torch.tensor([90.0, 10.0]), 0.5),
                          logits - 0.5 * priors.log())  # counts work as well: only ratios matter
    assert torch.equal(lp.adjust_logits(logits, priors, tau=0), logits)
    with pytest.raises(ValueError, match=r"expected \(N, K\) and \(K,\)"):
        lp.adjust_logits(logits, torch.tensor([0.5, 0.3, 0.2]))
    with pytest.raises(ValueError, match="positive class frequencies"):
        lp.adjust_logits(logits, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="tau"):
        lp.adjust_logits(logits, priors, tau=-1)
    with pytest.raises(TypeError, match="priors: expected a floating-point tensor"):
        lp.adjust_logits(logits, torch.tensor([9, 1]))


def test_imbalance_table_matches_sklearn_and_prints_recall_per_class(capsys):
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    majority = torch.zeros(8, dtype=torch.int64)
    better = torch.tensor([0, 0, 0, 1, 1, 1, 2, 0])
    balanced = lp.imbalance_table({"plain": majority, "weighted": better}, labels, ["zero", "one", "two"])
    assert balanced["plain"] == pytest.approx(1 / 3)
    assert balanced["weighted"] == pytest.approx(balanced_accuracy_score(labels.numpy(), better.numpy()))
    out = capsys.readouterr().out.splitlines()
    assert "balanced" in out[0] and "zero" in out[0]
    assert out[1].split()[:3] == ["plain", "0.500", "0.333"] and out[1].split()[-3:] == ["1.00", "0.00", "0.00"]
    assert out[2].split()[-3:] == ["0.75", "1.00", "0.50"]
    with pytest.raises(ValueError, match="expected 8 predictions"):
        lp.imbalance_table({"short": majority[:3]}, labels, ["zero", "one", "two"])
    with pytest.raises(ValueError, match="non-empty dict"):
        lp.imbalance_table({}, labels, ["zero", "one", "two"])
    with pytest.raises(ValueError, match="class indices 0 to 2"):
        lp.imbalance_table({"bad": majority + 3}, labels, ["zero", "one", "two"])


# ---------------------------------------------------------------------------------------------
# Label noise
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 1.0])
def test_symmetric_noise_flips_the_asked_share_always_to_another_class(rate, capsys):
    labels = torch.arange(1000) % 10
    noisy, flipped = lp.add_symmetric_noise(labels, rate, 10, seed=0)
    assert int(flipped.sum()) == round(rate * 1000)
    assert bool((noisy[flipped] != labels[flipped]).all()) and torch.equal(noisy[~flipped], labels[~flipped])
    assert torch.equal(labels, torch.arange(1000) % 10)  # the input is untouched
    assert f"({rate:.1%})" in capsys.readouterr().out
    if rate == 1.0:  # every wrong class is drawn: about 1/9 of the flips go to each
        shift = (noisy - labels) % 10
        assert set(shift.tolist()) == set(range(1, 10))


def test_symmetric_noise_is_seeded_and_checks_its_input():
    labels = torch.arange(200) % 4
    first = lp.add_symmetric_noise(labels, 0.3, 4, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first, lp.add_symmetric_noise(labels, 0.3, 4, seed=3)))
    with pytest.raises(ValueError, match=r"rate: expected a number in \[0, 1\]"):
        lp.add_symmetric_noise(labels, 1.5, 4)
    with pytest.raises(ValueError, match="class indices 0 to 2"):
        lp.add_symmetric_noise(labels, 0.2, 3)
    with pytest.raises(TypeError, match="int64 tensor"):
        lp.add_symmetric_noise(labels.tolist(), 0.2, 4)


def test_generalised_cross_entropy_by_hand_and_its_limits():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    p = torch.softmax(logits, 1)[[0, 1], [0, 2]]
    assert lp.generalised_cross_entropy(0.7)(logits, labels).item() == pytest.approx(((1 - p ** 0.7) / 0.7).mean())
    assert lp.generalised_cross_entropy(1.0)(logits, labels).item() == pytest.approx((1 - p).mean())  # MAE
    near_ce = lp.generalised_cross_entropy(1e-4)(logits, labels).item()
    assert near_ce == pytest.approx(nn.functional.cross_entropy(logits, labels).item(), rel=1e-3)
    for q in (0, 1.5, True):
        with pytest.raises(ValueError, match=r"q: expected a number in \(0, 1\]"):
            lp.generalised_cross_entropy(q)
    with pytest.raises(ValueError, match="one per row of logits"):
        lp.generalised_cross_entropy()(logits, labels[:1])


def test_small_loss_mask_keeps_the_smallest_and_the_loss_ignores_the_rest():
    losses = torch.tensor([0.5, 3.0, 0.1, 2.0, 0.2])
    assert lp.small_loss_mask(losses, 0.6).tolist() == [True, False, True, False, True]
    assert lp.small_loss_mask(losses, 0.01).tolist() == [False, False, True, False, False]  # at least one
    assert bool(lp.small_loss_mask(losses, 1.0).all())
    logits = torch.tensor([[4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1])  # the last two are "noisy": large losses
    kept = lp.small_loss_cross_entropy(0.5)(logits, labels)
    assert kept.item() == pytest.approx(nn.functional.cross_entropy(logits[:2], labels[:2]).item())
    with pytest.raises(ValueError, match="keep"):
        lp.small_loss_mask(losses, 0)
    with pytest.raises(ValueError, match="losses: expected a non-empty floating-point tensor"):
        lp.small_loss_mask(torch.tensor([1, 2]), 0.5)
    with pytest.raises(ValueError, match="keep"):
        lp.small_loss_cross_entropy(1.2)


def test_small_loss_ramp_lowers_the_kept_share_over_the_training_steps_only():
    logits = torch.tensor([[4.0, 0.0], [3.0, 0.0], [0.0, 4.0], [4.0, 0.0]])
    labels = torch.tensor([0, 0, 0, 1])
    per_example = nn.functional.cross_entropy(logits, labels, reduction="none")
    smallest = per_example.sort().values
    loss_fn = lp.small_loss_cross_entropy(0.5, ramp_steps=2)
    with torch.no_grad():  # validation: the share of the current step, the ramp does not move
        assert loss_fn(logits, labels).item() == pytest.approx(per_example.mean().item())
    shares = [loss_fn(logits, labels).item() for _ in range(4)]
    expected = [smallest[:4].mean(), smallest[:3].mean(), smallest[:2].mean(), smallest[:2].mean()]
    assert shares == pytest.approx([e.item() for e in expected])
    with pytest.raises(ValueError, match="ramp_steps: expected an int >= 0"):
        lp.small_loss_cross_entropy(0.5, ramp_steps=-1)


def test_both_losses_train_with_fit():
    set_seed(0)
    data = _balanced(per_class=8)
    data = ImageSet(torch.rand(32, 1, 4, 4), data.labels, data.classes)
    for loss_fn in (lp.generalised_cross_entropy(0.7), lp.small_loss_cross_entropy(0.7)):
        model = MLP(in_features=16, hidden=(8,), num_classes=4)
        history = fit(model, data, data, epochs=2, loss_fn=loss_fn, progress=False)
        assert len(history.rows) == 2 and math.isfinite(history["train_loss"][-1])


def test_suspicious_labels_ranks_the_wrongly_labelled_first():
    images = torch.zeros(6, 1, 1, 2)
    images[:3, 0, 0, 0] = 1.0
    images[3:, 0, 0, 1] = 1.0
    true = torch.tensor([0, 0, 0, 1, 1, 1])
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2) * 5)
        model[1].bias.zero_()
    noisy = true.clone()
    noisy[[1, 4]] = torch.tensor([1, 0])
    model.train()
    rows, losses = lp.suspicious_labels(model, ImageSet(images, noisy, ["a", "b"]), 2)
    assert sorted(rows.tolist()) == [1, 4] and bool((losses > 4).all()) and model.training
    with pytest.raises(ValueError, match="n: expected an int from 1 to 6"):
        lp.suspicious_labels(model, ImageSet(images, noisy, ["a", "b"]), 7)
