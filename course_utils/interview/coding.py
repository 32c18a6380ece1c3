"""The coding round of notebook 09: the course's exercise checkers, gathered as interview exercises.

Each :class:`CodingExercise` names a checker by module and exercise name and is imported only when used, so
a checker module that is missing from a version of the course is skipped (:func:`available`), not an error.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from ..exercises import CHECKERS, CheckerInfo, CheckResult
from .bank import resolve_link


@dataclass(frozen=True)
class CodingExercise:
    """An exercise: ``module`` (in ``course_utils.exercises``) and ``name`` (its checker's verdict name), with the
    section that teaches it (``link``, ``"<stem>#<heading>"``) or None where no section does yet."""

    module: str
    name: str
    link: str | None = None

    def info(self) -> CheckerInfo | None:
        """The checker's entry in the list of checkers; None when its module is not in this version of the course."""
        module = f"course_utils.exercises.{self.module}"
        try:
            importlib.import_module(module)
        except ImportError:
            return None
        return next((info for info in CHECKERS if info.module == module and info.name == self.name), None)

    def stub(self) -> str:
        """The function to write, as a stub cell: the model answer's signature and first docstring line.

        Raises:
            LookupError: the checker is not in this version of the course.
        """
        info = self.info()
        if info is None or info.solution is None:
            raise LookupError(f"no checker {self.name!r} in course_utils.exercises.{self.module}")
        signature = inspect.signature(info.solution)
        params = ", ".join(p.name for p in signature.parameters.values())
        doc = (inspect.getdoc(info.solution) or "").split("\n\n")[0].replace("\n", " ")
        return f'def {self.name}({params}):\n    """{doc}"""\n    raise NotImplementedError\n'


CODING: tuple[CodingExercise, ...] = (
    CodingExercise("mlp", "stable_softmax", "01_mnist_mlp#Exercise 2: a numerically stable softmax"),
    CodingExercise("mlp", "cross_entropy", "01_mnist_mlp#Exercise 3: cross-entropy from logits"),
    CodingExercise("mlp", "linear_backward", "01_mnist_mlp#Exercise 4: a Linear layer's backward pass"),
    CodingExercise("mlp", "accuracy", "01_mnist_mlp#Exercise 5: accuracy"),
    CodingExercise("cnn", "conv2d_loops", "02_mnist_cnn#Exercise 1: a convolution layer with loops"),
    CodingExercise("cnn", "conv_output_size", "02_mnist_cnn#Exercise 2: the output-size formula"),
    CodingExercise("cnn", "conv_param_count", "02_mnist_cnn#Exercise 3: count a convolution's parameters"),
    CodingExercise("vit", "patchify", "03_vision_transformer#Exercise 1: patchify without `unfold`"),
    CodingExercise("bert", "causal_mask", "05_attention_math#4. Masks: who may attend to whom"),
    CodingExercise("bert", "greedy_step", "04_bert_image_text#2.3 Greedy decoding"),
    CodingExercise("attention", "attention", "05_attention_math#Exercise 2: scaled dot-product attention"),
    CodingExercise("attention", "masked_attention", "05_attention_math#Exercise 3: masked attention"),
    CodingExercise("attention", "split_heads", "05_attention_math#Exercise 4: split and merge heads"),
    CodingExercise("fusion", "clip_loss", "06_multimodal_fusion#Exercise 2: the symmetric InfoNCE loss"),
    CodingExercise("fusion", "recall_at_k", "06_multimodal_fusion#Exercise 3: recall@k"),
    CodingExercise("lora", "lora_forward", "07_fine_tuning#4. LoRA by hand"),
    CodingExercise("optimisation", "bce_grad", "07_fine_tuning#10. Binary cross-entropy, and a multi-label task"),
    CodingExercise("optimisation", "warmup_cosine", "07_fine_tuning#9. Optimisation done right"),
    CodingExercise("evaluation", "f1_from_confusion"),
    CodingExercise("evaluation", "roc_auc"),
    CodingExercise("evaluation", "ece"),
    CodingExercise("evaluation", "fit_temperature"),
    CodingExercise("evaluation", "top_k_accuracy"),
    CodingExercise("evaluation", "fgsm_step"),
    CodingExercise("layers", "max_pool", "02_mnist_cnn#3. Pooling and the fully connected head"),
    CodingExercise("layers", "dropout_forward", "01_mnist_mlp#Dropout, measured"),
    CodingExercise("layers", "dropout_backward", "01_mnist_mlp#4. Backpropagation: what `backward()` computes"),
    CodingExercise("layers", "layer_norm", "03_vision_transformer#4. The encoder block"),
    CodingExercise("detection", "box_iou"),
    CodingExercise("detection", "nms"),
    CodingExercise("search", "knn_predict"),
    CodingExercise("search", "beam_step", "04_bert_image_text#2.3 Greedy decoding"),
)


def available() -> list[CodingExercise]:
    """The exercises of :data:`CODING` whose checker exists in this version of the course."""
    return [exercise for exercise in CODING if exercise.info() is not None]


def find(name: str) -> CodingExercise:
    """The exercise called ``name``.

    Raises:
        KeyError: no exercise has that name (the message lists them).
    """
    for exercise in CODING:
        if exercise.name == name:
            return exercise
    raise KeyError(f"no coding exercise {name!r}; known: {', '.join(e.name for e in CODING)}")


def check_exercise(name: str, answer: Callable[..., Any], **options: Any) -> CheckResult:
    """Run exercise ``name``'s checker on ``answer`` (``options``: the checker's ``quiet``, ``seed``...).

    A checker missing from this version of the course gives a "not attempted" verdict that says so.
    """
    info = find(name).info()
    if info is None:
        result = CheckResult(name, "not attempted", "its checker is not in this version of the course")
        if not options.get("quiet"):
            print(result)
        return result
    return info.checker(answer, **options)


def coding_table() -> str:
    """The coding round as Markdown: each available exercise, the function to write and where the course
    teaches it."""
    lines = ["| exercise | write | taught in |", "|---|---|---|"]
    for exercise in available():
        first_line = exercise.stub().splitlines()[0].removeprefix("def ").removesuffix(":")
        where = " § ".join(resolve_link(exercise.link)) if exercise.link else "this notebook"
        lines.append(f"| `{exercise.name}` | `{first_line}` | {where} |")
    return "\n".join(lines)
