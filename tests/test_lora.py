"""LoRA by hand, bottleneck adapters and trainable-state accounting (course_utils.lora), checked against peft.

A tiny BertModel (2 layers, hidden 32, 4 heads, built from a config: no hub) and a tiny VisionTransformer
are wrapped by our ``add_lora`` and by peft's ``get_peft_model`` with the same r, alpha and targets: the two
train the same number of LoRA parameters and, once our A and B are copied into peft's, give the same outputs.
"""
from __future__ import annotations

import copy
import math
import re

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from torch.nn import functional as F
from transformers import BertConfig, BertModel

from course_utils import count_parameters
from course_utils.lora import (
    AdaptedLinear,
    BottleneckAdapter,
    LoRALinear,
    add_adapters,
    add_lora,
    copy_lora_to_peft,
    lora_parameter_count,
    merge_lora,
    trainable_parameters,
    trainable_state_bytes,
)
from course_utils.vit import VisionTransformer

# (model name, LoRA targets, adapter targets at Houlsby's places)
BERT = ("bert", ("query", "value"), ("attention.output.dense", "output.dense"))
VIT = ("vit", ("q_proj", "v_proj"), ("attn.out_proj", "mlp.3"))


def tiny_bert() -> BertModel:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64)
    return BertModel(config).eval()


def tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(image_size=8, patch_size=4, num_classes=3, embed_dim=16, depth=2, num_heads=2).eval()


MODELS = {"bert": tiny_bert, "vit": tiny_vit}


def inputs(name: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 50, (2, 7), generator=g) if name == "bert" else torch.randn(2, 1, 8, 8, generator=g)


def run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output: BERT's last hidden states ``(B, T, 32)``, the ViT's logits ``(B, 3)``."""
    with torch.no_grad():
        out = model(x)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out


@torch.no_grad()
def randomise_lora(model: nn.Module) -> None:
    """Give every B (and A) random values, as after training, so that the low-rank path shows in the outputs."""
    g = torch.Generator().manual_seed(2)
    for module in model.modules():
        if isinstance(module, LoRALinear):
            module.lora_A.copy_(torch.randn(module.lora_A.shape, generator=g) * 0.3)
            module.lora_B.copy_(torch.randn(module.lora_B.shape, generator=g) * 0.3)


# ---------------------------------------------------------------------------------------------
# LoRALinear
# ---------------------------------------------------------------------------------------------

def test_a_lora_layer_starts_as_its_base_layer_and_computes_the_formula():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, r=2, alpha=8)
    x = torch.randn(3, 4, 6)
    assert torch.equal(layer(x), base(x))                               # B = 0: exactly the base layer
    assert layer.lora_A.shape == (2, 6) and layer.lora_B.shape == (5, 2) and layer.scaling == 4
    assert not base.weight.requires_grad and not base.bias.requires_grad
    assert [name for name, p in layer.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]
    assert layer.weight is base.weight and layer.bias is base.bias and (layer.in_features, layer.out_features) == (6, 5)
    # A as peft initialises it: kaiming_uniform_(a=sqrt(5)), uniform in +-1/sqrt(in)
    assert layer.lora_A.abs().max() <= 1 / math.sqrt(6) and layer.lora_A.abs().min() > 0
    with torch.no_grad():
        layer.lora_B.normal_()
    want = x @ base.weight.T + base.bias + x @ layer.lora_A.T @ layer.lora_B.T * 4
    torch.testing.assert_close(layer(x), want)


def test_the_new_parameters_follow_the_base_layers_dtype():
    layer = LoRALinear(nn.Linear(3, 2).double(), r=1, alpha=1)
    adapted = AdaptedLinear(nn.Linear(3, 2).double(), bottleneck=2)
    assert {p.dtype for p in [*layer.parameters(), *adapted.parameters()]} == {torch.float64}
    assert layer(torch.randn(4, 3, dtype=torch.float64)).dtype == torch.float64


def test_dropout_acts_on_the_low_rank_path_only():
    torch.manual_seed(0)
    base = nn.Linear(6, 5)
    layer = LoRALinear(base, r=3, alpha=3, dropout=0.5).train()
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 6)
    torch.manual_seed(7)
    got = layer(x)
    torch.manual_seed(7)
    want = base(x) + F.dropout(x, 0.5, training=True) @ layer.lora_A.T @ layer.lora_B.T
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(layer.eval()(x), base(x) + x @ layer.lora_A.T @ layer.lora_B.T)


@pytest.mark.parametrize("name, targets, _", [BERT, VIT])
def test_add_lora_starts_at_the_base_model_and_trains_only_a_and_b(name, targets, _):
    base = MODELS[name]()
    model = copy.deepcopy(base)
    replaced = add_lora(model, targets, r=4, alpha=8)
    assert replaced == sorted(replaced) and len(replaced) == 2 * 2   # 2 targets in each of 2 layers
    assert all(n.rsplit(".", 1)[1] in targets for n in replaced)
    assert torch.equal(run(model, inputs(name)), run(base, inputs(name)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{n}.lora_{m}" for n in replaced for m in "AB"}


def test_training_changes_only_a_and_b():
    model = tiny_vit()
    add_lora(model, ("q_proj", "v_proj"), r=2, alpha=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    images, labels = inputs("vit"), torch.tensor([0, 2])
    for _ in range(3):
        optimiser.zero_grad()
        F.cross_entropy(model.train()(images), labels).backward()
        optimiser.step()
    for n, p in model.named_parameters():
        changed = not torch.equal(p, before[n])
        assert changed == (".lora_" in n), n                           # base weights bit-identical


@pytest.mark.parametrize("name, targets, _", [BERT, VIT])
def test_merging_gives_the_same_outputs_with_the_base_models_parameters(name, targets, _):
    base = MODELS[name]()
    model = copy.deepcopy(base)
    add_lora(model, targets, r=4, alpha=8)
    randomise_lora(model)
    unmerged = run(model, inputs(name))
    assert (unmerged - run(base, inputs(name))).abs().max() > 1e-3    # the low-rank path changes the outputs
    assert merge_lora(model) is model
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert (run(model, inputs(name)) - unmerged).abs().max() <= 1e-5
    assert trainable_parameters(model)[1] == trainable_parameters(base)[1]
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in base.named_parameters()]


def test_a_merged_layer_is_a_plain_linear_with_the_base_bias():
    layer = LoRALinear(nn.Linear(4, 3), r=2, alpha=2)
    with torch.no_grad():
        layer.lora_B.normal_()
    merged = merge_lora(layer)
    assert type(merged) is nn.Linear and torch.equal(merged.bias, layer.base.bias)
    torch.testing.assert_close(merged.weight, layer.base.weight + layer.lora_B @ layer.lora_A)
    assert not merged.weight.requires_grad                             # frozen like the base it replaces


# ---------------------------------------------------------------------------------------------
# The same as peft
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, targets, _", [BERT, VIT])
def test_the_same_as_peft_lora(name, targets, _):
    base = MODELS[name]()
    ours = copy.deepcopy(base)
    replaced = add_lora(ours, targets, r=4, alpha=8)
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=list(targets),
                                                             lora_dropout=0.0))
    # Without a task type or modules_to_save, peft trains the LoRA weights and nothing else (no head): the
    # trainable counts are the LoRA counts on both sides.
    expected = len(replaced) * 4 * (32 + 32 if name == "bert" else 16 + 16)
    assert trainable_parameters(ours)[0] == lora_parameter_count(ours) == expected
    assert trainable_parameters(theirs)[0] == lora_parameter_count(theirs) == expected
    assert theirs.get_nb_trainable_parameters()[0] == expected
    randomise_lora(ours)
    assert copy_lora_to_peft(ours, theirs) == replaced
    assert (run(ours, inputs(name)) - run(theirs, inputs(name))).abs().max() <= 1e-5


def test_a_trained_head_counts_the_same_in_both_and_lora_counts_leave_it_out():
    """peft trains a head through ``modules_to_save`` (a trainable copy beside the frozen original); ours
    unfreezes it in place: the trainable counts agree, and ``lora_parameter_count`` leaves the head out."""
    base = tiny_vit()
    ours = copy.deepcopy(base)
    add_lora(ours, ("q_proj", "v_proj"), r=2, alpha=4)
    ours.head.requires_grad_(True)
    theirs = get_peft_model(copy.deepcopy(base), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                             modules_to_save=["head"]))
    head = 16 * 3 + 3
    assert trainable_parameters(ours)[0] == trainable_parameters(theirs)[0] == lora_parameter_count(ours) + head
    assert lora_parameter_count(theirs) == lora_parameter_count(ours) == 2 * 2 * 2 * (16 + 16)


def test_copying_into_peft_refuses_other_layers_or_another_rank():
    base = tiny_vit()
    ours = copy.deepcopy(base)
    add_lora(ours, ("q_proj", "v_proj"), r=2, alpha=4)
    other_layers = get_peft_model(copy.deepcopy(base), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="different layers"):
        copy_lora_to_peft(ours, other_layers)
    other_rank = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with pytest.raises(ValueError, match="same r and alpha"):
        copy_lora_to_peft(ours, other_rank)
    with pytest.raises(ValueError, match="add_lora"):
        copy_lora_to_peft(copy.deepcopy(base), other_rank)


# ---------------------------------------------------------------------------------------------
# Bottleneck adapters
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, _, targets", [BERT, VIT])
def test_adapters_start_as_the_identity_and_add_2db_plus_b_plus_d_each(name, _, targets):
    base = MODELS[name]()
    model = copy.deepcopy(base)
    adapted = add_adapters(model, targets, bottleneck=5)
    assert len(adapted) == 2 * 2 and adapted == sorted(adapted)        # 2 places in each of 2 layers
    assert torch.equal(run(model, inputs(name)), run(base, inputs(name)))
    d, b = (32, 5) if name == "bert" else (16, 5)
    added = len(adapted) * (2 * d * b + b + d)
    trainable, total = trainable_parameters(model)
    assert trainable == added and total == trainable_parameters(base)[1] + added
    assert all(isinstance(model.get_submodule(n), AdaptedLinear) for n in adapted)


def test_an_adapter_is_a_residual_bottleneck():
    adapter = BottleneckAdapter(8, bottleneck=3)
    h = torch.randn(2, 4, 8)
    assert torch.equal(adapter(h), h) and count_parameters(adapter) == 2 * 8 * 3 + 3 + 8
    with torch.no_grad():
        adapter.up.weight.normal_()
    torch.testing.assert_close(adapter(h), h + adapter.up(F.gelu(adapter.down(h))))


# ---------------------------------------------------------------------------------------------
# Trainable state
# ---------------------------------------------------------------------------------------------

def test_trainable_state_is_four_values_per_trainable_parameter():
    layer = nn.Linear(10, 5)                                           # 55 parameters
    assert trainable_parameters(layer) == (55, 55)
    assert trainable_state_bytes(layer) == 55 * 4 * 4 and trainable_state_bytes(layer, bytes_per_value=2) == 440
    assert trainable_state_bytes(layer.requires_grad_(False)) == 0 and trainable_parameters(layer) == (0, 55)
    model = tiny_vit()
    add_lora(model, ("q_proj",), r=2, alpha=2)
    assert trainable_state_bytes(model) == 16 * lora_parameter_count(model) == 16 * 2 * 2 * (16 + 16)


# ---------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, error, words", [
    (lambda: LoRALinear(nn.Conv2d(1, 1, 1)), TypeError, "expected an nn.Linear"),
    (lambda: LoRALinear(nn.Linear(3, 3), r=0), ValueError, "r: expected an int >= 1"),
    (lambda: LoRALinear(nn.Linear(3, 3), r=2.0), TypeError, "r: expected an int"),
    (lambda: LoRALinear(nn.Linear(3, 3), r=True), TypeError, "r: expected an int"),
    (lambda: LoRALinear(nn.Linear(3, 3), alpha=0), ValueError, "alpha: expected a number > 0"),
    (lambda: LoRALinear(nn.Linear(3, 3), alpha=-4.0), ValueError, "alpha: expected a number > 0"),
    (lambda: LoRALinear(nn.Linear(3, 3), alpha="16"), TypeError, "alpha: expected a number"),
    (lambda: LoRALinear(nn.Linear(3, 3), dropout=1.0), ValueError, "0 <= dropout < 1"),
    (lambda: LoRALinear(nn.Linear(3, 3), dropout=-0.1), ValueError, "0 <= dropout < 1"),
    (lambda: add_lora(tiny_vit(), ("nope",)), ValueError, "matches no nn.Linear of the model"),
    (lambda: add_lora(tiny_vit(), "q_proj"), TypeError, "regular expression"),
    (lambda: add_lora(tiny_vit(), ()), ValueError, "at least one"),
    (lambda: add_lora(tiny_vit(), ("q_proj", "")), ValueError, "at least one non-empty"),
    (lambda: add_lora(tiny_vit(), (1,)), TypeError, "list or tuple of module names"),
    (lambda: add_lora("a model", ("q_proj",)), TypeError, "expected an nn.Module"),
    (lambda: add_lora(tiny_vit(), ("q_proj",), r=-1), ValueError, "r: expected"),
    (lambda: add_lora(nn.Sequential(nn.MultiheadAttention(4, 2)), ("out_proj",)), ValueError,
     "0.out_proj belongs to an nn.MultiheadAttention"),
    (lambda: merge_lora(tiny_vit()), ValueError, "no LoRALinear"),
    (lambda: merge_lora(None), TypeError, "expected an nn.Module"),
    (lambda: BottleneckAdapter(0), ValueError, "dim: expected an int >= 1"),
    (lambda: add_adapters(tiny_vit(), ("mlp.3",), bottleneck=0), ValueError, "bottleneck: expected an int >= 1"),
    (lambda: add_adapters(tiny_vit(), ("mlp.1",)), ValueError, "matches no nn.Linear"),
    (lambda: AdaptedLinear(nn.LayerNorm(3)), TypeError, "expected an nn.Linear"),
    (lambda: trainable_state_bytes(nn.Linear(2, 2), bytes_per_value=0), ValueError, "bytes_per_value"),
    (lambda: trainable_parameters([nn.Linear(2, 2)]), TypeError, "expected an nn.Module"),
    (lambda: lora_parameter_count(None), TypeError, "expected an nn.Module"),
])
def test_bad_input_gets_a_clear_error(make, error, words):
    with pytest.raises(error, match=re.escape(words)):
        make()


def test_the_missing_target_error_lists_the_linear_layers_and_changes_nothing():
    model = tiny_vit()
    with pytest.raises(ValueError) as caught:
        add_lora(model, ("q_proj", "query"))
    message = str(caught.value)
    assert "'query'" in message and "blocks.0.attn.q_proj" in message and "blocks.1.mlp.3, head" in message
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError):
        add_lora(model, ("q_proj",), alpha=0)
    assert all(p.requires_grad for p in model.parameters())


def test_a_wrapped_layer_is_not_offered_again():
    model = tiny_vit()
    add_lora(model, ("q_proj",), r=2, alpha=2)
    with pytest.raises(ValueError, match="matches no nn.Linear"):
        add_lora(model, ("q_proj",))
    with pytest.raises(ValueError, match="matches no nn.Linear"):
        add_adapters(model, ("base",))
