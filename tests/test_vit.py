"""course_utils.vit: patches, the model's shapes and parameters, attention maps, rollout, and export."""
from __future__ import annotations

import pytest
import torch

import course_utils as cu
from course_utils.exercises.vit import vit_parameter_count
from course_utils.vit import EncoderBlock, PatchEmbedding, VisionTransformer, attention_rollout, patchify


def images(b: int = 4, c: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, size, size, generator=torch.Generator().manual_seed(seed))


def test_patchify_cuts_squares_in_reading_order():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    patches = patchify(x, 2)
    assert patches.shape == (1, 4, 4)
    assert patches[0, 0].tolist() == [0, 1, 4, 5]        # top-left square
    assert patches[0, 1].tolist() == [2, 3, 6, 7]        # its right neighbour comes next
    assert patches[0, 2].tolist() == [8, 9, 12, 13]


def test_patchify_flattens_channel_first():
    x = images(2, 3, 12)
    patches = patchify(x, 4)
    assert patches.shape == (2, 9, 48)
    assert torch.equal(patches[1, 4].reshape(3, 4, 4), x[1, :, 4:8, 4:8])


@pytest.mark.parametrize("bad, message", [(torch.rand(28, 28), "(B, C, H, W)"),
                                          (torch.zeros(1, 1, 28, 28, dtype=torch.long), "float"),
                                          (torch.rand(1, 1, 30, 30), "not divisible")])
def test_patchify_rejects_bad_input(bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        patchify(bad, 7)


def test_strided_conv_equals_patchify_then_linear():
    embed = PatchEmbedding(7, 32, in_channels=2)
    x = images(3, 2)
    with torch.no_grad():
        by_unfold = patchify(x, 7) @ embed.proj.weight.flatten(1).T + embed.proj.bias
        assert torch.allclose(embed(x), by_unfold, atol=1e-5)


@pytest.mark.parametrize("config", [dict(), dict(patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=4.0),
                                    dict(patch_size=14, embed_dim=16, depth=1, num_heads=1, num_classes=3)])
def test_model_shapes_and_parameter_count(config):
    model = VisionTransformer(**config)
    logits = model(images(5))
    assert logits.shape == (5, config.get("num_classes", 10))
    settings = dict(patch_size=7, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0, num_classes=10) | config
    d = settings["embed_dim"]
    assert cu.count_parameters(model) == vit_parameter_count(
        28, settings["patch_size"], 1, d, settings["depth"], settings["num_heads"], int(d * settings["mlp_ratio"]),
        settings["num_classes"])


def test_model_rejects_wrong_image_size():
    with pytest.raises(ValueError, match="patches"):
        VisionTransformer()(torch.rand(2, 1, 14, 14))
    with pytest.raises(ValueError, match="divisible"):
        VisionTransformer(image_size=30, patch_size=7)


def test_without_positions_attention_ignores_patch_order():
    model = VisionTransformer(depth=2).eval()
    with torch.no_grad():
        model.pos_embed.zero_()
        x = images(2)
        # swap the top-left and bottom-right 7x7 patches: the same set of patches, in another order
        swapped = x.clone()
        swapped[..., :7, :7], swapped[..., 21:, 21:] = x[..., 21:, 21:], x[..., :7, :7]
        assert torch.allclose(model(x), model(swapped), atol=1e-5)
        model.pos_embed.normal_()
        assert not torch.allclose(model(x), model(swapped), atol=1e-3)


def test_encoder_block_is_pre_norm_residual():
    block = EncoderBlock(16, 4).eval()
    z = torch.randn(2, 5, 16)
    with torch.no_grad():
        attended = z + block.attn(block.norm1(z))[0]
        assert torch.allclose(block(z), attended + block.mlp(block.norm2(attended)), atol=1e-6)


def test_attention_maps_shapes_rows_and_mode():
    model = VisionTransformer(depth=3).train()
    maps = model.attention_maps(images(2))
    assert len(maps) == 3 and all(m.shape == (2, 4, 17, 17) for m in maps)
    assert all(torch.allclose(m.sum(-1), torch.ones(2, 4, 17)) for m in maps)
    assert model.training                                     # the caller's mode is back
    assert all(block.attention is None and not block.keep_attention for block in model.blocks)


def test_attention_rollout():
    t = 5
    identity = [torch.eye(t).expand(2, 3, t, t)] * 4
    assert torch.allclose(attention_rollout(identity), torch.eye(t).expand(2, t, t))
    uniform = torch.full((1, 2, t, t), 1 / t)
    # one layer: half residual, half uniform attention
    assert torch.allclose(attention_rollout([uniform])[0], (torch.eye(t) + 1 / t) / 2)
    rollout = attention_rollout(VisionTransformer().attention_maps(images(2)))
    assert rollout.shape == (2, 17, 17)
    assert torch.allclose(rollout.sum(-1), torch.ones(2, 17), atol=1e-5)
    with pytest.raises(ValueError, match="at least one"):
        attention_rollout([])
    with pytest.raises(ValueError, match=r"\(B, H, T, T\)"):
        attention_rollout([torch.rand(2, 5, 5)])


def test_vit_learns_a_little():
    cu.set_seed(0)
    train = cu.load_mnist("train").take(1024)
    model = VisionTransformer(embed_dim=32, depth=2, num_heads=2)
    cu.fit(model, train, epochs=6, lr=3e-3, weight_decay=0.05, batch_size=64, progress=False)
    assert cu.evaluate(model, cu.load_mnist("test").take(500))["acc"] > 0.5


def test_to_transformers_gives_the_same_logits():
    pytest.importorskip("transformers")
    model = VisionTransformer(depth=2).eval()
    hf = cu.vit.to_transformers(model, {i: str(i) for i in range(10)})
    x = images(3)
    with torch.no_grad():
        assert torch.allclose(hf(pixel_values=x.repeat(1, 3, 1, 1)).logits, model(x), atol=1e-5)
    assert hf.config.id2label[3] == "3"
    with pytest.raises(ValueError, match="one-channel"):
        cu.vit.to_transformers(VisionTransformer(in_channels=3), {i: str(i) for i in range(10)})


def test_image_processor_scales_rgb_images_to_unit_range():
    pytest.importorskip("transformers")
    from PIL import Image

    grey = (images(1)[0, 0] * 255).round().to(torch.uint8)
    photo = Image.fromarray(grey.numpy(), mode="L").convert("RGB")
    pixels = cu.vit.image_processor(28)(images=photo, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (1, 3, 28, 28)
    assert torch.allclose(pixels[0], grey.float().expand(3, -1, -1) / 255, atol=1e-6)


@pytest.mark.parametrize("patch_size", [0, -2, 1.5])
def test_patch_size_must_be_a_positive_int(patch_size):
    """patch_size=0 used to end in a ZeroDivisionError."""
    with pytest.raises(ValueError, match="patch_size: expected an int of at least 1"):
        patchify(images(1), patch_size)
    with pytest.raises(ValueError, match="patch_size"):
        VisionTransformer(patch_size=patch_size)


def test_patch_embedding_refuses_other_channel_counts_and_dtypes():
    with pytest.raises(ValueError, match=r"images: expected 1 channel\(s\), \(B, 1, H, W\), got \(2, 3, 28, 28\)"):
        VisionTransformer(embed_dim=8, depth=1, num_heads=2)(images(2, 3))
    with pytest.raises(TypeError, match="images: expected torch.float32"):
        VisionTransformer(embed_dim=8, depth=1, num_heads=2)(images(2).double())
    with pytest.raises(ValueError, match="at least one channel"):
        patchify(images(2, 0), 7)
    with pytest.raises(ValueError, match=r"x: expected tokens shaped \(B, T, 8\)"):
        EncoderBlock(8, 2)(torch.randn(5, 8))


def test_attention_rollout_refuses_layers_that_do_not_match():
    a = torch.softmax(torch.randn(2, 2, 5, 5), -1)
    with pytest.raises(ValueError, match="all alike"):
        attention_rollout([a, a[:, :, :4, :4]])
    with pytest.raises(TypeError, match="one dtype"):
        attention_rollout([a, a.double()])
    with pytest.raises(ValueError, match="at least one head"):
        attention_rollout([a[:, :0]])


@pytest.mark.parametrize("id2label", [{i: str(i) for i in range(3)}, {i: str(i) for i in range(1, 11)}])
def test_to_transformers_needs_one_label_per_output(id2label):
    """A wrong label count used to fail deep inside load_state_dict (a size mismatch of the classifier)."""
    with pytest.raises(ValueError, match=r"id2label: expected one name per output of the model's head, keys 0 to 9"):
        cu.vit.to_transformers(VisionTransformer(depth=1), id2label)


def test_shuffle_patches_moves_whole_patches():
    x = images(2)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    shuffled = cu.vit.shuffle_patches(x, 7, order)
    assert shuffled.shape == x.shape
    assert torch.equal(patchify(shuffled, 7), patchify(x, 7)[:, order])
    assert torch.equal(cu.vit.shuffle_patches(x, 7, torch.arange(16)), x)
    with pytest.raises(ValueError, match="permutation"):
        cu.vit.shuffle_patches(x, 7, torch.zeros(16, dtype=torch.long))


def test_fused_attention_path_matches_the_weights_path():
    block = EncoderBlock(32, 4).eval()
    z = torch.randn(3, 9, 32)
    with torch.no_grad():
        fused = block(z)
        block.keep_attention = True
        kept = block(z)
    assert block.attention.shape == (3, 4, 9, 9)
    assert torch.allclose(fused, kept, atol=1e-5)


def test_without_positions_a_block_is_permutation_equivariant():
    block = EncoderBlock(16, 2).eval()
    z = torch.randn(2, 10, 16)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(block(z[:, order]), block(z)[:, order], atol=1e-5)


def test_attention_plots_share_one_colour_scale_with_a_colour_bar():
    import matplotlib.pyplot as plt

    model = VisionTransformer(depth=2)
    fig = cu.vit.show_cls_attention(model, images(1)[0], "cls")
    heat = [ax.images[1] for ax in fig.axes if len(ax.images) == 2]
    assert len(heat) == 2 * 4 and len({im.get_clim() for im in heat}) == 1
    assert any(ax.get_ylabel().startswith("attention weight") for ax in fig.axes)       # the colour bar
    fig = cu.vit.show_rollout(model, images(3), ["a", "b", "c"], "rollout")
    assert len({ax.images[1].get_clim() for ax in fig.axes if len(ax.images) == 2}) == 1
    plt.close("all")


def test_position_similarity_masks_the_diagonal_and_labels_the_patches():
    import matplotlib.pyplot as plt

    model = VisionTransformer()
    similarity = cu.vit.position_similarity(model)
    assert similarity.shape == (16, 16) and similarity.diagonal().isnan().all()
    off = similarity[~torch.eye(16, dtype=torch.bool)]
    assert not off.isnan().any() and off.abs().max() <= 1 + 1e-6
    fig = cu.vit.show_position_similarity(model, "pos")
    matrix = next(ax for ax in fig.axes if ax.get_xlabel().startswith("patch"))
    assert [t.get_text() for t in matrix.get_yticklabels()][:2] == ["(0,0)", "(0,1)"]
    plt.close("all")
