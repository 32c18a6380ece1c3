"""course_utils.fusion: fusion layers and models, the CLIP loss, recall@k, the training loop."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from course_utils import contrastive, fusion
from course_utils import imagetext as it
from course_utils.fusion import TextFeatures
from course_utils.models import count_parameters


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


# ---------------------------------------------------------------------------------------------
# The controls and probes of notebook 06's second edition
# ---------------------------------------------------------------------------------------------

def test_one_hot_features_are_an_identity_table_the_models_accept():
    table = fusion.one_hot_features(["is it?", "is it not?", "is it?", "what?"])
    assert table.texts == ["is it?", "is it not?", "what?"]               # distinct, first-seen order
    assert torch.equal(table.pooled, torch.eye(3)) and table.tokens.shape == (3, 1, 3)
    assert table.mask.all() and table.mask.shape == (3, 1)
    assert table.ids(["what?", "is it?"]).tolist() == [2, 0]
    for make in fusion.FUSION_MODELS.values():
        assert make(table, width=8)(torch.randn(2, 16, 8), torch.tensor([0, 2])).shape == (2, 2)


def test_one_hot_rows_never_trained_on_get_no_gradient():
    """The point of the control: a sentence it never trained on has nothing learned behind it."""
    model = fusion.EarlyFusion(fusion.one_hot_features(["a", "b", "unseen"]), width=8)
    loss, _ = fusion.answer_loss(model, torch.randn(4, 16, 8), torch.tensor([0, 1, 0, 1]), torch.tensor([1, 0, 0, 1]))
    loss.backward()
    grad = model.text_proj[0].weight.grad                                   # (width, 3): one column per sentence
    assert grad[:, :2].abs().sum() > 0 and torch.equal(grad[:, 2], torch.zeros(8))


def test_one_hot_features_refuse_no_sentences_and_non_strings():
    with pytest.raises(ValueError, match="at least one sentence"):
        fusion.one_hot_features([])
    with pytest.raises(TypeError, match="sequence of sentences"):
        fusion.one_hot_features("is it?")
    with pytest.raises(TypeError, match="sequence of sentences"):
        fusion.one_hot_features(["is it?", 3])


def test_read_images_returns_the_taggers_digit_and_thirds_and_keeps_its_mode():
    tagger = fusion.ImageTagger(width=8, num_classes=10, num_attributes=2).train()
    with torch.no_grad():
        tagger.head.weight.zero_()
        tagger.head.bias.zero_()
        tagger.head.bias[3] = 5.0                  # digit 3
        tagger.head.bias[10 + 2] = 5.0             # first attribute: high third
        tagger.head.bias[13 + 0] = 5.0             # second attribute: low third
    digits, thirds = fusion.read_images(tagger, torch.rand(5, 1, 28, 28), batch_size=2)
    assert digits.tolist() == [3] * 5 and thirds.tolist() == [[2, 0]] * 5
    assert digits.dtype == thirds.dtype == torch.int64 and tagger.training
    with pytest.raises(ValueError, match="batch_size"):
        fusion.read_images(tagger, torch.rand(2, 1, 28, 28), batch_size=0)


def _caption_set() -> it.CaptionSet:
    """Four hand-made images (three sevens, a one) with known thirds, and a caption each."""
    low, mid, high = -1.0, 0.5, 2.0
    attributes = {"thickness": [low, high, low, low], "slant": [mid, low, mid, high], "size": [150.0, low, low, low],
                  "x": [0.0] * 4, "y": [0.0] * 4, "brightness": [0.0] * 4}
    captions = ["a thin seven", "a thick, left-leaning seven", "a thin one", "a small, right-leaning seven"]
    return it.CaptionSet(torch.zeros(4, 1, 28, 28), torch.tensor([7, 7, 1, 7]), captions,
                         torch.zeros(4, dtype=torch.int64), {k: torch.tensor(v) for k, v in attributes.items()}, "test")


def test_caption_matches_counts_a_caption_true_of_every_image_it_describes():
    # thirds cut at 0 and 1 for thickness and slant, at 0 and 100 for size; x, y, brightness too narrow to be used
    bins = it.AttributeBins({"thickness": (0.0, 1.0), "slant": (0.0, 1.0), "size": (0.0, 100.0), "x": (0.0, 0.5),
                             "y": (0.0, 0.5), "brightness": (0.0, 0.01)})
    assert bins.informative == ("thickness", "slant", "size")
    captions = _caption_set()
    matches = contrastive.caption_matches(captions, bins)
    assert matches.tolist() == [[True, False, False, True],    # "a thin seven": images 0 and 3 are thin sevens
                                [False, True, False, False],
                                [False, False, True, False],   # "a thin one": the only one
                                [False, False, False, True]]
    with pytest.raises(TypeError, match="CaptionSet"):
        contrastive.caption_matches(["a thin seven"], bins)
    with pytest.raises(TypeError, match="AttributeBins"):
        contrastive.caption_matches(captions, {"thickness": (0, 1)})


def test_zero_shot_classifier_picks_the_closest_class_embedding():
    model = fusion.ContrastiveModel(text_dim=12, embed_dim=6, width=8).eval()
    images = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        classes = model.encode_images(images) * 3.0                      # class c = image c (any length)
        classifier = contrastive.ZeroShotClassifier(model, classes)
        logits = classifier(images)
    assert logits.shape == (3, 3) and logits.argmax(1).tolist() == [0, 1, 2]
    assert torch.allclose(logits.diagonal(), model.scale().expand(3), atol=1e-4)   # cosine 1 times the scale
    with pytest.raises(ValueError, match=r"class_embeddings: expected \(classes >= 2, 6\), got \(3, 5\)"):
        contrastive.ZeroShotClassifier(model, torch.randn(3, 5))
    with pytest.raises(ValueError, match="class_embeddings"):
        contrastive.ZeroShotClassifier(model, torch.randn(1, 6))


def test_linear_probe_trains_only_its_linear_layer_on_a_frozen_copy():
    encoder = fusion.PatchEncoder(width=8)
    probe = contrastive.LinearProbe(encoder, num_classes=10)
    assert probe.encoder is not encoder and all(p.requires_grad for p in encoder.parameters())
    assert count_parameters(probe) == 16 * 8 * 10 + 10
    norm = probe.encoder.features[-2]                                   # the encoder's last BatchNorm2d
    stats = norm.running_mean.clone()
    probe.train()
    assert probe.training and not probe.encoder.training
    logits = probe(torch.rand(4, 1, 28, 28) * 5)
    logits.sum().backward()
    assert logits.shape == (4, 10) and probe.linear.weight.grad is not None
    assert all(p.grad is None for p in probe.encoder.parameters())
    assert torch.equal(stats, norm.running_mean)                        # batch-norm statistics did not move
    with pytest.raises(TypeError, match="PatchEncoder"):
        contrastive.LinearProbe(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="num_classes"):
        contrastive.LinearProbe(encoder, num_classes=1)
