"""Helpers shared by the course notebooks.

Each module fits on a screen:

- :mod:`course_utils.runsize`: run sizes (smoke / cpu / gpu), device, seeding, per-notebook plans;
- :mod:`course_utils.data`: MNIST and Fashion-MNIST loaders with verified checksums;
- :mod:`course_utils.images`: ``ImageSet``, the in-memory dataset the loaders return, and its shift augmentations;
- :mod:`course_utils.training`: the one training loop (``fit_tensors``, ``fit``), ``evaluate``, ``predict``;
- :mod:`course_utils.attention`: scaled dot-product and multi-head attention, matching torch's;
- :mod:`course_utils.vit`: a small Vision Transformer, attention rollout, export to ``transformers``;
- :mod:`course_utils.text`: the pretrained text encoder (online or offline) and sentence embeddings;
- :mod:`course_utils.imagetext`: captions and yes/no questions made from MNIST / Fashion-MNIST images;
- :mod:`course_utils.captioning`: an image captioner (CNN encoder + transformer decoder), greedy decoding;
- :mod:`course_utils.fusion`: image-text fusion models and their losses;
- :mod:`course_utils.contrastive`: the contrastive (CLIP) loss and model, image embeddings, recall@k;
- :mod:`course_utils.models`: the MLP and CNN that later notebooks compare against, ``count_parameters``,
  ``FlipAveraged`` (test-time flips);
- :mod:`course_utils.lora`: LoRA by hand, bottleneck adapters, trainable parameters and their AdamW memory;
- :mod:`course_utils.optimisation`: AdamW parameter groups without decay on biases and norms, warmup + cosine,
  multi-label targets and their per-label scores;
- :mod:`course_utils.finetuning`: a pretrained BERT fine-tuned as a pair classifier: encoding, the recipe,
  the methods' table;
- :mod:`course_utils.continual`: class-incremental training, a replay buffer, forgetting and backward transfer;
- :mod:`course_utils.metrics`: confusion matrix, precision / recall / F1, ROC and PR curves, top-k, bootstrap;
- :mod:`course_utils.calibration`: reliability, ECE, temperature scaling, MC dropout, ensembles, rejection curve;
- :mod:`course_utils.label_problems`: class imbalance and label noise made on purpose, and their fixes;
- :mod:`course_utils.robustness`: corruptions, FGSM, out-of-distribution scores, saliency and Grad-CAM;
- :mod:`course_utils.few_shot`: k-shot samples, prototypes in an embedding space, pseudo-labels;
- :mod:`course_utils.compression`: int8 quantisation, pruning, distillation, size and latency, ensembles;
- :mod:`course_utils.distributed`: ``fit`` on several processes under ``torchrun`` (DDP), one checkpoint from rank 0;
- :mod:`course_utils.plots`: learning curves, confusion matrix, image grids, filters, feature maps;
- :mod:`course_utils.results`: record each notebook's headline figures, and the tables of ``make results``;
- :mod:`course_utils.uncertainty`: Wilson intervals of accuracies, ties, mean ± std over seeds;
- :mod:`course_utils.network`: time limits on every network call, and the session's online/offline state;
- :mod:`course_utils.tour`: notebook 00's set-up check, module tour, results paths and run-time table;
- :mod:`course_utils.colab`: what Colab ships, and the notebooks' first cell (``first_cell.py``);
- :mod:`course_utils.lab`, :mod:`course_utils.execute`, :mod:`course_utils.bench`: the ``python -m course_utils``
  commands (the lab, re-running notebooks, timing the offline fallbacks);
- :mod:`course_utils.exercises`: the exercise checkers;
- :mod:`course_utils.interview`: notebook 09's question bank, coding and bug rounds, design prompts, mock interview.
"""
import warnings

# The training bars come from tqdm.auto: a widget in JupyterLab and Colab (ipywidgets), text elsewhere.
# Where a Jupyter lacks ipywidgets, tqdm.auto warns and falls back to the text bar: that is fine.
warnings.filterwarnings("ignore", message="IProgress not found")

from . import (
    attention,
    calibration,
    captioning,
    continual,
    fusion,
    imagetext,
    lora,
    metrics,
    models,
    optimisation,
    text,
    uncertainty,
    vit,
)
from .data import (
    FASHION_CLASSES,
    MNIST_CLASSES,
    ChecksumError,
    DataUnavailableError,
    ImageSet,
    load_fashion_mnist,
    load_mnist,
    random_shift,
    shift_images,
)
from .models import count_parameters
from .plots import plot_confusion_matrix, plot_history, plot_mistakes, show_feature_maps, show_filters, show_images
from .results import record_results
from .runsize import RUN_SIZES, Plan, get_device, get_run_size, run_plan, set_seed, show_plans
from .tour import check_setup, module_tour, results_location, results_overview, results_path
from .training import History, accuracy_table, autocast_dtype, evaluate, evaluating, fit, fit_tensors, predict
from .uncertainty import format_accuracy, wilson_interval

__version__ = "0.1.0"

__all__ = [
    "format_accuracy", "wilson_interval", "uncertainty",
    "FASHION_CLASSES", "MNIST_CLASSES", "ChecksumError", "DataUnavailableError", "ImageSet", "load_fashion_mnist",
    "load_mnist", "random_shift", "shift_images", "plot_confusion_matrix", "plot_history", "plot_mistakes",
    "show_feature_maps", "show_filters", "show_images", "record_results", "RUN_SIZES", "Plan", "get_device",
    "get_run_size", "run_plan", "set_seed", "History", "accuracy_table", "autocast_dtype", "evaluate", "fit",
    "fit_tensors", "evaluating", "predict", "models", "attention", "vit", "text", "imagetext", "fusion", "captioning",
    "optimisation", "continual", "count_parameters", "lora", "metrics", "calibration",
    "show_plans", "check_setup", "module_tour", "results_location", "results_overview", "results_path",
]
