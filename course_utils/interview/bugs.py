"""The spot-the-bug round of notebook 09: short functions with a real bug, and checkers that run the fix.

Each :class:`Bug` holds the buggy function (the notebook shows its source for the candidate to edit), where the
bug comes from, a hint that points at it without giving the fix, and a behavioural check: :func:`check_bug` runs
the candidate's version on small inputs and prints ``PASSED``, ``TODO`` (it still behaves like the buggy version)
or ``FAILED`` with a hint. Every check runs in well under a second (the processor bug imports ``transformers``
once).
"""
from __future__ import annotations

import copy
import inspect
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..exercises import CheckResult, Hint, NotAttempted, same
from ..exercises.calling import TimeLimit, _error_hint, _raised_by_learner, _time_limit
from ..exercises.checking import TIME_LIMIT


class Unfixed(Exception):
    """The candidate's function still behaves like the buggy one."""


@dataclass(frozen=True)
class Bug:
    """A buggy function, where the bug comes from, a hint, and ``check(answer)`` (raises Unfixed or Hint)."""

    name: str
    source: str
    hint: str
    buggy: Callable[..., Any]
    check: Callable[[Callable[..., Any]], None]

    def code(self) -> str:
        """The buggy function's source, as the notebook shows it."""
        return inspect.getsource(self.buggy)


def _run(answer: Callable[..., Any], *args: Any) -> tuple[Any, Exception | None]:
    """``answer(*args)`` under the time limit: ``(result, None)`` or ``(None, the error it raised)``."""
    if not callable(answer):
        raise Hint(f"expected a function, got {type(answer).__name__}")
    try:
        with _time_limit(TIME_LIMIT):
            return answer(*args), None
    except NotImplementedError as error:
        if _raised_by_learner(error):
            raise NotAttempted from error
        return None, error
    except TimeLimit:
        raise Hint(f"it ran for more than {TIME_LIMIT:g} s and was stopped") from None
    except Exception as error:  # the buggy versions of some functions raise: the check decides
        return None, error


def _raise_error(error: Exception, args: tuple[Any, ...]) -> None:
    raise Hint(_error_hint(error, args, None))


def _compare(answer: Callable[..., Any], buggy: Callable[..., Any], reference: Callable[..., Any],
             cases: list[tuple[Any, ...]], wrong: str, equal: Callable[[Any, Any], bool] = same) -> None:
    """Pass when ``answer`` equals ``reference`` on every case; Unfixed when it equals ``buggy`` on every case
    (or raises what it raises); else a Hint (``wrong``, or the answer's own error)."""
    got = [_run(answer, *copy.deepcopy(args)) for args in cases]
    if all(error is None and equal(value, reference(*args)) for (value, error), args in zip(got, cases)):
        return
    bug = [_run(buggy, *copy.deepcopy(args)) for args in cases]
    if all(_same_outcome(g, b, equal) for g, b in zip(got, bug)):
        raise Unfixed
    for (value, error), args in zip(got, cases):
        if error is not None:
            _raise_error(error, args)
    raise Hint(wrong)


def _same_outcome(got: tuple[Any, Exception | None], bug: tuple[Any, Exception | None],
                  equal: Callable[[Any, Any], bool]) -> bool:
    (value, error), (bug_value, bug_error) = got, bug
    if error is not None or bug_error is not None:
        return type(error) is type(bug_error)
    try:
        return bool(equal(value, bug_value))
    except Exception:
        return False


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# The buggy functions (the notebook shows their source)
# ---------------------------------------------------------------------------------------------


def build_cnn() -> nn.Module:
    """A CNN for 28x28 digits: (B, 1, 28, 28) -> (B, 10) logits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 128), nn.ReLU(), nn.Linear(128, 10))


def bert_inputs(images: torch.Tensor, patch_proj: nn.Linear) -> dict[str, torch.Tensor]:
    """BERT's inputs for (B, 1, 28, 28) images cut into 16 patches of 7x7 (row by row); patch_proj: 49 -> D."""
    token_ids = (images * 255).long().flatten(1)
    return {"input_ids": token_ids}


def image_logits(hidden: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    """Class logits (B, C) for whole images from BERT's last hidden states (B, T, D), [CLS] first."""
    return head(hidden)


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """AdamW over the model's parameters."""
    from transformers import AdamW
    return AdamW(model.parameters(), lr=lr)


def class_scores(image_feature: torch.Tensor, text_feature: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    """Class probabilities (B, C) from an image feature (B, D) and a text feature (B, D), fused by concatenation;
    head maps the 2D fused features to C classes."""
    return torch.softmax(image_feature + text_feature, dim=-1)


def load_processor(folder: str) -> Any:
    """The ViT image processor saved in `folder`."""
    from transformers import ViTFeatureExtractor
    return ViTFeatureExtractor.from_pretrained(folder)


def predicted_name(logits: torch.Tensor, id2label: dict[int, str]) -> str:
    """The name of the predicted class, from one image's logits (C,)."""
    return str(logits.argmax().item())


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of multi-label logits (N, K) against 0/1 targets (N, K)."""
    return F.binary_cross_entropy_with_logits(torch.sigmoid(logits), targets)


def encode_labels(labels: list[str], label2id: dict[str, int]) -> list[int]:
    """Class ids of string labels; a label missing from label2id must raise an error."""
    return [label2id.get(label, 0) for label in labels]


def predictions(logits: torch.Tensor) -> torch.Tensor:
    """The predicted class of each example (N,), from logits (N, C), for classification_report."""
    return logits.argmax(dim=0)


def predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Predicted classes (N,) of a trained model that has BatchNorm and dropout layers."""
    with torch.no_grad():
        return model(images).argmax(dim=1)


def train_linear(x: torch.Tensor, y: torch.Tensor, steps: int = 30, lr: float = 0.1) -> nn.Linear:
    """A linear regression of y (N,) on x (N, D), trained by full-batch gradient descent."""
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.mse_loss(model(x).squeeze(1), y)
        loss.backward()
        optimizer.step()
    return model


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The training loss of logits (N, C) against class labels (N,)."""
    return F.cross_entropy(torch.softmax(logits, dim=1), labels)


def standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Features scaled to zero mean and unit variance: train (N, D) and test (M, D), scaled the same way."""
    everything = torch.cat([train, test])
    mean, std = everything.mean(dim=0), everything.std(dim=0)
    return (train - mean) / std, (test - mean) / std


def classifier_text(caption: str, label: str) -> str:
    """The text a caption classifier reads, for an image whose caption is `caption` and class is `label`."""
    return f"{caption} (a photo of a {label})"


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


def _check_cnn(answer: Callable[[], nn.Module]) -> None:
    model, error = _run(answer)
    if error is not None:
        _raise_error(error, ())
    if not isinstance(model, nn.Module):
        raise Hint(f"build_cnn should return an nn.Module, got {type(model).__name__}")
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise Unfixed
    out, error = _run(model, torch.randn(2, 1, 28, 28, generator=_generator(0)))
    if error is not None:
        raise Hint(f"the model fails on a batch (2, 1, 28, 28): {type(error).__name__}: {error}")
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, 10):
        raise Hint(f"the model should give (2, 10) logits for (2, 1, 28, 28) images, got "
                   f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")


def _patches(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, 28, 28) -> (B, 16, 49) 7x7 patches, row by row."""
    b = images.shape[0]
    return images.reshape(b, 4, 7, 4, 7).permute(0, 1, 3, 2, 4).reshape(b, 16, 49)


def _check_bert_inputs(answer: Callable[..., dict[str, torch.Tensor]]) -> None:
    g = _generator(1)
    images, proj = torch.rand(3, 1, 28, 28, generator=g), nn.Linear(49, 8)
    out, error = _run(answer, images.clone(), proj)
    if error is not None:
        _raise_error(error, (images, proj))
    if not isinstance(out, dict) or "inputs_embeds" not in out:
        raise Unfixed
    if "input_ids" in out:
        raise Hint("pass inputs_embeds only: with input_ids too BERT refuses the call (it takes one or the other)")
    embeds = out["inputs_embeds"]
    want = proj(_patches(images))
    if not isinstance(embeds, torch.Tensor) or embeds.shape != want.shape:
        raise Hint(f"inputs_embeds should be (B, 16, D) = {tuple(want.shape)}, one vector per 7x7 patch")
    if not same(embeds, want, atol=1e-5):
        raise Hint("inputs_embeds has the right shape but not the projected 7x7 patches in row-by-row order: "
                   "cut each image into a 4x4 grid of 7x7 blocks before flattening")


def _check_image_logits(answer: Callable[..., torch.Tensor]) -> None:
    hidden, head = torch.randn(4, 6, 8, generator=_generator(2)), nn.Linear(8, 3)
    out, error = _run(answer, hidden.clone(), head)
    if error is not None:
        _raise_error(error, (hidden, head))
    if isinstance(out, torch.Tensor) and out.shape == (4, 6, 3):
        raise Unfixed
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (4, 3):
        raise Hint("expected one row of C logits per image, shape (B, C)")
    if not (same(out, head(hidden[:, 0])) or same(out, head(hidden.mean(dim=1)))):
        raise Hint("one prediction per image, yes, but from what? Read the head on the [CLS] state (or the mean "
                   "of the token states)")


def _check_optimizer(answer: Callable[..., torch.optim.Optimizer]) -> None:
    import transformers  # noqa: F401  (imported before the timed call: the first import takes seconds)

    model = nn.Linear(3, 2)
    out, error = _run(answer, model, 3e-4)
    if error is not None:
        if isinstance(error, ImportError) and "AdamW" in str(error):
            raise Unfixed
        _raise_error(error, (model, 3e-4))
    if not isinstance(out, torch.optim.AdamW):
        raise Hint(f"expected a torch.optim.AdamW, got {type(out).__name__}")
    if out.param_groups[0]["lr"] != 3e-4 or {id(p) for g in out.param_groups for p in g["params"]} != \
            {id(p) for p in model.parameters()}:
        raise Hint("the optimiser should hold every parameter of the model, at the learning rate passed in")


def _check_class_scores(answer: Callable[..., torch.Tensor]) -> None:
    g = _generator(3)
    cases = [(torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g), nn.Linear(12, 3)) for _ in range(2)]
    _compare(answer, class_scores, lambda i, t, h: torch.softmax(h(torch.cat([i, t], dim=-1)), dim=-1), cases,
             "the shape is (B, C) now; concatenate the image feature THEN the text feature (the order the head was "
             "built for), apply the head, and take the softmax over the classes")


def _check_processor(answer: Callable[[str], Any]) -> None:
    from transformers import ViTImageProcessor  # imported before the timed call: the first import takes seconds

    with tempfile.TemporaryDirectory() as folder:
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
        processor, error = _run(answer, folder)
        if error is not None:
            if isinstance(error, ImportError) and "FeatureExtractor" in str(error):
                raise Unfixed
            _raise_error(error, (folder,))
    pixels = processor(images=np.zeros((40, 48, 3), dtype=np.uint8), return_tensors="pt")["pixel_values"]
    if tuple(pixels.shape) != (1, 3, 32, 32):
        raise Hint(f"the processor gave pixel_values {tuple(pixels.shape)}; load the one saved in the folder")


def _check_predicted_name(answer: Callable[..., str]) -> None:
    names = {0: "T-shirt/top", 1: "Trouser", 2: "Pullover", 3: "Dress"}
    cases = [(torch.tensor([0.1, 2.0, -1.0, 0.5]), names), (torch.tensor([3.0, 2.0, -1.0, 0.5]), names),
             (torch.tensor([0.0, 0.0, 0.0, 9.0]), names)]
    _compare(answer, predicted_name, lambda z, m: m[int(z.argmax())], cases,
             "return the class NAME: look the predicted index up in id2label", equal=lambda a, b: a == b)


def _check_bce(answer: Callable[..., torch.Tensor]) -> None:
    g = _generator(4)
    cases = [(torch.randn(5, 3, generator=g) * 3, (torch.rand(5, 3, generator=g) < 0.5).float()) for _ in range(2)]
    _compare(answer, bce_loss, F.binary_cross_entropy_with_logits, cases,
             "the loss differs from binary cross-entropy on the logits; pass the raw logits to the loss once")


def _check_encode(answer: Callable[..., list[int]]) -> None:
    label2id = {"cat": 0, "dog": 1, "bird": 2}
    known = ["dog", "bird", "cat", "dog"]
    out, error = _run(answer, list(known), dict(label2id))
    if error is not None:
        _raise_error(error, (known, label2id))
    if [int(v) for v in out] != [1, 2, 0, 1]:
        raise Hint("known labels must map to their ids")
    out, error = _run(answer, ["dog", "horse"], dict(label2id))
    if error is None:
        raise Unfixed if list(out) == [1, 0] else Hint("'horse' is not a class: raise an error (KeyError or "
                                                       "ValueError) instead of returning an id")
    if not isinstance(error, (KeyError, ValueError)):
        raise Hint(f"an unknown label should raise KeyError or ValueError, got {type(error).__name__}")


def _check_predictions(answer: Callable[[torch.Tensor], torch.Tensor]) -> None:
    g = _generator(5)
    cases = [(torch.randn(6, 4, generator=g),), (torch.randn(5, 3, generator=g),), (torch.randn(4, 4, generator=g),)]
    _compare(answer, predictions, lambda z: z.argmax(dim=1), cases,
             "one predicted class per example (N,): take the argmax over the classes")


def _bn_model() -> nn.Module:
    """A small trained-looking model with BatchNorm (running statistics far from a batch's) and dropout."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 4))
    with torch.no_grad():
        model[1].running_mean.uniform_(-2, 2)
        model[1].running_var.uniform_(0.2, 3)
    return model.train()


def _check_predict(answer: Callable[..., torch.Tensor]) -> None:
    model, images = _bn_model(), torch.randn(64, 6, generator=_generator(7))
    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        want = reference(images).argmax(dim=1)
    mine = copy.deepcopy(model)
    out, error = _run(answer, mine, images.clone())
    if error is not None:
        _raise_error(error, (model, images))
    if isinstance(out, torch.Tensor) and out.shape == want.shape and torch.equal(out.long(), want):
        return
    if mine.training:
        raise Unfixed
    raise Hint("the model is in eval mode now, but the predictions still differ: return the argmax over the classes")


def _check_train_linear(answer: Callable[..., nn.Linear]) -> None:
    g = _generator(8)
    x = torch.randn(32, 3, generator=g)
    y = x @ torch.tensor([1.5, -2.0, 0.5]) + 0.3
    want = _train_right(x, y)

    def weights(model: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return model.weight.detach(), model.bias.detach()

    _compare(lambda *a: weights(answer(*a)), lambda *a: weights(train_linear(*a)), lambda *a: weights(want),
             [(x, y)], "the weights differ from full-batch gradient descent with the gradients of each step only")


def _train_right(x: torch.Tensor, y: torch.Tensor, steps: int = 30, lr: float = 0.1) -> nn.Linear:
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        F.mse_loss(model(x).squeeze(1), y).backward()
        optimizer.step()
    return model


def _check_loss(answer: Callable[..., torch.Tensor]) -> None:
    g = _generator(9)
    cases = [(torch.randn(6, 4, generator=g) * 3, torch.randint(0, 4, (6,), generator=g)) for _ in range(2)]
    _compare(answer, classification_loss, F.cross_entropy, cases,
             "the loss differs from cross-entropy on the logits: give F.cross_entropy the raw logits")


def _standardised(train: torch.Tensor, test: torch.Tensor, unbiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = train.mean(dim=0), train.std(dim=0, unbiased=unbiased)
    return (train - mean) / std, (test - mean) / std


def _check_standardise(answer: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    g = _generator(10)
    cases = [(torch.randn(20, 3, generator=g) * 2 + 1, torch.randn(10, 3, generator=g) * 3 + 4)]
    _compare(answer, standardise, lambda a, b: _standardised(a, b, True), cases,
             "scale both splits with the mean and standard deviation of the TRAINING split only",
             equal=lambda got, want: same(got, want) or same(got, _standardised(*cases[0], False)))


def _check_text(answer: Callable[[str, str], str]) -> None:
    caption = "a small grey animal with whiskers on a sofa"
    texts = [_run(answer, caption, label) for label in ("cat", "dog")]
    for value, error in texts:
        if error is not None:
            _raise_error(error, (caption,))
    if any("cat" in str(value) or "dog" in str(value) for value, _ in texts):
        raise Unfixed
    if texts[0][0] != texts[1][0] or caption not in str(texts[0][0]):
        raise Hint("the text should hold the caption and must not depend on the label")


BUGS: dict[str, Bug] = {bug.name: bug for bug in (
    Bug("flatten_dense_cnn", "source post 1: a Flatten -> Dense -> Dense model presented as a CNN",
        "what does this model know about which pixels are neighbours?", build_cnn, _check_cnn),
    Bug("pixels_as_token_ids", "source post 1: an image tensor given to BERT as if it were token ids",
        "what does BERT do with an integer input, and which input takes vectors?", bert_inputs, _check_bert_inputs),
    Bug("token_classification_head", "source post 1: BertForTokenClassification used to classify whole images",
        "count the predictions per image", image_logits, _check_image_logits),
    Bug("transformers_adamw", "source post 4: transformers.AdamW", "is that optimiser still in that library?",
        make_optimizer, _check_optimizer),
    Bug("fusion_softmax_hidden", "source post 3: image + text features summed and a softmax over the hidden units",
        "what are the D outputs of this softmax, and what does the head do?", class_scores, _check_class_scores),
    Bug("vit_feature_extractor", "source post 2: ViTFeatureExtractor", "which class loads an image processor today?",
        load_processor, _check_processor),
    Bug("missing_id2label", "source post 2: a predicted index printed without id2label",
        "would a user understand the answer '3'?", predicted_name, _check_predicted_name),
    Bug("double_sigmoid", "course brief: sigmoid before BCEWithLogitsLoss",
        "what does the loss function do to its first argument?", bce_loss, _check_bce),
    Bug("label2id_fallback", "source post 4: a label2id lookup that falls back to class 0",
        "what happens to a misspelt label?", encode_labels, _check_encode),
    Bug("metrics_wrong_axis", "source post 4: argmax on the wrong axis before classification_report",
        "check the shape of the result", predictions, _check_predictions),
    Bug("forgot_eval", "classic: predictions in training mode", "which layers behave differently in training?",
        predict, _check_predict),
    Bug("zero_grad_missing", "classic: gradients never reset", "what does backward() do to .grad: set or add?",
        train_linear, _check_train_linear),
    Bug("softmax_before_cross_entropy", "classic: softmax before CrossEntropyLoss",
        "what does F.cross_entropy expect, and what does it do first?", classification_loss, _check_loss),
    Bug("normalisation_leak", "classic: normalisation statistics computed on the test data",
        "which data may the preprocessing look at?", standardise, _check_standardise),
    Bug("label_in_the_input", "source post 5: an input text that names the class to predict",
        "at test time, where would `label` come from?", classifier_text, _check_text),
)}


def check_bug(name: str, answer: Callable[..., Any], quiet: bool = False) -> CheckResult:
    """Run bug ``name``'s check on the candidate's fixed function; print and return the verdict.

    ``TODO`` means the function still behaves like the buggy one (the hint says where to look).

    Raises:
        KeyError: no bug has that name (the message lists them).
    """
    if name not in BUGS:
        raise KeyError(f"no bug {name!r}; known: {', '.join(BUGS)}")
    bug, label = BUGS[name], f"bug {name}"
    try:
        with torch.random.fork_rng(devices=[]):
            bug.check(answer)
        result = CheckResult(label, "passed", "passed")
    except Unfixed:
        result = CheckResult(label, "not attempted", f"not fixed yet: {bug.hint}")
    except NotAttempted:
        result = CheckResult(label, "not attempted", "not attempted yet: replace `raise NotImplementedError`")
    except Hint as hint:
        result = CheckResult(label, "failed", str(hint))
    except Exception as error:  # the answer broke the check itself
        result = CheckResult(label, "failed", f"could not check your answer ({type(error).__name__}: {error})")
    if not quiet:
        print(result)
    return result
