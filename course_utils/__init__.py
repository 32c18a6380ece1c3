"""Helpers shared by the course notebooks.

Each module fits on a screen:

- :mod:`course_utils.runsize`: run sizes (smoke / cpu / gpu), device, seeding, per-notebook plans;
- :mod:`course_utils.data`: MNIST and Fashion-MNIST loaders with verified checksums;
- :mod:`course_utils.training`: ``fit``, ``evaluate``, ``predict``;
- :mod:`course_utils.attention`: scaled dot-product and multi-head attention, matching torch's;
- :mod:`course_utils.models`: the MLP and CNN that later notebooks compare against, ``count_parameters``;
- :mod:`course_utils.plots`: learning curves, confusion matrix, image grids, filters, feature maps;
- :mod:`course_utils.results`: record each notebook's headline figures;
- :mod:`course_utils.exercises`: the exercise checkers.
"""
from .data import (FASHION_CLASSES, MNIST_CLASSES, ChecksumError, DataUnavailableError, ImageSet,
                   load_fashion_mnist, load_mnist, random_shift, shift_images)
from . import attention, models
from .models import count_parameters
from .plots import (plot_confusion_matrix, plot_history, plot_mistakes, show_feature_maps, show_filters,
                    show_images)
from .results import record_results
from .runsize import RUN_SIZES, Plan, get_device, get_run_size, run_plan, set_seed
from .training import History, evaluate, fit, predict

__version__ = "0.1.0"

__all__ = [
    "FASHION_CLASSES", "MNIST_CLASSES", "ChecksumError", "DataUnavailableError", "ImageSet", "load_fashion_mnist",
    "load_mnist", "random_shift", "shift_images", "plot_confusion_matrix", "plot_history", "plot_mistakes",
    "show_feature_maps", "show_filters", "show_images", "record_results", "RUN_SIZES", "Plan", "get_device",
    "get_run_size", "run_plan", "set_seed", "History", "evaluate", "fit", "predict", "models", "attention", "count_parameters",
]
