"""Few-shot classification in an embedding space: k labelled examples per class, prototypes, pseudo-labels.

- :func:`embed`: a trained model's penultimate features (the input of its last ``nn.Linear``) for every
  image: the embedding space;
- :func:`sample_k_shot`: ``k`` labelled examples of each class;
- :func:`prototypes`: each class's mean embedding, and :func:`prototype_predict`: the class whose
  prototype is nearest by cosine similarity (:func:`cosine_scores`), as in prototypical networks
  (Snell et al., 2017);
- :func:`pseudo_label`: add the unlabelled examples the prototypes classify confidently (above a threshold,
  or the most confident share of them) to the labelled set, with the predicted class as their label
  (self-training), then recompute the prototypes.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from .data import ImageSet
from .models import device_of
from .training import evaluating

__all__ = ["embed", "sample_k_shot", "prototypes", "cosine_scores", "prototype_predict", "pseudo_label"]


def _check_embeddings(embeddings: object, name: str) -> torch.Tensor:
    if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point() or embeddings.dim() != 2 \
            or 0 in embeddings.shape:
        got = f"{embeddings.dtype} {tuple(embeddings.shape)}" if isinstance(embeddings, torch.Tensor) \
            else type(embeddings).__name__
        raise ValueError(f"{name}: expected floating-point embeddings (N, D) with N, D >= 1, got {got}")
    return embeddings


def _check_labels(labels: object, n: int, num_classes: int) -> torch.Tensor:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes: expected an int of at least 1, got {num_classes!r}")
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.shape != (n,):
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels: expected int64 classes ({n},), one per embedding, got {got}")
    if bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(f"labels: expected classes 0 to {num_classes - 1}, got {sorted(set(labels.tolist()))}")
    return labels


def embed(model: nn.Module, data: ImageSet, layer: nn.Module | None = None, batch_size: int = 1024) -> torch.Tensor:
    """The input of ``layer`` (default: the model's last ``nn.Linear``, its classification head) for every image:
    the features the head reads, ``(N, D)``.

    A forward pre-hook on ``layer`` catches its input during an ordinary forward pass (eval mode, no
    gradient; modes restored, hook removed). That covers the course's models: :class:`~course_utils.models.MLP`
    (the last hidden layer, 256 numbers), :class:`~course_utils.models.CNN` (the flattened last conv block, 576)
    and :class:`~course_utils.vit.VisionTransformer` (the CLS token after the final norm, ``embed_dim``), and any
    classifier whose last registered ``nn.Linear`` is its head; pass ``layer`` for another.

    Args:
        data: images ``(N, C, H, W)`` (an :class:`ImageSet`; labels unused).
        layer: a module of ``model`` whose input to take.
    Returns:
        ``(N, D)`` float32 on the CPU.
    Raises:
        TypeError: ``data`` is not an ImageSet. ValueError: no ``nn.Linear`` (and no ``layer``), a ``layer``
            that is not in the model, or one that ran other than once per batch.
    """
    if not isinstance(data, ImageSet):
        raise TypeError(f"data: expected a course_utils.ImageSet, got {type(data).__name__}")
    if layer is None:
        linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
        if not linears:
            raise ValueError("model: has no nn.Linear head whose input to take; pass layer=")
        layer = linears[-1]
    elif not any(module is layer for module in model.modules()):
        raise ValueError("layer: expected a module of the model")
    caught: list[torch.Tensor] = []
    hook = layer.register_forward_pre_hook(lambda module, inputs: caught.append(inputs[0].detach().flatten(1)))
    device = device_of(model)
    features = []
    try:
        with evaluating(model), torch.no_grad():
            for images, _ in data.batches(batch_size):
                caught.clear()
                model(images.to(device))
                if len(caught) != 1:
                    raise ValueError(f"layer: expected it to run once per forward pass, it ran {len(caught)} times")
                features.append(caught[0].float().cpu())
    finally:
        hook.remove()
    return torch.cat(features)


def sample_k_shot(data: ImageSet, k: int, seed: int = 0) -> ImageSet:
    """``k`` examples of every class of ``data``, a seeded random choice, grouped by class (class 0 first).

    Raises:
        TypeError: ``data`` is not an ImageSet. ValueError: ``k`` below 1, or a class with fewer than ``k``.
    """
    if not isinstance(data, ImageSet):
        raise TypeError(f"data: expected a course_utils.ImageSet, got {type(data).__name__}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k: expected an int of at least 1 (examples per class), got {k!r}")
    labels = data.labels.cpu()
    counts = torch.bincount(labels, minlength=len(data.classes))
    short = (counts < k).nonzero().flatten().tolist()
    if short:
        raise ValueError(f"data: {k} examples per class asked, but classes {short} have only "
                         f"{counts[short].tolist()}")
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for c in range(len(data.classes)):
        members = (labels == c).nonzero().flatten()
        rows.append(members[torch.randperm(len(members), generator=generator)[:k]])
    chosen = torch.cat(rows).to(data.device)
    return ImageSet(data.images[chosen], data.labels[chosen], data.classes, data.source)


def prototypes(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each class's mean embedding: ``(N, D)`` and ``(N,)`` -> ``(num_classes, D)``.

    Raises:
        ValueError: wrong shapes, labels outside ``0 .. num_classes - 1``, or a class without any example.
    """
    embeddings = _check_embeddings(embeddings, "embeddings")
    labels = _check_labels(labels, len(embeddings), num_classes).to(embeddings.device)
    counts = torch.bincount(labels, minlength=num_classes)
    if bool((counts == 0).any()):
        raise ValueError(f"labels: every class needs an example; classes {(counts == 0).nonzero().flatten().tolist()} "
                         f"have none")
    sums = torch.zeros(num_classes, embeddings.shape[1], dtype=embeddings.dtype, device=embeddings.device)
    sums.index_add_(0, labels, embeddings)
    return sums / counts[:, None].to(embeddings.dtype)


def cosine_scores(embeddings: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every embedding to every prototype: ``(M, D)`` and ``(K, D)`` -> ``(M, K)`` in [-1, 1].

    Raises:
        ValueError: not 2-D floating tensors, or of different widths ``D``.
    """
    embeddings = _check_embeddings(embeddings, "embeddings")
    protos = _check_embeddings(protos, "protos")
    if embeddings.shape[1] != protos.shape[1]:
        raise ValueError(f"embeddings, protos: expected the same width D, got {embeddings.shape[1]} and "
                         f"{protos.shape[1]}")
    unit = nn.functional.normalize(embeddings.float(), dim=1)
    return unit @ nn.functional.normalize(protos.float(), dim=1).to(unit.device).T


def prototype_predict(embeddings: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """The class of the nearest prototype by cosine similarity: ``(M, D)``, ``(K, D)`` -> ``(M,)`` int64."""
    return cosine_scores(embeddings, protos).argmax(dim=1)


def pseudo_label(embeddings: torch.Tensor, labels: torch.Tensor, unlabelled: torch.Tensor, num_classes: int,
                 threshold: float = 0.9, temperature: float = 0.1, share: float | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One round of pseudo-labelling: the unlabelled embeddings that the labelled set's prototypes classify
    with confidence ``>= threshold`` (or, with ``share``, the most confident ``share`` of them) join the
    labelled set, labelled with the predicted class.

    The confidence is the largest of ``softmax(cosine_scores / temperature)`` over the classes (a low
    temperature sharpens it). Its scale depends on the space: features that are all positive (after a ReLU)
    have cosine similarities close to one another, so their confidences stay low and a fixed ``threshold``
    may take nothing; ``share`` takes the ``ceil(share * M)`` most confident rows whatever the scale. Recompute
    :func:`prototypes` on the result to use the new examples; choose ``threshold`` or ``share`` on validation
    data, and check how many pseudo-labels are right where the truth is known (``true_labels[taken]``).

    Args:
        embeddings: ``(N, D)`` labelled; labels: ``(N,)``; unlabelled: ``(M, D)``.
        threshold: in ``[0, 1]``. temperature: above 0.
        share: in ``(0, 1]``, or ``None`` to use ``threshold`` (which ``share`` replaces).
    Returns:
        ``(embeddings (N + P, D), labels (N + P,), taken (P,))``: the labelled set with the ``P`` confident
        unlabelled rows appended, and the indices of those rows in ``unlabelled`` (in increasing order).
    Raises:
        ValueError: wrong shapes or labels (as :func:`prototypes`), ``threshold``, ``temperature`` or ``share``
            out of range.
    """
    embeddings = _check_embeddings(embeddings, "embeddings")
    unlabelled = _check_embeddings(unlabelled, "unlabelled")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold: expected a probability in [0, 1], got {threshold!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ValueError(f"temperature: expected a number above 0, got {temperature!r}")
    if share is not None and (isinstance(share, bool) or not isinstance(share, numbers.Real) or not 0 < share <= 1):
        raise ValueError(f"share: expected a fraction in (0, 1] of the unlabelled rows, or None, got {share!r}")
    protos = prototypes(embeddings, labels, num_classes)
    confidence, predicted = torch.softmax(cosine_scores(unlabelled, protos) / temperature, dim=1).max(dim=1)
    if share is None:
        taken = (confidence >= threshold).nonzero().flatten()
    else:
        count = math.ceil(share * len(unlabelled) - 1e-9)
        taken = confidence.argsort(descending=True, stable=True)[:count].sort().values
    new_labels = predicted[taken].to(labels.device)
    new_rows = unlabelled[taken].to(embeddings.device, embeddings.dtype)
    return torch.cat([embeddings, new_rows]), torch.cat([labels, new_labels]), taken.cpu()
