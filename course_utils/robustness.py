"""Robustness: corrupted inputs, adversarial examples, out-of-distribution inputs, and where a model looks.

- Augmentation: :func:`per_image_affine` runs a ``torchvision.transforms.v2.RandomAffine`` on a batch with its
  own random rotation, translation and zoom for each image (``v2`` draws one set per call), in one step.
- Corruptions, pure functions on images ``(N, 1, H, W)`` in [0, 1] (mostly ``torchvision.transforms.v2``
  functionals): :func:`occlude`, :func:`adjust_lighting`, :func:`rotate`, :func:`rescale`,
  :func:`gaussian_noise`; :data:`CORRUPTIONS` lists each with its levels for a sweep,
  :func:`accuracy_under` measures a model along one, :func:`robustness_sweep` every model along every one,
  and :func:`plot_robustness` draws the curves.
- Adversarial examples: :func:`fgsm` (the fast gradient sign method), :func:`fgsm_accuracy` against
  epsilon (one step, or iterated), and :func:`fgsm_training_loss`, a loss for
  :func:`~course_utils.training.fit_tensors` that trains on clean and FGSM images together (adversarial training).
- Out-of-distribution detection: :func:`max_softmax_score` and :func:`energy_score` (higher = more
  in-distribution) and :func:`ood_auroc`.
- Where the model looks: :func:`saliency` (input gradients), :func:`grad_cam` (for the course's CNN),
  :func:`vit_rollout` (the ViT's attention rollout, from :mod:`course_utils.vit`) and
  :func:`show_heatmaps`, which draws them side by side.
"""
from __future__ import annotations

import numbers
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import torch
import torchvision.transforms.v2.functional as TF
from scipy.stats import rankdata
from torch import nn
from torchvision.transforms import v2

from .data import ImageSet, check_images
from .models import device_of
from .training import StepResult, evaluate, evaluating

__all__ = ["per_image_affine", "occlude", "adjust_lighting", "rotate", "rescale", "gaussian_noise", "CORRUPTIONS",
           "accuracy_under", "robustness_sweep", "plot_robustness", "fgsm", "fgsm_accuracy", "fgsm_training_loss",
           "max_softmax_score", "energy_score", "ood_auroc", "saliency", "grad_cam", "vit_rollout", "show_heatmaps"]

Corruption = Callable[[torch.Tensor, float], torch.Tensor]


def _number(value: object, name: str, minimum: float | None = None) -> float:
    """``value`` as a float (a real number, not a bool, at least ``minimum`` when given), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value or \
            (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(f"{name}: expected a number{bound}, got {value!r}")
    return float(value)


def _check_data(data: object) -> ImageSet:
    if not isinstance(data, ImageSet):
        raise TypeError(f"data: expected a course_utils.ImageSet, got {type(data).__name__}")
    return data


# ---------------------------------------------------------------------------------------------
# Augmentation: a v2 RandomAffine with its own parameters for each image of a batch
# ---------------------------------------------------------------------------------------------

def _affine(images: torch.Tensor, angle: torch.Tensor, translate: torch.Tensor, scale: torch.Tensor,
            interpolation: str, fill: float) -> torch.Tensor:
    """``TF.affine(images[i], angle[i], translate[i], scale[i], shear=0)`` for every ``i`` in one ``grid_sample``.

    The same inverse matrix, grid and fill as ``torchvision.transforms.v2.functional.affine`` (about the
    image's centre). ``images (N, C, H, W)``, ``angle (N,)`` degrees, ``translate (N, 2)`` pixels ``(x, y)``,
    ``scale (N,)``.
    """
    n, _, height, width = images.shape
    rad = torch.deg2rad(angle.double())
    cos, sin = torch.cos(rad) / scale.double(), torch.sin(rad) / scale.double()
    tx, ty = translate.double().unbind(1)
    inverse = torch.stack([torch.stack([cos, sin, -(cos * tx + sin * ty)], 1),
                           torch.stack([-sin, cos, -(-sin * tx + cos * ty)], 1)], 1)     # (N, 2, 3), pixels
    half = torch.tensor([width / 2, height / 2], dtype=torch.float64)
    theta = inverse.clone()
    theta[:, :, :2] = inverse[:, :, :2] * half[None, None, :] / half[None, :, None]       # to grid units
    theta[:, :, 2] = inverse[:, :, 2] / half[None, :]
    theta = theta.to(images.device, images.dtype)
    grid = nn.functional.affine_grid(theta, [n, 1, height, width], align_corners=False)
    ones = torch.ones_like(images[:, :1])
    out = nn.functional.grid_sample(torch.cat([images, ones], 1), grid, mode=interpolation, padding_mode="zeros",
                                    align_corners=False)
    out, mask = out[:, :-1], out[:, -1:].expand_as(out[:, :-1])
    if interpolation == "nearest":
        return torch.where(mask < 0.5, torch.full_like(out, fill), out)
    return (out - fill) * mask + fill


def per_image_affine(transform: v2.RandomAffine, generator: torch.Generator | None = None
                     ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``transform`` applied to a batch with its own random parameters for each image, in one batched step.

    A ``v2.RandomAffine`` called on a batch ``(N, C, H, W)`` draws *one* rotation, translation and zoom for the
    whole batch; calling it image by image is right but slow (about a millisecond an image on a laptop CPU). This
    draws the parameters of every image as ``RandomAffine.make_params`` does (angle and zoom uniform in their
    ranges, the shift a whole number of pixels) and resamples the batch at once with the same matrix, grid and
    fill as ``torchvision.transforms.v2.functional.affine``. Use it as ``fit``'s ``augment``.

    Args:
        transform: a ``v2.RandomAffine`` without shear and about the centre; its ``interpolation`` (nearest or
            bilinear) and a single number ``fill`` are kept.
        generator: draws the parameters; default torch's global generator (seeded by ``set_seed``), as ``v2``.
    Returns:
        ``augment(images (N, C, H, W)) -> (N, C, H, W)`` on the images' device.
    Raises:
        TypeError: ``transform`` is not a ``v2.RandomAffine``.
        ValueError: it shears, has a centre, a fill per channel, or an interpolation other than those two.
    """
    if not isinstance(transform, v2.RandomAffine):
        raise TypeError(f"transform: expected a torchvision.transforms.v2.RandomAffine, got {type(transform).__name__}")
    mode = transform.interpolation.value if isinstance(transform.interpolation, v2.InterpolationMode) \
        else str(transform.interpolation)
    fill = transform.fill
    if transform.shear is not None or transform.center is not None or mode not in ("nearest", "bilinear") or \
            isinstance(fill, bool) or not isinstance(fill, numbers.Real):
        raise ValueError(f"transform: expected a RandomAffine without shear or centre, nearest or bilinear, with one "
                         f"number as fill; got shear={transform.shear}, center={transform.center}, "
                         f"interpolation={mode}, fill={fill!r}")
    low, high = transform.degrees
    max_shift = transform.translate or (0.0, 0.0)
    zoom = transform.scale or (1.0, 1.0)

    def augment(images: torch.Tensor) -> torch.Tensor:
        check_images(images)
        n, (height, width) = len(images), images.shape[-2:]

        def uniform(a: float, b: float) -> torch.Tensor:
            return a + (b - a) * torch.rand(n, generator=generator, dtype=torch.float64)

        angle = uniform(low, high)
        shift = torch.stack([uniform(-max_shift[0] * width, max_shift[0] * width).round(),
                             uniform(-max_shift[1] * height, max_shift[1] * height).round()], 1)
        scale = uniform(*zoom)
        return _affine(images, angle, shift, scale, mode, float(fill))

    return augment


# ---------------------------------------------------------------------------------------------
# Corruptions: (N, C, H, W) in [0, 1] -> the same shape in [0, 1]
# ---------------------------------------------------------------------------------------------

def occlude(images: torch.Tensor, size: int, seed: int = 0) -> torch.Tensor:
    """Black out a ``size`` x ``size`` square in each image, at its own random place (wholly inside the image).

    ``torchvision``'s ``erase`` puts one box at one place for the whole batch; this draws a place per image
    (seeded), with a mask, so that a batch is done in one step. ``size=0`` leaves the images as they are.

    Args:
        images: ``(N, C, H, W)`` in [0, 1].
        size: the square's side in pixels, ``0 <= size <= min(H, W)``.
    Returns:
        a new tensor ``(N, C, H, W)`` on the images' device.
    """
    check_images(images)
    height, width = images.shape[-2:]
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not 0 <= size <= min(height, width):
        raise ValueError(f"size: expected a whole number of pixels from 0 to {min(height, width)}, got {size!r}")
    generator = torch.Generator().manual_seed(seed)
    top = torch.randint(0, height - size + 1, (len(images),), generator=generator).to(images.device)
    left = torch.randint(0, width - size + 1, (len(images),), generator=generator).to(images.device)
    rows = torch.arange(height, device=images.device)
    cols = torch.arange(width, device=images.device)
    inside_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + size)      # (N, H)
    inside_cols = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + size)    # (N, W)
    box = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]                     # (N, 1, H, W)
    return images.masked_fill(box, 0.0)


def adjust_lighting(images: torch.Tensor, brightness: float = 1.0, contrast: float = 1.0) -> torch.Tensor:
    """Change brightness, then contrast (``torchvision.transforms.v2.functional``), clamped to [0, 1].

    ``brightness`` multiplies every pixel (below 1: darker, so the digits' ink fades); ``contrast`` blends
    each image with its mean grey level (below 1: flatter; 0: a uniform grey image).

    Args:
        images: ``(N, C, H, W)`` in [0, 1], ``C`` 1 or 3.
        brightness, contrast: factors ``>= 0``; 1 changes nothing.
    """
    check_images(images)
    brightness = _number(brightness, "brightness", minimum=0)
    contrast = _number(contrast, "contrast", minimum=0)
    return TF.adjust_contrast(TF.adjust_brightness(images, brightness), contrast).clamp(0, 1)


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate each image by ``degrees`` anticlockwise about its centre (bilinear, the corners filled with 0).

    ``(N, C, H, W)`` -> ``(N, C, H, W)``, with ``torchvision.transforms.v2.functional.rotate``.
    """
    check_images(images)
    return TF.rotate(images, _number(degrees, "degrees"), interpolation=TF.InterpolationMode.BILINEAR, fill=0.0)


def rescale(images: torch.Tensor, scale: float) -> torch.Tensor:
    """Zoom each image about its centre by ``scale``, keeping its size: below 1 the content shrinks (0 fills the
    border), above 1 it grows and its edges are cut off. ``(N, C, H, W)`` -> ``(N, C, H, W)``, bilinear, with
    ``torchvision.transforms.v2.functional.affine``.

    Raises:
        ValueError: ``scale`` not a number above 0.
    """
    check_images(images)
    scale = _number(scale, "scale")
    if scale <= 0:
        raise ValueError(f"scale: expected a zoom factor above 0, got {scale!r}")
    return TF.affine(images, angle=0.0, translate=[0, 0], scale=scale, shear=[0.0, 0.0],
                     interpolation=TF.InterpolationMode.BILINEAR, fill=0.0)


def gaussian_noise(images: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """Add Gaussian noise of standard deviation ``std`` to every pixel and clamp to [0, 1].

    Drawn from a generator seeded with ``seed`` (``torchvision``'s ``gaussian_noise`` draws from torch's
    global generator, so a sweep would not repeat). ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    check_images(images)
    std = _number(std, "std", minimum=0)
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed)).to(images.device, images.dtype)
    return (images + std * noise).clamp(0, 1)


CORRUPTIONS: dict[str, tuple[Corruption, list[float]]] = {
    "occlusion": (occlude, [0, 4, 8, 12, 16]),
    "brightness": (lambda images, level: adjust_lighting(images, brightness=level), [1.0, 0.7, 0.5, 0.3, 0.15]),
    "contrast": (lambda images, level: adjust_lighting(images, contrast=level), [1.0, 0.7, 0.5, 0.3, 0.15]),
    "rotation": (rotate, [0, 15, 30, 45, 60]),
    "scale": (rescale, [0.5, 0.7, 0.85, 1.0, 1.2, 1.4]),
    "noise": (gaussian_noise, [0.0, 0.1, 0.2, 0.3, 0.5]),
}
"""Each corruption of a sweep: ``name -> (function(images, level), levels)``. The first level of each leaves
the images clean, except for scale, whose clean level, 1.0, sits among zooms out (below) and in (above)."""

_LEVEL_NAMES = {"occlusion": "patch side (pixels)", "brightness": "brightness factor", "contrast": "contrast factor",
                "rotation": "rotation (degrees)", "scale": "zoom factor", "noise": "noise std"}


def _corruption(corruption: str | Corruption, levels: Sequence[float] | None) -> tuple[Corruption, list[float]]:
    """The function and levels a sweep of ``corruption`` (a name of :data:`CORRUPTIONS` or a function) uses."""
    if isinstance(corruption, str):
        if corruption not in CORRUPTIONS:
            raise ValueError(f"corruption: expected one of {list(CORRUPTIONS)} or a function(images, level), "
                             f"got {corruption!r}")
        function, default = CORRUPTIONS[corruption]
        return function, list(default if levels is None else levels)
    if not callable(corruption):
        raise TypeError(f"corruption: expected a name of CORRUPTIONS or a function(images, level), "
                        f"got {type(corruption).__name__}")
    if levels is None:
        raise ValueError("levels: a corruption given as a function needs its levels, e.g. [0, 0.1, 0.2]")
    return corruption, list(levels)


def accuracy_under(model: nn.Module, data: ImageSet, corruption: str | Corruption,
                   levels: Sequence[float] | None = None) -> list[float]:
    """The accuracy of ``model`` on ``data`` corrupted at each level: one :func:`~course_utils.training.evaluate` each.

    Args:
        model: an image classifier ``(B, 1, H, W) -> (B, K)``.
        data: images ``(N, 1, H, W)`` in [0, 1] and labels.
        corruption: a name of :data:`CORRUPTIONS` (its levels are the default) or a function ``(images, level)``.
        levels: the levels to measure at (needed with a function).
    Returns:
        one accuracy per level.
    """
    data = _check_data(data)
    function, levels = _corruption(corruption, levels)
    if not levels:
        raise ValueError("levels: expected at least one level")
    return [evaluate(model, ImageSet(function(data.images, level), data.labels, data.classes, data.source))["acc"]
            for level in levels]


def robustness_sweep(models: dict[str, nn.Module], data: ImageSet,
                     corruptions: Sequence[str] | None = None) -> dict[str, dict[str, list[float]]]:
    """:func:`accuracy_under` for every model and corruption: ``{model: {corruption: [accuracy per level]}}``.

    ``corruptions``: names of :data:`CORRUPTIONS` (default: all), each at its levels there.
    """
    if not isinstance(models, dict) or not models or not all(isinstance(m, nn.Module) for m in models.values()):
        raise ValueError("models: expected a non-empty dict {name: nn.Module}")
    names = list(CORRUPTIONS) if corruptions is None else list(corruptions)
    return {model_name: {name: accuracy_under(model, data, name) for name in names}
            for model_name, model in models.items()}


def plot_robustness(results: dict[str, dict[str, list[float]]],
                    levels: dict[str, Sequence[float]] | None = None) -> plt.Figure:
    """Accuracy against the level of each corruption: one panel per corruption, one line per model.

    Args:
        results: ``{model: {corruption: [accuracy per level]}}``, as :func:`robustness_sweep` returns.
        levels: ``{corruption: levels}`` for the x-axes; default: those of :data:`CORRUPTIONS`.
    Raises:
        ValueError: empty ``results``, models measured on different corruptions, or a list of accuracies
            whose length differs from its corruption's levels.
    """
    if not isinstance(results, dict) or not results:
        raise ValueError("results: expected a non-empty dict {model: {corruption: [accuracy per level]}}")
    names = list(next(iter(results.values())))
    if not names or any(list(per_model) != names for per_model in results.values()):
        raise ValueError(f"results: expected every model measured on the same corruptions, got "
                         f"{ {model: list(per_model) for model, per_model in results.items()} }")
    axes_levels = {}
    for name in names:
        shown = (levels or {}).get(name, CORRUPTIONS[name][1] if name in CORRUPTIONS else None)
        if shown is None or any(len(per_model[name]) != len(shown) for per_model in results.values()):
            raise ValueError(f"results[...][{name!r}]: expected one accuracy per level, levels {shown}")
        axes_levels[name] = list(shown)
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for model, per_model in results.items():
            ax.plot(axes_levels[name], per_model[name], marker="o", label=model)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(_LEVEL_NAMES.get(name, "level"))
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Adversarial examples
# ---------------------------------------------------------------------------------------------

def _check_batch(images: object, labels: object) -> None:
    check_images(images)
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != (len(images),):
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels: expected int64 class indices ({len(images)},), one per image, got {got}")


def _fgsm_from(loss: torch.Tensor, images: torch.Tensor, eps: float, retain_graph: bool = False) -> torch.Tensor:
    """``clamp(images + eps * sign(d loss / d images), 0, 1)``, detached."""
    (gradient,) = torch.autograd.grad(loss, images, retain_graph=retain_graph)
    return (images + eps * gradient.sign()).clamp(0, 1).detach()


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """The fast gradient sign method (Goodfellow et al., 2015): each pixel moved by ``eps`` in the direction that
    raises the loss, ``clamp(x + eps * sign(d CE(model(x), y) / dx), 0, 1)``.

    The model runs in eval mode during the attack (dropout off, batch-norm statistics fixed) and gets its
    modes back afterwards; its parameters' gradients are left untouched.

    Args:
        images: ``(N, C, H, W)`` in [0, 1]. labels: ``(N,)`` true classes.
        eps: the largest change of a pixel, ``>= 0`` (0 gives the images back).
    Returns:
        the adversarial images ``(N, C, H, W)`` on the model's device, without gradient.
    """
    _check_batch(images, labels)
    eps = _number(eps, "eps", minimum=0)
    device = device_of(model)
    x = images.detach().to(device).requires_grad_(True)
    with evaluating(model), torch.enable_grad():
        loss = nn.functional.cross_entropy(model(x), labels.to(device))
        return _fgsm_from(loss, x, eps)


def fgsm_accuracy(model: nn.Module, data: ImageSet, eps_list: Sequence[float], batch_size: int = 500,
                  steps: int = 1) -> list[float]:
    """Accuracy of ``model`` on FGSM images of ``data`` (:func:`fgsm`, each batch attacked separately), per epsilon.

    With ``steps > 1`` the attack is iterated (the basic iterative method, Kurakin et al., 2017): ``steps`` FGSM
    steps of ``2.5 * eps / steps`` each (the step size Madry et al., 2018, use), every one projected back to
    within ``eps`` of the clean image (and into [0, 1]). It searches the same budget harder than one step, so a
    model that only resists single FGSM steps (a masked gradient) shows it here.

    Args:
        model: an image classifier; it runs in eval mode (its modes restored).
        data: the images and labels to attack.
        eps_list: the largest change of a pixel, one accuracy each.
        batch_size: images attacked at once.
        steps: gradient steps per attack, at least 1 (1: plain FGSM).
    Returns:
        one accuracy per value of ``eps_list``; at ``eps=0`` the clean accuracy.
    """
    data = _check_data(data)
    if len(data) == 0 or not eps_list:
        raise ValueError("data, eps_list: expected at least one image and one epsilon")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"steps: expected a whole number of attack steps >= 1, got {steps!r}")
    device = device_of(model)
    accuracies = []
    for eps in eps_list:
        eps = _number(eps, "eps", minimum=0)
        correct = 0
        for images, labels in data.batches(batch_size):
            images, labels = images.to(device), labels.to(device)
            if steps == 1:
                adversarial = fgsm(model, images, labels, eps)
            else:
                adversarial = images
                for _ in range(steps):
                    adversarial = fgsm(model, adversarial, labels, 2.5 * eps / steps)
                    adversarial = torch.minimum(torch.maximum(adversarial, images - eps), images + eps).clamp(0, 1)
            with evaluating(model), torch.no_grad():
                correct += int((model(adversarial).argmax(1) == labels).sum())
        accuracies.append(correct / len(data))
    return accuracies


def fgsm_training_loss(eps: float, mix: float = 0.5,
                       criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                       augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                       ) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], StepResult]:
    """A loss for :func:`~course_utils.training.fit_tensors` that trains on clean and FGSM images together:
    ``(1 - mix) * loss(model(x), y) + mix * loss(model(x_adv), y)`` (Goodfellow et al., 2015, used ``mix = 0.5``).

    ``x_adv`` is made from the gradient of the clean loss at the current weights, in the mode the loop gives
    (training), reusing the clean forward pass: two forward passes a step instead of one. Use it as
    ``fit_tensors(model, (train.images, train.labels), fgsm_training_loss(0.1), epochs=..., evaluate=...)``.
    (``fit``'s own ``loss_fn`` sees only logits, so it cannot make adversarial images.) ``criterion`` and
    ``augment`` give it the rest of a :func:`~course_utils.training.fit` recipe, so that plain and adversarial
    training differ in the adversarial term alone.

    Args:
        eps: the attack's step, ``>= 0``; train at the epsilon that will be tested.
        mix: the weight of the adversarial term, in ``[0, 1]``.
        criterion: ``criterion(logits, labels)`` -> the mean loss, for both terms and the attack; default
            cross-entropy (e.g. ``functools.partial(F.cross_entropy, label_smoothing=0.1)``).
        augment: applied to each batch of images first, as ``fit``'s ``augment`` (e.g. ``random_shift``); the
            attack starts from the augmented images.
    Returns:
        ``loss_fn(model, images (B, C, H, W), labels (B,)) -> (loss, number of clean images right)``.
    """
    eps = _number(eps, "eps", minimum=0)
    mix = _number(mix, "mix", minimum=0)
    if mix > 1:
        raise ValueError(f"mix: expected a number in [0, 1], got {mix!r}")
    for name, function in (("criterion", criterion), ("augment", augment)):
        if function is not None and not callable(function):
            raise TypeError(f"{name}: expected a function or None, got {type(function).__name__}")
    criterion = criterion or nn.functional.cross_entropy

    def loss_fn(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> StepResult:
        x = (augment(images) if augment is not None else images).detach().requires_grad_(True)
        logits = model(x)
        clean = criterion(logits, labels)
        adversarial = _fgsm_from(clean, x, eps, retain_graph=True)
        attacked = criterion(model(adversarial), labels)
        return (1 - mix) * clean + mix * attacked, (logits.argmax(1) == labels).sum()

    return loss_fn


# ---------------------------------------------------------------------------------------------
# Out-of-distribution scores
# ---------------------------------------------------------------------------------------------

def _check_logits(logits: object) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() != 2 or \
            logits.shape[1] < 2:
        got = f"{logits.dtype} {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits: expected floating-point scores (N, K) with K >= 2 classes, got {got}")
    return logits


def max_softmax_score(logits: torch.Tensor) -> torch.Tensor:
    """The largest softmax probability of each row (Hendrycks & Gimpel, 2017): ``(N, K) -> (N,)``, in ``[1/K, 1]``.

    Higher = more in-distribution (the model is surer of some class).
    """
    return torch.softmax(_check_logits(logits).float(), dim=1).max(dim=1).values


def energy_score(logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Minus the energy of each row (Liu et al., 2020): ``T * logsumexp(logits / T)``, ``(N, K) -> (N,)``.

    Higher = more in-distribution. Unlike the softmax maximum it keeps the logits' scale: an input that
    excites no class strongly gets a low score even when one class wins by a margin.

    Args:
        T: temperature, above 0.
    """
    T = _number(T, "T")
    if T <= 0:
        raise ValueError(f"T: expected a temperature above 0, got {T!r}")
    return T * torch.logsumexp(_check_logits(logits).float() / T, dim=1)


def ood_auroc(scores_in: torch.Tensor, scores_out: torch.Tensor) -> float:
    """Area under the ROC curve of a score that should be higher on in-distribution inputs (in-distribution as the
    positive class; equal to scikit-learn's ``roc_auc_score``).

    It is the chance that a random in-distribution input scores above a random out-of-distribution one (a tie
    counts one half): 1 separates them perfectly, 0.5 is no better than chance. Computed from ranks (the
    Mann-Whitney U statistic, ties given their average rank), about ten times faster than scikit-learn, which
    counts in a bootstrap.

    Args:
        scores_in: ``(N,)`` scores of in-distribution inputs; scores_out: ``(M,)`` of others; N, M >= 1.
    """
    for name, scores in (("scores_in", scores_in), ("scores_out", scores_out)):
        if not isinstance(scores, torch.Tensor) or scores.dim() != 1 or len(scores) == 0 or \
                not bool(torch.isfinite(scores.float()).all()):
            got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise ValueError(f"{name}: expected a non-empty 1-D tensor of finite scores, got {got}")
    n_in, n_out = len(scores_in), len(scores_out)
    scores = torch.cat([scores_in.detach().double().cpu(), scores_out.detach().double().cpu()])
    ranks = rankdata(scores.numpy())                                  # 1 .. N + M, ties averaged
    return float((ranks[:n_in].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out))


# ---------------------------------------------------------------------------------------------
# Where the model looks
# ---------------------------------------------------------------------------------------------

def saliency(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Gradient saliency: ``|d logit_y / d x|``, the largest over channels, per pixel (Simonyan et al., 2014).

    Which pixels would change the score of class ``y`` most if nudged. The model runs in eval mode (its
    modes restored); its parameters' gradients are left untouched.

    Args:
        images: ``(N, C, H, W)``; labels: ``(N,)`` the class whose logit is explained (true or predicted).
    Returns:
        ``(N, H, W)`` on the CPU, ``>= 0``.
    """
    _check_batch(images, labels)
    device = device_of(model)
    x = images.detach().to(device).requires_grad_(True)
    with evaluating(model), torch.enable_grad():
        chosen = model(x).gather(1, labels.to(device)[:, None]).sum()
        (gradient,) = torch.autograd.grad(chosen, x)
    return gradient.abs().amax(dim=1).cpu()


def grad_cam(model: nn.Module, layer: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017): the activation maps of ``layer`` weighted by how much each raises
    ``logit_y``, ``relu(sum_c mean_hw(d logit_y / dA_c) * A_c)``, upsampled to the image and scaled to [0, 1]
    per image.

    For the course's :class:`~course_utils.models.CNN`, ``layer=model[1]`` gives a 7x7 map (``model[2]``, the
    last block, a coarse 3x3 one). A forward hook on ``layer`` catches its output; it is removed afterwards,
    and the model runs in eval mode (its modes restored).

    Args:
        layer: a module inside ``model`` whose output is ``(N, C, h, w)``.
        images: ``(N, C, H, W)``; labels: ``(N,)`` the class to explain.
    Returns:
        ``(N, H, W)`` on the CPU in [0, 1] (all zero where no activation raises the logit).
    Raises:
        ValueError: ``layer`` is not part of ``model``, or its output is not ``(N, C, h, w)``.
    """
    _check_batch(images, labels)
    if not isinstance(layer, nn.Module) or not any(module is layer for module in model.modules()):
        raise ValueError("layer: expected a module of the model, e.g. model[1] for the course's CNN")
    device = device_of(model)
    caught: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda module, inputs, output: caught.append(output))
    try:
        x = images.detach().to(device).requires_grad_(True)  # so the maps have a gradient even if frozen
        with evaluating(model), torch.enable_grad():
            chosen = model(x).gather(1, labels.to(device)[:, None]).sum()
            if len(caught) != 1 or not isinstance(caught[0], torch.Tensor) or caught[0].dim() != 4:
                got = [tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__ for c in caught]
                raise ValueError(f"layer: expected one output (N, C, h, w) per forward pass, got {got}")
            (gradient,) = torch.autograd.grad(chosen, caught[0])
    finally:
        hook.remove()
    weights = gradient.mean(dim=(2, 3), keepdim=True)                                  # (N, C, 1, 1)
    cam = torch.relu((weights * caught[0].detach()).sum(dim=1, keepdim=True))          # (N, 1, h, w)
    cam = nn.functional.interpolate(cam.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)
    peak = cam.amax(dim=(2, 3), keepdim=True)
    return torch.where(peak > 0, cam / peak.clamp_min(1e-12), torch.zeros_like(cam))[:, 0].cpu()


def vit_rollout(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The CLS token's attention rollout over the patches of a :class:`~course_utils.vit.VisionTransformer`,
    on the patch grid: ``(N, C, H, W) -> (N, grid, grid)`` on the CPU (:func:`course_utils.vit.attention_rollout`
    of ``model.attention_maps``, as notebook 03 shows it)."""
    from .vit import VisionTransformer, attention_rollout

    if not isinstance(model, VisionTransformer):
        raise TypeError(f"model: expected a course_utils.vit.VisionTransformer, got {type(model).__name__}")
    check_images(images)
    rollout = attention_rollout(model.attention_maps(images))[:, 0, 1:]               # (N, grid * grid)
    return rollout.reshape(len(images), model.grid, model.grid).cpu()


def show_heatmaps(images: torch.Tensor, maps: dict[str, torch.Tensor], captions: Sequence[str] | None = None,
                  title: str = "") -> plt.Figure:
    """Each image (top row) and, below it, each explanation map drawn over it: one row per map.

    Each map is scaled to [0, 1] per image and blown up to the image's size (nearest, so a ViT patch stays a
    square); its colour shows where the map is high.

    Args:
        images: ``(N, C, H, W)``; the first channel is shown.
        maps: ``{name: (N, h, w)}``, e.g. ``{"saliency": ..., "Grad-CAM": ..., "ViT rollout": ...}``.
        captions: one per image (e.g. its label and the prediction).
    Raises:
        ValueError: no map, or a map that is not ``(N, h, w)``, or captions of another number.
    """
    check_images(images)
    n = len(images)
    if not isinstance(maps, dict) or not maps:
        raise ValueError("maps: expected a non-empty dict {name: (N, h, w) map}")
    for name, heat in maps.items():
        if not isinstance(heat, torch.Tensor) or heat.dim() != 3 or len(heat) != n:
            got = tuple(heat.shape) if isinstance(heat, torch.Tensor) else type(heat).__name__
            raise ValueError(f"maps[{name!r}]: expected a tensor ({n}, h, w), one map per image, got {got}")
    if captions is not None and len(captions) != n:
        raise ValueError(f"captions: expected {n}, one per image, got {len(captions)}")
    size = images.shape[-2:]
    fig, axes = plt.subplots(1 + len(maps), n, figsize=(1.5 * n + 0.6, 1.6 * (1 + len(maps))), squeeze=False)
    for i in range(n):
        image = images[i, 0].detach().float().cpu()
        axes[0, i].imshow(image.numpy(), cmap="gray")
        axes[0, i].set_title("" if captions is None else captions[i], fontsize=8)
        for row, (name, heat) in enumerate(maps.items(), start=1):
            one = heat[i].detach().float().cpu()
            one = (one - one.min()) / (one.max() - one.min()).clamp_min(1e-12)
            big = nn.functional.interpolate(one[None, None], size=size, mode="nearest")[0, 0]
            axes[row, i].imshow(image.numpy(), cmap="gray")
            axes[row, i].imshow(big.numpy(), cmap="inferno", alpha=0.55, vmin=0, vmax=1)
            if i == 0:
                axes[row, i].set_ylabel(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
