"""Run sizes, device choice and seeding: one place decides how big every notebook's run is.

Three run sizes share the same notebooks:

- ``smoke``: seconds per notebook; what the tests run.
- ``cpu``: a real lesson on a laptop in minutes.
- ``gpu``: the full lesson on a CUDA GPU (Colab).

The size is picked automatically (CUDA present -> ``gpu``, else ``cpu``) and can be set with
the environment variable ``COURSE_RUN_SIZE``. Each notebook asks for its :class:`Plan`, which
holds that notebook's epochs and subset sizes for the chosen size (the table ``PLANS``).
"""
from __future__ import annotations

import os
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

RUN_SIZES = ("smoke", "cpu", "gpu")
RUN_SIZE_ENV = "COURSE_RUN_SIZE"

# Epochs and subset sizes per notebook and run size. ``None`` as a limit means the whole split.
PLANS: dict[str, dict[str, dict[str, Any]]] = {
    "00_setup_and_tour": {
        "smoke": {"show_images": 8},
        "cpu": {"show_images": 16},
        "gpu": {"show_images": 16},
    },
    "01_mnist_mlp": {
        "smoke": {"train_limit": 1000, "test_limit": 500, "epochs": 1, "loop_epochs": 1, "batch_size": 128,
                  "timing_repeats": 1, "sweep_epochs": 1, "seeds": 1, "pitfall_epochs": 1},
        "cpu": {"train_limit": 8000, "test_limit": None, "epochs": 30, "loop_epochs": 3, "batch_size": 128,
                "timing_repeats": 3, "sweep_epochs": 10, "seeds": 3, "pitfall_epochs": 5},
        "gpu": {"train_limit": None, "test_limit": None, "epochs": 30, "loop_epochs": 3, "batch_size": 256,
                "timing_repeats": 3, "sweep_epochs": 10, "seeds": 3, "pitfall_epochs": 5},
    },
    "02_mnist_cnn": {
        "smoke": {
            "train_limit": 500, "test_limit": 300, "epochs": 1, "batch_size": 128, "max_test_shift": 1, "seeds": 2,
            "fashion_train_limit": 500, "fashion_test_limit": 300, "fashion_epochs": 1, "fashion_batch_size": 256,
            "fashion_seeds": 1,
        },
        "cpu": {
            "train_limit": 8000, "test_limit": None, "epochs": 15, "batch_size": 128, "max_test_shift": 6, "seeds": 3,
            "fashion_train_limit": None, "fashion_test_limit": None, "fashion_epochs": 10, "fashion_batch_size": 256,
            "fashion_seeds": 1,
        },
        "gpu": {
            "train_limit": None, "test_limit": None, "epochs": 15, "batch_size": 256, "max_test_shift": 6, "seeds": 3,
            "fashion_train_limit": None, "fashion_test_limit": None, "fashion_epochs": 20, "fashion_batch_size": 256,
            "fashion_seeds": 3,
        },
    },
    "03_vision_transformer": {
        "smoke": {"train_limit": 1000, "test_limit": 500, "epochs": 1, "batch_size": 128,
                  "fashion_train_limit": 1000, "fashion_test_limit": 500, "fashion_epochs": 1,
                  "fashion_batch_size": 256},
        "cpu": {"train_limit": None, "test_limit": None, "epochs": 15, "batch_size": 128,
                "fashion_train_limit": None, "fashion_test_limit": None, "fashion_epochs": 16,
                "fashion_batch_size": 256},
        "gpu": {"train_limit": None, "test_limit": None, "epochs": 30, "batch_size": 256,
                "fashion_train_limit": None, "fashion_test_limit": None, "fashion_epochs": 40,
                "fashion_batch_size": 256},
    },
    "04_bert_image_text": {
        "smoke": {"train_limit": 400, "test_limit": 200, "clf_epochs": 1, "caption_epochs": 1, "text_head_epochs": 2,
                  "bert_train_limit": 64, "bert_epochs": 1, "fpt_train_limit": 32, "fpt_val_limit": 20,
                  "fpt_test_limit": 50, "fpt_epochs": 1, "fpt_lrs": [1e-3], "fpt_seeds": 2, "fpt_layers": 1,
                  "logreg_epochs": 2},
        "cpu": {"train_limit": None, "test_limit": None, "clf_epochs": 4, "caption_epochs": 10, "text_head_epochs": 20,
                "bert_train_limit": None, "bert_epochs": 1, "fpt_train_limit": 2560, "fpt_val_limit": None,
                "fpt_test_limit": None, "fpt_epochs": 1, "fpt_lrs": [3e-4, 1e-3, 3e-3, 1e-2], "fpt_seeds": 3,
                "fpt_layers": 2,
                "logreg_epochs": 30},
        "gpu": {"train_limit": None, "test_limit": None, "clf_epochs": 8, "caption_epochs": 10, "text_head_epochs": 20,
                "bert_train_limit": None, "bert_epochs": 3, "fpt_train_limit": None, "fpt_val_limit": None,
                "fpt_test_limit": None, "fpt_epochs": 10, "fpt_lrs": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2], "fpt_seeds": 3,
                "fpt_layers": 6,
                "logreg_epochs": 30},
    },
    "05_attention_math": {
        "smoke": {"dims": [4, 16, 64, 256], "trials": 200, "n_keys": 16, "gradcheck_len": 3,
                  "bench_lengths": [64, 128, 256], "bench_heads": 4, "bench_head_dim": 64, "bench_repeats": 2},
        "cpu": {"dims": [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], "trials": 2000, "n_keys": 16, "gradcheck_len": 5,
                "bench_lengths": [128, 256, 512, 1024, 2048, 4096], "bench_heads": 4, "bench_head_dim": 64,
                "bench_repeats": 5},
        "gpu": {"dims": [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], "trials": 2000, "n_keys": 16, "gradcheck_len": 5,
                "bench_lengths": [256, 512, 1024, 2048, 4096, 8192], "bench_heads": 8, "bench_head_dim": 64,
                "bench_repeats": 10},
    },
    "06_multimodal_fusion": {
        "smoke": {"train_limit": 500, "test_limit": 250, "tagger_epochs": 1, "question_sets": 1, "fusion_epochs": 1,
                  "seeds": 1, "clip_epochs": 1, "probe_epochs": 1, "real_clip_images": 50},
        "cpu": {"train_limit": None, "test_limit": None, "tagger_epochs": 5, "question_sets": 3, "fusion_epochs": 8,
                "seeds": 3, "clip_epochs": 5, "probe_epochs": 5, "real_clip_images": 300},
        "gpu": {"train_limit": None, "test_limit": None, "tagger_epochs": 10, "question_sets": 4, "fusion_epochs": 15,
                "seeds": 3, "clip_epochs": 15, "probe_epochs": 10, "real_clip_images": 1000},
    },
    "07_fine_tuning": {
        "smoke": {"layers": 1, "train_pairs": 48, "val_pairs": 32, "test_pairs": 48, "epochs": 1, "batch_size": 16,
                  "probe_epochs": 5, "probe_lrs": [1e-2], "full_lrs": [1e-4], "lora_lrs": [3e-3], "lora_r": 8,
                  "prefix_lrs": [3e-2], "prefix_tokens": 4, "adapter_width": 16, "top_layers": 1, "ranks": [2, 8],
                  "label_budgets": [16], "scratch_lrs": [1e-3], "timing_repeats": 1,
                  "multilabel_train": 500, "multilabel_epochs": 1, "continual_train": 1000, "continual_epochs": 1,
                  "replay_capacity": 50},
        "cpu": {"layers": None, "train_pairs": 1000, "val_pairs": 400, "test_pairs": 1000, "epochs": 3,
                "batch_size": 32, "probe_epochs": 100, "probe_lrs": [1e-3, 1e-2, 1e-1], "full_lrs": [5e-5, 1e-4],
                "lora_lrs": [1e-3, 3e-3], "lora_r": 8, "prefix_lrs": [3e-2], "prefix_tokens": 20,
                "adapter_width": 16, "top_layers": 2, "ranks": [1, 2, 4, 8, 16], "label_budgets": [30, 100, 300, 1000],
                "scratch_lrs": [1e-3], "timing_repeats": 7, "multilabel_train": 5000, "multilabel_epochs": 8,
                "continual_train": 8000, "continual_epochs": 2, "replay_capacity": 200},
        "gpu": {"layers": None, "train_pairs": 4000, "val_pairs": 800, "test_pairs": None, "epochs": 3,
                "batch_size": 32, "probe_epochs": 100, "probe_lrs": [1e-3, 1e-2, 1e-1],
                "full_lrs": [3e-5, 1e-4, 3e-4], "lora_lrs": [1e-3, 3e-3, 1e-2], "lora_r": 8,
                "prefix_lrs": [1e-2, 3e-2, 1e-1], "prefix_tokens": 20, "adapter_width": 16, "top_layers": 2,
                "ranks": [1, 2, 4, 8, 16], "label_budgets": [30, 100, 300, 1000, 4000],
                "scratch_lrs": [1e-4, 3e-4, 1e-3], "timing_repeats": 10, "multilabel_train": None,
                "multilabel_epochs": 15, "continual_train": None, "continual_epochs": 3, "replay_capacity": 200},
    },
    "07a_scaling_out": {
        "smoke": {"nproc": 2, "train_limit": 2000, "test_limit": 500, "epochs": 1, "global_batch": 128,
                  "sweep_epochs": 1, "seeds": 1, "log_epochs": 1},
        "cpu": {"nproc": 2, "train_limit": None, "test_limit": None, "epochs": 5, "global_batch": 128,
                "sweep_epochs": 5, "seeds": 3, "log_epochs": 3},
        "gpu": {"nproc": 2, "train_limit": None, "test_limit": None, "epochs": 5, "global_batch": 128,
                "sweep_epochs": 5, "seeds": 3, "log_epochs": 3},
    },
    "08_evaluation": {
        # the models under test, section 1 metrics and trust, calibration, imbalance, noise
        "smoke": {"train_limit": 1000, "test_limit": 500, "epochs": 1, "seed_images": 200, "leak_images": 200,
                  "bootstrap": 200, "folds": 3, "cv_epochs": 2, "small_set": 200, "overfit_epochs": 5, "seeds": 2,
                  "calibration_epochs": 2, "imbalance_ratios": [10, 100], "imbalance_epochs": 1,
                  "noise_rates": [0.2, 0.4], "noise_epochs": 1,
                  # augmentation, robustness, adversarial training, shift, uncertainty, where the model looks
                  "robust_images": 100, "fgsm_eps": [0.0, 0.1, 0.2], "attack_steps": 2,
                  "ood_images": 200, "mc_samples": 3, "heatmap_images": 4,
                  # few-shot and compression
                  "few_shot_ks": [1, 5], "few_shot_draws": 1, "unlabelled": 200, "pretrain_epochs": 1,
                  "sparsities": [0.5], "student_epochs": 1, "distill_labels": 200, "latency_repeats": 2,
                  "ensemble_members": 2, "few_shot_scratch_epochs": 5},
        "cpu": {"train_limit": 8000, "test_limit": None, "epochs": 6, "seed_images": 2000, "leak_images": 2000,
                "bootstrap": 1000, "folds": 5, "cv_epochs": 20, "small_set": 500, "overfit_epochs": 100, "seeds": 3,
                "calibration_epochs": 30, "imbalance_ratios": [10, 100], "imbalance_epochs": 5,
                "noise_rates": [0.2, 0.4], "noise_epochs": 20,
                "robust_images": 500, "fgsm_eps": [0.0, 0.05, 0.1, 0.15, 0.2, 0.3], "attack_steps": 10,
                "ood_images": 2000, "mc_samples": 20, "heatmap_images": 6,
                "few_shot_ks": [1, 5, 10], "few_shot_draws": 5, "unlabelled": 2000, "pretrain_epochs": 4,
                "sparsities": [0.25, 0.5, 0.75, 0.9], "student_epochs": 10, "distill_labels": 1000,
                "latency_repeats": 20, "ensemble_members": 3, "few_shot_scratch_epochs": 50},
        "gpu": {"train_limit": None, "test_limit": None, "epochs": 15, "seed_images": 2000, "leak_images": 5000,
                "bootstrap": 2000, "folds": 5, "cv_epochs": 30, "small_set": 500, "overfit_epochs": 200, "seeds": 5,
                "calibration_epochs": 30, "imbalance_ratios": [10, 100], "imbalance_epochs": 10,
                "noise_rates": [0.2, 0.4], "noise_epochs": 20,
                "robust_images": 2000, "fgsm_eps": [0.0, 0.05, 0.1, 0.15, 0.2, 0.3], "attack_steps": 20,
                "ood_images": None, "mc_samples": 50, "heatmap_images": 6,
                "few_shot_ks": [1, 5, 10], "few_shot_draws": 20, "unlabelled": 10000, "pretrain_epochs": 10,
                "sparsities": [0.25, 0.5, 0.75, 0.9], "student_epochs": 20, "distill_labels": 1000,
                "latency_repeats": 50, "ensemble_members": 5, "few_shot_scratch_epochs": 100},
    },
    "09_interview_prep": {
        "smoke": {"mock_questions": 3},
        "cpu": {"mock_questions": 5},
        "gpu": {"mock_questions": 5},
    },
}


def _normalise(size: object, source: str) -> str:
    """``size`` as one of ``RUN_SIZES``: case and surrounding spaces do not matter.

    Raises:
        ValueError: ``size`` names no run size (the message says where it came from).
    """
    chosen = size.strip().lower() if isinstance(size, str) else size
    if chosen not in RUN_SIZES:
        raise ValueError(f"{source}={size!r} is not a run size; expected one of {', '.join(RUN_SIZES)}")
    return chosen


def get_run_size() -> str:
    """Return the run size: ``$COURSE_RUN_SIZE`` if set (any case, spaces ignored), else ``gpu`` with CUDA,
    else ``cpu``.

    Raises:
        ValueError: the environment variable names a size that does not exist.
    """
    chosen = os.environ.get(RUN_SIZE_ENV, "")
    if chosen.strip():
        return _normalise(chosen, RUN_SIZE_ENV)
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_device() -> torch.device:
    """The device to train on: the first CUDA GPU if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) and make cuDNN deterministic."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@dataclass(frozen=True)
class Plan:
    """What one notebook does at the chosen run size; ``plan.epochs`` reads ``settings['epochs']``."""

    notebook: str
    size: str
    device: torch.device
    settings: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)

    def __getattr__(self, name: str) -> Any:
        settings = object.__getattribute__(self, "settings")
        if name in settings:
            return settings[name]
        raise AttributeError(f"the {self.notebook!r} plan has no setting {name!r}; it has {sorted(settings)}")

    def elapsed(self) -> float:
        """Seconds since the plan was made (the notebook's start)."""
        return time.perf_counter() - self.started

    def __str__(self) -> str:
        knobs = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"run size {self.size!r} on {self.device.type}: {knobs}"


def run_plan(notebook: str, size: str | None = None, seed: int = 0) -> Plan:
    """Seed everything and return ``notebook``'s plan at ``size`` (default: :func:`get_run_size`).

    Args:
        notebook: a key of ``PLANS``, e.g. ``"01_mnist_mlp"``.
        size: one of ``RUN_SIZES``; ``None`` picks it automatically.
        seed: passed to :func:`set_seed`.
    """
    if notebook not in PLANS:
        raise KeyError(f"no plan for notebook {notebook!r}; known: {', '.join(PLANS)}")
    size = get_run_size() if size is None else _normalise(size, "size")
    if size == "gpu" and not torch.cuda.is_available():
        warnings.warn("run size 'gpu' on a machine without a CUDA GPU: the full lesson will run on the CPU "
                      "and take far longer; COURSE_RUN_SIZE=cpu sizes it for a laptop", stacklevel=2)
    set_seed(seed)
    return Plan(notebook=notebook, size=size, device=get_device(), settings=dict(PLANS[notebook][size]))


def _setting(value: Any, shorten: int = 4) -> str:
    """A plan setting as the plan table prints it: ``None`` as ``all``, a list longer than ``shorten``
    as its first two values, ``...``, its last, and its length: ``[2, 4, ..., 1024] (10)``."""
    if value is None:
        return "all"
    if isinstance(value, (list, tuple)) and len(value) > shorten:
        return f"[{value[0]}, {value[1]}, ..., {value[-1]}] ({len(value)})"
    return str(list(value)) if isinstance(value, tuple) else str(value)


def plan_table(notebook: str, current: str | None = None) -> str:
    """``notebook``'s plan as text: one row per setting, one column per run size, ``current`` marked ``*``.

    Raises:
        KeyError: ``notebook`` has no plan.
        ValueError: ``current`` is not a run size.
    """
    if notebook not in PLANS:
        raise KeyError(f"no plan for notebook {notebook!r}; known: {', '.join(PLANS)}")
    current = None if current is None else _normalise(current, "current")
    sizes = PLANS[notebook]
    knobs = list(dict.fromkeys(knob for size in RUN_SIZES for knob in sizes[size]))
    rows = [[notebook, *(f"{size}*" if size == current else size for size in RUN_SIZES)]]
    rows += [[f"  {knob}", *(_setting(sizes[size].get(knob, "-")) for size in RUN_SIZES)] for knob in knobs]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def show_plans(current: str | None = None, notebooks: list[str] | None = None) -> None:
    """Print :func:`plan_table` for each of ``notebooks`` (default: every notebook in ``PLANS``).

    Args:
        current: the run size to mark with ``*``; ``None`` marks :func:`get_run_size`'s.
        notebooks: keys of ``PLANS``.
    Raises:
        KeyError: a notebook has no plan.
        ValueError: ``current`` is not a run size.
    """
    current = get_run_size() if current is None else current
    tables = [plan_table(notebook, current) for notebook in (list(PLANS) if notebooks is None else notebooks)]
    print("\n\n".join(tables))
    if any("...," in table for table in tables):
        print("\n[a, b, ..., z] (n): a list of n values, shortened; all: the whole split")
    else:
        print("\nall: the whole split")
