"""Random inputs for every public function of course_utils that takes tensors: a property test.

Each target draws documented inputs of random sizes; in most cases it then spoils one argument: a
dimension dropped, added, resized or emptied, another dtype, a NaN, or (for a number) zero, a
negative, a fraction or a bool. The function must then either

- work as documented: the documented output for unspoilt inputs, finite outputs wherever the
  inputs were finite, or
- raise ``ValueError`` or ``TypeError`` whose message names the spoilt argument.

Anything else (an ``IndexError`` or ``RuntimeError`` from inside torch, a ``ZeroDivisionError``,
documented inputs refused) fails, naming the target and the seed that reproduce the case (a spoilt
argument may also be named through another one whose size it must match: ``Case.aliases``). The cases
come from seeded generators, so every run draws the same ones: over 2,000 (``test_enough_cases``), in
a few seconds on a CPU.

Below the property test, plain tests of the faults in code that has no test file of its own here
(training.predict/evaluate, ImageSet, shift_images/random_shift, text.mean_pool).
"""
from __future__ import annotations

import functools
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from course_utils import attention, captioning, data, fusion, imagetext, models, plots, text, training, vit  # noqa: E402

SPOIL_RATE = 0.75  # the other cases are documented inputs, which must work
SPOILS = ("drop", "add", "resize", "empty", "dtype", "nan")
DTYPES = (torch.int64, torch.int32, torch.uint8, torch.bool, torch.float64, torch.float16, torch.bfloat16,
          torch.complex64)
BAD_NUMBERS = (0, -1, -4, 2.5, True)


# ---------------------------------------------------------------------------------------------
# The machinery: a case, spoiling one argument, running it
# ---------------------------------------------------------------------------------------------

@dataclass
class Case:
    """One call: ``run(**args)``; ``expect(output)`` checks the output of documented inputs.

    ``spoilable`` names the arguments that may be spoilt (tensors, lists or dicts of tensors, or ints);
    ``aliases`` maps one of them to the other names a refusal may use for it (e.g. the ``data`` that
    the ``images`` argument of this test becomes).
    """

    run: Callable[..., Any]
    args: dict[str, Any]
    spoilable: tuple[str, ...]
    expect: Callable[[Any], None]
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)


def rand(g: torch.Generator, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(*shape, generator=g).to(dtype)


def ints(g: torch.Generator, high: int, *shape: int) -> Tensor:
    return torch.randint(0, high, shape, generator=g)


def spoil_tensor(r: random.Random, g: torch.Generator, t: Tensor) -> tuple[Tensor, str]:
    """``t`` with one thing wrong, and what: a dim dropped/added/resized/emptied, a dtype, a NaN."""
    kind = r.choice(SPOILS)
    if kind in ("drop", "resize", "empty") and t.dim() == 0:
        kind = "add"
    if kind == "nan" and (not t.is_floating_point() or t.numel() == 0):
        kind = "dtype"
    if kind == "drop":
        dim = r.randrange(t.dim())
        return (t.select(dim, 0) if t.shape[dim] else t.sum(dim)), f"dim {dim} dropped"
    if kind == "add":
        dim, n = r.randrange(t.dim() + 1), r.randint(1, 3)
        return torch.stack([t] * n, dim), f"a dim of {n} added at {dim}"
    if kind in ("resize", "empty"):
        dim = r.randrange(t.dim())
        n = 0 if kind == "empty" else r.choice([k for k in range(8) if k != t.shape[dim]])
        if not t.shape[dim]:  # nothing to repeat along an empty dim: new values
            shape = list(t.shape)
            shape[dim] = n
            return torch.zeros(shape, dtype=t.dtype), f"dim {dim} resized to {n}"
        index = torch.randint(0, t.shape[dim], (n,), generator=g)
        return t.index_select(dim, index), f"dim {dim} resized to {n}"
    if kind == "dtype":
        dtype = r.choice([d for d in DTYPES if d != t.dtype])
        return t.to(dtype), f"dtype {dtype}"
    t = t.clone()
    t.view(-1)[r.randrange(t.numel())] = float("nan")
    return t, "a NaN"


def spoil(r: random.Random, g: torch.Generator, value: Any) -> tuple[Any, str]:
    """``value`` (a tensor, a list or dict of them, or a number) with one thing wrong, and what."""
    if isinstance(value, Tensor):
        return spoil_tensor(r, g, value)
    if isinstance(value, list):
        i = r.randrange(len(value))
        bad, what = spoil_tensor(r, g, value[i])
        return value[:i] + [bad] + value[i + 1:], f"item {i}: {what}"
    if isinstance(value, dict):
        key = r.choice(sorted(value))
        bad, what = spoil_tensor(r, g, value[key])
        return {**value, key: bad}, f"[{key!r}]: {what}"
    bad = r.choice([b for b in BAD_NUMBERS if b != value or type(b) is not type(value)])
    return bad, f"{bad!r} instead of {value!r}"


def tensors_in(value: Any) -> list[Tensor]:
    """Every tensor in ``value``: itself, or inside a list, tuple, dict or ImageSet."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_in(v)]
    if isinstance(value, data.ImageSet):
        return [value.images, value.labels]
    return []


def finite(value: Any) -> bool:
    """No NaN or infinity in any floating tensor or float of ``value``."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(finite(v) for v in value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    return all(bool(torch.isfinite(t).all()) for t in tensors_in(value) if t.is_floating_point() or t.is_complex())


def names(message: str, name: str) -> bool:
    """Whether ``message`` names the argument ``name`` (as a word of its own: "q" is not in "query")."""
    return re.search(rf"(?<![\w.]){re.escape(name)}\b", message) is not None


def run_case(target: Callable[[random.Random, torch.Generator], Case], seed: int) -> str:
    """Draw case ``seed`` of ``target``, run it, and check the outcome; return "ok" or "refused"."""
    r, g = random.Random(seed), torch.Generator().manual_seed(seed)
    case = target(r, g)
    spoilt, what = None, "documented inputs"
    if case.spoilable and r.random() < SPOIL_RATE:
        spoilt = r.choice(case.spoilable)
        case.args[spoilt], what = spoil(r, g, case.args[spoilt])
        what = f"{spoilt}: {what}"
    label = f"{target.__name__} seed {seed} ({what})"
    inputs_finite = finite(list(case.args.values()))
    try:
        with torch.no_grad():
            out = case.run(**case.args)
    except (ValueError, TypeError) as error:
        assert spoilt is not None, f"{label}: documented inputs refused: {error!r}"
        accepted = (spoilt, *case.aliases.get(spoilt, ()))
        assert any(names(str(error), n) for n in accepted), \
            f"{label}: the message does not name {' or '.join(accepted)}: {error!r}"
        return "refused"
    except Exception as error:  # any other kind is the failure this test looks for
        raise AssertionError(f"{label}: {type(error).__name__} instead of a ValueError/TypeError: {error}") from error
    finally:
        plt.close("all")
    if spoilt is None:
        case.expect(out)
    if inputs_finite:
        assert finite(out), f"{label}: finite inputs gave a non-finite output"
    return "ok"


def shape_is(*shape: int) -> Callable[[Any], None]:
    def expect(out: Any) -> None:
        assert isinstance(out, Tensor) and tuple(out.shape) == shape, f"expected {shape}, got {out!r:.200}"
    return expect


def shapes_are(*shapes: tuple[int, ...]) -> Callable[[Any], None]:
    def expect(out: Any) -> None:
        assert [tuple(t.shape) for t in out] == list(shapes), f"expected {shapes}"
    return expect


# ---------------------------------------------------------------------------------------------
# Models, built once (small) and run in eval mode
# ---------------------------------------------------------------------------------------------

WIDTH, HEADS, VOCAB, MAX_LEN = 8, 2, 9, 6


@functools.lru_cache(maxsize=None)
def model(name: str) -> Any:
    torch.manual_seed(0)
    table = fusion.TextFeatures(["a", "b", "c"], torch.randn(3, 4, 12),
                                torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool),
                                torch.randn(3, 12))
    made = {
        "mha": lambda: attention.MultiHeadAttention(WIDTH, HEADS),
        "block": lambda: vit.EncoderBlock(WIDTH, HEADS),
        "embed": lambda: vit.PatchEmbedding(7, WIDTH),
        "vit": lambda: vit.VisionTransformer(embed_dim=WIDTH, depth=1, num_heads=HEADS),
        "mlp": lambda: models.MLP(hidden=(8,)),
        "cnn": lambda: models.CNN(channels=(2, 2, 2)),
        "patches": lambda: models.PatchEncoder(width=WIDTH, channels=(2, 2)),
        "gated": lambda: fusion.GatedFusion(5, 3, WIDTH),
        "contrastive": lambda: fusion.ContrastiveModel(text_dim=12, embed_dim=6, width=WIDTH),
        "tagger": lambda: fusion.ImageTagger(WIDTH, num_attributes=2),
        "captioner": lambda: captioning.ImageCaptioner(VOCAB, width=WIDTH, depth=1, heads=HEADS, max_len=MAX_LEN),
        **{f"fusion {key}": functools.partial(make, table, WIDTH) for key, make in fusion.FUSION_MODELS.items()},
    }[name]()
    return made.eval()


def images(g: torch.Generator, n: int, size: int = 28) -> Tensor:
    return torch.rand(n, 1, size, size, generator=g)


# ---------------------------------------------------------------------------------------------
# Targets: one per public function (or group of methods) that takes tensors
# ---------------------------------------------------------------------------------------------

def sdpa(r: random.Random, g: torch.Generator) -> Case:
    lead = tuple(r.randint(1, 3) for _ in range(r.randint(0, 2)))
    tq, tk, d, dv = (r.randint(1, 5) for _ in range(4))
    dtype = r.choice([torch.float32, torch.float64])
    kind = r.choice(["none", "bool", "float"])
    mask = None if kind == "none" else (torch.rand(tq, tk, generator=g) < 0.7 if kind == "bool" else rand(g, tq, tk))
    args = {"q": rand(g, *lead, tq, d, dtype=dtype), "k": rand(g, *lead, tk, d, dtype=dtype),
            "v": rand(g, *lead, tk, dv, dtype=dtype), "mask": mask}
    return Case(attention.scaled_dot_product_attention, args, ("q", "k", "v") + (("mask",) if mask is not None else ()),
                shapes_are((*lead, tq, dv), (*lead, tq, tk)), {"k": ("q", "v"), "v": ("k",), "q": ("k",)})


def mha(r: random.Random, g: torch.Generator) -> Case:
    b, tq, tk = (r.randint(1, 4) for _ in range(3))
    cross = r.random() < 0.5
    tk = tk if cross else tq
    args = {"query": rand(g, b, tq, WIDTH), "key": rand(g, b, tk, WIDTH) if cross else None,
            "value": rand(g, b, tk, WIDTH) if cross else None, "causal": r.random() < 0.3,
            "mask": r.choice([None, torch.rand(tq, tk, generator=g) < 0.7, rand(g, tq, tk)]),
            "key_padding_mask": r.choice([None, torch.rand(b, tk, generator=g) < 0.7])}
    spoilable = tuple(n for n in ("query", "key", "value", "mask", "key_padding_mask") if args[n] is not None)
    tokens, masks = ("query", "key", "value"), ("mask", "key_padding_mask")  # a mask must fit the tokens' sizes
    return Case(model("mha"), args, spoilable, shapes_are((b, tq, WIDTH), (b, HEADS, tq, tk)),
                {"query": tokens + masks, "key": tokens + masks, "value": tokens, "key_padding_mask": ("mask",)})


def mha_heads(r: random.Random, g: torch.Generator) -> Case:
    b, t = r.randint(1, 3), r.randint(1, 4)
    head = WIDTH // HEADS
    if r.random() < 0.5:
        return Case(model("mha").split_heads, {"x": rand(g, b, t, WIDTH)}, ("x",), shape_is(b, HEADS, t, head))
    return Case(model("mha").merge_heads, {"x": rand(g, b, HEADS, t, head)}, ("x",), shape_is(b, t, WIDTH))


def causal(r: random.Random, g: torch.Generator) -> Case:
    tq, tk = r.randint(0, 5), r.randint(0, 5)
    return Case(attention.causal_mask, {"t_q": tq, "t_k": tk}, ("t_q", "t_k"), shape_is(tq, tk))


def patchify(r: random.Random, g: torch.Generator) -> Case:
    b, c, p, h, w = r.randint(1, 3), r.randint(1, 3), r.randint(1, 4), r.randint(1, 3), r.randint(1, 3)
    args = {"images": rand(g, b, c, h * p, w * p), "patch_size": p}
    return Case(vit.patchify, args, ("images", "patch_size"), shape_is(b, h * w, c * p * p),
                {"patch_size": ("images",)})


def vit_modules(r: random.Random, g: torch.Generator) -> Case:
    b = r.randint(1, 3)
    which = r.choice(["embed", "block", "vit", "maps"])
    if which == "embed":
        return Case(model("embed"), {"images": images(g, b)}, ("images",), shape_is(b, 16, WIDTH))
    if which == "block":
        t = r.randint(1, 5)
        return Case(model("block"), {"x": rand(g, b, t, WIDTH)}, ("x",), shape_is(b, t, WIDTH),
                    {"x": ("query", "key", "value")})
    if which == "vit":
        return Case(model("vit"), {"images": images(g, b)}, ("images",), shape_is(b, 10))
    return Case(model("vit").attention_maps, {"images": images(g, b)}, ("images",), shapes_are((b, HEADS, 17, 17)))


def rollout(r: random.Random, g: torch.Generator) -> Case:
    b, h, t = r.randint(1, 3), r.randint(1, 3), r.randint(1, 5)
    layers = [torch.softmax(rand(g, b, h, t, t), -1) for _ in range(r.randint(1, 3))]
    return Case(vit.attention_rollout, {"attentions": layers}, ("attentions",), shape_is(b, t, t))


def clip(r: random.Random, g: torch.Generator) -> Case:
    b, d = r.randint(1, 5), r.randint(1, 6)
    args = {"image_emb": rand(g, b, d), "text_emb": rand(g, b, d), "logit_scale": torch.tensor(r.uniform(0, 4))}
    both = ("image_emb", "text_emb")
    return Case(fusion.clip_loss, args, ("image_emb", "text_emb", "logit_scale"), shape_is(),
                {"image_emb": both, "text_emb": both})


def recall(r: random.Random, g: torch.Generator) -> Case:
    n, m = r.randint(1, 6), r.randint(1, 6)
    given = r.random() < 0.5 or n > m
    args = {"similarity": rand(g, n, m), "k": r.randint(1, m),
            "relevant": torch.rand(n, m, generator=g) < 0.3 if given else None}

    def expect(out: Any) -> None:
        assert isinstance(out, float) and 0.0 <= out <= 1.0

    return Case(fusion.recall_at_k, args, ("similarity", "k") + (("relevant",) if given else ()), expect,
                {"similarity": ("relevant", "k")})


def fusion_layers(r: random.Random, g: torch.Generator) -> Case:
    b = r.randint(1, 4)
    which = r.choice(["gated", "fusion", "fusion", "texts", "contrastive"])
    if which == "gated":
        return Case(model("gated"), {"a": rand(g, b, 5), "b": rand(g, b, 3)}, ("a", "b"), shape_is(b, WIDTH),
                    {"a": ("b",), "b": ("a",)})
    if which == "fusion":
        name = r.choice(list(fusion.FUSION_MODELS))
        args = {"image_tokens": rand(g, b, 16, WIDTH), "text_ids": ints(g, 3, b)}
        both = ("image_tokens", "text_ids")
        return Case(model(f"fusion {name}"), args, both, shape_is(b, 2), {"image_tokens": both, "text_ids": both})
    if which == "texts":
        return Case(model("contrastive").encode_texts, {"text_vectors": rand(g, b, 12)}, ("text_vectors",),
                    shape_is(b, 6))
    args = {"images": images(g, b), "text_vectors": rand(g, b, 12)}
    return Case(model("contrastive"), args, ("images", "text_vectors"), shape_is(),
                {"images": ("image_emb",), "text_vectors": ("image_emb", "text_emb")})


def fusion_losses(r: random.Random, g: torch.Generator) -> Case:
    b = r.randint(1, 4)
    if r.random() < 0.5:
        args = {"model": model("tagger"), "images": images(g, b),
                "targets": torch.cat([ints(g, 10, b, 1), ints(g, 3, b, 2)], 1)}
        return Case(fusion.tagger_loss, args, ("images", "targets"), lambda out: shape_is()(out[0]),
                    {"images": ("targets",)})
    args = {"model": model("fusion early (concat)"), "image_tokens": rand(g, b, 16, WIDTH),
            "text_ids": ints(g, 3, b), "answers": ints(g, 2, b)}
    all_three = ("image_tokens", "text_ids", "answers")
    return Case(fusion.answer_loss, args, all_three, lambda out: shape_is()(out[0]),
                {name: all_three for name in all_three})


def fusion_inference(r: random.Random, g: torch.Generator) -> Case:
    n, batch_size = r.randint(1, 5), r.randint(1, 4)
    which = r.choice(["tokens", "embed", "answers"])
    if which == "tokens":
        args = {"encoder": model("patches"), "images": images(g, n), "batch_size": batch_size}
        return Case(fusion.image_tokens, args, ("images", "batch_size"), shape_is(n, 16, WIDTH))
    if which == "embed":
        args = {"model": model("contrastive"), "images": images(g, n), "batch_size": batch_size}
        return Case(fusion.embed_images, args, ("images", "batch_size"), shape_is(n, 6))
    args = {"model": model("fusion gated"), "image_tokens": rand(g, n, 16, WIDTH), "text_ids": ints(g, 3, n),
            "batch_size": batch_size}
    both = ("image_tokens", "text_ids")
    return Case(fusion.predict_answers, args, both + ("batch_size",), shape_is(n), {"image_tokens": both,
                                                                                       "text_ids": both})


def confusion(r: random.Random, g: torch.Generator) -> Case:
    n, c = r.randint(1, 6), r.randint(2, 3)
    classes = [f"c{i}" for i in range(c)]
    args = {"labels": ints(g, c, n), "predictions": ints(g, c, n)}
    both = ("labels", "predictions")

    def expect(out: Any) -> None:
        assert isinstance(out, plt.Figure)

    return Case(functools.partial(plots.plot_confusion_matrix, classes=classes), args, both, expect,
                {"labels": both, "predictions": both})


def image_grid(r: random.Random, g: torch.Generator) -> Case:
    n, c = r.randint(1, 4), 3
    args = {"images": images(g, n, 4), "labels": ints(g, c, n), "predictions": ints(g, c, n), "ncols": r.randint(1, 4)}

    def expect(out: Any) -> None:
        assert isinstance(out, plt.Figure)

    return Case(functools.partial(plots.show_images, classes=["a", "b", "c"]), args,
                ("images", "labels", "predictions", "ncols"), expect, {"images": ("labels", "predictions")})


def image_set(r: random.Random, g: torch.Generator) -> Case:
    n, classes = r.randint(0, 5), ["a", "b", "c"]
    args = {"images": images(g, n, 4), "labels": ints(g, 3, n), "classes": classes}

    def expect(out: Any) -> None:
        assert len(out) == n

    return Case(data.ImageSet, args, ("images", "labels"), expect, {"images": ("labels",), "labels": ("images",)})


def image_set_methods(r: random.Random, g: torch.Generator) -> Case:
    n = r.randint(0, 6)
    dataset = data.ImageSet(images(g, n, 4), ints(g, 3, n), ["a", "b", "c"])
    if r.random() < 0.5:
        size = r.randint(1, 4)

        def batches(batch_size: int) -> list:
            return list(dataset.batches(batch_size, shuffle=True, seed=0))

        def expect(out: Any) -> None:
            assert sum(len(y) for _, y in out) == n and len(out) == math.ceil(n / size)

        return Case(batches, {"batch_size": size}, ("batch_size",), expect)
    limit = r.randint(1, 7)

    def expect_taken(out: Any) -> None:
        assert len(out) == min(limit, n)

    return Case(dataset.take, {"limit": limit}, ("limit",), expect_taken)


def shifts(r: random.Random, g: torch.Generator) -> Case:
    n, c, size = r.randint(1, 3), r.randint(1, 2), r.randint(4, 8)
    x = rand(g, n, c, size, size)
    if r.random() < 0.5:
        args = {"images": x, "dx": r.randint(-3, 3), "dy": r.randint(-3, 3)}
        return Case(data.shift_images, args, ("images", "dx", "dy"), shape_is(n, c, size, size))
    return Case(functools.partial(data.random_shift, generator=torch.Generator().manual_seed(0)),
                {"images": x, "max_shift": r.randint(0, 3)}, ("images", "max_shift"), shape_is(n, c, size, size))


def image_models(r: random.Random, g: torch.Generator) -> Case:
    b = r.randint(1, 3)
    name = r.choice(["mlp", "cnn", "patches"])
    out = {"mlp": (b, 10), "cnn": (b, 10), "patches": (b, 16, WIDTH)}[name]
    return Case(model(name), {"images": images(g, b)}, ("images",), shape_is(*out))


def pooling(r: random.Random, g: torch.Generator) -> Case:
    b, t, d = r.randint(1, 4), r.randint(1, 5), r.randint(1, 6)
    mask = (torch.rand(b, t, generator=g) < 0.7).to(r.choice([torch.int64, torch.bool, torch.float32]))
    return Case(text.mean_pool, {"hidden": rand(g, b, t, d), "attention_mask": mask}, ("hidden", "attention_mask"),
                shape_is(b, d), {"hidden": ("attention_mask",)})


def caption_steps(r: random.Random, g: torch.Generator) -> Case:
    b, length = r.randint(1, 4), r.randint(2, 6)
    which = r.choice(["step", "loss", "pairs"])
    if which == "step":
        args = {"logits": rand(g, b, VOCAB), "finished": torch.rand(b, generator=g) < 0.3}
        return Case(captioning.greedy_step, args, ("logits", "finished"), shape_is(b), {"logits": ("finished",)})
    if which == "loss":
        targets = ints(g, VOCAB, b, length)
        targets[:, 0] = captioning.EOS_ID  # at least one word to score
        args = {"logits": rand(g, b, length, VOCAB), "targets": targets}
        return Case(captioning.caption_loss, args, ("logits", "targets"), shape_is(), {"logits": ("targets",)})
    return Case(captioning.teacher_forcing_pairs, {"ids": ints(g, VOCAB, b, length)}, ("ids",),
                shapes_are((b, length - 1), (b, length - 1)))


def captioner(r: random.Random, g: torch.Generator) -> Case:
    b, length = r.randint(1, 3), r.randint(1, MAX_LEN)
    which = r.choice(["forward", "decode", "block", "greedy"])
    net = model("captioner")
    if which == "block":
        args = {"x": rand(g, b, length, WIDTH), "memory": rand(g, b, 16, WIDTH),
                "pad_mask": r.choice([None, torch.rand(b, length, generator=g) < 0.8])}
        return Case(net.blocks[0], args, ("x", "memory") + (("pad_mask",) if args["pad_mask"] is not None else ()),
                    shapes_are((b, length, WIDTH), (b, HEADS, length, 16)), {"x": ("memory", "pad_mask")})
    if which == "forward":
        args = {"images": images(g, b), "tokens": ints(g, VOCAB, b, length)}
        both = ("images", "tokens", "memory")
        return Case(net, args, ("images", "tokens"), shape_is(b, length, VOCAB), {"images": both, "tokens": both})
    if which == "decode":
        args = {"tokens": ints(g, VOCAB, b, length), "memory": rand(g, b, 16, WIDTH)}
        return Case(net.decode, args, ("tokens", "memory"), shape_is(b, length, VOCAB),
                    {"tokens": ("memory",), "memory": ("tokens",)})
    args = {"model": net, "images": images(g, b), "max_len": length, "batch_size": r.randint(1, 3)}
    return Case(captioning.greedy_decode, args, ("images", "max_len", "batch_size"), shape_is(b, length))


def attributes(r: random.Random, g: torch.Generator) -> Case:
    n = r.randint(0, 4)
    if r.random() < 0.5:
        args = {"images": torch.rand(n, 1, 8, 8, generator=g), "chunk": r.randint(1, 3)}

        def expect(out: Any) -> None:
            assert sorted(out) == sorted(imagetext.ATTRIBUTES) and all(v.shape == (n,) for v in out.values())

        return Case(imagetext.measure_attributes, args, ("images", "chunk"), expect)
    bins = imagetext.AttributeBins({name: (0.2, 0.6) for name in imagetext.ATTRIBUTES})
    measured = {name: torch.rand(n, generator=g) for name in imagetext.ATTRIBUTES}

    def expect_levels(out: Any) -> None:
        assert all(v.shape == (n,) and v.dtype == torch.int64 for v in out.values())

    return Case(bins.levels, {"attributes": measured}, ("attributes",), expect_levels)


def inference(r: random.Random, g: torch.Generator) -> Case:
    n, batch_size = r.randint(1, 5), r.randint(1, 4)
    net = model(r.choice(["mlp", "cnn"]))

    def evaluate(images: Tensor, labels: Tensor, batch_size: int) -> dict[str, float]:
        return training.evaluate(net, data.ImageSet(images, labels, data.MNIST_CLASSES), batch_size=batch_size)

    def expect(out: Any) -> None:
        assert sorted(out) == ["acc", "loss"] and 0.0 <= out["acc"] <= 1.0

    args = {"images": images(g, n), "labels": ints(g, 10, n), "batch_size": batch_size}
    return Case(evaluate, args, ("images", "labels", "batch_size"), expect,
                {"images": ("data", "labels"), "labels": ("data", "images")})


TARGETS = {target: cases for target, cases in [
    (sdpa, 200), (mha, 200), (mha_heads, 60), (causal, 40), (patchify, 100), (vit_modules, 100), (rollout, 80),
    (clip, 100), (recall, 120), (fusion_layers, 150), (fusion_losses, 80), (fusion_inference, 80), (confusion, 30),
    (image_grid, 20), (image_set, 80), (image_set_methods, 80), (shifts, 100), (image_models, 100), (pooling, 100),
    (caption_steps, 120), (captioner, 100), (attributes, 100), (inference, 80),
]}


@pytest.mark.parametrize("target", list(TARGETS), ids=lambda target: target.__name__)
def test_random_inputs_work_or_are_refused_by_name(target: Callable[[random.Random, torch.Generator], Case]) -> None:
    outcomes = [run_case(target, seed) for seed in range(TARGETS[target])]
    assert "ok" in outcomes  # documented inputs were drawn and worked


def test_enough_cases() -> None:
    assert sum(TARGETS.values()) >= 2000


# ---------------------------------------------------------------------------------------------
# Faults of the issue whose code has no test file of its own here
# ---------------------------------------------------------------------------------------------

def _digits(n: int) -> data.ImageSet:
    return data.ImageSet(torch.rand(n, 1, 28, 28), torch.arange(n) % 10, data.MNIST_CLASSES)


@pytest.mark.parametrize("run", [training.predict, training.evaluate], ids=["predict", "evaluate"])
def test_predict_and_evaluate_refuse_no_images_and_batch_size_zero(run: Callable) -> None:
    """An empty ImageSet used to fail in torch.cat() ("expected a non-empty list"); batch_size=0 in range()."""
    net = models.MLP(hidden=(8,))
    with pytest.raises(ValueError, match="data: expected at least one image, got an empty ImageSet"):
        run(net, _digits(0))
    with pytest.raises(ValueError, match="batch_size must be an int of at least 1, got 0"):
        run(net, _digits(3), batch_size=0)


def test_evaluate_refuses_labels_the_model_has_no_output_for() -> None:
    """A label of 12 for a model with 10 outputs used to raise an IndexError in cross_entropy
    (a device-side assert on a GPU)."""
    net = models.MLP(hidden=(8,))
    dataset = data.ImageSet(torch.rand(3, 1, 28, 28), torch.tensor([1, 12, 3]), [str(i) for i in range(13)])
    with pytest.raises(ValueError, match=r"data: labels must be classes 0 to 9 of the model's 10 outputs; 1 are not, "
                                         r"e\.g\. 12"):
        training.evaluate(net, dataset)


def test_image_set_checks_its_batches_limit_classes_and_devices() -> None:
    dataset = _digits(5)
    with pytest.raises(ValueError, match="batch_size must be an int of at least 1, got 0"):
        next(dataset.batches(0))
    with pytest.raises(ValueError, match="batch_size"):
        list(dataset.batches(2.5))
    assert list(_digits(0).batches(4)) == []
    with pytest.raises(TypeError, match="limit must be an int"):
        dataset.take(2.5)
    with pytest.raises(TypeError, match="classes: expected a list of class names"):
        data.ImageSet(dataset.images, dataset.labels, 10)
    with pytest.raises(ValueError, match="labels: expected on the images' device, meta"):
        data.ImageSet(dataset.images.to("meta"), dataset.labels, data.MNIST_CLASSES)


def test_shifts_need_whole_pixels() -> None:
    """A fractional shift used to fail in slicing ("slice indices must be integers"), a negative
    max_shift in randint."""
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(TypeError, match="dx: expected a whole number of pixels"):
        data.shift_images(x, 1.5, 0)
    with pytest.raises(ValueError, match="max_shift: expected a whole number of pixels >= 0"):
        data.random_shift(x, max_shift=-1)
    assert torch.equal(data.random_shift(x, max_shift=0), x)


def test_mean_pool_refuses_what_does_not_fit() -> None:
    hidden = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"attention_mask: expected a 0/1 tensor \(B, T\) = \(2, 3\), got \(2, 4\)"):
        text.mean_pool(hidden, torch.ones(2, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"hidden: expected floating-point token vectors \(B, T, D\)"):
        text.mean_pool(hidden[0], torch.ones(3, dtype=torch.int64))
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    for kind in (torch.int64, torch.bool, torch.float32):
        pooled = text.mean_pool(hidden, mask.to(kind))
        assert torch.allclose(pooled[0], hidden[0, :2].mean(0)) and (pooled[1] == 0).all()
