"""The text encoder loader and sentence embeddings (course_utils.text)."""
from __future__ import annotations

import contextlib
import io
import socket
from pathlib import Path

import pytest
import torch

from course_utils import data, network, text


def _no_network(*args, **kwargs):
    pytest.fail("the network was probed")


@pytest.fixture(autouse=True)
def fresh_session():
    """Each test starts a new network session: nothing probed, not offline."""
    with network.fresh_session():
        yield


@pytest.fixture(scope="module")
def offline_load() -> dict:
    """One offline load of the packaged all-MiniLM-L6-v2, with what it printed (how long it takes:
    ``python -m course_utils bench``)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("COURSE_OFFLINE", "1")
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        mp.setattr(socket, "create_connection", _no_network)
        encoder = text.load_text_encoder("course-tests/not-a-cached-model")
    return {"encoder": encoder, "out": out.getvalue(), "err": err.getvalue()}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    """A 1-layer, 32-d BERT with MiniLM's tokenizer, saved with save_pretrained (loads in a blink)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(text.packaged_model_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder(tiny_folder) -> text.TextEncoder:
    """The tiny BERT of ``tiny_folder`` as a TextEncoder: the encoding tests need no pretrained weights."""
    with contextlib.redirect_stdout(io.StringIO()):
        return text.load_text_encoder(str(tiny_folder))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_offline_load_is_quiet_and_says_so_in_one_line(offline_load):
    encoder = offline_load["encoder"]
    lines = offline_load["out"].strip().splitlines()
    assert len(lines) == 1, lines
    assert "offline" in lines[0] and "all-MiniLM-L6-v2" in lines[0] and "course-tests/not-a-cached-model" in lines[0]
    assert offline_load["err"] == "", "loading printed warnings or progress bars"
    assert encoder.source == "package" and encoder.name == text.DEFAULT_MODEL
    assert type(encoder.model).__name__ == "BertModel" and encoder.hidden_size == 384
    assert not encoder.model.training and encoder.device.type == "cpu"


def test_hub_offline_env_skips_the_probe(monkeypatch):
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert text.hub_online() is False
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    assert text.hub_online() is False


def test_hub_probe_targets_huggingface_once_and_limits_the_hub(monkeypatch):
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = []
    monkeypatch.setattr(network, "limit_hub", lambda: calls.append("limit_hub"))  # tests/test_network.py runs it

    class Connection:
        def close(self) -> None:
            pass

    def connect(address, timeout=None):
        calls.append(address)
        return Connection()

    monkeypatch.setattr(socket, "create_connection", connect)
    assert text.hub_online() is True and text.hub_online() is True
    assert calls == [text.HUB_HOST, "limit_hub", "limit_hub"]
    assert data.is_online() is True and calls[-1] == data.PROBE_HOST  # each host probed on its own


def test_hub_probe_never_hangs(monkeypatch, hanging_connections):
    """huggingface.co never answering: the probe says offline while that connection still hangs."""
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert text.hub_online(timeout=0.05) is False
    assert not hanging_connections.is_set(), "the probe waited for the hanging connection to end"


def test_local_folder_loads(tiny_folder, capsys):
    encoder = text.load_text_encoder(str(tiny_folder))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "local folder" in lines[0]
    assert encoder.source == "local" and encoder.hidden_size == 32 and not encoder.model.training
    assert text.encode_texts(encoder, ["a thin two", "a large bag"]).shape == (2, 32)


def test_failed_hub_load_falls_back_with_one_line(tiny_folder, monkeypatch, capsys):
    monkeypatch.setattr(text, "hub_online", lambda timeout=2.0: True)
    monkeypatch.setattr(text, "packaged_model_path", lambda: tiny_folder)
    real_load = text._load

    def load(location, name, source, **options):
        if source == "hub":
            raise OSError("connection reset by peer")
        return real_load(location, name, source, **options)

    monkeypatch.setattr(text, "_load", load)
    encoder = text.load_text_encoder("bert-base-uncased")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "could not load bert-base-uncased" in lines[0] and "OSError" in lines[0], lines
    assert encoder.source == "package"


def test_offline_prefers_a_model_already_in_the_hub_cache(tiny_folder, monkeypatch, capsys):
    monkeypatch.setattr(text, "hub_online", lambda timeout=2.0: False)
    monkeypatch.setattr(text, "_cached_snapshot", lambda name: tiny_folder if name == "bert-base-uncased" else None)
    encoder = text.load_text_encoder("bert-base-uncased")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["text encoder: offline, bert-base-uncased from the Hugging Face cache"]
    assert encoder.source == "hub-cache" and encoder.hidden_size == 32


def test_default_model_comes_from_the_package_even_online(tiny_folder, monkeypatch, capsys):
    monkeypatch.setattr(text, "hub_online", lambda timeout=2.0: pytest.fail("probed for the packaged model"))
    monkeypatch.setattr(text, "packaged_model_path", lambda: tiny_folder)
    encoder = text.load_text_encoder()
    assert capsys.readouterr().out.strip().splitlines() == [f"text encoder: {text.PACKAGED}"]
    assert encoder.source == "package" and encoder.name == text.DEFAULT_MODEL


def test_attention_implementation_is_requested_at_load_time(tiny_folder, capsys):
    """``attn_implementation="eager"`` reaches from_pretrained, so the model returns attention weights."""
    eager = text.load_text_encoder(str(tiny_folder), attn_implementation="eager")
    assert eager.model.config._attn_implementation == "eager"
    batch = eager.tokenizer(["a thin two"], return_tensors="pt")
    with torch.no_grad():
        weights = eager.model(**batch, output_attentions=True).attentions
    assert len(weights) == 1 and weights[0].shape == (1, 2, batch["input_ids"].shape[1], batch["input_ids"].shape[1])
    assert torch.allclose(weights[0].sum(-1), torch.ones(1, 2, batch["input_ids"].shape[1]), atol=1e-5)
    assert text.load_text_encoder(str(tiny_folder)).model.config._attn_implementation != "eager"  # the default
    with pytest.raises(TypeError, match="attn_implementation: expected None or a name"):
        text.load_text_encoder(str(tiny_folder), attn_implementation=True)


def test_missing_folder_and_bad_name_raise_clearly():
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        text.load_text_encoder("./no/such/model-folder")
    with pytest.raises(TypeError, match="model name or folder path"):
        text.load_text_encoder(None)


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

def test_encode_shape_dtype_and_normalisation(encoder):
    vectors = text.encode_texts(encoder, ["a thick seven", "a faint bag", "a thick seven"])
    assert vectors.shape == (3, encoder.hidden_size) and vectors.dtype == torch.float32 and vectors.device.type == "cpu"
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(vectors[0], vectors[2])
    raw = text.encode_texts(encoder, ["a thick seven"], normalize=False)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(1), atol=1e-2)
    assert torch.allclose(raw[0] / raw[0].norm(), vectors[0], atol=1e-6)


def test_padding_does_not_change_a_sentence_vector(encoder):
    """Mean pooling over real tokens only: a short sentence batched with a long one keeps its vector."""
    text.clear_cache()
    alone = text.encode_texts(encoder, ["a thin one"])
    text.clear_cache()
    batched = text.encode_texts(encoder, ["a thin one", "a much longer sentence that forces a lot of padding " * 3])
    assert torch.allclose(alone[0], batched[0], atol=1e-5)


@pytest.mark.slow
def test_similar_captions_are_closer_than_unrelated_ones(offline_load):
    captions = ["a thick handwritten seven", "a bold written seven", "the stock market fell sharply today"]
    v = text.encode_texts(offline_load["encoder"], captions)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_each_distinct_text_is_encoded_once_and_kept(encoder):
    rows = []
    hook = encoder.model.register_forward_hook(lambda module, args, kwargs, out: rows.append(len(kwargs["input_ids"])),
                                               with_kwargs=True)
    try:
        text.clear_cache()
        text.encode_texts(encoder, ["cache test a", "cache test b", "cache test a", "cache test a"], batch_size=1)
        assert sum(rows) == 2
        text.encode_texts(encoder, ["cache test b", "cache test a"])
        assert sum(rows) == 2, "encoded again texts already in the cache"
        text.encode_texts(encoder, ["cache test a", "cache test c"])
        assert sum(rows) == 3
        with torch.no_grad():  # an in-place change of the weights (as an optimizer step) empties the cache
            next(encoder.model.parameters()).add_(0.0)
        text.encode_texts(encoder, ["cache test a"])
        assert sum(rows) == 4
    finally:
        hook.remove()


def test_encoding_in_train_mode_is_deterministic_and_keeps_the_mode(encoder):
    encoder.model.train()
    try:
        text.clear_cache()
        first = text.encode_texts(encoder, ["a regular, upright five"])
        text.clear_cache()
        second = text.encode_texts(encoder, ["a regular, upright five"])
        assert torch.equal(first, second), "dropout was active while encoding"
        assert encoder.model.training
    finally:
        encoder.model.eval()


def test_to_device_returns_the_encoder(encoder):
    assert encoder.to("cpu") is encoder and encoder.device.type == "cpu"


def test_tokenize_pads_to_max_length(encoder):
    batch = text.tokenize(encoder, ["a thick seven", "a sandal"], max_length=12)
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 12)
    assert (batch["input_ids"][:, 0] == encoder.tokenizer.cls_token_id).all()
    assert batch["attention_mask"][0].sum() == len(encoder.tokenizer("a thick seven")["input_ids"]) == 5
    assert (batch["input_ids"][batch["attention_mask"] == 0] == encoder.tokenizer.pad_token_id).all()
    with pytest.raises(ValueError, match="max_length"):
        text.tokenize(encoder, ["a seven"], max_length=1)


@pytest.mark.parametrize("texts, error, words", [
    ("a thick seven", TypeError, "list of str"),
    (("a", "b"), TypeError, "list of str"),
    ([1, "a"], TypeError, r"texts\[0\]"),
    ([], ValueError, "at least one"),
])
def test_bad_texts_raise_clear_errors(encoder, texts, error, words):
    with pytest.raises(error, match=words):
        text.encode_texts(encoder, texts)
    with pytest.raises(error, match=words):
        text.tokenize(encoder, texts, max_length=8)


def test_bad_batch_size_raises(encoder):
    with pytest.raises(ValueError, match="batch_size"):
        text.encode_texts(encoder, ["a seven"], batch_size=0)
