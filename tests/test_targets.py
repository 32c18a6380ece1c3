"""The committed `cpu` run meets the figures the course promises (results/*.json, written by each notebook).

The thresholds live here, not in the notebooks: a notebook records what it measured, and this file says
what counts as good enough. A learner who re-runs a notebook at `cpu` re-records its results, and these
tests then check the new figures.
"""
from __future__ import annotations

import json

import pytest

from course_utils import results

MAX_CPU_SECONDS = [
    ("01_mnist_mlp", 540),
    ("02_mnist_cnn", 540),
    ("04_bert_image_text", 600),
    ("05_attention_math", 120),
    ("06_multimodal_fusion", 540),
    ("03_vision_transformer", 540),
    ("07_fine_tuning", 600),
    ("08_evaluation", 600),
    ("09_interview_prep", 60),
]

# (notebook, metric, "min" or "max", bound): the figure must be at least / at most the bound.
TARGETS = [
    ("01_mnist_mlp", "mnist_test_acc", "min", 0.975),
    ("01_mnist_mlp", "softmax_grad_max_diff", "max", 1e-6),
    ("02_mnist_cnn", "mnist_test_acc_seed_mean", "min", 0.988),
    ("02_mnist_cnn", "fashion_test_acc", "min", 0.915),
    ("03_vision_transformer", "fashion_test_acc", "min", 0.895),
    ("03_vision_transformer", "permutation_max_diff", "max", 1e-5),
    ("04_bert_image_text", "pipeline_test_acc", "min", 0.96),
    ("04_bert_image_text", "visual_tokens_test_acc", "min", 0.96),
    ("05_attention_math", "online_softmax_max_diff", "max", 1e-6),
    ("05_attention_math", "permutation_max_diff", "max", 1e-5),
    ("06_multimodal_fusion", "fusion_test_acc", "min", 0.975),
    ("06_multimodal_fusion", "image_only_test_acc", "max", 0.55),
    ("06_multimodal_fusion", "text_only_test_acc", "max", 0.55),
    ("06_multimodal_fusion", "zero_shot_test_acc", "min", 0.95),
    ("07_fine_tuning", "full_ft_minus_probe", "min", 0.05),
    ("07_fine_tuning", "lora_minus_full_ft", "min", -0.015),
    ("07_fine_tuning", "lora_trainable_frac", "max", 0.02),
    ("07_fine_tuning", "lora_merge_max_diff", "max", 1e-5),
    ("07_fine_tuning", "replay_capacity", "max", 200),
    ("07_fine_tuning", "replay_drop_share", "max", 0.5),
    ("07a_scaling_out", "ddp_test_gap", "max", 0.01),
    ("08_evaluation", "ood_auroc", "min", 0.90),
    ("08_evaluation", "int8_size_ratio", "max", 0.35),
    ("08_evaluation", "int8_acc_drop", "max", 0.01),
    ("09_interview_prep", "questions", "min", 80),
    ("09_interview_prep", "coding_exercises", "min", 20),
    ("09_interview_prep", "bug_exercises", "min", 10),
    ("09_interview_prep", "design_prompts", "min", 2),
    ("09_interview_prep", "glossary_terms", "min", 100),
    ("07a_scaling_out", "ddp_test_gap", "min", -0.01),
    ("07a_scaling_out", "checkpoints_written", "max", 1),
    ("07a_scaling_out", "checkpoints_written", "min", 1),
]
# (notebook, better, baseline, gap): the fix must beat its baseline by at least the gap.
GAPS = [
    ("08_evaluation", "imbalanced_balanced_acc_best", "imbalanced_balanced_acc_plain", 0.05),
    ("08_evaluation", "noise40_acc_mitigated", "noise40_acc_plain", 0.03),
    ("08_evaluation", "fgsm_acc_fixed", "fgsm_acc_plain", 0.2),
    ("08_evaluation", "distilled_student_acc", "student_alone_acc", 0.0),   # few labels, the teacher labels the rest
]
# (notebook, after, before, ratio): the figure after a fix must be at most this share of the figure before it.
RATIOS = [
    ("08_evaluation", "ece_after", "ece_before", 0.7),
]
RECORDED = {  # figures that must be recorded, whatever their value
    "01_mnist_mlp": ["mnist_test_acc_ci_low", "mnist_test_acc_ci_high"],
    "02_mnist_cnn": ["bn_train_mode_acc", "mnist_test_acc_seed_std"],
    "03_vision_transformer": ["fashion_test_acc_ci_low", "fashion_test_acc_ci_high", "fashion_val_acc_one_view",
                              "fashion_val_acc_with_mirror"],
    "04_bert_image_text": [f"fpt_{variant}_test_acc{suffix}" for suffix in ("", "_std")
                           for variant in ("frozen_random", "frozen_pretrained", "full", "random_init")],
    "07_fine_tuning": ["peft_lora_test_acc", "adalora_test_acc", "adapter_test_acc", "prefix_test_acc",
                       "top_unfreeze_test_acc", "forgetting_drop", "replay_drop"],
    "08_evaluation": ["macro_f1", "roc_auc_macro", "fgsm_eps", "fgsm_acc_plain", "fgsm_acc_fixed", "pruned50_acc_drop",
                      "leakage_inflated_acc", "leakage_honest_acc", "distilled_student_acc_all_labels",
                      "student_alone_acc_all_labels", "distill_labels"],
    "06_multimodal_fusion": ["fusion_test_acc_std", "paraphrase_fusion_test_acc", "paraphrase_onehot_test_acc",
                             "retrieval_r1_semantic"],
}


def _committed(notebook: str) -> dict:
    path = results.RESULTS_DIR / f"{notebook}.json"
    record = json.loads(path.read_text())
    assert record["run_size"] == "cpu", f"{path} holds a {record['run_size']!r} run, not the committed cpu run"
    return record


@pytest.mark.parametrize("notebook, metric, kind, bound", TARGETS)
def test_committed_figure_meets_its_target(notebook, metric, kind, bound):
    figure = _committed(notebook)["metrics"][metric]
    if kind == "min":
        assert figure >= bound, f"{notebook}: {metric} = {figure} is below the target {bound}"
    else:
        assert figure <= bound, f"{notebook}: {metric} = {figure} is above the target {bound}"


@pytest.mark.parametrize("notebook, better, baseline, gap", GAPS)
def test_committed_fix_beats_its_baseline(notebook, better, baseline, gap):
    figures = _committed(notebook)["metrics"]
    assert figures[better] - figures[baseline] >= gap, (
        f"{notebook}: {better} = {figures[better]} is not {gap} above {baseline} = {figures[baseline]}")


@pytest.mark.parametrize("notebook, after, before, ratio", RATIOS)
def test_committed_fix_shrinks_its_figure(notebook, after, before, ratio):
    figures = _committed(notebook)["metrics"]
    assert figures[after] <= ratio * figures[before], (
        f"{notebook}: {after} = {figures[after]} is above {ratio} x {before} = {ratio * figures[before]}")


@pytest.mark.parametrize("notebook", sorted(RECORDED))
def test_committed_run_records_its_figures(notebook):
    missing = [m for m in RECORDED[notebook] if m not in _committed(notebook)["metrics"]]
    assert not missing, f"{notebook} does not record {missing}"


@pytest.mark.parametrize("notebook, budget", MAX_CPU_SECONDS)
def test_committed_run_fits_its_time_budget(notebook, budget):
    seconds = _committed(notebook)["seconds"]
    assert seconds <= budget, (f"{notebook} took {results.duration(seconds)} at cpu; "
                               f"its budget is {results.duration(budget)}")
