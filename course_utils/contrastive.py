"""CLIP-style contrastive alignment of images and sentences, for notebook 06.

- :func:`clip_loss`: the symmetric InfoNCE loss of a batch of matching ``(image, text)`` pairs,
  ``(B, D)`` and ``(B, D)`` -> a scalar, with a temperature given as ``log(1 / T)``.
- :class:`ContrastiveModel`: a :class:`~course_utils.models.PatchEncoder` with a projection, and a
  projection of frozen sentence vectors, trained to meet in one ``embed_dim`` space with a learned
  temperature (``CLIP_INIT_LOGIT_SCALE`` at the start, clamped at ``MAX_LOGIT_SCALE``).
- :func:`embed_images`: a trained model's unit image vectors ``(N, embed_dim)``, the inference
  helper: it takes images on any device, moves each batch to the model's device, runs it there in
  eval mode, and returns its result there.
- :func:`recall_at_k`: retrieval quality of an ``(N, M)`` query-by-item similarity matrix;
  :func:`caption_matches`: which captions are true of which images, the relevance that counts
  "same class, same attribute words" as a match whatever the sentence's wording.
- :class:`ZeroShotClassifier`: a trained model and one text embedding per class as an image
  classifier ``(B, 1, 28, 28)`` -> ``(B, classes)``; :class:`LinearProbe`: a linear classifier on a
  frozen image encoder's features, the standard test of what a representation learned.

Every name is also importable from :mod:`course_utils.fusion`.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from .imagetext import WORDS, AttributeBins, CaptionSet, tokens
from .models import PatchEncoder, _check_batches, _sixteen_tokens, autocasting, check_floating, device_of
from .training import evaluating

CLIP_INIT_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature 0.07, stored as log(1 / T)
MAX_LOGIT_SCALE = math.log(100.0)           # CLIP clamps the scale at 100


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): row i of each batch is a matching pair, every other row a negative.

    Args:
        image_emb, text_emb: ``(B, D)``; normalised here to unit length.
        logit_scale: scalar, ``log(1 / temperature)``; the similarities are multiplied by its exp.
    Returns:
        scalar: ``(CE(logits, arange) + CE(logits.T, arange)) / 2`` with ``logits = exp(s) * I T^T``.
    """
    if image_emb.dim() != 2 or image_emb.shape != text_emb.shape or len(image_emb) == 0:
        raise ValueError(f"image_emb and text_emb: expected two (B, D) tensors of the same shape with B >= 1, "
                         f"got {tuple(image_emb.shape)} and {tuple(text_emb.shape)}")
    if not (image_emb.is_floating_point() and text_emb.is_floating_point()) \
            or (text_emb.dtype != image_emb.dtype and not autocasting(image_emb.device)):
        raise TypeError(f"image_emb and text_emb: expected floating-point tensors of one dtype (outside autocast), "
                        f"got {image_emb.dtype} and {text_emb.dtype}")
    if not isinstance(logit_scale, torch.Tensor) or logit_scale.numel() != 1 or not logit_scale.is_floating_point():
        got = f"{logit_scale.dtype} {tuple(logit_scale.shape)}" if isinstance(logit_scale, torch.Tensor) \
            else f"a {type(logit_scale).__name__}"
        raise TypeError(f"logit_scale: expected a floating-point scalar tensor, got {got}")
    logits = logit_scale.exp() * F.normalize(image_emb, dim=1) @ F.normalize(text_emb, dim=1).T  # (B, B)
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class ContrastiveModel(nn.Module):
    """An image encoder + projection and a projection of frozen sentence vectors, into one ``embed_dim`` space.

    ``encode_images((B, 1, 28, 28))`` and ``encode_texts((B, text_dim))`` -> unit vectors ``(B, embed_dim)``;
    ``forward(images, text_vectors)`` -> the :func:`clip_loss`. The temperature is learned
    (``logit_scale``, CLIP's initial value, clamped at ``MAX_LOGIT_SCALE``).
    """

    def __init__(self, text_dim: int = 384, embed_dim: int = 128, width: int = 64) -> None:
        super().__init__()
        self.image_encoder = PatchEncoder(width)
        self.image_proj = nn.Sequential(nn.Flatten(1), nn.Linear(16 * width, embed_dim))
        self.text_proj = nn.Linear(text_dim, embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(CLIP_INIT_LOGIT_SCALE))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_proj(_sixteen_tokens(self.image_encoder, images)), dim=1)

    def encode_texts(self, text_vectors: torch.Tensor) -> torch.Tensor:
        if text_vectors.dim() != 2 or text_vectors.shape[1] != self.text_proj.in_features:
            raise ValueError(f"text_vectors: expected text vectors (B, {self.text_proj.in_features}), "
                             f"got {tuple(text_vectors.shape)}")
        check_floating(text_vectors, "text_vectors", self.text_proj.weight.dtype)
        return F.normalize(self.text_proj(text_vectors), dim=1)

    def scale(self) -> torch.Tensor:
        """``exp(logit_scale)``, the clamped inverse temperature."""
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def forward(self, images: torch.Tensor, text_vectors: torch.Tensor) -> torch.Tensor:
        return clip_loss(self.encode_images(images), self.encode_texts(text_vectors),
                         self.logit_scale.clamp(max=MAX_LOGIT_SCALE))


@torch.no_grad()
def embed_images(model: ContrastiveModel, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Unit image vectors, in eval mode.

    Args:
        images: ``(N, 1, 28, 28)`` on any device; each batch is moved to the model's device.
    Returns:
        ``(N, embed_dim)`` on the model's device.
    """
    _check_batches(images, "images", "(N, 1, 28, 28)", batch_size)
    device = device_of(model)
    with evaluating(model):
        return torch.cat([model.encode_images(images[i:i + batch_size].to(device))
                          for i in range(0, len(images), batch_size)])


def recall_at_k(similarity: torch.Tensor, k: int, relevant: torch.Tensor | None = None) -> float:
    """Fraction of queries (rows) with a relevant item among their ``k`` most similar columns.

    Args:
        similarity: ``(N, M)`` query-by-item scores, higher = more similar; no NaN, N and M at least 1.
        k: how many of the top columns to look in, ``1 <= k <= M``.
        relevant: ``(N, M)`` bool; default: item i is the one relevant to query i (needs N <= M).
    Raises:
        ValueError: for other shapes or ``k``, NaN scores, or more queries than items without ``relevant``;
            ``TypeError`` for a ``similarity`` that is not real numbers or a ``relevant`` that is not bool.
    """
    if not isinstance(similarity, torch.Tensor) or similarity.is_complex() or similarity.dtype == torch.bool:
        got = similarity.dtype if isinstance(similarity, torch.Tensor) else f"a {type(similarity).__name__}"
        raise TypeError(f"similarity: expected a tensor of real scores, got {got}")
    if similarity.dim() != 2 or 0 in similarity.shape:
        raise ValueError(f"similarity: expected (N, M) scores with at least one query and one item, "
                         f"got shape {tuple(similarity.shape)}")
    n, m = similarity.shape
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k: expected an int, got a {type(k).__name__}")
    if not 1 <= k <= m:
        raise ValueError(f"k: expected 1 <= k <= M = {m}, got {k}")
    if similarity.is_floating_point() and bool(similarity.isnan().any()):
        raise ValueError(f"similarity: {int(similarity.isnan().sum())} NaN score(s); rank finite scores")
    if relevant is None:
        if n > m:
            raise ValueError(f"similarity: {n} queries but {m} items; the default relevant (item i for query i) "
                             "needs N <= M: pass relevant=(N, M) bool")
        relevant = torch.eye(n, m, dtype=torch.bool, device=similarity.device)
    elif not isinstance(relevant, torch.Tensor) or relevant.dtype != torch.bool:
        got = relevant.dtype if isinstance(relevant, torch.Tensor) else f"a {type(relevant).__name__}"
        raise TypeError(f"relevant: expected a bool tensor (N, M), got {got}")
    elif relevant.shape != (n, m):
        raise ValueError(f"relevant: expected the similarity's shape {(n, m)}, got {tuple(relevant.shape)}")
    top = similarity.topk(k, dim=1).indices  # (N, k)
    return relevant.to(top.device).gather(1, top).any(1).float().mean().item()


def caption_matches(captions: CaptionSet, bins: AttributeBins) -> torch.Tensor:
    """``(N, N)`` bool: ``[i, j]`` is True when caption ``i`` is true of image ``j``.

    That is, image ``j`` is of the class caption ``i`` names and has every attribute word caption ``i``
    uses ("a thin, upright seven" is true of every thin, upright seven, whatever its size). The
    sentence frame and the choice and order of words, invisible in the pixels, do not matter.

    Args:
        captions: from :func:`~course_utils.imagetext.make_captions`; its ``attributes`` are the images'.
        bins: the thirds the captions were made with (fitted on the training split).
    Returns:
        on the device of ``captions.labels``; the diagonal is all True.
    """
    if not isinstance(captions, CaptionSet):
        raise TypeError(f"captions: expected a CaptionSet (from make_captions), got {type(captions).__name__}")
    if not isinstance(bins, AttributeBins):
        raise TypeError(f"bins: expected an AttributeBins, got {type(bins).__name__}")
    device = captions.labels.device
    levels = bins.levels(captions.attributes)
    matches = captions.labels[:, None] == captions.labels[None, :]                      # (N, N) same class
    for name in bins.informative:
        word_level = {word: level for level, word in enumerate(WORDS[name])}
        said = torch.tensor([next((word_level[t] for t in tokens(c) if t in word_level), -1)
                             for c in captions.captions], device=device)                   # (N,) -1: not said
        matches &= (said[:, None] == -1) | (said[:, None] == levels[name].to(device)[None, :])
    return matches


class ZeroShotClassifier(nn.Module):
    """Classify images by the class text they are closest to: ``(B, 1, 28, 28)`` -> ``(B, classes)`` logits.

    The logits are the cosine similarities of each image's embedding with each class's embedding
    (e.g. the mean of several prompts, normalised), times the model's learned scale. Nothing is trained:
    the classes come from text alone.
    """

    def __init__(self, model: ContrastiveModel, class_embeddings: torch.Tensor) -> None:
        super().__init__()
        embed_dim = model.text_proj.out_features
        if not isinstance(class_embeddings, torch.Tensor) or class_embeddings.dim() != 2 \
                or class_embeddings.shape[1] != embed_dim or len(class_embeddings) < 2:
            got = tuple(class_embeddings.shape) if isinstance(class_embeddings, torch.Tensor) \
                else f"a {type(class_embeddings).__name__}"
            raise ValueError(f"class_embeddings: expected (classes >= 2, {embed_dim}), got {got}")
        self.model = model
        self.register_buffer("classes", F.normalize(class_embeddings.detach().float(), dim=1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.scale() * self.model.encode_images(images) @ self.classes.to(images.device).T


class LinearProbe(nn.Module):
    """A linear classifier on a FROZEN image encoder's flattened patch tokens: ``(B, 1, 28, 28)`` -> ``(B, classes)``.

    The encoder is a copy of the one given (the original is left untouched), its weights frozen and
    kept in eval mode even while the probe trains, so only ``self.linear`` (``16 * width -> classes``)
    learns: train it with :func:`course_utils.training.fit`.
    """

    def __init__(self, encoder: PatchEncoder, num_classes: int = 10) -> None:
        super().__init__()
        if not isinstance(encoder, PatchEncoder):
            raise TypeError(f"encoder: expected a PatchEncoder, got {type(encoder).__name__}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes: expected an int of at least 2, got {num_classes!r}")
        self.encoder = copy.deepcopy(encoder).requires_grad_(False).eval()
        self.linear = nn.Linear(16 * encoder.width, num_classes)

    def train(self, mode: bool = True) -> "LinearProbe":
        super().train(mode)
        self.encoder.eval()   # frozen: its batch-norm statistics never move
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = _sixteen_tokens(self.encoder, images).flatten(1)   # (B, 16 * width)
        return self.linear(features)
