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


# ---------------------------------------------------------------------------------------------
# Bad input is refused by name, not answered with a wrong number or an error from inside torch
# ---------------------------------------------------------------------------------------------

def test_recall_at_k_refuses_what_it_cannot_rank():
    """More queries than items used to count the extra queries as misses; NaN and empty input gave numbers too."""
    tall = torch.randn(5, 3)
    with pytest.raises(ValueError, match=r"similarity: 5 queries but 3 items.*relevant="):
        fusion.recall_at_k(tall, 1)
    assert fusion.recall_at_k(tall, 3, torch.ones(5, 3, dtype=torch.bool)) == 1.0   # fine with relevant
    with pytest.raises(ValueError, match="similarity: 1 NaN"):
        fusion.recall_at_k(torch.tensor([[0.5, float("nan")], [0.1, 0.2]]), 1)
    for empty in (torch.zeros(0, 3), torch.zeros(3, 0)):
        with pytest.raises(ValueError, match="at least one query and one item"):
            fusion.recall_at_k(empty, 1)
    with pytest.raises(ValueError, match=r"relevant: expected the similarity's shape \(2, 2\)"):
        fusion.recall_at_k(torch.eye(2), 1, torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="relevant: expected a bool tensor"):
        fusion.recall_at_k(torch.eye(2), 1, torch.eye(2))
    with pytest.raises(TypeError, match="k: expected an int"):
        fusion.recall_at_k(torch.eye(2), 1.0)


def test_clip_loss_refuses_empty_batches_and_other_dtypes():
    with pytest.raises(ValueError, match="B >= 1"):
        fusion.clip_loss(torch.zeros(0, 4), torch.zeros(0, 4), torch.tensor(0.0))
    with pytest.raises(TypeError, match="one dtype"):
        fusion.clip_loss(torch.randn(2, 4), torch.randn(2, 4).double(), torch.tensor(0.0))
    with pytest.raises(TypeError, match="logit_scale"):
        fusion.clip_loss(torch.randn(2, 4), torch.randn(2, 4), 2.0)


def test_fusion_models_refuse_unknown_rows_and_wrong_token_counts(table):
    model = fusion.CrossAttentionFusion(table, width=8, num_heads=2)
    with pytest.raises(ValueError, match=r"text_ids: expected rows of the text table, 0 to 2, got values from 0 to 3"):
        model(torch.randn(2, 16, 8), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="text_ids: expected int64"):
        model(torch.randn(2, 16, 8), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"image tokens \(B, 16, 8\)"):
        model(torch.randn(2, 9, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"expected a \(B, 3\) and b \(B, 4\)"):
        fusion.GatedFusion(3, 4, 5)(torch.randn(2, 3), torch.randn(2, 5))
    with pytest.raises(ValueError, match="answers: expected int64"):
        fusion.answer_loss(model, torch.randn(2, 16, 8), torch.tensor([0, 1]), torch.tensor([1]))


def test_image_models_refuse_images_that_give_other_than_16_tokens():
    with pytest.raises(ValueError, match=r"images: expected \(B, 1, 28, 28\), which give 16 patch tokens"):
        fusion.ContrastiveModel(text_dim=12, embed_dim=6, width=8).encode_images(torch.rand(2, 1, 20, 20))
    tagger = fusion.ImageTagger(width=8, num_attributes=2)
    with pytest.raises(ValueError, match="16 patch tokens"):
        tagger(torch.rand(2, 1, 40, 40))
    with pytest.raises(ValueError, match=r"targets: expected int64 \(B, 1 \+ A\) = \(2, 3\)"):
        fusion.tagger_loss(tagger, torch.rand(2, 1, 28, 28), torch.zeros(2, 2, dtype=torch.int64))


@pytest.mark.parametrize("helper", ["image_tokens", "embed_images", "predict_answers"])
def test_inference_helpers_refuse_empty_input_and_batch_size_zero(helper, table):
    """Empty input used to fail in torch.cat(), batch_size=0 in range()."""
    runs = {
        "image_tokens": lambda x, size: fusion.image_tokens(fusion.PatchEncoder(width=8), x, size),
        "embed_images": lambda x, size: fusion.embed_images(fusion.ContrastiveModel(12, 6, 8), x, size),
        "predict_answers": lambda x, size: fusion.predict_answers(fusion.ImageOnly(table, 8), x,
                                                                  torch.zeros(len(x), dtype=torch.int64), size),
    }
    inputs = torch.rand(3, 16, 8) if helper == "predict_answers" else torch.rand(3, 1, 28, 28)
    name = "image_tokens" if helper == "predict_answers" else "images"
    with pytest.raises(ValueError, match=rf"{name}: expected a tensor .* with N >= 1, got \(0,"):
        runs[helper](inputs[:0], 2)
    with pytest.raises(ValueError, match="batch_size: expected an int of at least 1, got 0"):
        runs[helper](inputs, 0)
    assert len(runs[helper](inputs, 2)) == 3
