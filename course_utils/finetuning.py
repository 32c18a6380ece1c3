"""Fine-tuning a pretrained BERT-family model to classify text pairs, with the course's one training loop.

The pieces notebook 07 puts together, around ``transformers.AutoModelForSequenceClassification``:

- :func:`load_classifier`: the model at :func:`course_utils.text.model_location` (the packaged all-MiniLM-L6-v2,
  the hub or its cache) with a fresh classification head and its ``id2label`` / ``label2id``;
- :func:`encode_pairs`: caption-question pairs as padded token tensors ``(N, T)`` plus labels ``(N,)``;
- :func:`sequence_step` (a ``loss_fn`` for :func:`course_utils.training.fit_tensors`) and
  :func:`sequence_logits` / :func:`sequence_predict` / :func:`sequence_accuracy`;
- :func:`pooled_features`: frozen mean-pooled sentence vectors, for a linear probe, and :class:`ProbeClassifier`,
  the frozen encoder and the trained probe as one sequence classifier (a row of :func:`method_table`);
- :func:`unfreeze_top`: train only the top k encoder layers (and the head);
- :func:`train_method`: one method trained with the same recipe as every other (AdamW without decay on biases
  and LayerNorms, warmup + cosine), and what it cost; :func:`method_table` evaluates them all on the test split
  once, in one table.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .lora import trainable_parameters, trainable_state_bytes
from .models import device_of
from .optimisation import decay_groups, warmup_cosine
from .text import mean_pool, quiet_transformers
from .training import History, StepResult, evaluating, fit_tensors
from .uncertainty import format_accuracy

__all__ = ["load_classifier", "encode_pairs", "sequence_step", "sequence_logits", "sequence_predict",
           "sequence_accuracy", "pooled_features", "ProbeClassifier", "unfreeze_top", "encoder_layers", "MethodRun",
           "train_method", "probe_run", "method_table"]


def load_classifier(location: str, labels: Sequence[str], num_layers: int | None = None,
                    pretrained: bool = True) -> nn.Module:
    """``AutoModelForSequenceClassification`` from ``location`` with a new head for ``labels``, in train mode.

    Args:
        location: from :func:`course_utils.text.model_location`.
        labels: the class names in index order, e.g. ``["no", "yes"]``; they become the config's
            ``id2label`` / ``label2id``, so predictions read as names and a saved model keeps them.
        num_layers: keep only the first ``num_layers`` encoder layers (None: all).
        pretrained: False builds the same architecture with random weights (``from_config``): training it is
            training from scratch.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    if isinstance(labels, str) or len(labels) < 2 or len(set(labels)) != len(labels):
        raise ValueError(f"labels: expected at least two distinct class names in index order, got {labels!r}")
    options: dict[str, Any] = {} if num_layers is None else {"num_hidden_layers": num_layers}
    names = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
             "label2id": {name: i for i, name in enumerate(labels)}}
    with quiet_transformers():
        if pretrained:
            model = AutoModelForSequenceClassification.from_pretrained(location, **names, **options)
        else:
            config = AutoConfig.from_pretrained(location, **names, **options)
            model = AutoModelForSequenceClassification.from_config(config)
    return model.train()


def encode_pairs(tokenizer: Any, first: Sequence[str], second: Sequence[str],
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[CLS] first [SEP] second [SEP]`` token tensors for :func:`course_utils.training.fit_tensors`.

    Returns:
        ``(input_ids (N, T), attention_mask (N, T), token_type_ids (N, T), labels (N,))``, padded to the
        longest pair; :func:`sequence_step` trims each batch to its own longest pair.
    """
    if not (len(first) == len(second) == len(labels)):
        raise ValueError(f"first, second, labels: expected one of each per example, got lengths "
                         f"{len(first)}, {len(second)}, {len(labels)}")
    batch = tokenizer(list(first), list(second), padding=True, return_tensors="pt")
    types = batch.get("token_type_ids", torch.zeros_like(batch["input_ids"]))
    return batch["input_ids"], batch["attention_mask"], types, torch.as_tensor(labels).long()


def _trimmed(ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch without the padding columns no row of it uses."""
    length = int(mask.sum(1).max())
    return {"input_ids": ids[:, :length], "attention_mask": mask[:, :length], "token_type_ids": types[:, :length]}


def sequence_step(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor,
                  labels: torch.Tensor) -> StepResult:
    """A ``loss_fn`` for ``fit_tensors``: ``(loss, number right)`` of a sequence classifier on one batch.

    The loss is the model's own (``labels=`` given), so a ``peft`` model adds its extra terms (AdaLoRA's
    orthogonality penalty) as it does in ``transformers.Trainer``.
    """
    out = model(**_trimmed(ids, mask, types), labels=labels)
    return out.loss, int((out.logits.argmax(1) == labels).sum())


def _by_length(model: nn.Module, tensors: Sequence[torch.Tensor], batch_size: int,
               output: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> torch.Tensor:
    """``output(batch)`` for every pair, in the pairs' order, with ``model`` in eval mode without gradients
    (every submodule's own mode restored afterwards). The pairs go through sorted by length, each batch
    trimmed to its longest pair, so little of a batch is padding; the rows are put back in order at the end."""
    device = device_of(model)
    order = tensors[1].sum(1).argsort(stable=True)
    with evaluating(model), torch.no_grad():
        outputs = torch.cat([output(_trimmed(*(t[rows].to(device) for t in tensors[:3])))
                             for rows in order.split(batch_size)])
    return outputs[order.argsort()]


def sequence_logits(model: nn.Module, tensors: Sequence[torch.Tensor], batch_size: int = 256) -> torch.Tensor:
    """Logits ``(N, K)`` on the CPU for ``tensors`` = ``(input_ids, attention_mask, token_type_ids[, labels])``,
    in eval mode (each submodule's own mode restored afterwards), without gradients."""
    return _by_length(model, tensors, batch_size, lambda batch: model(**batch).logits.float().cpu())


def sequence_predict(model: nn.Module, tensors: Sequence[torch.Tensor], batch_size: int = 256) -> torch.Tensor:
    """Predicted class ``(N,)`` for ``tensors`` = ``(input_ids, attention_mask, token_type_ids[, labels])``."""
    return sequence_logits(model, tensors, batch_size).argmax(1)


def sequence_accuracy(model: nn.Module, tensors: Sequence[torch.Tensor], batch_size: int = 256) -> float:
    """Accuracy of ``model`` on ``tensors`` = ``(input_ids, attention_mask, token_type_ids, labels)``."""
    return (sequence_predict(model, tensors, batch_size) == tensors[3].cpu()).float().mean().item()


def _sentence_vectors(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Unit-length mean-pooled last hidden states ``(B, hidden)`` of ``encoder`` for a batch ``(B, T)``."""
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    return F.normalize(mean_pool(hidden.last_hidden_state, attention_mask), dim=1)


def pooled_features(encoder: nn.Module, tensors: Sequence[torch.Tensor], batch_size: int = 256) -> torch.Tensor:
    """Unit-length mean-pooled last hidden states ``(N, hidden)`` of a frozen ``encoder`` (a ``BertModel``)."""
    return _by_length(encoder, tensors, batch_size, lambda batch: _sentence_vectors(encoder, **batch).cpu())


class ProbeClassifier(nn.Module):
    """A frozen encoder and a linear probe trained on its :func:`pooled_features`, as one sequence classifier.

    ``forward(input_ids, attention_mask, token_type_ids)`` ``(B, T)`` each returns an object whose ``logits``
    are ``(B, K)``, as a ``transformers`` classifier does, so :func:`sequence_accuracy` and
    :func:`method_table` read the probe as they read every fine-tuned model. The encoder is frozen here.
    """

    def __init__(self, encoder: nn.Module, probe: nn.Linear) -> None:
        super().__init__()
        if not isinstance(probe, nn.Linear):
            raise TypeError(f"probe: expected the trained nn.Linear, got {type(probe).__name__}")
        self.encoder = encoder.requires_grad_(False)
        self.probe = probe

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(
            logits=self.probe(_sentence_vectors(self.encoder, input_ids, attention_mask, token_type_ids)))


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder layers of a BERT-family sequence classifier (``model.base_model.encoder.layer``)."""
    try:
        return model.base_model.encoder.layer
    except AttributeError:
        raise TypeError(f"model: expected a BERT-family model with .base_model.encoder.layer, "
                        f"got {type(model).__name__}") from None


def unfreeze_top(model: nn.Module, k: int) -> nn.Module:
    """Freeze everything but the top ``k`` encoder layers, the pooler and the classifier head; return ``model``."""
    layers = encoder_layers(model)
    if not isinstance(k, int) or not 0 <= k <= len(layers):
        raise ValueError(f"k: expected a whole number of layers from 0 to {len(layers)}, got {k!r}")
    model.requires_grad_(False)
    for layer in list(layers)[len(layers) - k:]:
        layer.requires_grad_(True)
    for name in ("pooler", "classifier"):
        for part in (getattr(model.base_model, name, None), getattr(model, name, None)):
            if isinstance(part, nn.Module):
                part.requires_grad_(True)
    return model


@dataclass
class MethodRun:
    """One fine-tuning method trained once: the model, its history and what training it cost.

    Attributes:
        name: the method, e.g. ``"LoRA r=8 (by hand)"``; model: the trained model; history: its :class:`History`.
        lr: the peak learning rate used; trainable, total: parameter counts (a shared parameter counts once).
        state_bytes: float32 parameters + gradients + AdamW's two moments of the trainable parameters.
        peak_gpu_bytes: the most GPU memory allocated while training, or None on the CPU.
    """

    name: str
    model: nn.Module
    history: History
    lr: float
    trainable: int
    total: int
    state_bytes: int
    peak_gpu_bytes: int | None

    @property
    def val_acc(self) -> float:
        """Validation accuracy after the last epoch."""
        return self.history["val_acc"][-1]

    @property
    def seconds_per_epoch(self) -> float:
        return self.history.seconds / max(len(self.history.rows), 1)


def train_method(name: str, model: nn.Module, train: Sequence[torch.Tensor], val: Sequence[torch.Tensor], *,
                 lr: float, epochs: int, batch_size: int = 32, warmup: float = 0.1, weight_decay: float = 0.01,
                 clip_grad_norm: float | None = 1.0, every_epoch: bool = False, seed: int = 0,
                 after_step: Callable[[int], None] | None = None, log_dir: str | Path | None = None,
                 progress: bool = True, group_by_length: bool = True) -> MethodRun:
    """Train a sequence classifier's trainable parameters with the course's recipe; return a :class:`MethodRun`.

    The recipe, the same for every method: ``torch.optim.AdamW`` over the trainable parameters only, weight
    decay on weight matrices and none on biases and LayerNorm weights (:func:`course_utils.optimisation.decay_groups`),
    a linear warmup over the first ``warmup`` share of the steps then a cosine decay to 0
    (:func:`course_utils.optimisation.warmup_cosine`), the gradient's norm clipped to ``clip_grad_norm`` (1.0, as
    ``transformers.Trainer`` does), :func:`sequence_step` as the loss, and the validation accuracy after the
    last epoch (after every epoch with ``every_epoch=True``, for a learning curve). With ``group_by_length``
    each batch holds pairs of similar length (``transformers``' ``group_by_length``, see
    :func:`course_utils.training.length_grouped_order`), so :func:`sequence_step` trims away most of the padding.

    Args:
        train, val: ``(input_ids, attention_mask, token_type_ids, labels)`` from :func:`encode_pairs`.
        after_step: e.g. ``lambda step: model.base_model.update_and_allocate(step)`` for ``peft``'s AdaLoRA.
        log_dir, progress, seed, batch_size, epochs: as :func:`course_utils.training.fit_tensors`.
    Raises:
        ValueError: ``model`` has no trainable parameter.
    """
    trainable, total = trainable_parameters(model)
    if trainable == 0:
        raise ValueError(f"{name}: the model has no trainable parameter (requires_grad=True): nothing to train")
    device = device_of(model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    optimizer = torch.optim.AdamW(decay_groups(model, weight_decay), lr=lr)
    done = []  # epochs finished, to evaluate after the last one only

    def evaluate(m: nn.Module) -> dict[str, float]:
        done.append(1)
        return {"val_acc": sequence_accuracy(m, val)} if every_epoch or len(done) == epochs else {}

    history = fit_tensors(model, train, sequence_step, epochs=epochs, optimizer=optimizer, batch_size=batch_size,
                          scheduler=warmup_cosine(warmup), clip_grad_norm=clip_grad_norm, seed=seed,
                          after_step=after_step, log_dir=log_dir, progress=progress, evaluate=evaluate,
                          lengths=train[1].sum(1) if group_by_length else None)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return MethodRun(name, model, history, lr, trainable, total, trainable_state_bytes(model), peak)


def probe_run(name: str, encoder: nn.Module, probe: nn.Linear, history: History, lr: float) -> MethodRun:
    """The linear probe as a :class:`MethodRun`: a :class:`ProbeClassifier` of ``encoder`` and ``probe``, with
    the probe's own training ``history`` (its epochs run on features computed once, so they take almost no
    time), ``lr``, and the probe's parameters as the trainable ones."""
    model = ProbeClassifier(encoder, probe)
    trainable, total = trainable_parameters(model)
    return MethodRun(name, model, history, lr, trainable, total, trainable_state_bytes(model), None)


def method_table(runs: Sequence[MethodRun], test: Sequence[torch.Tensor]) -> dict[str, float]:
    """Evaluate each run's model on ``test`` once and print one row per method; return ``{name: accuracy}``.

    Columns: test accuracy [95% Wilson interval], trainable parameters (count and share), seconds per epoch,
    the trainable state in MB (parameters, gradients and AdamW's moments, float32) and, on a GPU, the peak
    memory allocated while training.
    """
    if not runs or not all(isinstance(run, MethodRun) for run in runs):
        raise ValueError("runs: expected a non-empty list of MethodRun (from train_method)")
    accuracies = {run.name: sequence_accuracy(run.model, test) for run in runs}
    width = max(len("method"), *(len(run.name) for run in runs)) + 2
    gpu = any(run.peak_gpu_bytes is not None for run in runs)
    print(f"{'method':<{width}}{'test accuracy [95% interval]':<30}{'trainable':>12}{'share':>9}{'s/epoch':>9}"
          f"{'state MB':>10}" + (f"{'peak GPU MB':>13}" if gpu else ""))
    for run in runs:
        row = (f"{run.name:<{width}}{format_accuracy(accuracies[run.name], len(test[0])):<30}{run.trainable:>12,}"
               f"{run.trainable / run.total:>9.2%}{run.seconds_per_epoch:>9.1f}{run.state_bytes / 1e6:>10.1f}")
        if gpu:
            row += f"{(run.peak_gpu_bytes or 0) / 1e6:>13.0f}"
        print(row)
    return accuracies
