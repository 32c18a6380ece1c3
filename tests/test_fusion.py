"""course_utils.fusion: fusion layers and models, the CLIP loss, recall@k, the training loop."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from course_utils import fusion
from course_utils.fusion import TextFeatures


@pytest.fixture
def table() -> TextFeatures:
    g = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    return TextFeatures(["a?", "bb?", "c"], torch.randn(3, 5, 12, generator=g), mask,
                        F.normalize(torch.randn(3, 12, generator=g), dim=1))


def test_text_feature_ids(table):
    assert table.ids(["c", "a?", "c"]).tolist() == [2, 0, 2]
    with pytest.raises(KeyError, match="not in the table"):
        table.ids(["nope"])


@pytest.mark.parametrize("name", list(fusion.FUSION_MODELS))
def test_fusion_models_shapes_and_frozen_text(name, table):
    model = fusion.FUSION_MODELS[name](table, width=8)
    logits = model(torch.randn(4, 16, 8), torch.tensor([0, 1, 2, 1]))
    assert logits.shape == (4, 2)
    names = {n for n, _ in model.named_parameters()}
    assert not names & {"text_tokens", "text_mask", "text_pooled"}   # frozen text: buffers, not parameters
    assert "text_pooled" in dict(model.named_buffers())


def test_fusion_model_rejects_bad_inputs(table):
    model = fusion.EarlyFusion(table, width=8)
    with pytest.raises(ValueError, match="image tokens"):
        model(torch.randn(4, 16, 9), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="text_ids"):
        model(torch.randn(4, 16, 8), torch.tensor([0, 1]))


def test_cross_attention_weights_cover_patches_and_ignore_padding(table):
    model = fusion.CrossAttentionFusion(table, width=8, num_heads=2)
    model(torch.randn(3, 16, 8), torch.tensor([0, 1, 2]))
    weights = model.last_weights
    assert weights.shape == (3, 2, 5, 16)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 2, 5), atol=1e-5)
    # padded question tokens do not change the answer
    changed = table.tokens.clone()
    changed[0, 3:] = 100.0
    other = fusion.CrossAttentionFusion(TextFeatures(table.texts, changed, table.mask, table.pooled), 8, 2)
    other.load_state_dict(model.state_dict(), strict=False)
    other.text_tokens.copy_(changed)
    x = torch.randn(1, 16, 8)
    assert torch.allclose(model(x, torch.tensor([0])), other(x, torch.tensor([0])), atol=1e-5)


def test_gated_fusion_layer_gate_behaviour():
    layer = fusion.GatedFusion(3, 4, 5)
    a, b = torch.randn(2, 3), torch.randn(2, 4)
    with torch.no_grad():
        layer.gate.weight.zero_()
        layer.gate.weight[:, 0] = 100.0                      # gate ~1 when a[:, 0] > 0, ~0 when < 0
    a[0, 0], a[1, 0] = 1.0, -1.0
    out = layer(a, b)
    assert torch.allclose(out[0], torch.tanh(layer.proj_a(a[:1]))[0], atol=1e-4)
    assert torch.allclose(out[1], torch.tanh(layer.proj_b(b[1:]))[0], atol=1e-4)
    assert layer.last_gate.shape == (2, 5)
    assert (layer.last_gate[0] > 0.99).all() and (layer.last_gate[1] < 0.01).all()
    with pytest.raises(ValueError, match="same B"):
        layer(torch.randn(2, 3), torch.randn(3, 4))


def test_clip_loss_matches_a_hand_computation():
    image = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    scale = torch.tensor(math.log(2.0))
    c = 1 / math.sqrt(2)
    s = [[2 * 1.0, 2 * c], [0.0, 2 * c]]                     # 2 * cosine similarities
    rows = [-s[0][0] + math.log(math.exp(s[0][0]) + math.exp(s[0][1])),
            -s[1][1] + math.log(math.exp(s[1][0]) + math.exp(s[1][1]))]
    cols = [-s[0][0] + math.log(math.exp(s[0][0]) + math.exp(s[1][0])),
            -s[1][1] + math.log(math.exp(s[0][1]) + math.exp(s[1][1]))]
    want = (sum(rows) / 2 + sum(cols) / 2) / 2
    assert math.isclose(float(fusion.clip_loss(image, text, scale)), want, rel_tol=1e-6)


def test_clip_loss_is_low_for_aligned_pairs_and_rejects_bad_shapes():
    x = F.normalize(torch.randn(8, 16), dim=1)
    aligned = fusion.clip_loss(x, x, torch.tensor(math.log(100.0)))
    shuffled = fusion.clip_loss(x, x.roll(1, 0), torch.tensor(math.log(100.0)))
    assert aligned < 0.1 < shuffled
    with pytest.raises(ValueError, match="same shape"):
        fusion.clip_loss(torch.randn(4, 3), torch.randn(5, 3), torch.tensor(0.0))


def test_contrastive_model_temperature_init_clamp_and_shapes():
    model = fusion.ContrastiveModel(text_dim=12, embed_dim=6, width=8)
    assert math.isclose(model.logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    images = torch.rand(4, 1, 28, 28)
    assert model.encode_images(images).shape == (4, 6)
    assert torch.allclose(model.encode_images(images).norm(dim=1), torch.ones(4), atol=1e-5)
    assert model(images, torch.randn(4, 12)).dim() == 0
    with torch.no_grad():
        model.logit_scale.fill_(10.0)
    assert math.isclose(model.scale().item(), 100.0, rel_tol=1e-5)
    with pytest.raises(ValueError, match="text vectors"):
        model.encode_texts(torch.randn(4, 11))


def test_recall_at_k():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.2, 0.3, 0.1]])
    assert fusion.recall_at_k(sim, 1) == pytest.approx(1 / 3)
    assert fusion.recall_at_k(sim, 2) == pytest.approx(2 / 3)
    assert fusion.recall_at_k(sim, 3) == pytest.approx(1.0)
    relevant = torch.tensor([[True, False, False], [True, True, False], [False, False, True]])
    assert fusion.recall_at_k(sim, 1, relevant) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="k <= M"):
        fusion.recall_at_k(sim, 4)


def test_tagger_loss_and_image_tokens():
    tagger = fusion.ImageTagger(width=8, num_classes=10, num_attributes=2)
    images = torch.rand(5, 1, 28, 28)
    targets = torch.tensor([[1, 0, 2], [3, 1, 1], [0, 2, 0], [9, 0, 0], [4, 1, 2]])
    loss, correct = fusion.tagger_loss(tagger, images, targets)
    assert loss.dim() == 0 and loss.item() > 0 and 0 <= correct <= 5
    assert fusion.image_tokens(tagger.encoder, images, batch_size=2).shape == (5, 16, 8)


def test_inference_helpers_keep_the_callers_mode():
    encoder = fusion.PatchEncoder(width=8).train()
    tokens = fusion.image_tokens(encoder, torch.rand(3, 1, 28, 28))
    assert tokens.shape == (3, 16, 8) and encoder.training
