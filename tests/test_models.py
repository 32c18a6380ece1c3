"""The MLP and CNN later notebooks compare against (course_utils.models)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils.models import CNN, MLP, conv_block, count_parameters
from course_utils.runsize import set_seed


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_mlp_shapes_and_size():
    model = MLP()
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    assert _params(model) == (784 * 512 + 512) + (512 * 256 + 256) + (256 * 10 + 10)
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules()), "an MLP has no convolution"


def test_mlp_without_hidden_layers_is_logistic_regression():
    model = MLP(hidden=(), num_classes=3)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 1 and linears[0].in_features == 784 and linears[0].out_features == 3


def test_cnn_shapes_and_size():
    model = CNN()
    x = torch.rand(4, 1, 28, 28)
    sizes = []
    for layer in model:
        x = layer(x)
        sizes.append(tuple(x.shape[1:]))
    assert sizes[:3] == [(16, 14, 14), (32, 7, 7), (64, 3, 3)]
    assert sizes[-1] == (10,)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 3
    assert _params(model) < _params(MLP()) / 4, "the CNN needs far fewer weights than the MLP"


def test_cnn_takes_colour_images_and_other_class_counts():
    assert CNN(in_channels=3, num_classes=7)(torch.rand(2, 3, 28, 28)).shape == (2, 7)


def test_conv_block_is_translation_equivariant():
    """Shift the input by 2 pixels and the block's output (after a 2x2 pool) shifts by 1: what a conv
    layer sees does not depend on where in the image it is."""
    set_seed(0)
    block = conv_block(1, 4).eval()
    image = torch.zeros(1, 1, 16, 16)
    image[0, 0, 4:9, 3:8] = torch.rand(5, 5)
    shifted = torch.roll(image, shifts=2, dims=-1)
    with torch.no_grad():
        out, out_shifted = block(image), block(shifted)
    assert out.shape == (1, 4, 8, 8)
    assert torch.allclose(out_shifted[..., 1:], out[..., :-1], atol=1e-6)
    assert not torch.allclose(out_shifted, out, atol=1e-3)


@pytest.mark.parametrize("model", [MLP(), CNN()], ids=["MLP", "CNN"])
def test_models_are_deterministic_in_eval_mode(model):
    x = torch.rand(8, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x)), "eval mode must be deterministic"
        model.train()
        assert not torch.equal(model(x), model(x)), "training mode uses dropout"


def test_count_parameters_counts_trainable_numbers_only():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))  # (3*4 + 4) + (4*2 + 2) = 26
    assert count_parameters(model) == 26
    model[0].requires_grad_(False)
    assert count_parameters(model) == 10
