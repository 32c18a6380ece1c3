"""Corruptions, FGSM, out-of-distribution scores and explanation maps (course_utils.robustness)."""
from __future__ import annotations

import functools

import matplotlib.pyplot as plt
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from sklearn.metrics import roc_auc_score
from torch import nn
from torchvision.transforms import v2

from course_utils import robustness as rb
from course_utils.data import ImageSet
from course_utils.models import CNN, MLP
from course_utils.runsize import set_seed
from course_utils.training import evaluate, fit_tensors
from course_utils.vit import VisionTransformer


def _linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Sequential:
    """Flatten -> Linear with the given weights ``(K, D)``."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0]))
    with torch.no_grad():
        model[1].weight.copy_(weight)
        model[1].bias.copy_(torch.zeros(weight.shape[0]) if bias is None else bias)
    return model


def _two_blobs(n: int = 40) -> ImageSet:
    """Class 0: the left half of a 2x2 image lit; class 1: the right half; some grey on top."""
    labels = torch.arange(n) % 2
    images = torch.full((n, 1, 2, 2), 0.2)
    images[labels == 0, 0, :, 0] = 0.8
    images[labels == 1, 0, :, 1] = 0.8
    return ImageSet(images, labels, ["left", "right"])


LEFT_RIGHT = torch.tensor([[1.0, -1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, 1.0]])  # (K=2, D=4) on the 2x2 images


# ---------------------------------------------------------------------------------------------
# Corruptions
# ---------------------------------------------------------------------------------------------

def test_occlude_blacks_out_one_square_per_image_at_seeded_places():
    images = torch.ones(50, 1, 28, 28)
    out = rb.occlude(images, 8, seed=0)
    assert out.shape == images.shape and bool((images == 1).all())  # the input is untouched
    zeros = out == 0
    assert zeros.sum(dim=(1, 2, 3)).tolist() == [64] * 50
    rows, cols = zeros[:, 0].any(dim=2), zeros[:, 0].any(dim=1)  # each zero region is one 8x8 square
    assert rows.sum(1).tolist() == [8] * 50 and cols.sum(1).tolist() == [8] * 50
    assert len({tuple(r.nonzero().flatten().tolist()) for r in rows}) > 5  # places differ between images
    assert torch.equal(rb.occlude(images, 8, seed=0), out) and not torch.equal(rb.occlude(images, 8, seed=1), out)
    assert torch.equal(rb.occlude(images, 0), images) and bool((rb.occlude(images, 28) == 0).all())
    for size in (-1, 29, 2.5, True):
        with pytest.raises(ValueError, match="size: expected a whole number of pixels from 0 to 28"):
            rb.occlude(images, size)


def test_adjust_lighting_scales_brightness_and_blends_contrast_to_the_mean():
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(rb.adjust_lighting(images), images)
    assert torch.allclose(rb.adjust_lighting(images, brightness=0.5), images * 0.5)
    assert torch.allclose(rb.adjust_lighting(images, brightness=3.0), (images * 3).clamp(0, 1))
    flat = rb.adjust_lighting(images, contrast=0.0)
    assert torch.allclose(flat, images.mean(dim=(1, 2, 3), keepdim=True).expand_as(images), atol=1e-5)
    half = rb.adjust_lighting(images, contrast=0.5)
    assert torch.allclose(half, 0.5 * images + 0.5 * images.mean(dim=(1, 2, 3), keepdim=True), atol=1e-5)
    with pytest.raises(ValueError, match="brightness: expected a number >= 0"):
        rb.adjust_lighting(images, brightness=-0.1)
    with pytest.raises(ValueError, match="contrast"):
        rb.adjust_lighting(images, contrast="low")
    with pytest.raises(ValueError, match=r"expected a float tensor of shape \(N, C, H, W\)"):
        rb.adjust_lighting(images[0], 0.5)


def test_rotate_turns_anticlockwise_and_rescale_zooms_about_the_centre():
    images = torch.zeros(2, 1, 28, 28)
    images[:, 0, 5, 9] = 1.0
    assert torch.allclose(rb.rotate(images, 90), torch.rot90(images, 1, dims=(2, 3)))
    assert torch.allclose(rb.rotate(images, 0), images) and torch.allclose(rb.rescale(images, 1.0), images, atol=1e-5)
    square = torch.ones(1, 1, 28, 28)
    small = rb.rescale(square, 0.5)
    assert small[0, 0, 14, 14] == 1 and small[0, 0, 1, 1] == 0 and small.sum() == pytest.approx(14 * 14, rel=0.1)
    assert bool((rb.rescale(square, 1.5)[0, 0, 2:-2, 2:-2] == 1).all())
    with pytest.raises(ValueError, match="scale: expected a zoom factor above 0"):
        rb.rescale(square, 0)
    with pytest.raises(ValueError, match="degrees"):
        rb.rotate(square, None)


def test_gaussian_noise_is_seeded_clamped_and_of_the_asked_size():
    grey = torch.full((20, 1, 28, 28), 0.5)
    noisy = rb.gaussian_noise(grey, 0.1, seed=0)
    assert (noisy - grey).std().item() == pytest.approx(0.1, rel=0.05)
    assert torch.equal(rb.gaussian_noise(grey, 0.1, seed=0), noisy)
    assert not torch.equal(rb.gaussian_noise(grey, 0.1, seed=1), noisy)
    assert torch.equal(rb.gaussian_noise(grey, 0.0), grey)
    loud = rb.gaussian_noise(grey, 5.0)
    assert loud.min() == 0 and loud.max() == 1
    with pytest.raises(ValueError, match="std: expected a number >= 0"):
        rb.gaussian_noise(grey, -1)


@pytest.mark.parametrize("name", list(rb.CORRUPTIONS))
def test_every_corruption_keeps_shape_and_range_and_has_a_clean_level(name):
    function, levels = rb.CORRUPTIONS[name]
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    outputs = [function(images, level) for level in levels]
    assert all(o.shape == images.shape and o.min() >= 0 and o.max() <= 1 for o in outputs)
    clean = levels.index(1.0) if name == "scale" else 0
    assert torch.allclose(outputs[clean], images, atol=1e-5)  # bilinear resampling at zoom 1: ~1e-6 off


def test_accuracy_under_evaluates_each_level_and_checks_the_corruption():
    data = _two_blobs()
    model = _linear(LEFT_RIGHT)
    accuracies = rb.accuracy_under(model, data, "contrast", [1.0, 0.0])
    assert accuracies == [1.0, 0.5]  # no contrast: every image is the same grey, the tie goes to class 0
    swap = rb.accuracy_under(model, data, lambda x, level: x.flip(-1) if level else x, [0, 1])
    assert swap == [1.0, 0.0]
    assert len(rb.accuracy_under(model, data, "noise")) == len(rb.CORRUPTIONS["noise"][1])
    with pytest.raises(ValueError, match="corruption: expected one of"):
        rb.accuracy_under(model, data, "fog")
    with pytest.raises(ValueError, match="levels: a corruption given as a function needs its levels"):
        rb.accuracy_under(model, data, lambda x, level: x)
    with pytest.raises(TypeError, match="ImageSet"):
        rb.accuracy_under(model, data.images, "noise")


def test_robustness_sweep_and_its_plot():
    set_seed(0)
    data = ImageSet(torch.rand(8, 1, 28, 28), torch.arange(8) % 10, [str(d) for d in range(10)])
    results = rb.robustness_sweep({"MLP": MLP(hidden=(8,)), "CNN": CNN(channels=(2, 2, 2))}, data,
                                  ["occlusion", "scale"])
    assert list(results) == ["MLP", "CNN"] and list(results["CNN"]) == ["occlusion", "scale"]
    assert len(results["MLP"]["scale"]) == len(rb.CORRUPTIONS["scale"][1])
    fig = rb.plot_robustness(results)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["occlusion", "scale"]
    assert len(fig.axes[0].lines) == 2 and fig.axes[1].get_xlabel() == "zoom factor"
    plt.close(fig)
    with pytest.raises(ValueError, match="expected one accuracy per level"):
        rb.plot_robustness({"MLP": {"scale": [0.5, 0.4]}})
    with pytest.raises(ValueError, match="same corruptions"):
        rb.plot_robustness({"a": {"scale": [0.1] * 6}, "b": {"noise": [0.1] * 5}})
    custom = rb.plot_robustness({"a": {"fog": [0.9, 0.5]}}, levels={"fog": [0, 1]})
    assert len(custom.axes[0].lines) == 1
    plt.close(custom)
    with pytest.raises(ValueError, match="non-empty dict"):
        rb.robustness_sweep({}, data)


# ---------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------

def _torchvision_affine(images, angle, translate, scale, mode):
    """torchvision's own affine, image by image."""
    return torch.stack([TF.affine(image, angle=float(a), translate=[int(t[0]), int(t[1])], scale=float(s),
                                  shear=[0.0, 0.0], interpolation=v2.InterpolationMode(mode), fill=0)
                        for image, a, t, s in zip(images, angle, translate, scale)])


def test_batched_affine_matches_torchvision_image_by_image():
    images = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    angle = torch.tensor([0.0, 10.0, -30.0, 45.0, 90.0, 5.0])
    translate = torch.tensor([[0.0, 0.0], [2.0, -1.0], [0.0, 3.0], [-2.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    scale = torch.tensor([1.0, 0.8, 1.2, 1.0, 0.7, 1.3])
    ours = rb._affine(images, angle, translate, scale, "bilinear", 0.0)
    assert torch.allclose(ours, _torchvision_affine(images, angle, translate, scale, "bilinear"), atol=1e-5)
    nearest = rb._affine(images, angle, translate, scale, "nearest", 0.0)
    differ = (nearest - _torchvision_affine(images, angle, translate, scale, "nearest")).abs() > 1e-6
    assert differ.float().mean() < 0.01  # only where a sample falls half-way between pixels (rounding)


def test_per_image_affine_draws_its_own_parameters_for_each_image_within_the_ranges():
    one = torch.zeros(1, 1, 28, 28)
    one[..., 6:22, 12:16] = 1.0                                    # an upright bar
    batch = one.repeat(64, 1, 1, 1)
    transform = v2.RandomAffine(degrees=20, translate=(0.1, 0.1), scale=(0.8, 1.2),
                                interpolation=v2.InterpolationMode.BILINEAR)
    augment = rb.per_image_affine(transform, generator=torch.Generator().manual_seed(0))
    out = augment(batch)
    assert out.shape == batch.shape and out.min() >= 0 and out.max() <= 1
    assert len({round(float(image.sum()), 3) for image in out}) > 50          # the images differ from each other
    again = rb.per_image_affine(transform, generator=torch.Generator().manual_seed(0))(batch)
    assert torch.equal(out, again)
    # fixed ranges give exactly torchvision's transform
    fixed = v2.RandomAffine(degrees=(25, 25), scale=(0.9, 0.9), interpolation=v2.InterpolationMode.BILINEAR)
    want = TF.affine(one, angle=25.0, translate=[0, 0], scale=0.9, shear=[0.0, 0.0],
                     interpolation=v2.InterpolationMode.BILINEAR, fill=0)
    assert torch.allclose(rb.per_image_affine(fixed)(one), want, atol=1e-5)
    # the global generator, as v2 uses it, when none is given
    torch.manual_seed(0)
    first = rb.per_image_affine(transform)(batch)
    torch.manual_seed(0)
    assert torch.equal(first, rb.per_image_affine(transform)(batch))


def test_per_image_affine_refuses_what_it_does_not_reproduce():
    with pytest.raises(TypeError, match="RandomAffine"):
        rb.per_image_affine(v2.RandomRotation(10))
    for bad in (v2.RandomAffine(10, shear=5), v2.RandomAffine(10, center=[3, 3]), v2.RandomAffine(10, fill=(0, 1)),
                v2.RandomAffine(10, interpolation=v2.InterpolationMode.BICUBIC)):
        with pytest.raises(ValueError, match="without shear or centre"):
            rb.per_image_affine(bad)
    with pytest.raises(ValueError, match=r"images: expected a float tensor of shape \(N, C, H, W\)"):
        rb.per_image_affine(v2.RandomAffine(10))(torch.rand(28, 28))


# ---------------------------------------------------------------------------------------------
# FGSM
# ---------------------------------------------------------------------------------------------

def test_fgsm_moves_each_pixel_by_eps_along_the_sign_of_the_loss_gradient():
    data = _two_blobs(4)
    model = _linear(LEFT_RIGHT)
    probs = torch.softmax(model(data.images), 1)
    gradient = (probs - nn.functional.one_hot(data.labels, 2).float()) @ LEFT_RIGHT  # dCE/dx of a linear model
    expected = (data.images.flatten(1) + 0.1 * gradient.sign()).clamp(0, 1).view_as(data.images)
    adversarial = rb.fgsm(model, data.images, data.labels, 0.1)
    assert torch.allclose(adversarial, expected) and not adversarial.requires_grad
    assert torch.equal(rb.fgsm(model, data.images, data.labels, 0), data.images)
    assert model[1].weight.grad is None  # the attack leaves the parameters' gradients alone
    with pytest.raises(ValueError, match="eps: expected a number >= 0"):
        rb.fgsm(model, data.images, data.labels, -0.1)
    with pytest.raises(ValueError, match=r"labels: expected int64 class indices \(4,\)"):
        rb.fgsm(model, data.images, data.labels[:2], 0.1)


def test_fgsm_attacks_in_eval_mode_and_restores_the_mode():
    set_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 2))
    data = _two_blobs(4)
    model.train()
    first = rb.fgsm(model, data.images, data.labels, 0.05)
    assert torch.equal(first, rb.fgsm(model, data.images, data.labels, 0.05))  # no dropout noise in the attack
    assert model.training and model[1].training


def test_fgsm_accuracy_falls_with_eps_and_starts_at_the_clean_accuracy():
    data = _two_blobs()
    model = _linear(LEFT_RIGHT)
    accuracies = rb.fgsm_accuracy(model, data, [0.0, 0.1, 0.4], batch_size=16)
    assert accuracies[0] == evaluate(model, data)["acc"] == 1.0
    assert accuracies[1] == 1.0 and accuracies[2] == 0.0  # the margin 0.6 per pixel pair is crossed at 0.3
    with pytest.raises(ValueError, match="at least one image and one epsilon"):
        rb.fgsm_accuracy(model, data, [])


class _Tent(nn.Module):
    """One pixel ``x``; class 1 wins (logit ``0.75 - 10 |x - 0.4|`` above 0) only within 0.075 of 0.4."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.flatten(1)[:, 0]
        return torch.stack([torch.zeros_like(x), 0.75 - 10 * (x - 0.4).abs()], dim=1)


def test_iterated_fgsm_stays_within_eps_and_finds_what_one_step_jumps_over():
    data = _two_blobs()
    model = _linear(LEFT_RIGHT)
    # 10 steps of 2.5 * 0.2 / 10 would move a pixel by 0.5 and cross the margin at 0.3 without the projection
    assert rb.fgsm_accuracy(model, data, [0.0, 0.2, 0.4], steps=10) == [1.0, 1.0, 0.0]
    at_03 = ImageSet(torch.full((3, 1, 1, 1), 0.3), torch.zeros(3, dtype=torch.int64), ["0", "1"])
    assert evaluate(_Tent(), at_03)["acc"] == 1.0
    assert rb.fgsm_accuracy(_Tent(), at_03, [0.2]) == [1.0]            # one step lands at 0.5, past the peak
    assert rb.fgsm_accuracy(_Tent(), at_03, [0.2], steps=10) == [0.0]  # small steps climb to it
    for steps in (0, 1.5, True):
        with pytest.raises(ValueError, match="steps: expected a whole number of attack steps >= 1"):
            rb.fgsm_accuracy(model, data, [0.1], steps=steps)
    with pytest.raises(ValueError, match="eps: expected a number >= 0"):
        rb.fgsm_accuracy(model, data, [-0.1], steps=3)


def test_fgsm_training_loss_mixes_clean_and_adversarial_and_trains_with_fit_tensors():
    data = _two_blobs(8)
    model = _linear(LEFT_RIGHT)
    clean = nn.functional.cross_entropy(model(data.images), data.labels)
    attacked = nn.functional.cross_entropy(model(rb.fgsm(model, data.images, data.labels, 0.2)), data.labels)
    loss, right = rb.fgsm_training_loss(0.2, mix=0.0)(model, data.images, data.labels)
    assert loss.item() == pytest.approx(clean.item()) and int(right) == 8
    loss, _ = rb.fgsm_training_loss(0.2, mix=1.0)(model, data.images, data.labels)
    assert loss.item() == pytest.approx(attacked.item())
    loss, _ = rb.fgsm_training_loss(0.2)(model, data.images, data.labels)
    assert loss.item() == pytest.approx(0.5 * (clean + attacked).item())
    history = fit_tensors(model, (data.images, data.labels), rb.fgsm_training_loss(0.1), epochs=2, batch_size=4,
                          progress=False)
    assert len(history.rows) == 2 and "train_acc" in history.rows[0]
    with pytest.raises(ValueError, match=r"mix: expected a number in \[0, 1\]"):
        rb.fgsm_training_loss(0.1, mix=2)


def test_fgsm_training_loss_takes_the_recipes_criterion_and_augmentation():
    data = _two_blobs(8)
    model = _linear(LEFT_RIGHT)
    smoothed = functools.partial(nn.functional.cross_entropy, label_smoothing=0.1)
    loss, _ = rb.fgsm_training_loss(0.2, mix=0.0, criterion=smoothed)(model, data.images, data.labels)
    assert loss.item() == pytest.approx(smoothed(model(data.images), data.labels).item())
    flipped = data.images.flip(-1)   # left and right swapped: every image now looks like the other class
    attacked = smoothed(model(rb.fgsm(model, flipped, data.labels, 0.2)), data.labels)
    loss, right = rb.fgsm_training_loss(0.2, mix=1.0, criterion=smoothed, augment=lambda x: x.flip(-1))(
        model, data.images, data.labels)
    assert int(right) == 0 and loss.item() == pytest.approx(attacked.item(), rel=1e-4)
    for name in ("criterion", "augment"):
        with pytest.raises(TypeError, match=f"{name}: expected a function or None"):
            rb.fgsm_training_loss(0.1, **{name: "cross_entropy"})


# ---------------------------------------------------------------------------------------------
# Out-of-distribution scores
# ---------------------------------------------------------------------------------------------

def test_max_softmax_and_energy_scores_by_hand():
    logits = torch.tensor([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert torch.allclose(rb.max_softmax_score(logits), torch.tensor([torch.e ** 3 / (torch.e ** 3 + 2), 1 / 3]))
    assert torch.allclose(rb.energy_score(logits), torch.logsumexp(logits, 1))
    assert torch.allclose(rb.energy_score(logits, T=2.0), 2 * torch.logsumexp(logits / 2, 1))
    # the energy keeps the scale that the softmax maximum throws away
    assert rb.max_softmax_score(logits * 10)[1] == rb.max_softmax_score(logits)[1]
    assert rb.energy_score(logits * 10)[1] > rb.energy_score(logits)[1]
    with pytest.raises(ValueError, match="T: expected a temperature above 0"):
        rb.energy_score(logits, T=0)
    with pytest.raises(ValueError, match=r"logits: expected floating-point scores \(N, K\) with K >= 2"):
        rb.max_softmax_score(torch.tensor([1.0, 2.0]))


def test_ood_auroc_matches_sklearn_with_in_distribution_positive():
    scores_in, scores_out = torch.tensor([0.9, 0.8, 0.4]), torch.tensor([0.5, 0.1])
    expected = roc_auc_score([1, 1, 1, 0, 0], [0.9, 0.8, 0.4, 0.5, 0.1])
    assert rb.ood_auroc(scores_in, scores_out) == pytest.approx(expected) == pytest.approx(5 / 6)
    assert rb.ood_auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert rb.ood_auroc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 0.0
    # ties count one half, as in scikit-learn: scores rounded to two decimals tie often
    generator = torch.Generator().manual_seed(0)
    tied_in, tied_out = (torch.rand(300, generator=generator).round(decimals=2) + shift for shift in (0.1, 0.0))
    expected = roc_auc_score([1] * 300 + [0] * 300, torch.cat([tied_in, tied_out]).numpy())
    assert rb.ood_auroc(tied_in, tied_out) == pytest.approx(expected, abs=1e-12)
    assert rb.ood_auroc(torch.ones(3), torch.ones(4)) == 0.5
    with pytest.raises(ValueError, match="scores_out: expected a non-empty 1-D tensor of finite scores"):
        rb.ood_auroc(scores_in, torch.tensor([]))
    with pytest.raises(ValueError, match="scores_in"):
        rb.ood_auroc(torch.tensor([float("nan")]), scores_out)


# ---------------------------------------------------------------------------------------------
# Where the model looks
# ---------------------------------------------------------------------------------------------

def test_saliency_of_a_linear_model_is_the_absolute_weight_row():
    weight = torch.tensor([[0.5, -2.0, 0.0, 1.0], [1.0, 1.0, -3.0, 0.0]])
    model = _linear(weight)
    images = torch.rand(3, 1, 2, 2)
    labels = torch.tensor([0, 1, 0])
    maps = rb.saliency(model, images, labels)
    assert maps.shape == (3, 2, 2) and torch.allclose(maps, weight[labels].abs().view(3, 2, 2))
    assert model[1].weight.grad is None
    with pytest.raises(ValueError, match="labels"):
        rb.saliency(model, images, labels.float())


def test_grad_cam_by_hand_on_a_layer_that_sees_the_image():
    weight = torch.tensor([[1.0, 2.0, 3.0, 2.0], [-1.0, -1.0, -1.0, -1.0]])
    identity = nn.Identity()
    model = nn.Sequential(identity, nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[2].weight.copy_(weight)
    images = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    cam = rb.grad_cam(model, identity, images, torch.tensor([0]))
    assert torch.allclose(cam, (images[:, 0] / 4))  # relu(mean(w) * x) scaled to a maximum of 1
    assert bool((rb.grad_cam(model, identity, images, torch.tensor([1])) == 0).all())  # nothing raises logit 1


def test_grad_cam_on_the_course_cnn_removes_its_hook_and_restores_the_mode():
    set_seed(0)
    model = CNN()
    model.train()
    images = torch.rand(4, 1, 28, 28)
    cam = rb.grad_cam(model, model[1], images, torch.tensor([0, 1, 2, 3]))
    assert cam.shape == (4, 28, 28) and cam.min() >= 0 and cam.max() <= 1
    assert not model[1]._forward_hooks and model.training
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="layer: expected a module of the model"):
        rb.grad_cam(model, nn.ReLU(), images, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"layer: expected one output \(N, C, h, w\)"):
        rb.grad_cam(model, model[3], images, torch.tensor([0, 1, 2, 3]))  # Flatten: (N, 576)
    assert not model[3]._forward_hooks


def test_vit_rollout_and_show_heatmaps_side_by_side():
    set_seed(0)
    vit = VisionTransformer(embed_dim=16, depth=2, num_heads=2)
    cnn = CNN(channels=(2, 2, 2))
    images = torch.rand(3, 1, 28, 28)
    labels = torch.tensor([1, 2, 3])
    rollout = rb.vit_rollout(vit, images)
    assert rollout.shape == (3, 4, 4) and bool((rollout >= 0).all())
    maps = {"saliency": rb.saliency(cnn, images, labels), "Grad-CAM": rb.grad_cam(cnn, cnn[1], images, labels),
            "ViT rollout": rollout}
    fig = rb.show_heatmaps(images, maps, captions=["1", "2", "3"], title="where they look")
    assert len(fig.axes) == 4 * 3 and fig.axes[3].get_ylabel() == "saliency"
    plt.close(fig)
    with pytest.raises(TypeError, match="VisionTransformer"):
        rb.vit_rollout(cnn, images)
    with pytest.raises(ValueError, match=r"maps\['bad'\]: expected a tensor \(3, h, w\)"):
        rb.show_heatmaps(images, {"bad": rollout[:2]})
    with pytest.raises(ValueError, match="captions: expected 3"):
        rb.show_heatmaps(images, maps, captions=["1"])
