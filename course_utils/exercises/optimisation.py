"""Checkers for notebook 07's optimisation exercises, with the model answers they are tested against.

- :func:`check_bce_grad`: dL/dz of the mean binary cross-entropy with logits, derived by hand (autograd
  forbidden);
- :func:`check_decay_groups`: the two AdamW parameter groups, weight decay on matrices only, frozen
  parameters left out (reference: :func:`course_utils.optimisation.decay_groups`);
- :func:`check_warmup_cosine`: the learning-rate multiplier of a linear warmup then cosine decay at one
  step (reference: :func:`course_utils.optimisation.warmup_cosine_factor`, the same convention).

The library's functions are forbidden in their own exercise, so each ``solution_*`` here is a model
answer written the way a learner would.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from .. import optimisation
from . import Case, Hint, Mistake, as_number, call, check_cases, describe, exercise, hidden_cases

__all__ = ["solution_bce_grad", "solution_decay_groups", "solution_lr_at", "check_bce_grad", "check_decay_groups",
           "check_warmup_cosine"]

# ---------------------------------------------------------------------------------------------
# Exercise 1: the gradient of binary cross-entropy with logits
# ---------------------------------------------------------------------------------------------


def solution_bce_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """dL/dz of ``L = mean over the N*K entries of BCE(sigmoid(z), y)``: ``(sigmoid(z) - y) / (N K)``, ``(N, K)``."""
    return (torch.sigmoid(logits) - targets) / logits.numel()


_AUTOGRAD = ("this exercise asks you to derive the gradient by hand, with the chain rule; autograd is what the "
             "notebook checks your formula against afterwards")
BCE_GRAD_FORBIDDEN = ((torch.autograd.grad, _AUTOGRAD), (torch.autograd.backward, _AUTOGRAD),
                      (torch.Tensor.backward, _AUTOGRAD))


def _bce_mistake(compute: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
                 ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A wrong answer written from ``compute(z, y, p)``, with ``p = sigmoid(z)``."""
    return lambda z, y: compute(z, y, torch.sigmoid(z))


BCE_GRAD_MISTAKES: tuple[Mistake, ...] = (
    Mistake("sign flipped", _bce_mistake(lambda z, y, p: (y - p) / z.numel()),
            "every entry has the wrong sign: where the target is 0, a larger logit makes the loss larger, so dL/dz "
            "is positive there. Differentiate -log(1 - sigmoid(z)) again"),
    Mistake("no division by N*K", _bce_mistake(lambda z, y, p: p - y),
            "your gradient is N*K times too large: the loss is the MEAN over all N*K entries, so each entry's "
            "gradient carries a factor 1/(N*K)"),
    Mistake("divided by N only", _bce_mistake(lambda z, y, p: (p - y) / len(z)),
            "your gradient is K times too large: BCEWithLogitsLoss averages over every entry, N*K of them, not only "
            "over the N rows"),
    Mistake("sigmoid derivative left in", _bce_mistake(lambda z, y, p: (p - y) * p * (1 - p) / z.numel()),
            "the factor sigmoid(z) * (1 - sigmoid(z)) should have cancelled: dL/dp = (p - y) / (p (1 - p)) and "
            "dp/dz = p (1 - p), so their product is simpler than either"),
    Mistake("logits without the sigmoid", _bce_mistake(lambda z, y, p: (z - y) / z.numel()),
            "you used the logit z where the predicted probability belongs: the gradient compares a probability with "
            "the target, and z is not a probability"),
)


def _bce_case(generator: torch.Generator, n: int, k: int, scale: float, soft: bool) -> tuple[torch.Tensor, ...]:
    """Random logits ``(n, k)`` and targets ``(n, k)``: 0/1, or soft targets in [0, 1] when ``soft``."""
    logits = torch.randn(n, k, generator=generator) * scale
    targets = torch.rand(n, k, generator=generator) if soft else (torch.rand(n, k, generator=generator) < 0.4).float()
    return logits, targets


def _bce_cases() -> tuple[Case, ...]:
    """Fixed cases: N and K differ (so a division by N alone shows), large logits, and soft targets."""
    generator = torch.Generator().manual_seed(7)
    return (
        Case(_bce_case(generator, 4, 3, 2.0, soft=False), "logits (4, 3), targets (4, 3) of 0 and 1"),
        Case(_bce_case(generator, 2, 5, 30.0, soft=False), "large logits (2, 5), like +-30, targets of 0 and 1"),
        Case(_bce_case(generator, 3, 2, 1.0, soft=True), "logits (3, 2), soft targets (3, 2) between 0 and 1"),
    )


BCE_GRAD_CASES = _bce_cases()


def _hidden_bce(generator: torch.Generator) -> tuple[tuple[torch.Tensor, ...], str]:
    """Random logits and 0/1 targets of two different sizes N, K in 2..8."""
    n, k = (int(v) + 2 for v in torch.randperm(7, generator=generator)[:2])
    return _bce_case(generator, n, k, 3.0, soft=False), f"logits ({n}, {k}), targets ({n}, {k})"


@exercise("bce_grad", solution=solution_bce_grad, hidden=3, mistakes=BCE_GRAD_MISTAKES, forbidden=BCE_GRAD_FORBIDDEN)
def check_bce_grad(answer: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Check ``answer(logits (N, K), targets (N, K))`` -> dL/dlogits ``(N, K)`` of the mean BCE with logits."""
    cases = [*BCE_GRAD_CASES, *hidden_cases(_hidden_bce, 3)]
    check_cases(answer, cases, solution_bce_grad, mistakes=BCE_GRAD_MISTAKES)


# ---------------------------------------------------------------------------------------------
# Exercise 2: AdamW parameter groups, no decay on biases and normalisation weights
# ---------------------------------------------------------------------------------------------


def solution_decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: trainable parameters with 2+ dims decayed by ``weight_decay``, the others by 0."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]


class TokenEmbeddings(nn.Module):
    """A CLS token ``(1, 1, D)`` and position embeddings ``(1, T, D)``, as a ViT holds them."""

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, length, dim))


class CaseModel(nn.ModuleDict):
    """A checker's model: named layers, some frozen, each parameter filled with its own random values.

    Two CaseModels are equal when their parameters have the same names, values and ``requires_grad``,
    so that the checker sees a learner's change to the model and recognises the parameters that come
    back from the copy the learner was given.
    """

    def __init__(self, layers: dict[str, nn.Module], frozen: set[str], generator: torch.Generator) -> None:
        super().__init__(layers)
        for name in frozen:
            self[name].requires_grad_(False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CaseModel):
            return NotImplemented
        mine, theirs = list(self.named_parameters()), list(other.named_parameters())
        return len(mine) == len(theirs) and all(
            a == b and p.shape == q.shape and p.requires_grad == q.requires_grad and torch.equal(p, q)
            for (a, p), (b, q) in zip(mine, theirs))

    __hash__ = nn.Module.__hash__  # modules are kept in sets by identity (named_modules)


def _fixed_model() -> CaseModel:
    """The fixed case's model, built without moving torch's global random numbers (importing this module leaves a
    notebook's random numbers as they were)."""
    with torch.random.fork_rng(devices=[]):
        layers = {"embed": nn.Embedding(12, 8), "tokens": TokenEmbeddings(5, 8), "conv": nn.Conv2d(1, 4, 3),
                  "bn": nn.BatchNorm2d(4), "gn": nn.GroupNorm(2, 4), "proj": nn.Linear(8, 8), "norm": nn.LayerNorm(8),
                  "backbone": nn.Linear(8, 8), "backbone_norm": nn.LayerNorm(8), "head": nn.Linear(8, 3)}
        return CaseModel(layers, {"backbone", "backbone_norm"}, torch.Generator().manual_seed(3))


DECAY_CASES = (Case((_fixed_model(), 0.05), "a model with Embedding, CLS and position embeddings, Conv2d, BatchNorm2d, "
                                             "GroupNorm, Linear and LayerNorm layers and a frozen part, weight_decay "
                                             "0.05"),)


def _random_layer(generator: torch.Generator, kind: int) -> nn.Module:
    """One layer of kind 0..7 (Linear, conv, norms, embedding, layers without bias) with random sizes."""
    a, b = (int(v) for v in torch.randint(2, 7, (2,), generator=generator))
    return [lambda: nn.Linear(a, b), lambda: nn.Conv2d(a, b, 3), lambda: nn.LayerNorm(a),
            lambda: nn.BatchNorm1d(a), lambda: nn.GroupNorm(1, a), lambda: nn.Embedding(a + 5, b),
            lambda: nn.Linear(a, b, bias=False), lambda: nn.Conv2d(a, b, 1, bias=False)][kind]()


def _hidden_model(generator: torch.Generator) -> tuple[tuple[CaseModel, float], str]:
    """A model of 5 to 7 layers in a random order: at least a Linear with bias, a trainable LayerNorm and a frozen
    Linear, the rest of random kinds, a quarter of them frozen; a weight decay in [0.01, 0.3]."""
    extra = int(torch.randint(2, 5, (), generator=generator))
    kinds = [0, 2, 0, *torch.randint(0, 8, (extra,), generator=generator).tolist()]
    frozen = {2} | {i for i in range(3, len(kinds)) if float(torch.rand((), generator=generator)) < 0.25}
    order = torch.randperm(len(kinds), generator=generator).tolist()
    layers = {f"layer{position}": _random_layer(generator, kinds[i]) for position, i in enumerate(order)}
    frozen_names = {f"layer{position}" for position, i in enumerate(order) if i in frozen}
    weight_decay = round(0.01 + 0.29 * float(torch.rand((), generator=generator)), 3)
    return ((CaseModel(layers, frozen_names, generator), weight_decay),
            f"a model of {len(layers)} layers, some frozen, weight_decay {weight_decay}")


def _owner(model: nn.Module, name: str) -> str:
    """The class of the module that holds parameter ``name``, e.g. ``LayerNorm``."""
    return type(model.get_submodule(name.rpartition(".")[0])).__name__


Placement = dict[str, tuple[float, ...]]  # parameter name -> the weight decays of the groups it is in


def _placement(groups: Any, model: nn.Module, what: str) -> Placement:
    """The weight decays of the groups each of ``model``'s parameters is in. ``groups`` may hold the parameters of a
    copy of ``model`` (the learner's function gets one): a parameter is recognised by its shape and values, which
    differ for every parameter of a :class:`CaseModel`."""
    if isinstance(groups, dict) or not isinstance(groups, (list, tuple)):
        raise Hint(f"{what}: expected a list of parameter groups (dicts such as {{'params': [...], "
                   f"'weight_decay': ...}}), got {describe(groups)}")
    named = list(model.named_parameters())
    placement: dict[str, list[float]] = {}
    for number, group in enumerate(groups, 1):
        if not isinstance(group, dict) or "params" not in group:
            raise Hint(f"{what}: group {number} is {describe(group)}; each group is a dict with the keys 'params' "
                       "(a list of parameters) and 'weight_decay'")
        if "weight_decay" not in group:
            raise Hint(f"{what}: group {number} has no 'weight_decay': AdamW would give it its default, 0.01, "
                       "whatever you meant; set it in every group")
        decay = round(as_number(group["weight_decay"], f"{what}: group {number}'s weight_decay"), 12)
        params = [group["params"]] if isinstance(group["params"], torch.Tensor) else list(group["params"])
        for p in params:
            if not isinstance(p, nn.Parameter):
                raise Hint(f"{what}: group {number} holds {describe(p)}, not a parameter: put the model's parameters "
                           "themselves in the groups (from model.parameters() or model.named_parameters())")
            name = next((n for n, q in named if q.shape == p.shape and torch.equal(q, p)), None)
            if name is None:
                raise Hint(f"{what}: group {number} holds a parameter of shape {tuple(p.shape)} that is not one of "
                           "this model's")
            placement.setdefault(name, []).append(decay)
    return {name: tuple(sorted(decays)) for name, decays in placement.items()}


def _explain_placement(got: Placement, want: Placement, case: Case) -> None:
    """The hint for the first parameter, in the model's order, that is in the wrong group(s)."""
    model, weight_decay = case.args
    for name, p in model.named_parameters():
        if got.get(name) == want.get(name):
            continue
        where = f"{case.what}: `{name}` ({_owner(model, name)}, shape {tuple(p.shape)})"
        if not p.requires_grad:
            raise Hint(f"{where} is frozen (requires_grad=False) but in a group: leave frozen parameters out")
        if name not in got:
            raise Hint(f"{where} is in no group, so AdamW would never update it: every trainable parameter goes in "
                       "one group")
        if len(got[name]) > 1:
            raise Hint(f"{where} is in {len(got[name])} groups: each parameter goes in exactly one (torch refuses a "
                       "parameter in two groups)")
        if p.ndim < 2:
            raise Hint(f"{where} has weight decay {got[name][0]:g}: biases and normalisation weights (fewer than 2 "
                       "dims) get none")
        raise Hint(f"{where} has weight decay {got[name][0]:g}: weight matrices, conv kernels and embeddings (2 or "
                   "more dims) get the `weight_decay` passed in")
    raise Hint(f"{case.what}: your groups differ from the reference")


def _groups(model: nn.Module, weight_decay: float, decayed: Callable[[str, nn.Parameter], bool],
            frozen_too: bool = False) -> list[dict[str, Any]]:
    """Two groups split by ``decayed(name, parameter)``: what a wrong rule gives."""
    named = [(n, p) for n, p in model.named_parameters() if frozen_too or p.requires_grad]
    return [{"params": [p for n, p in named if decayed(n, p)], "weight_decay": weight_decay},
            {"params": [p for n, p in named if not decayed(n, p)], "weight_decay": 0.0}]


NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)


def _in_norm(model: nn.Module, name: str) -> bool:
    """Whether parameter ``name`` belongs to a normalisation layer."""
    return isinstance(model.get_submodule(name.rpartition(".")[0]), NORMS)


DECAY_MISTAKES: tuple[Mistake, ...] = (
    Mistake("everything decayed",
            lambda m, wd: [{"params": [p for p in m.parameters() if p.requires_grad], "weight_decay": wd}],
            "every parameter is decayed: biases and the weights of normalisation layers (LayerNorm, BatchNorm, "
            "GroupNorm) belong in a second group with weight_decay 0"),
    Mistake("norm weights decayed", lambda m, wd: _groups(m, wd, lambda n, p: not n.endswith("bias")),
            "the normalisation layers' weights (LayerNorm, BatchNorm, GroupNorm scales, shape (D,)) are decayed: "
            "exempt them too. One rule catches every bias and every normalisation weight: look at p.ndim"),
    Mistake("biases decayed", lambda m, wd: _groups(m, wd, lambda n, p: not _in_norm(m, n)),
            "the biases of the Linear, conv and other layers are decayed: exempt every bias too. One rule catches "
            "every bias and every normalisation weight: look at p.ndim"),
    Mistake("frozen parameters included", lambda m, wd: _groups(m, wd, lambda n, p: p.ndim >= 2, frozen_too=True),
            "frozen parameters (requires_grad=False) are in your groups: leave them out; they never get a gradient, "
            "and the optimizer should hold no state for them"),
    Mistake("a parameter in both groups",
            lambda m, wd: [{"params": [p for p in m.parameters() if p.requires_grad], "weight_decay": wd},
                           {"params": [p for p in m.parameters() if p.requires_grad and p.ndim < 2],
                            "weight_decay": 0.0}],
            "some parameters are in both groups (your first group holds every parameter): each parameter goes in "
            "exactly one group, and torch refuses duplicates"),
    Mistake("groups swapped", lambda m, wd: _groups(m, wd, lambda n, p: p.ndim < 2),
            "your groups are swapped: the weight matrices, conv kernels and embeddings get the weight decay, the "
            "biases and normalisation weights get none"),
)


@exercise("decay_groups", solution=solution_decay_groups, hidden=2, mistakes=DECAY_MISTAKES,
          forbidden=(optimisation.decay_groups,))
def check_decay_groups(answer: Callable[[nn.Module, float], list[dict[str, Any]]]) -> None:
    """Check ``answer(model, weight_decay)`` -> AdamW parameter groups: decay on 2+-dim parameters, frozen ones out."""
    cases = [*DECAY_CASES, *hidden_cases(_hidden_model, 2)]
    got = [_placement(call(answer, *case.args), case.args[0], case.what) for case in cases]

    def placement(groups_of: Callable[..., Any]) -> list[Placement]:
        return [_placement(groups_of(*case.args), case.args[0], case.what) for case in cases]

    want = placement(optimisation.decay_groups)
    if got == want:
        return
    for mistake in DECAY_MISTAKES:
        if placement(mistake.compute) == got:
            raise Hint(mistake.hint)
    case, g, w = next((c, g, w) for c, g, w in zip(cases, got, want) if g != w)
    _explain_placement(g, w, case)


# ---------------------------------------------------------------------------------------------
# Exercise 3: linear warmup, then cosine decay
# ---------------------------------------------------------------------------------------------


def solution_lr_at(step: int, warmup_steps: int, total_steps: int, final: float) -> float:
    """The multiplier of the learning rate at ``step``: ``step / warmup_steps`` during the warmup (0 at step 0),
    then a cosine from 1 down to ``final`` at ``total_steps``."""
    if step < warmup_steps:
        return step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final + (1 - final) * (1 + math.cos(math.pi * progress)) / 2


def _cosine(progress: float, final: float = 0.0) -> float:
    return final + (1 - final) * (1 + math.cos(math.pi * min(1.0, progress))) / 2


def _after_warmup(step: int, warmup: int, total: int) -> float:
    """The decay's progress p in [0, 1] at ``step``, counted from the end of the warmup."""
    return min(1.0, (step - warmup) / max(1, total - warmup))


def _with_warmup(decay: Callable[[int, int, int, float], float]) -> Callable[[int, int, int, float], float]:
    """A wrong answer that warms up right and decays with ``decay(step, warmup, total, final)``."""
    return lambda t, w, n, f: t / w if t < w else decay(t, w, n, f)


WARMUP_MISTAKES: tuple[Mistake, ...] = (
    Mistake("no warmup", lambda t, w, n, f: _cosine(t / n, f),
            "there is no warmup: the multiplier starts at 1. During the first warmup_steps it rises in a straight "
            "line from 0, and the cosine starts where the warmup ends"),
    Mistake("warmup off by one", lambda t, w, n, f: (t + 1) / w if t < w else _cosine(_after_warmup(t, w, n), f),
            "your warmup starts above 0: at step 0 the multiplier is 0 (the convention of warmup_cosine and of "
            "Hugging Face's schedules), and it reaches 1 at step warmup_steps"),
    Mistake("integer division", lambda t, w, n, f: t // w if t < w else _cosine(_after_warmup(t, w, n), f),
            "your warmup stays at 0 and jumps to 1: `//` is integer division; use `/`"),
    Mistake("cosine over the whole run", _with_warmup(lambda t, w, n, f: _cosine(t / n, f)),
            "the multiplier drops suddenly when the warmup ends: your cosine runs over the whole run instead of "
            "starting at 1 where the warmup ends, so count its progress from the end of the warmup"),
    Mistake("decays to 0, not to final", _with_warmup(lambda t, w, n, f: _cosine(_after_warmup(t, w, n))),
            "your schedule ends at 0 whatever `final` is: the cosine should end at `final` (a fraction of the peak)"),
    Mistake("floor added, not blended", _with_warmup(lambda t, w, n, f: f + _cosine(_after_warmup(t, w, n))),
            "with final > 0 your multiplier goes above 1 after the warmup: adding `final` to a cosine that runs from "
            "1 to 0 shifts it up; scale the cosine so that it runs from 1 to `final`"),
    Mistake("cos without the shift", _with_warmup(lambda t, w, n, f: f + (1 - f) * math.cos(math.pi * _after_warmup(
        t, w, n))), "your multiplier goes below 0: cos(pi p) runs from 1 to -1; (1 + cos(pi p)) / 2 runs from 1 to 0"),
    Mistake("linear decay", _with_warmup(lambda t, w, n, f: f + (1 - f) * (1 - _after_warmup(t, w, n))),
            "your decay is a straight line; the exercise asks for a cosine, (1 + cos(pi p)) / 2, which stays high "
            "longer and flattens out at the end"),
)

# (warmup_steps, total_steps, final): every step of each of these runs, from 0 to total_steps, is a fixed case
WARMUP_RUNS = ((4, 20, 0.0), (3, 10, 0.1), (0, 6, 0.0))


def _warmup_what(step: int, warmup: int, total: int, final: float) -> str:
    return f"step {step} of a {total}-step run with {warmup} warmup steps and final {final:g}"


def _hidden_step(generator: torch.Generator) -> tuple[tuple[int, int, int, float], str]:
    """A step in 1..T of a run of T in 12..60 steps, warmup 1..T/3, final in [0.05, 0.3] (so never 0)."""
    total = int(torch.randint(12, 61, (), generator=generator))
    warmup = int(torch.randint(1, total // 3 + 1, (), generator=generator))
    step = int(torch.randint(1, total + 1, (), generator=generator))
    final = round(0.05 + 0.25 * float(torch.rand((), generator=generator)), 3)
    return (step, warmup, total, final), f"step {step} of {total}, {warmup} warmup steps, final {final:g}"


@exercise("warmup_cosine", solution=solution_lr_at, hidden=4, mistakes=WARMUP_MISTAKES,
          forbidden=(optimisation.warmup_cosine_factor,))
def check_warmup_cosine(answer: Callable[[int, int, int, float], float]) -> None:
    """Check ``answer(step, warmup_steps, total_steps, final)`` -> the multiplier, at every step of a few runs."""
    cases = [Case((t, w, n, f), _warmup_what(t, w, n, f)) for w, n, f in WARMUP_RUNS for t in range(n + 1)]
    cases += hidden_cases(_hidden_step, 4)
    check_cases(answer, cases, optimisation.warmup_cosine_factor, mistakes=WARMUP_MISTAKES)
