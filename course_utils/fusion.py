"""Multimodal fusion, for notebook 06: models that answer a yes/no question about an image.

Two encoders, one per modality, and a way to combine them:

- :func:`text_features`: a frozen text encoder (all-MiniLM-L6-v2) run ONCE over the distinct
  sentences; models then look sentences up by index (:class:`TextFeatures`).
- :class:`ImageTagger`: a :class:`~course_utils.models.PatchEncoder` trained to name the digit and its
  attributes' thirds; frozen afterwards, its patch tokens are computed once (:func:`image_tokens`).
- :class:`FusionModel` and its variants answer a yes/no question about an image,
  ``model(image_tokens (B, 16, width), text_ids (B,))`` -> logits ``(B, 2)``:
  :class:`ImageOnly`, :class:`TextOnly` (baselines), :class:`EarlyFusion` (concatenation),
  :class:`LateFusion` (sum of two unimodal logits), :class:`GatedFusionModel` (a gated multimodal
  unit, :class:`GatedFusion`) and :class:`CrossAttentionFusion` (question tokens attend to the
  16 image patches).
- :func:`answer_loss`, :func:`predict_answers`: the loss and predictions of a fusion model; train them
  with :func:`course_utils.training.fit_tensors`.
- :func:`one_hot_features`: a text table with no language knowledge (a one-hot vector per sentence),
  the control that shows what a pretrained text encoder buys on wordings never trained on.
- :func:`read_images`: the digit and attribute thirds a trained :class:`ImageTagger` reads in each image.

The inference helpers (:func:`text_features`, :func:`image_tokens`, :func:`read_images`,
:func:`predict_answers`) take inputs on any device, move each batch to the model's device, run it
there in eval mode, and say where their result lives.

The CLIP-style contrastive part of notebook 06 (``clip_loss``, ``ContrastiveModel``, ``embed_images``,
``recall_at_k``) lives in :mod:`course_utils.contrastive` and is importable from here as well.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .attention import MultiHeadAttention
from .contrastive import CLIP_INIT_LOGIT_SCALE as CLIP_INIT_LOGIT_SCALE
from .contrastive import MAX_LOGIT_SCALE as MAX_LOGIT_SCALE
from .contrastive import ContrastiveModel as ContrastiveModel
from .contrastive import clip_loss as clip_loss
from .contrastive import embed_images as embed_images
from .contrastive import recall_at_k as recall_at_k
from .models import PatchEncoder, _check_batches, _sixteen_tokens, check_floating, device_of
from .text import TextEncoder, encode_texts, tokenize
from .training import evaluating

# ---------------------------------------------------------------------------------------------
# Frozen text features
# ---------------------------------------------------------------------------------------------

@dataclass
class TextFeatures:
    """A frozen text encoder's outputs for U distinct sentences.

    Attributes:
        texts: the U sentences, in order. tokens: ``(U, T, H)`` last hidden states.
        mask: ``(U, T)`` bool, True on real tokens. pooled: ``(U, H)`` mean-pooled, unit length.
    """

    texts: list[str]
    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def ids(self, texts: Sequence[str]) -> torch.Tensor:
        """``(N,)`` int64: the row of each sentence in this table. Raises ``KeyError`` for an unknown one."""
        row = {t: i for i, t in enumerate(self.texts)}
        missing = [t for t in texts if t not in row]
        if missing:
            raise KeyError(f"{len(missing)} sentence(s) not in the table, e.g. {missing[0]!r}")
        return torch.tensor([row[t] for t in texts], dtype=torch.int64)


@torch.no_grad()
def text_features(encoder: TextEncoder, texts: Sequence[str], max_length: int = 16) -> TextFeatures:
    """Run the frozen ``encoder`` (from :func:`course_utils.text.load_text_encoder`) once per distinct sentence.

    The token ids go to the encoder's device and the model runs there, in eval mode.

    Returns:
        :class:`TextFeatures` of the distinct sentences in first-seen order, on the CPU (a
        :class:`FusionModel` keeps them as buffers, which follow the model's ``.to(device)``);
        tokens cut or padded to ``max_length``.
    """
    distinct = list(dict.fromkeys(texts))
    batch = tokenize(encoder, distinct, max_length)
    with evaluating(encoder.model):
        hidden = encoder.model(**batch.to(encoder.device)).last_hidden_state.float().cpu()  # (U, T, H)
    return TextFeatures(distinct, hidden, batch["attention_mask"].bool().cpu(), encode_texts(encoder, distinct))


def one_hot_features(texts: Sequence[str]) -> TextFeatures:
    """A text table with no language knowledge: each distinct sentence is a one-hot vector of its row.

    The control for a pretrained encoder: a model on this table learns one vector per sentence it
    trained on, and has nothing to go on for a sentence it never saw (its row's weights stay untrained).

    Returns:
        :class:`TextFeatures` of the U distinct sentences (first-seen order), on the CPU: ``tokens``
        ``(U, 1, U)`` (one "token", the one-hot row), ``mask`` ``(U, 1)`` all True, ``pooled`` ``(U, U)``
        the identity.
    Raises:
        ValueError: no sentences; TypeError: a sentence that is not a str.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts: expected a sequence of sentences (str), e.g. a list of questions")
    distinct = list(dict.fromkeys(texts))
    if not distinct:
        raise ValueError("texts: expected at least one sentence, got none")
    rows = torch.eye(len(distinct))
    return TextFeatures(distinct, rows[:, None, :].clone(), torch.ones(len(distinct), 1, dtype=torch.bool), rows)


# ---------------------------------------------------------------------------------------------
# Fusion layers and models
# ---------------------------------------------------------------------------------------------

class GatedFusion(nn.Module):
    """A gated multimodal unit (Arevalo et al. 2017): ``z * tanh(W_a a) + (1 - z) * tanh(W_b b)``,
    with the gate ``z = sigmoid(W_z [a; b])`` computed per example and per feature from BOTH inputs.

    ``forward(a (B, Da), b (B, Db))`` -> ``(B, width)``; the last gate is kept in ``self.last_gate``.
    """

    def __init__(self, dim_a: int, dim_b: int, width: int) -> None:
        super().__init__()
        self.proj_a = nn.Linear(dim_a, width, bias=False)
        self.proj_b = nn.Linear(dim_b, width, bias=False)
        self.gate = nn.Linear(dim_a + dim_b, width, bias=False)
        self.last_gate: torch.Tensor | None = None

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        dim_a, dim_b = self.proj_a.in_features, self.proj_b.in_features
        if a.dim() != 2 or b.dim() != 2 or len(a) != len(b) or a.shape[1] != dim_a or b.shape[1] != dim_b:
            raise ValueError(f"expected a (B, {dim_a}) and b (B, {dim_b}) with the same B, "
                             f"got {tuple(a.shape)} and {tuple(b.shape)}")
        check_floating(a, "a", self.gate.weight.dtype)
        check_floating(b, "b", self.gate.weight.dtype)
        z = torch.sigmoid(self.gate(torch.cat([a, b], dim=1)))  # (B, width), 1 = take a
        self.last_gate = z.detach()
        return z * torch.tanh(self.proj_a(a)) + (1 - z) * torch.tanh(self.proj_b(b))


def head(in_features: int, hidden: int = 128, out: int = 2) -> nn.Sequential:
    """The trained classifier on top of a fused vector: Linear -> ReLU -> Linear, ``(B, in) -> (B, out)``."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, out))


class ImageTagger(nn.Module):
    """A :class:`~course_utils.models.PatchEncoder` trained to name what the questions ask about.

    ``forward(images (B, 1, 28, 28))`` -> ``(B, num_classes + 3 * num_attributes)`` logits: the digit,
    then the third (low / middle / high) of each attribute. :func:`tagger_loss` trains it.
    """

    def __init__(self, width: int = 64, num_classes: int = 10, num_attributes: int = 3) -> None:
        super().__init__()
        self.num_classes, self.num_attributes = num_classes, num_attributes
        self.encoder = PatchEncoder(width)
        self.head = nn.Linear(16 * width, num_classes + 3 * num_attributes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(_sixteen_tokens(self.encoder, images).flatten(1))


def tagger_loss(model: ImageTagger, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of the cross-entropies of the digit and of each attribute's third; ``targets`` ``(B, 1 + A)``.

    Returns ``(loss, number of digits named right)`` for :func:`~course_utils.training.fit_tensors`.
    """
    if targets.shape != (len(images), 1 + model.num_attributes) or targets.dtype != torch.int64:
        raise ValueError(f"targets: expected int64 (B, 1 + A) = ({len(images)}, {1 + model.num_attributes}), "
                         f"got {targets.dtype} {tuple(targets.shape)}")
    logits = model(images)
    digit = logits[:, :model.num_classes]
    loss = F.cross_entropy(digit, targets[:, 0])
    for a in range(model.num_attributes):
        start = model.num_classes + 3 * a
        loss = loss + F.cross_entropy(logits[:, start:start + 3], targets[:, 1 + a])
    return loss, int((digit.argmax(1) == targets[:, 0]).sum())


@torch.no_grad()
def read_images(tagger: ImageTagger, images: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """What a trained :class:`ImageTagger` reads in each image, in eval mode.

    Args:
        images: ``(N, 1, 28, 28)`` on any device; each batch is moved to the tagger's device.
    Returns:
        ``(digits (N,), thirds (N, A))`` int64 on the tagger's device: the predicted class, and the
        predicted third (0 low, 1 middle, 2 high) of each of its A attributes, in the tagger's order.
    """
    _check_batches(images, "images", "(N, 1, 28, 28)", batch_size)
    device = device_of(tagger)
    with evaluating(tagger):
        logits = torch.cat([tagger(images[i:i + batch_size].to(device)) for i in range(0, len(images), batch_size)])
    thirds = logits[:, tagger.num_classes:].reshape(len(logits), tagger.num_attributes, 3).argmax(2)
    return logits[:, :tagger.num_classes].argmax(1), thirds


@torch.no_grad()
def image_tokens(encoder: PatchEncoder, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Patch tokens of a frozen encoder, computed once in eval mode.

    Args:
        images: ``(N, 1, 28, 28)`` on any device; each batch is moved to the encoder's device.
    Returns:
        ``(N, 16, width)`` on the encoder's device.
    """
    _check_batches(images, "images", "(N, 1, 28, 28)", batch_size)
    device = device_of(encoder)
    with evaluating(encoder):
        return torch.cat([encoder(images[i:i + batch_size].to(device)) for i in range(0, len(images), batch_size)])


class FusionModel(nn.Module):
    """Base class: answers a yes/no question from FROZEN image patch tokens and a FROZEN text table.

    ``forward(image_tokens (B, 16, width), text_ids (B,))`` -> ``(B, 2)`` logits (no, yes). The image
    tokens come from a pretrained :class:`~course_utils.models.PatchEncoder` (:func:`image_tokens`);
    the text features are buffers: saved with the model, never trained. Subclasses implement :meth:`fuse`.
    """

    def __init__(self, text: TextFeatures, width: int = 64) -> None:
        super().__init__()
        self.width = width
        self.image_proj = nn.Sequential(nn.Flatten(1), nn.Linear(16 * width, width), nn.ReLU())
        self.register_buffer("text_tokens", text.tokens.clone())
        self.register_buffer("text_mask", text.mask.clone())
        self.register_buffer("text_pooled", text.pooled.clone())
        self.text_dim = text.pooled.shape[1]

    def forward(self, image_tokens: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        if image_tokens.shape[1:] != (16, self.width) or text_ids.dim() != 1 or len(image_tokens) != len(text_ids):
            raise ValueError(f"image_tokens and text_ids: expected image tokens (B, 16, {self.width}) and (B,), got "
                             f"{tuple(image_tokens.shape)} and {tuple(text_ids.shape)}")
        check_floating(image_tokens, "image_tokens", self.text_pooled.dtype)
        if text_ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"text_ids: expected int64 (or int32) rows of the text table, got {text_ids.dtype}")
        rows = len(self.text_pooled)
        if bool(((text_ids < 0) | (text_ids >= rows)).any()):
            raise ValueError(f"text_ids: expected rows of the text table, 0 to {rows - 1}, got values from "
                             f"{int(text_ids.min())} to {int(text_ids.max())}")
        return self.fuse(image_tokens, text_ids)

    def fuse(self, image_tokens: torch.Tensor, text_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class ImageOnly(FusionModel):
    """Baseline: the answer from the image alone (the question is ignored)."""

    def __init__(self, text: TextFeatures, width: int = 64) -> None:
        super().__init__(text, width)
        self.classifier = head(width)

    def fuse(self, image_tokens, text_ids):
        return self.classifier(self.image_proj(image_tokens))


class TextOnly(FusionModel):
    """Baseline: the answer from the question alone (the image is ignored)."""

    def __init__(self, text: TextFeatures, width: int = 64) -> None:
        super().__init__(text, width)
        del self.image_proj  # not used: no parameters counted for it
        self.classifier = head(self.text_dim)

    def fuse(self, image_tokens, text_ids):
        return self.classifier(self.text_pooled[text_ids])


class EarlyFusion(FusionModel):
    """Project each modality to ``width``, concatenate, classify: ``[W_i h_img ; W_t h_txt] -> head``."""

    def __init__(self, text: TextFeatures, width: int = 64) -> None:
        super().__init__(text, width)
        self.text_proj = nn.Sequential(nn.Linear(self.text_dim, width), nn.ReLU())
        self.classifier = head(2 * width)

    def fuse(self, image_tokens, text_ids):
        fused = torch.cat([self.image_proj(image_tokens), self.text_proj(self.text_pooled[text_ids])], 1)
        return self.classifier(fused)


class LateFusion(FusionModel):
    """One classifier per modality, logits added: ``head_i(h_img) + head_t(h_txt)``."""

    def __init__(self, text: TextFeatures, width: int = 64) -> None:
        super().__init__(text, width)
        self.image_head = head(width)
        self.text_head = head(self.text_dim)

    def fuse(self, image_tokens, text_ids):
        return self.image_head(self.image_proj(image_tokens)) + self.text_head(self.text_pooled[text_ids])


class GatedFusionModel(FusionModel):
    """:class:`GatedFusion` of the pooled image and question vectors, then a head."""

    def __init__(self, text: TextFeatures, width: int = 64) -> None:
        super().__init__(text, width)
        self.gated = GatedFusion(width, self.text_dim, 2 * width)
        self.classifier = head(2 * width)

    def fuse(self, image_tokens, text_ids):
        return self.classifier(self.gated(self.image_proj(image_tokens), self.text_pooled[text_ids]))


class CrossAttentionFusion(FusionModel):
    """Question tokens (queries) attend to the 16 image patch tokens (keys and values).

    Each question token is projected to ``width``; one :class:`~course_utils.attention.MultiHeadAttention`
    layer reads the patches; the attended vectors are averaged over the real question tokens and
    classified together with the projected question. ``self.last_weights``: ``(B, H, T, 16)``.
    """

    def __init__(self, text: TextFeatures, width: int = 64, num_heads: int = 4) -> None:
        super().__init__(text, width)
        self.text_proj = nn.Linear(self.text_dim, width)
        self.norm_q, self.norm_kv = nn.LayerNorm(width), nn.LayerNorm(width)
        self.cross = MultiHeadAttention(width, num_heads)
        self.classifier = head(3 * width)
        self.last_weights: torch.Tensor | None = None

    def fuse(self, image_tokens, text_ids):
        queries = self.norm_q(self.text_proj(self.text_tokens[text_ids]))      # (B, T, width)
        patches = self.norm_kv(image_tokens)                                   # (B, 16, width)
        attended, weights = self.cross(queries, patches, patches)              # (B, T, width), (B, H, T, 16)
        self.last_weights = weights.detach()
        mask = self.text_mask[text_ids].unsqueeze(-1).float()                  # (B, T, 1)
        pooled = (attended * mask).sum(1) / mask.sum(1)                        # (B, width)
        question = (queries * mask).sum(1) / mask.sum(1)
        return self.classifier(torch.cat([pooled, question, self.image_proj(image_tokens)], 1))


FUSION_MODELS: dict[str, type[FusionModel]] = {
    "image only": ImageOnly, "text only": TextOnly, "early (concat)": EarlyFusion, "late (sum of logits)": LateFusion,
    "gated": GatedFusionModel, "cross-attention": CrossAttentionFusion,
}


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def answer_loss(model: nn.Module, image_tokens: torch.Tensor, text_ids: torch.Tensor,
                answers: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Cross-entropy of a fusion model's yes/no logits, and the number answered right
    (for :func:`~course_utils.training.fit_tensors`)."""
    if answers.shape != (len(image_tokens),) or answers.dtype != torch.int64:
        raise ValueError(f"answers: expected int64 (B,) = ({len(image_tokens)},), 0 no or 1 yes, "
                         f"got {answers.dtype} {tuple(answers.shape)}")
    logits = model(image_tokens, text_ids)
    return F.cross_entropy(logits, answers), int((logits.argmax(1) == answers).sum())


@torch.no_grad()
def predict_answers(model: nn.Module, image_tokens: torch.Tensor, text_ids: torch.Tensor,
                    batch_size: int = 1024) -> torch.Tensor:
    """A fusion model's answers, in eval mode.

    Args:
        image_tokens: ``(N, 16, width)`` (from :func:`image_tokens`); text_ids: ``(N,)`` rows of the
            model's :class:`TextFeatures`. Both on any device; each batch is moved to the model's device.
    Returns:
        ``(N,)`` int64 on the model's device: 0 no, 1 yes.
    """
    _check_batches(image_tokens, "image_tokens", "(N, 16, width)", batch_size)
    if not isinstance(text_ids, torch.Tensor) or text_ids.shape != (len(image_tokens),):
        got = tuple(text_ids.shape) if isinstance(text_ids, torch.Tensor) else f"a {type(text_ids).__name__}"
        raise ValueError(f"text_ids: expected one row per image, ({len(image_tokens)},), got {got}")
    device = device_of(model)
    with evaluating(model):
        return torch.cat([model(image_tokens[i:i + batch_size].to(device), text_ids[i:i + batch_size].to(device))
                          .argmax(1) for i in range(0, len(image_tokens), batch_size)])
