"""Multimodal fusion and CLIP-style contrastive alignment, for notebook 06.

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
- :func:`clip_loss` (symmetric InfoNCE) and :class:`ContrastiveModel`: an image encoder and a text
  projection trained to meet in one embedding space; :func:`recall_at_k` for retrieval.
- :func:`answer_loss`, :func:`predict_answers`: the loss and predictions of a fusion model; train them
  with :func:`course_utils.training.fit_tensors`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .attention import MultiHeadAttention
from .models import PatchEncoder
from .training import evaluating

CLIP_INIT_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature 0.07, stored as log(1 / T)
MAX_LOGIT_SCALE = math.log(100.0)           # CLIP clamps the scale at 100


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
def text_features(encoder, texts: Sequence[str], max_length: int = 16) -> TextFeatures:
    """Run the frozen ``encoder`` (from :func:`course_utils.text.load_text_encoder`) once per distinct sentence.

    Returns:
        :class:`TextFeatures` of the distinct sentences in first-seen order; tokens cut or padded
        to ``max_length``.
    """
    from .text import encode_texts, tokenize

    distinct = list(dict.fromkeys(texts))
    batch = tokenize(encoder, distinct, max_length)
    with evaluating(encoder.model):
        hidden = encoder.model(**batch.to(encoder.device)).last_hidden_state.float().cpu()  # (U, T, H)
    return TextFeatures(distinct, hidden, batch["attention_mask"].bool().cpu(), encode_texts(encoder, distinct))


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
        if a.dim() != 2 or b.dim() != 2 or len(a) != len(b):
            raise ValueError(f"expected a (B, Da) and b (B, Db) with the same B, got {tuple(a.shape)} and {tuple(b.shape)}")
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
        return self.head(self.encoder(images).flatten(1))


def tagger_loss(model: ImageTagger, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of the cross-entropies of the digit and of each attribute's third; ``targets`` ``(B, 1 + A)``.

    Returns ``(loss, number of digits named right)`` for :func:`~course_utils.training.fit_tensors`.
    """
    logits = model(images)
    digit = logits[:, :model.num_classes]
    loss = F.cross_entropy(digit, targets[:, 0])
    for a in range(model.num_attributes):
        start = model.num_classes + 3 * a
        loss = loss + F.cross_entropy(logits[:, start:start + 3], targets[:, 1 + a])
    return loss, int((digit.argmax(1) == targets[:, 0]).sum())


@torch.no_grad()
def image_tokens(encoder: PatchEncoder, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``(N, 16, width)`` patch tokens of a frozen encoder, computed once in eval mode."""
    with evaluating(encoder):
        return torch.cat([encoder(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


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
        if image_tokens.dim() != 3 or image_tokens.shape[2] != self.width or text_ids.dim() != 1 \
                or len(image_tokens) != len(text_ids):
            raise ValueError(f"expected image tokens (B, 16, {self.width}) and text_ids (B,), got "
                             f"{tuple(image_tokens.shape)} and {tuple(text_ids.shape)}")
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
# Contrastive alignment
# ---------------------------------------------------------------------------------------------

def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): row i of each batch is a matching pair, every other row a negative.

    Args:
        image_emb, text_emb: ``(B, D)``; normalised here to unit length.
        logit_scale: scalar, ``log(1 / temperature)``; the similarities are multiplied by its exp.
    Returns:
        scalar: ``(CE(logits, arange) + CE(logits.T, arange)) / 2`` with ``logits = exp(s) * I T^T``.
    """
    if image_emb.dim() != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(f"expected two (B, D) tensors of the same shape, got {tuple(image_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
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
        return F.normalize(self.image_proj(self.image_encoder(images)), dim=1)

    def encode_texts(self, text_vectors: torch.Tensor) -> torch.Tensor:
        if text_vectors.dim() != 2 or text_vectors.shape[1] != self.text_proj.in_features:
            raise ValueError(f"expected text vectors (B, {self.text_proj.in_features}), got {tuple(text_vectors.shape)}")
        return F.normalize(self.text_proj(text_vectors), dim=1)

    def scale(self) -> torch.Tensor:
        """``exp(logit_scale)``, the clamped inverse temperature."""
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()

    def forward(self, images: torch.Tensor, text_vectors: torch.Tensor) -> torch.Tensor:
        return clip_loss(self.encode_images(images), self.encode_texts(text_vectors),
                         self.logit_scale.clamp(max=MAX_LOGIT_SCALE))


@torch.no_grad()
def embed_images(model: ContrastiveModel, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """``(N, embed_dim)`` unit image vectors, in eval mode."""
    device = next(model.parameters()).device
    with evaluating(model):
        return torch.cat([model.encode_images(images[i:i + batch_size].to(device))
                          for i in range(0, len(images), batch_size)])


def recall_at_k(similarity: torch.Tensor, k: int, relevant: torch.Tensor | None = None) -> float:
    """Fraction of queries (rows) with a relevant item among their ``k`` most similar columns.

    Args:
        similarity: ``(N, M)`` query-by-item scores, higher = more similar.
        relevant: ``(N, M)`` bool; default: item i is the one relevant to query i (needs N <= M).
    """
    if similarity.dim() != 2 or not 1 <= k <= similarity.shape[1]:
        raise ValueError(f"expected a (N, M) similarity and 1 <= k <= M, got {tuple(similarity.shape)} and k={k}")
    if relevant is None:
        relevant = torch.eye(*similarity.shape, dtype=torch.bool, device=similarity.device)
    top = similarity.topk(k, dim=1).indices  # (N, k)
    return relevant.gather(1, top).any(1).float().mean().item()


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

def answer_loss(model: nn.Module, image_tokens: torch.Tensor, text_ids: torch.Tensor,
                answers: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Cross-entropy of a fusion model's yes/no logits, and the number answered right (for :func:`~course_utils.training.fit_tensors`)."""
    logits = model(image_tokens, text_ids)
    return F.cross_entropy(logits, answers), int((logits.argmax(1) == answers).sum())


@torch.no_grad()
def predict_answers(model: nn.Module, image_tokens: torch.Tensor, text_ids: torch.Tensor,
                    batch_size: int = 1024) -> torch.Tensor:
    """``(N,)`` predicted answers (0 no, 1 yes) from image tokens ``(N, 16, width)`` and question ids, in eval mode."""
    with evaluating(model):
        return torch.cat([model(image_tokens[i:i + batch_size], text_ids[i:i + batch_size]).argmax(1)
                          for i in range(0, len(image_tokens), batch_size)])
