"""The MLP and CNN later notebooks compare against (course_utils.models)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils.models import CNN, MLP, FlipAveraged, PatchEncoder, conv_block, count_parameters
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


@pytest.mark.parametrize("model, bad, error, message", [
    (MLP(), torch.rand(2, 1, 20, 20), ValueError, r"images: expected \(B, 1, 28, 28\) or any \(B, \.\.\.\) with 784 v"),
    (MLP(), torch.zeros(2, 1, 28, 28, dtype=torch.uint8), TypeError, "images: expected a floating-point"),
    (MLP(), torch.rand(2, 1, 28, 28).double(), TypeError, r"images: expected torch.float32.*images.to"),
    (CNN(), torch.rand(2, 3, 28, 28), ValueError, r"images: expected \(B, 1, 28, 28\), got \(2, 3, 28, 28\)"),
    (CNN(), torch.rand(1, 28, 28), ValueError, r"images: expected \(B, 1, 28, 28\), got \(1, 28, 28\)"),
    (CNN(), torch.rand(2, 1, 16, 16), ValueError, r"got \(2, 1, 16, 16\)"),
    (PatchEncoder(8), torch.rand(2, 2, 28, 28), ValueError, r"images: expected \(B, 1, 28, 28\)"),
    (PatchEncoder(8), torch.rand(2, 1, 3, 3), ValueError, "at least 4"),
], ids=["mlp-size", "mlp-uint8", "mlp-float64", "cnn-channels", "cnn-no-batch", "cnn-size", "patches-channels",
        "patches-tiny"])
def test_models_refuse_images_of_another_shape_or_dtype(model, bad, error, message):
    """These used to fail inside torch: "mat1 and mat2 shapes cannot be multiplied", a conv's channel error."""
    with pytest.raises(error, match=message):
        model.eval()(bad)


def test_models_take_an_empty_batch_and_mixed_dtypes_under_autocast():
    assert MLP().eval()(torch.rand(0, 1, 28, 28)).shape == (0, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert CNN().eval()(torch.rand(2, 1, 28, 28).bfloat16()).shape == (2, 10)


def test_flip_averaged_averages_the_probabilities_of_both_views():
    set_seed(0)
    model, x = CNN().eval(), torch.rand(5, 1, 28, 28)
    averaged = FlipAveraged(model)
    with torch.no_grad():
        expected = (model(x).softmax(-1) + model(x.flip(-1)).softmax(-1)) / 2
        out = averaged(x)
        assert torch.allclose(out.exp(), expected, atol=1e-6)
        assert torch.allclose(out, averaged(x.flip(-1)), atol=1e-6), "an image and its mirror get the same answer"
        assert not torch.allclose(out, model(x).log_softmax(-1), atol=1e-3), "the mirror view changes the answer"
    assert count_parameters(averaged) == count_parameters(model)


def test_flip_averaged_refuses_what_it_cannot_mirror():
    with pytest.raises(TypeError, match="model: expected a classifier"):
        FlipAveraged(lambda x: x)
    with pytest.raises(ValueError, match=r"images: expected a batch of images \(B, C, H, W\).*got \(1, 28, 28\)"):
        FlipAveraged(CNN())(torch.rand(1, 28, 28))
