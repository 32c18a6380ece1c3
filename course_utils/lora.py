"""LoRA written by hand (Hu et al. 2021), bottleneck adapters (Houlsby et al. 2019), and what training them costs.

LoRA keeps a pretrained ``nn.Linear`` frozen (weight ``W`` ``(out, in)``, bias ``b``) and learns a low-rank
update ``B @ A`` beside it (``A`` ``(r, in)``, ``B`` ``(out, r)``), scaled by ``alpha / r``::

    y = x W^T + b + (x A^T B^T) * alpha / r

``B`` starts at zero, so training starts exactly at the pretrained model; once trained, ``B @ A`` can be
merged into ``W`` and inference costs what the base model costs. A bottleneck adapter instead adds a small
residual MLP ``h + up(GELU(down(h)))`` after a layer; ``up`` starts at zero, so it starts as the identity.

- :class:`LoRALinear`, :func:`add_lora`, :func:`merge_lora`: LoRA on chosen Linear layers, and merging it away;
- :class:`BottleneckAdapter`, :class:`AdaptedLinear`, :func:`add_adapters`: Houlsby adapters after chosen Linears;
- :func:`trainable_parameters`, :func:`lora_parameter_count`, :func:`trainable_state_bytes`: what is trained,
  and the memory its AdamW state takes;
- :func:`copy_lora_to_peft`: our ``A`` and ``B`` copied into a ``peft`` model, to compare the two.

Choosing the layers: ``targets`` follows the rule of ``peft``'s ``target_modules`` list, so the same list
can be given to both: a Linear is chosen when its qualified name (``model.named_modules()``) equals a target
or ends with ``"." + target``. The usual choices:

- ``transformers.BertModel``: LoRA on the attention projections ``("query", "value")`` (add ``"key"`` and
  ``"dense"`` for every Linear); adapters at Houlsby's places ``("attention.output.dense", "output.dense")``:
  after the attention output projection and after the feed-forward output, before dropout, the residual
  sum and the LayerNorm (``"output.dense"`` alone already matches both);
- :class:`course_utils.vit.VisionTransformer`: LoRA on ``("q_proj", "v_proj")`` (add ``"k_proj"``,
  ``"out_proj"``, ``"mlp.0"``, ``"mlp.3"`` for every Linear but the head); adapters on
  ``("attn.out_proj", "mlp.3")``, the attention output and the MLP's second Linear, before the residual sum.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
from torch import Tensor, nn

from .models import count_parameters

__all__ = ["LoRALinear", "add_lora", "merge_lora", "BottleneckAdapter", "AdaptedLinear", "add_adapters",
           "trainable_parameters", "lora_parameter_count", "trainable_state_bytes", "copy_lora_to_peft"]


# ---------------------------------------------------------------------------------------------
# Checking the settings
# ---------------------------------------------------------------------------------------------

def _check_whole(value: object, name: str, what: str) -> None:
    """Raise TypeError unless ``value`` is an int (not a bool), ValueError unless it is at least 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int >= 1 ({what}), got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected an int >= 1 ({what}), got {value}")


def _check_lora_settings(r: object, alpha: object, dropout: object) -> None:
    """Raise TypeError / ValueError unless r is an int >= 1, alpha a number > 0 and 0 <= dropout < 1."""
    _check_whole(r, "r", "the rank of the update B @ A")
    for name, value in (("alpha", alpha), ("dropout", dropout)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name}: expected a number, got {value!r}")
    if not alpha > 0 or not math.isfinite(alpha):
        raise ValueError(f"alpha: expected a number > 0 (the update is scaled by alpha / r), got {alpha}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout: expected a probability with 0 <= dropout < 1, got {dropout}")


def _check_linear(base: object) -> None:
    if not isinstance(base, nn.Linear):
        raise TypeError(f"base: expected an nn.Linear to wrap, got {type(base).__name__}")


# ---------------------------------------------------------------------------------------------
# LoRA
# ---------------------------------------------------------------------------------------------

class _WrappedLinear(nn.Module):
    """A module around a frozen ``nn.Linear`` (``self.base``) that shows the base's ``weight``, ``bias``,
    ``in_features`` and ``out_features`` as its own, for code that reads them (``peft``'s layers do the same)."""

    base: nn.Linear

    @property
    def weight(self) -> Tensor:
        return self.base.weight

    @property
    def bias(self) -> Tensor | None:
        return self.base.bias

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features


class LoRALinear(_WrappedLinear):
    """A frozen ``nn.Linear`` plus a trainable low-rank update: ``(..., in)`` -> ``(..., out)``.

    ``forward(x) = base(x) + (dropout(x) @ A.T @ B.T) * alpha / r``, with ``lora_A`` ``(r, in)``
    initialised as ``peft`` 0.21 does by default (``kaiming_uniform_(a=sqrt(5))``, nn.Linear's own init) and
    ``lora_B`` ``(out, r)`` zeros, so the layer starts exactly as ``base``. Dropout acts on the input of the
    low-rank path only. ``base`` is kept (its weight and bias get ``requires_grad=False``); ``weight``,
    ``bias``, ``in_features`` and ``out_features`` are its own, for code that reads them (``peft``'s layers
    do the same).

    Raises:
        TypeError: ``base`` is not an nn.Linear, or a setting has the wrong type.
        ValueError: r < 1, alpha <= 0, or dropout outside [0, 1).
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16, dropout: float = 0.0) -> None:
        super().__init__()
        _check_linear(base)
        _check_lora_settings(r, alpha, dropout)
        self.base = base.requires_grad_(False)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        where = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **where))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, **where))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``(..., in)`` -> ``(..., out)``."""
        return self.base(x) + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def merged(self) -> nn.Linear:
        """A new plain ``nn.Linear`` with weight ``W + scaling * B @ A`` ``(out, in)`` and the base bias.

        It gives this layer's outputs (in eval mode, i.e. without dropout) at the base layer's cost; its
        parameters keep the base layer's ``requires_grad``.
        """
        base = self.base
        linear = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                           device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():  # not a decorator: the exercises forbid this method by its own code object
            linear.weight.copy_(base.weight + self.scaling * (self.lora_B @ self.lora_A))
            if base.bias is not None:
                linear.bias.copy_(base.bias)
        return linear.requires_grad_(base.weight.requires_grad)

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:g}"


def _check_targets(model: object, targets: object) -> tuple[str, ...]:
    """``targets`` as a tuple of names; TypeError / ValueError for a model that is not a module or bad targets."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if not isinstance(targets, (list, tuple, set, frozenset)) or not all(isinstance(t, str) for t in targets):
        raise TypeError(f"targets: expected a list or tuple of module names, e.g. ('query', 'value'), got {targets!r}"
                        + (" (one string is refused: peft reads it as a regular expression)"
                           if isinstance(targets, str) else ""))
    if not targets or not all(targets):
        raise ValueError(f"targets: expected at least one non-empty module name, got {targets!r}")
    return tuple(targets)


def _matching_linears(model: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """The names of the Linear layers matched by ``targets`` (peft's rule), sorted.

    A Linear already wrapped by :class:`LoRALinear` or :class:`AdaptedLinear` (their ``base``) is not offered.

    Raises:
        ValueError: a target matches no Linear (the message lists the Linears there are), or one inside torch's
            ``nn.MultiheadAttention``.
    """
    wrapped = {f"{name}.base" for name, m in model.named_modules() if isinstance(m, (LoRALinear, AdaptedLinear))}
    linears = [name for name, m in model.named_modules()
               if name and isinstance(m, nn.Linear) and name not in wrapped]
    chosen = set()
    for target in targets:
        found = [name for name in linears if name == target or name.endswith(f".{target}")]
        if not found:
            shown = ", ".join(linears[:20]) + (f", ... ({len(linears)} in all)" if len(linears) > 20 else "")
            raise ValueError(f"target {target!r} matches no nn.Linear of the model (a name must equal it or end "
                             f"with '.{target}'); its Linear layers are: {shown or 'none'}")
        chosen.update(found)
    for name in chosen:
        if isinstance(model.get_submodule(name.rpartition(".")[0]), nn.MultiheadAttention):
            raise ValueError(f"{name} belongs to an nn.MultiheadAttention, which reads its weight without calling "
                             "the layer: a wrapper there would be ignored. Target the course's MultiHeadAttention "
                             "(course_utils.attention) or another Linear")
    return sorted(chosen)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` where the submodule ``name`` (e.g. ``"blocks.0.mlp.3"``) was."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def add_lora(model: nn.Module, targets: Sequence[str], r: int = 8, alpha: float = 16,
             dropout: float = 0.0) -> list[str]:
    """Freeze every parameter of ``model`` and put a :class:`LoRALinear` on each Linear that ``targets`` names.

    In place; returns the replaced layers' names, sorted. Only the new ``lora_A`` / ``lora_B`` train: unfreeze
    a classifier head yourself (``model.head.requires_grad_(True)``) when it must learn too.

    Raises:
        TypeError: ``model`` is not an nn.Module, ``targets`` is not a list of names (a single string is
            refused: peft would read it as a regular expression), or a setting has the wrong type.
        ValueError: a bad r / alpha / dropout, a target that matches no Linear (the message lists them), or a
            Linear inside torch's nn.MultiheadAttention. Nothing is changed when an error is raised.
    """
    targets = _check_targets(model, targets)
    _check_lora_settings(r, alpha, dropout)
    names = _matching_linears(model, targets)
    model.requires_grad_(False)
    for name in names:
        _replace(model, name, LoRALinear(model.get_submodule(name), r, alpha, dropout))
    return names


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` of ``model`` by its :meth:`~LoRALinear.merged` Linear; return ``model``.

    In place (a ``model`` that is itself a LoRALinear cannot be changed in place: its merged Linear is
    returned). The result has the base model's layers and parameter count, and its outputs (in eval mode).

    Raises:
        TypeError: ``model`` is not an nn.Module.
        ValueError: ``model`` has no LoRALinear.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if isinstance(model, LoRALinear):
        return model.merged()
    names = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    if not names:
        raise ValueError("model has no LoRALinear layer to merge: call add_lora(model, targets) first")
    for name in names:
        _replace(model, name, model.get_submodule(name).merged())
    return model


# ---------------------------------------------------------------------------------------------
# Bottleneck adapters
# ---------------------------------------------------------------------------------------------

class BottleneckAdapter(nn.Module):
    """Houlsby et al. (2019): ``h + up(GELU(down(h)))``, ``(..., dim)`` -> ``(..., dim)``.

    ``down`` is ``Linear(dim, bottleneck)``, ``up`` is ``Linear(bottleneck, dim)`` initialised to zero, so the
    adapter starts as the identity. It adds ``2 * dim * bottleneck + bottleneck + dim`` parameters.
    """

    def __init__(self, dim: int, bottleneck: int = 16) -> None:
        super().__init__()
        _check_whole(dim, "dim", "the width of the features")
        _check_whole(bottleneck, "bottleneck", "the adapter's hidden width")
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: Tensor) -> Tensor:
        """``(..., dim)`` -> ``(..., dim)``."""
        return h + self.up(self.act(self.down(h)))


class AdaptedLinear(_WrappedLinear):
    """A frozen ``nn.Linear`` whose output passes through a trainable :class:`BottleneckAdapter`.

    ``(..., in)`` -> ``(..., out)``: ``adapter(base(x))``. Like :class:`LoRALinear` it shows the base layer's
    ``weight``, ``bias``, ``in_features`` and ``out_features``.
    """

    def __init__(self, base: nn.Linear, bottleneck: int = 16) -> None:
        super().__init__()
        _check_linear(base)
        self.base = base.requires_grad_(False)
        self.adapter = BottleneckAdapter(base.out_features, bottleneck).to(base.weight.device, base.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """``(..., in)`` -> ``(..., out)``."""
        return self.adapter(self.base(x))


def add_adapters(model: nn.Module, targets: Sequence[str], bottleneck: int = 16) -> list[str]:
    """Freeze every parameter of ``model`` and put a :class:`BottleneckAdapter` after each Linear ``targets`` names.

    In place; returns the adapted layers' names, sorted. ``targets`` follows :func:`add_lora`'s rule; for
    Houlsby's places use ``("attention.output.dense", "output.dense")`` in a BertModel and
    ``("attn.out_proj", "mlp.3")`` in :class:`course_utils.vit.VisionTransformer`. Houlsby et al. also train the
    LayerNorms and the head: unfreeze them yourself when you want that.

    Raises:
        TypeError, ValueError: as :func:`add_lora`, and for a bottleneck that is not an int >= 1.
    """
    targets = _check_targets(model, targets)
    _check_whole(bottleneck, "bottleneck", "the adapter's hidden width")
    names = _matching_linears(model, targets)
    model.requires_grad_(False)
    for name in names:
        _replace(model, name, AdaptedLinear(model.get_submodule(name), bottleneck))
    return names


# ---------------------------------------------------------------------------------------------
# What is trained, and what its state costs
# ---------------------------------------------------------------------------------------------

def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` numbers of parameters of ``model`` (a shared parameter counts once)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    return count_parameters(model), sum(p.numel() for p in model.parameters())


def lora_parameter_count(model: nn.Module) -> int:
    """Trainable LoRA numbers of ``model``: parameters with a name part starting ``lora_``.

    Counts ours (``...query.lora_A``) and ``peft``'s (``...query.lora_A.default.weight``) alike, and leaves out
    whatever else trains beside them (a classifier head, which ``peft`` trains through ``modules_to_save``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    return sum(p.numel() for name, p in model.named_parameters()
               if p.requires_grad and any(part.startswith("lora_") for part in name.split(".")))


def trainable_state_bytes(model: nn.Module, bytes_per_value: int = 4) -> int:
    """Bytes of the training state AdamW keeps for ``model``'s trainable parameters.

    Four values per trainable parameter: the parameter, its gradient and Adam's two moments, each
    ``bytes_per_value`` bytes (4 for float32). Frozen weights, activations and the framework's own memory are
    not counted.
    """
    _check_whole(bytes_per_value, "bytes_per_value", "bytes per stored number, 4 for float32")
    return 4 * trainable_parameters(model)[0] * bytes_per_value


# ---------------------------------------------------------------------------------------------
# Comparing with peft
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def copy_lora_to_peft(model: nn.Module, peft_model: nn.Module, adapter: str = "default") -> list[str]:
    """Copy each :class:`LoRALinear`'s ``lora_A`` / ``lora_B`` of ``model`` into the same layer of ``peft_model``.

    ``peft_model`` is what ``peft.get_peft_model`` returned for a copy of the same base model. After the copy
    both compute the same function, so their outputs can be compared. Returns the layers' names, sorted.

    Raises:
        ValueError: the two have LoRA on different layers, or a layer's rank or scaling differs.
    """
    ours = {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}
    if not ours:
        raise ValueError("model has no LoRALinear layer: call add_lora(model, targets) first")
    root = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
    theirs = {name: m for name, m in root.named_modules()
              if isinstance(getattr(m, "lora_A", None), nn.ModuleDict) and adapter in m.lora_A}
    if set(ours) != set(theirs):
        raise ValueError(f"the two models have LoRA on different layers: only ours {sorted(set(ours) - set(theirs))}, "
                         f"only peft's {sorted(set(theirs) - set(ours))}; give peft the same target_modules")
    for name, layer in ours.items():
        other = theirs[name]
        a, b = other.lora_A[adapter].weight, other.lora_B[adapter].weight
        if a.shape != layer.lora_A.shape or b.shape != layer.lora_B.shape \
                or not math.isclose(other.scaling[adapter], layer.scaling):
            raise ValueError(f"{name}: peft's layer has A {tuple(a.shape)}, B {tuple(b.shape)}, scaling "
                             f"{other.scaling[adapter]:g}; ours A {tuple(layer.lora_A.shape)}, B "
                             f"{tuple(layer.lora_B.shape)}, scaling {layer.scaling:g}: give both the same r and alpha")
        a.copy_(layer.lora_A)
        b.copy_(layer.lora_B)
    return sorted(ours)
