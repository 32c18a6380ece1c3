"""Models that several notebooks reuse: the MLP of notebook 01, the CNN of notebook 02, and the
``PatchEncoder`` that gives the multimodal notebooks (04, 06) image tokens.

Each notebook builds its model in front of the learner first; these are the same models, kept
here so that later notebooks (the ViT of 03, say) can compare against them in one line. Also here:
``FlipAveraged``, test-time flips for any of them, and the input checks the models and the multimodal
helpers (:mod:`course_utils.fusion`, :mod:`course_utils.contrastive`) share.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of trainable numbers in ``model`` (frozen parameters are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def device_of(model: nn.Module) -> torch.device:
    """Where ``model`` runs, so where its inputs must go: the device of its first parameter (the CPU if it has none)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def autocasting(device: torch.device) -> bool:
    """Whether autocast is on for ``device``'s type: then torch casts mixed floating dtypes itself."""
    return torch.amp.is_autocast_available(device.type) and torch.is_autocast_enabled(device.type)


def check_floating(x: object, name: str, dtype: torch.dtype) -> None:
    """Raise ``TypeError`` unless ``x`` is a floating-point tensor that a model whose parameters are ``dtype``
    can take: of that dtype, or of any floating dtype under autocast (which casts inputs itself)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, torch.Tensor) else f"a {type(x).__name__}"
        raise TypeError(f"{name}: expected a floating-point tensor, got {got}")
    if x.dtype != dtype and not autocasting(x.device):
        raise TypeError(f"{name}: expected {dtype}, the dtype of the model's parameters, got {x.dtype}; "
                        f"pass {name}.to({dtype})")


def linear_input_dtype(layer: nn.Module) -> torch.dtype:
    """The floating dtype that the linear ``layer`` takes: its weight's, or float32 once it is quantised
    (``torch.ao`` dynamic int8, whose ``weight`` is a method that returns int8 values, not a parameter)."""
    weight = layer.weight
    return weight.dtype if isinstance(weight, torch.Tensor) else torch.float32


def _check_batches(inputs: object, name: str, shape: str, batch_size: object) -> None:
    """Raise unless ``inputs`` is a tensor with at least one row and ``batch_size`` an int of at least 1."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() == 0 or len(inputs) == 0:
        got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else f"a {type(inputs).__name__}"
        raise ValueError(f"{name}: expected a tensor {shape} with N >= 1, got {got}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int of at least 1, got {batch_size!r}")


class MLP(nn.Sequential):
    """Flatten -> [Linear -> ReLU -> Dropout] per hidden layer -> Linear.

    Input ``(B, C, H, W)`` images, output ``(B, num_classes)`` logits. No convolution: every pixel
    has its own weights, so it knows nothing of which pixels are neighbours.
    """

    def __init__(self, in_features: int = 28 * 28, hidden: tuple[int, ...] = (512, 256),
                 num_classes: int = 10, dropout: float = 0.2) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
        self.in_features = in_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` (or any ``(B, ...)`` with ``in_features`` values per example) -> ``(B, num_classes)``."""
        check_floating(images, "images", linear_input_dtype(self[1]))
        if images.dim() < 2 or math.prod(images.shape[1:]) != self.in_features:
            raise ValueError(f"images: expected (B, 1, 28, 28) or any (B, ...) with {self.in_features} values per "
                             f"example, got {tuple(images.shape)}")
        return super().forward(images)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (padding 1) -> BatchNorm -> ReLU -> 2x2 max-pool: ``(B, C, H, W) -> (B, C', H//2, W//2)``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class CNN(nn.Sequential):
    """Three conv blocks (28 -> 14 -> 7 -> 3 pixels) and a linear head: notebook 02's ``make_cnn()``.

    Input ``(B, 1, 28, 28)``, output ``(B, num_classes)`` logits. The default widths (16, 32, 64)
    train about three times faster on a CPU than (32, 64, 128); convert with
    ``.to(memory_format=torch.channels_last)`` for a further speed-up there.
    """

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 64), num_classes: int = 10,
                 dropout: float = 0.1, in_channels: int = 1) -> None:
        c1, c2, c3 = channels
        super().__init__(
            conv_block(in_channels, c1),   # (B, c1, 14, 14)
            conv_block(c1, c2),            # (B, c2, 7, 7)
            conv_block(c2, c3),            # (B, c3, 3, 3)
            nn.Flatten(),                  # (B, c3 * 9)
            nn.Dropout(dropout),
            nn.Linear(c3 * 3 * 3, num_classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, 28, 28)`` -> ``(B, num_classes)``; sides of 24 to 31 pixels also pool down to 3x3."""
        channels = self[0][0].in_channels
        check_floating(images, "images", self[0][0].weight.dtype)
        if images.dim() != 4 or images.shape[1] != channels or images.shape[2] // 8 != 3 or images.shape[3] // 8 != 3:
            raise ValueError(f"images: expected (B, {channels}, 28, 28), got {tuple(images.shape)}")
        return super().forward(images)


class FlipAveraged(nn.Module):
    """Test-time augmentation with mirror images: ``model``'s class probabilities on each image and on its
    left-right mirror, averaged.

    Input ``(B, C, H, W)``, output ``(B, num_classes)`` log-probabilities,
    ``log((softmax(model(x)) + softmax(model(x.flip(-1)))) / 2)``, which stand in for logits anywhere
    (``argmax``, ``softmax`` and cross-entropy read them alike). It is the test-time twin of training with
    random flips, so use it only where a mirror image keeps its label (clothes, photos; not digits or
    text). It adds no parameters, and it costs two forward passes of ``model``.
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a classifier (an nn.Module), got {type(model).__name__}")
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, num_classes)`` log-probabilities, averaged over the two views."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images: expected a batch of images (B, C, H, W) to mirror along W, got {got}")
        views = torch.stack([self.model(images).log_softmax(-1), self.model(images.flip(-1)).log_softmax(-1)])
        return views.logsumexp(0) - math.log(2)


class PatchEncoder(nn.Module):
    """A small CNN that turns an image into a 4x4 grid of feature tokens, for the multimodal notebooks.

    Two conv blocks (28 -> 14 -> 7 pixels), then a stride-2 3x3 convolution (7 -> 4):
    ``(B, 1, 28, 28)`` -> ``(B, 16, width)``, one token per cell of the grid, in reading order.
    ``tokens.mean(1)`` gives one vector per image.
    """

    def __init__(self, width: int = 64, channels: tuple[int, int] = (16, 32), in_channels: int = 1) -> None:
        super().__init__()
        c1, c2 = channels
        self.width = width
        self.features = nn.Sequential(
            conv_block(in_channels, c1),                                        # (B, c1, 14, 14)
            conv_block(c1, c2),                                                 # (B, c2, 7, 7)
            nn.Conv2d(c2, width, kernel_size=3, stride=2, padding=1, bias=False),  # (B, width, 4, 4)
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        channels = self.features[0][0].in_channels
        check_floating(images, "images", self.features[0][0].weight.dtype)
        if images.dim() != 4 or images.shape[1] != channels or min(images.shape[2:]) < 4:
            raise ValueError(f"images: expected (B, {channels}, 28, 28) (any H, W of at least 4), "
                             f"got {tuple(images.shape)}")
        return self.features(images).flatten(2).transpose(1, 2)


def _sixteen_tokens(encoder: PatchEncoder, images: torch.Tensor) -> torch.Tensor:
    """``encoder(images)``, ``(B, 16, width)``; ``ValueError`` for images of a size giving another number of tokens."""
    tokens = encoder(images)
    if tokens.shape[1] != 16:
        raise ValueError(f"images: expected (B, 1, 28, 28), which give 16 patch tokens, got {tuple(images.shape)} "
                         f"({tokens.shape[1]} tokens)")
    return tokens
