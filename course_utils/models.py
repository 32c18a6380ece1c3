"""Models that several notebooks reuse: the MLP of notebook 01, the CNN of notebook 02, and the
``PatchEncoder`` that gives the multimodal notebooks (04, 06) image tokens.

Each notebook builds its model in front of the learner first; these are the same models, kept
here so that later notebooks (the ViT of 03, say) can compare against them in one line.
"""
from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of trainable numbers in ``model`` (frozen parameters are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


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
        if images.dim() != 4:
            raise ValueError(f"expected images shaped (B, C, H, W), got {tuple(images.shape)}")
        return self.features(images).flatten(2).transpose(1, 2)
