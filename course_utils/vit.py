"""A small Vision Transformer built from :mod:`course_utils.attention`, and tools to look inside it.

Image ``(B, C, H, W)`` -> patches ``(B, N, C*P*P)`` -> patch embeddings ``(B, N, D)`` -> a learned
CLS token in front and learned position embeddings added ``(B, N+1, D)`` -> L pre-norm encoder
blocks -> LayerNorm -> the CLS token's vector ``(B, D)`` -> linear head ``(B, classes)``.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor, nn

from .attention import MultiHeadAttention
from .models import check_floating, device_of
from .training import evaluating


def _check_patch_size(patch_size: object) -> None:
    """Raise ``ValueError`` unless ``patch_size`` is an int of at least 1."""
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size: expected an int of at least 1, got {patch_size!r}")


def _check_images(images: object, patch_size: int) -> Tensor:
    """Return ``images`` if they are float ``(B, C, H, W)`` with H and W positive multiples of ``patch_size``."""
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images: expected float images shaped (B, C, H, W), got {shape}")
    if images.shape[1] == 0:
        raise ValueError(f"images: expected at least one channel, got shape {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if h % patch_size or w % patch_size or h == 0 or w == 0:
        raise ValueError(f"images: image size {h}x{w} is not divisible by patch size {patch_size} "
                         "(H and W must be positive multiples of it)")
    return images


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut images into non-overlapping square patches, row by row.

    ``(B, C, H, W)`` -> ``(B, N, C*P*P)`` with ``N = (H/P) * (W/P)``; each patch is flattened
    channel-first, the same order as a ``Conv2d`` weight ``(D, C, P, P)``.
    """
    _check_patch_size(patch_size)
    images = _check_images(images, patch_size)
    patches = nn.functional.unfold(images, kernel_size=patch_size, stride=patch_size)  # (B, C*P*P, N)
    return patches.transpose(1, 2)



def shuffle_patches(images: Tensor, patch_size: int, order: Tensor) -> Tensor:
    """Rearrange each image's patches: ``(B, C, H, W)`` -> ``(B, C, H, W)``, the same for every image.

    Patch ``j`` (in reading order) of the result is patch ``order[j]`` of the input; ``order`` is a
    permutation of ``0 .. N-1``, ``N = (H/P) * (W/P)``. The pixels inside each patch stay as they were.
    """
    patches = patchify(images, patch_size)                                       # (B, N, C*P*P)
    n = patches.shape[1]
    if not isinstance(order, Tensor) or order.dtype != torch.long or \
            not torch.equal(order.sort().values.cpu(), torch.arange(n)):
        raise ValueError(f"order: expected a permutation of 0..{n - 1} (a long tensor of {n} patch indices), "
                         f"got {order if not isinstance(order, Tensor) else tuple(order.tolist())}")
    moved = patches[:, order.to(patches.device)].transpose(1, 2)                 # (B, C*P*P, N)
    return nn.functional.fold(moved, images.shape[-2:], kernel_size=patch_size, stride=patch_size)

class PatchEmbedding(nn.Module):
    """Patchify and project each patch to ``embed_dim`` in one step: a Conv2d with stride = kernel = P.

    ``(B, C, H, W)`` -> ``(B, N, D)``. The same as ``patchify`` followed by a Linear layer whose weight
    is ``conv.weight.flatten(1)``.
    """

    def __init__(self, patch_size: int, embed_dim: int, in_channels: int = 1) -> None:
        super().__init__()
        _check_patch_size(patch_size)
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: Tensor) -> Tensor:
        images = _check_images(images, self.patch_size)
        check_floating(images, "images", self.proj.weight.dtype)
        if images.shape[1] != self.proj.in_channels:
            channels = self.proj.in_channels
            raise ValueError(f"images: expected {channels} channel(s), (B, {channels}, H, W), "
                             f"got {tuple(images.shape)}")
        return self.proj(images).flatten(2).transpose(1, 2)


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))``. ``(B, T, D)`` -> ``(B, T, D)``.

    The attention is :class:`course_utils.attention.MultiHeadAttention`, plain matrix products. At a
    small ViT's shapes (17 tokens, 16 dimensions per head) that trained notebook 03's ViT about 1.6 times
    as fast on a CPU as torch's fused ``F.scaled_dot_product_attention``, whose CPU kernel is built for long
    sequences. The block keeps its last attention weights ``(B, H, T, T)`` in ``self.attention`` when
    ``keep_attention`` is True, for plots.
    """

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(embed_dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.attn = MultiHeadAttention(embed_dim, num_heads)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, embed_dim), nn.Dropout(dropout))
        self.keep_attention = False
        self.attention: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        width = self.norm1.normalized_shape[0]
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != width:
            got = tuple(x.shape) if isinstance(x, Tensor) else f"a {type(x).__name__}"
            raise ValueError(f"x: expected tokens shaped (B, T, {width}), got {got}")
        check_floating(x, "x", self.norm1.weight.dtype)
        attended, weights = self.attn(self.norm1(x))
        self.attention = weights.detach() if self.keep_attention else None
        x = x + attended
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT classifier: ``(B, C, H, W)`` images -> ``(B, num_classes)`` logits, read from the CLS token."""

    def __init__(self, image_size: int = 28, patch_size: int = 7, in_channels: int = 1, num_classes: int = 10,
                 embed_dim: int = 64, depth: int = 4, num_heads: int = 4, mlp_ratio: float = 2.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        _check_patch_size(patch_size)
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not divisible by patch size {patch_size}")
        self.grid = image_size // patch_size
        self.patch_embed = PatchEmbedding(patch_size, embed_dim, in_channels)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, self.grid ** 2 + 1, embed_dim) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(embed_dim, num_heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)

    def tokens(self, images: Tensor) -> Tensor:
        """Patch embeddings with the CLS token in front and position embeddings added: ``(B, N+1, D)``."""
        x = self.patch_embed(images)
        if x.shape[1] != self.pos_embed.shape[1] - 1:
            raise ValueError(f"images: expected {self.grid}x{self.grid} patches, got {x.shape[1]}: wrong image size?")
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1) + self.pos_embed

    def features(self, images: Tensor) -> Tensor:
        """All output tokens after the final LayerNorm: ``(B, N+1, D)``; token 0 is CLS."""
        x = self.tokens(images)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images)[:, 0])

    @torch.no_grad()
    def attention_maps(self, images: Tensor) -> list[Tensor]:
        """Each block's attention weights for ``images`` ``(B, C, H, W)``, which may be on any device.

        The images are moved to the model's device; the model runs there in eval mode and gets its
        mode back afterwards. Returns a list of L tensors ``(B, heads, N+1, N+1)`` on the model's device.
        """
        for block in self.blocks:
            block.keep_attention = True
        try:
            with evaluating(self):
                self.features(images.to(device_of(self)))
            return [block.attention for block in self.blocks]
        finally:
            for block in self.blocks:
                block.keep_attention, block.attention = False, None


def attention_rollout(attentions: list[Tensor]) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each output token draws on each input token.

    Per layer: average the heads, add the identity for the residual path, renormalise rows; then
    multiply the layers in order. ``L x (B, H, T, T)`` -> ``(B, T, T)`` on the weights' device; row 0 is
    the CLS token's map.
    """
    if not attentions:
        raise ValueError("attentions: attention_rollout needs at least one layer's attention weights")
    shapes = [tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__ for w in attentions]
    if len(set(shapes)) != 1 or not isinstance(shapes[0], tuple) or len(shapes[0]) != 4 \
            or shapes[0][-1] != shapes[0][-2]:
        raise ValueError(f"attentions: expected each layer's weights shaped (B, H, T, T), all alike, got {shapes}")
    if shapes[0][1] == 0:
        raise ValueError(f"attentions: expected at least one head, got weights shaped {shapes[0]}")
    dtypes = {w.dtype for w in attentions}
    if len(dtypes) != 1 or not attentions[0].is_floating_point():
        raise TypeError(f"attentions: expected floating-point weights of one dtype, got {sorted(map(str, dtypes))}")
    rollout = None
    for weights in attentions:
        a = weights.mean(dim=1) + torch.eye(weights.shape[-1], device=weights.device)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout


def _on_image(ax: plt.Axes, image: Tensor, heat: Tensor, vmax: float, cmap: str = "inferno"):
    """Draw a grey ``image (H, W)`` with ``heat (g, g)`` blown up to its size (nearest, so each patch stays
    one square) over it, on the colour scale ``[0, vmax]``; return the heat layer (for a colour bar)."""
    scale = image.shape[-1] // heat.shape[-1]
    ax.imshow(image.cpu().numpy(), cmap="gray")
    layer = ax.imshow(heat.cpu().repeat_interleave(scale, 0).repeat_interleave(scale, 1).numpy(), cmap=cmap,
                      alpha=0.55, vmin=0.0, vmax=vmax)
    ax.set_xticks([])
    ax.set_yticks([])
    return layer


def show_cls_attention(model: VisionTransformer, image: Tensor, title: str = "") -> plt.Figure:
    """The CLS token's attention over the patches, for every layer (rows) and head (columns), on the image.

    ``image (C, H, W)``. Each panel is row 0 of one head's weights ``(N+1, N+1)`` without the CLS
    column, laid out on the patch grid and drawn over the image; all panels share one colour scale
    (0 to the largest weight shown) and one colour bar, so panels can be compared.
    """
    maps = model.attention_maps(image[None])                              # L x (1, H, N+1, N+1)
    cls_rows = torch.stack([w[0, :, 0, 1:] for w in maps]).cpu()          # (L, H, N)
    layers, heads = cls_rows.shape[:2]
    vmax = float(cls_rows.max())
    fig, axes = plt.subplots(layers, heads, figsize=(1.7 * heads + 0.8, 1.7 * layers), squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer, head]
            shown = _on_image(ax, image[0], cls_rows[layer, head].reshape(model.grid, model.grid), vmax)
            if layer == 0:
                ax.set_title(f"head {head + 1}", fontsize=8)
            if head == 0:
                ax.set_ylabel(f"layer {layer + 1}", fontsize=8)
    fig.colorbar(shown, ax=axes, shrink=0.8, label="attention weight of the CLS token")
    fig.suptitle(title, fontsize=10)
    return fig


def show_rollout(model: VisionTransformer, images: Tensor, captions: list[str], title: str = "") -> plt.Figure:
    """Attention rollout of the CLS token (:func:`attention_rollout`) drawn over each image.

    ``images (B, C, H, W)``, one caption per image. Top row: the images; bottom row: the rollout's
    CLS row on the patch grid over the image, all on one colour scale with one colour bar.
    """
    rollout = attention_rollout(model.attention_maps(images))[:, 0, 1:].cpu()   # (B, N)
    vmax = float(rollout.max())
    count = len(images)
    fig, axes = plt.subplots(2, count, figsize=(1.5 * count + 0.8, 3.3), squeeze=False)
    for i in range(count):
        axes[0, i].imshow(images[i, 0].cpu().numpy(), cmap="gray")
        axes[0, i].set_title(captions[i], fontsize=8)
        axes[0, i].axis("off")
        shown = _on_image(axes[1, i], images[i, 0], rollout[i].reshape(model.grid, model.grid), vmax)
    fig.colorbar(shown, ax=axes[1], shrink=0.9, label="rollout weight")
    fig.suptitle(title, fontsize=10)
    return fig


def position_similarity(model: VisionTransformer) -> Tensor:
    """Cosine similarity of the learned position embeddings of the patches, CLS left out: ``(N, N)``,
    with the diagonal (each position with itself, always 1) set to NaN so that it does not set the scale."""
    pos = nn.functional.normalize(model.pos_embed[0, 1:].detach().float().cpu(), dim=-1)   # (N, D)
    similarity = pos @ pos.T
    return similarity.fill_diagonal_(float("nan"))


def show_position_similarity(model: VisionTransformer, title: str = "") -> plt.Figure:
    """Two views of :func:`position_similarity`, on one colour scale with a colour bar.

    Left: the ``(N, N)`` matrix, rows and columns labelled by each patch's (row, column) on the grid,
    the diagonal masked (grey). Right: one small map per patch, laid out like the image, showing how
    similar every other position is to it (the patch itself grey).
    """
    similarity = position_similarity(model).numpy()
    g = model.grid
    limit = float(abs(similarity[~np.isnan(similarity)]).max())
    cmap = plt.get_cmap("coolwarm").with_extremes(bad="0.75")
    fig = plt.figure(figsize=(11, 5))
    left, right = fig.subfigures(1, 2, width_ratios=[1.15, 1])
    ax = left.subplots()
    shown = ax.imshow(similarity, cmap=cmap, vmin=-limit, vmax=limit)
    names = [f"({r},{c})" for r in range(g) for c in range(g)]
    ax.set_xticks(range(g * g), names, rotation=90, fontsize=7)
    ax.set_yticks(range(g * g), names, fontsize=7)
    ax.set(xlabel="patch (row, column)", ylabel="patch (row, column)", title="all pairs, diagonal masked")
    maps = right.subplots(g, g)
    for i, small in enumerate(maps.flat):
        small.imshow(similarity[i].reshape(g, g), cmap=cmap, vmin=-limit, vmax=limit)
        small.set_xticks([])
        small.set_yticks([])
        if i < g:
            small.set_title(f"col {i}", fontsize=8)
        if i % g == 0:
            small.set_ylabel(f"row {i // g}", fontsize=8)
    right.suptitle("each patch against the others", fontsize=10)
    right.colorbar(shown, ax=maps, shrink=0.8, label="cosine similarity (both views)")
    fig.suptitle(title, fontsize=11)
    return fig


# Where each block's weights live in transformers' ViT: names of transformers 5 first, then of 4.x.
_HF_BLOCK_NAMES = (
    {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.q_proj": "attention.q_proj",
     "attn.k_proj": "attention.k_proj", "attn.v_proj": "attention.v_proj", "attn.out_proj": "attention.o_proj",
     "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2"},
    {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.q_proj": "attention.attention.query",
     "attn.k_proj": "attention.attention.key", "attn.v_proj": "attention.attention.value",
     "attn.out_proj": "attention.output.dense", "mlp.0": "intermediate.dense", "mlp.3": "output.dense"},
)
_HF_LAYER_PREFIX = ("vit.layers.{i}.", "vit.encoder.layer.{i}.")


def _hf_names(model: VisionTransformer, hf_keys: set[str]) -> dict[str, str]:
    """Map this model's state-dict names to those of a ``ViTForImageClassification`` with keys ``hf_keys``."""
    names = {"cls_token": "vit.embeddings.cls_token", "pos_embed": "vit.embeddings.position_embeddings",
             "patch_embed.proj.weight": "vit.embeddings.patch_embeddings.projection.weight",
             "patch_embed.proj.bias": "vit.embeddings.patch_embeddings.projection.bias",
             "norm.weight": "vit.layernorm.weight", "norm.bias": "vit.layernorm.bias",
             "head.weight": "classifier.weight", "head.bias": "classifier.bias"}
    for prefix, block_names in zip(_HF_LAYER_PREFIX, _HF_BLOCK_NAMES):
        if prefix.format(i=0) + "layernorm_before.weight" in hf_keys and \
                prefix.format(i=0) + block_names["attn.q_proj"] + ".weight" in hf_keys:
            for i in range(len(model.blocks)):
                for ours, theirs in block_names.items():
                    for p in ("weight", "bias"):
                        names[f"blocks.{i}.{ours}.{p}"] = prefix.format(i=i) + f"{theirs}.{p}"
            return names
    raise RuntimeError("this version of transformers names ViT's weights in a way course_utils does not know")


def to_transformers(model: VisionTransformer, id2label: dict[int, str]):
    """The same network as a ``transformers.ViTForImageClassification`` holding this model's weights.

    It takes RGB input ``(B, 3, H, W)``, as image pipelines deliver it: the one-channel patch filter is
    split equally over three channels, so a grey image given as three equal channels gives the same
    logits as ``model`` on the one-channel image. Needs ``in_channels == 1``.

    ``id2label`` names each of the model's outputs: keys ``0 .. num_classes - 1`` (ints, or their
    strings as in a saved config); anything else raises ``ValueError``.
    """
    if model.patch_embed.proj.in_channels != 1:
        raise ValueError("to_transformers converts one-channel (greyscale) models")
    num_classes = model.head.out_features
    if not isinstance(id2label, dict) or sorted(str(k) for k in id2label) != sorted(str(i) for i in range(num_classes)):
        got = sorted(id2label, key=str) if isinstance(id2label, dict) else f"a {type(id2label).__name__}"
        raise ValueError(f"id2label: expected one name per output of the model's head, keys 0 to {num_classes - 1}, "
                         f"got {got}")
    from transformers import ViTConfig, ViTForImageClassification

    block = model.blocks[0]
    config = ViTConfig(image_size=model.grid * model.patch_embed.patch_size, patch_size=model.patch_embed.patch_size,
                       num_channels=3, hidden_size=model.pos_embed.shape[-1], num_hidden_layers=len(model.blocks),
                       num_attention_heads=block.attn.num_heads, intermediate_size=block.mlp[0].out_features,
                       hidden_act="gelu", layer_norm_eps=block.norm1.eps, qkv_bias=True,
                       id2label={int(k): v for k, v in id2label.items()},
                       label2id={v: int(k) for k, v in id2label.items()})
    hf = ViTForImageClassification(config)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"].repeat(1, 3, 1, 1) / 3
    names = _hf_names(model, set(hf.state_dict()))
    hf.load_state_dict({names[k]: v for k, v in state.items()})
    return hf.eval()


def image_processor(image_size: int):
    """A ``ViTImageProcessor`` for our models: resize to ``image_size``, scale pixels to [0, 1], no
    mean/std shift (the models were trained on [0, 1] pixels). Give it RGB images."""
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": image_size, "width": image_size}, do_rescale=True,
                             rescale_factor=1 / 255, do_normalize=True, image_mean=[0.0] * 3, image_std=[1.0] * 3)
