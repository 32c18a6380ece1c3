"""How sure a measured accuracy is: Wilson intervals, ties, and the spread over seeds.

A test accuracy of 0.9910 on 2,000 images is one draw: the 95% Wilson interval says which true
accuracies are compatible with it. Two models whose intervals overlap are called a tie here: the
data cannot rank them. Where an argument rests on a ranking, train several seeds and report
mean ± standard deviation as well.
"""
from __future__ import annotations

import math
import numbers
from statistics import NormalDist
from typing import Sequence

__all__ = ["wilson_interval", "accuracy_interval", "half_width", "format_accuracy", "is_tie", "compare", "mean_std",
           "format_mean_std", "seed_difference_interval", "compare_seeds"]


def wilson_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / total``: ``(low, high)`` in [0, 1].

    Unlike the normal ("Wald") interval it stays inside [0, 1] and is sound near 0 and 1, where test
    accuracies live.

    Raises:
        ValueError: for ``total < 1``, ``correct`` outside ``[0, total]`` or ``confidence`` outside (0, 1).
    """
    if isinstance(total, bool) or not isinstance(total, numbers.Integral) or total < 1:
        raise ValueError(f"total: expected a whole number of examples >= 1, got {total!r}")
    if isinstance(correct, bool) or not isinstance(correct, numbers.Integral) or not 0 <= correct <= total:
        raise ValueError(f"correct: expected a whole number in [0, total={total}], got {correct!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a level in (0, 1) such as 0.95, got {confidence!r}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    correct, total = int(correct), int(total)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_interval(accuracy: float, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """:func:`wilson_interval` of an accuracy measured on ``total`` examples (``accuracy * total`` correct)."""
    if not 0 <= accuracy <= 1:
        raise ValueError(f"accuracy: expected a fraction in [0, 1], got {accuracy!r}")
    return wilson_interval(round(accuracy * total), total, confidence)


def half_width(accuracy: float, total: int) -> float:
    """Half the width of the 95% Wilson interval of an accuracy measured on ``total`` examples: the "±" of
    a gap's yardstick (0.0054 for 0.985 on 2,000 images)."""
    low, high = accuracy_interval(accuracy, total)
    return (high - low) / 2


def format_accuracy(accuracy: float, total: int) -> str:
    """``0.9910 [0.9863, 0.9941]``: the accuracy and its 95% Wilson interval."""
    low, high = accuracy_interval(accuracy, total)
    return f"{accuracy:.4f} [{low:.4f}, {high:.4f}]"


def is_tie(accuracy_a: float, accuracy_b: float, total: int) -> bool:
    """True when the 95% intervals of two accuracies measured on the same ``total`` examples overlap:
    the gap is within the noise of the test set, and the data cannot rank the two."""
    low_a, high_a = accuracy_interval(accuracy_a, total)
    low_b, high_b = accuracy_interval(accuracy_b, total)
    return low_a <= high_b and low_b <= high_a


def compare(name_a: str, accuracy_a: float, name_b: str, accuracy_b: float, total: int, split: str = "test") -> str:
    """One sentence for the prose: which is better, or that they tie, with both intervals, measured on
    ``total`` images of ``split`` ("test", "validation")."""
    a, b = format_accuracy(accuracy_a, total), format_accuracy(accuracy_b, total)
    if is_tie(accuracy_a, accuracy_b, total):
        return f"{name_a} {a} and {name_b} {b} tie: their 95% intervals overlap on {total:,} {split} images"
    better, worse = (name_a, name_b) if accuracy_a > accuracy_b else (name_b, name_a)
    return f"{better} beats {worse}: {name_a} {a} vs {name_b} {b}, intervals apart on {total:,} {split} images"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of the figures of several seeds."""
    if len(values) == 0:
        raise ValueError("values: expected at least one figure")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def format_mean_std(values: Sequence[float]) -> str:
    """``0.9905 ± 0.0008 (3 seeds)``."""
    mean, std = mean_std(values)
    return f"{mean:.4f} ± {std:.4f} ({len(values)} seed{'s' if len(values) != 1 else ''})"


def _check_seeds(values: object, name: str) -> list[float]:
    """``values`` as a list of at least two accuracies in [0, 1], else ``ValueError``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) < 2 or \
            not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in values):
        raise ValueError(f"{name}: expected the accuracies of at least 2 seeds (numbers in [0, 1]), got {values!r}")
    return [float(v) for v in values]


def seed_difference_interval(values_a: Sequence[float], values_b: Sequence[float],
                             confidence: float = 0.95) -> tuple[float, float]:
    """The ``confidence`` interval of ``mean(values_a) - mean(values_b)`` from Welch's t-test (scipy): how
    far the seeds' spread lets the difference of two means move. Each side needs at least 2 seeds."""
    from scipy import stats

    a, b = _check_seeds(values_a, "values_a"), _check_seeds(values_b, "values_b")
    difference = sum(a) / len(a) - sum(b) / len(b)
    if mean_std(a)[1] == 0 and mean_std(b)[1] == 0:          # no spread at all: the t-test is undefined
        return difference, difference
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    return float(interval.low), float(interval.high)


def compare_seeds(name_a: str, values_a: Sequence[float], name_b: str, values_b: Sequence[float], total: int,
                  split: str = "test") -> str:
    """One sentence comparing two models trained with several seeds each, both evaluated on the same
    ``total`` images of ``split``.

    Two noises can make a gap: the seeds (a new seed gives another model) and the test set (another
    draw of images gives another accuracy). One "beats" the other only when both are ruled out: the 95%
    interval of the difference of the means (Welch's t over the seeds, :func:`seed_difference_interval`)
    excludes 0, and the 95% Wilson intervals of the two means do not overlap. Otherwise they tie.
    """
    mean_a, mean_b = mean_std(_check_seeds(values_a, "values_a"))[0], mean_std(_check_seeds(values_b, "values_b"))[0]
    low, high = seed_difference_interval(values_a, values_b)
    seeds = f"difference of the means {mean_a - mean_b:+.4f}, seeds' 95% interval [{low:+.4f}, {high:+.4f}]"
    sides = f"{name_a} {format_mean_std(values_a)} vs {name_b} {format_mean_std(values_b)}"
    if low <= 0 <= high:
        return f"{name_a} and {name_b} tie: {sides}; {seeds} holds 0"
    if is_tie(mean_a, mean_b, total):
        return (f"{name_a} and {name_b} tie: {sides}; {seeds}, but the means' 95% intervals overlap on "
                f"{total:,} {split} images")
    better, worse = (name_a, name_b) if mean_a > mean_b else (name_b, name_a)
    return f"{better} beats {worse}: {sides}; {seeds}, and the means are intervals apart on {total:,} {split} images"
