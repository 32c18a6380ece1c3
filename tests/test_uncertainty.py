"""course_utils.uncertainty: Wilson intervals against known values, ties, and seed spreads."""
from __future__ import annotations

import pytest

from course_utils.uncertainty import (
    accuracy_interval,
    compare,
    compare_seeds,
    format_accuracy,
    format_mean_std,
    half_width,
    is_tie,
    mean_std,
    seed_difference_interval,
    wilson_interval,
)


def test_wilson_matches_a_worked_value_and_stays_in_range() -> None:
    low, high = wilson_interval(81, 263)          # the classic example: 0.2553 to 0.3662 at 95%
    assert low == pytest.approx(0.2553, abs=1e-4) and high == pytest.approx(0.3662, abs=1e-4)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0) and wilson_interval(10, 10)[1] == 1.0
    low, high = wilson_interval(1982, 2000)
    assert low < 0.991 < high and high - low < 0.01


def test_numpy_and_torch_whole_numbers_are_accepted() -> None:
    import numpy as np
    import torch

    expected = wilson_interval(81, 263)
    assert wilson_interval(np.int64(81), np.int64(263)) == expected
    assert wilson_interval(int(torch.tensor(81)), 263) == expected


def test_a_higher_confidence_gives_a_wider_interval() -> None:
    narrow, wide = wilson_interval(90, 100, 0.90), wilson_interval(90, 100, 0.99)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]


@pytest.mark.parametrize("correct, total, confidence", [(1, 0, 0.95), (5, 4, 0.95), (-1, 4, 0.95), (1, 4, 1.0),
                                                        (1.5, 4, 0.95), (True, 4, 0.95)])
def test_bad_input_is_refused_by_name(correct, total, confidence) -> None:
    with pytest.raises(ValueError, match="total|correct|confidence"):
        wilson_interval(correct, total, confidence)


def test_accuracy_helpers() -> None:
    assert accuracy_interval(0.991, 2000) == wilson_interval(1982, 2000)
    assert format_accuracy(0.991, 2000).startswith("0.9910 [0.98")
    with pytest.raises(ValueError, match="accuracy"):
        accuracy_interval(1.5, 10)


def test_ties_and_rankings() -> None:
    assert is_tie(0.9830, 0.9815, 2000)                      # 3 images of 2,000: a tie
    assert not is_tie(0.99, 0.95, 2000)
    assert "tie" in compare("CNN", 0.9830, "ViT", 0.9815, 2000)
    assert compare("CNN", 0.99, "MLP", 0.95, 2000).startswith("CNN beats MLP")
    assert compare("CNN", 0.99, "MLP", 0.95, 800, split="validation").endswith("on 800 validation images")


def test_mean_std() -> None:
    assert mean_std([1.0]) == (1.0, 0.0)
    mean, std = mean_std([0.98, 0.99, 1.0])
    assert mean == pytest.approx(0.99) and std == pytest.approx(0.01)
    assert format_mean_std([0.98, 0.99, 1.0]) == "0.9900 ± 0.0100 (3 seeds)"
    with pytest.raises(ValueError):
        mean_std([])


def test_half_width_is_half_the_interval() -> None:
    low, high = accuracy_interval(0.985, 2000)
    assert half_width(0.985, 2000) == pytest.approx((high - low) / 2)
    assert half_width(0.985, 8000) < half_width(0.985, 2000)  # more images, narrower


def test_seed_difference_interval_is_welchs() -> None:
    """Worked value: Welch's t on (0.675, 0.299, 0.488) vs (0.426, 0.308, 0.442), df 2.59."""
    low, high = seed_difference_interval([0.675, 0.299, 0.488], [0.426, 0.308, 0.442])
    assert low == pytest.approx(-0.3106, abs=1e-4) and high == pytest.approx(0.5013, abs=1e-4)
    assert seed_difference_interval([0.5, 0.5], [0.4, 0.4]) == pytest.approx((0.1, 0.1))


def test_compare_seeds_needs_both_noises_ruled_out() -> None:
    spread = compare_seeds("a", [0.675, 0.299, 0.488], "b", [0.426, 0.308, 0.442], 2000)
    assert spread.startswith("a and b tie") and "holds 0" in spread
    clear = compare_seeds("a", [0.70, 0.707, 0.68], "b", [0.576, 0.462, 0.536], 2000)
    assert clear.startswith("a beats b") and "intervals apart on 2,000 test images" in clear
    # seeds agree, but 200 test images cannot tell 0.90 from 0.88
    few = compare_seeds("a", [0.90, 0.901, 0.899], "b", [0.88, 0.881, 0.879], 200, split="validation")
    assert few.startswith("a and b tie") and "overlap on 200 validation images" in few
    assert compare_seeds("b", [0.576, 0.462, 0.536], "a", [0.70, 0.707, 0.68], 2000).startswith("a beats b")


@pytest.mark.parametrize("values", [[0.5], [], "0.5", [0.5, 1.5], [0.5, True], None])
def test_compare_seeds_refuses_what_is_not_seeds(values) -> None:
    with pytest.raises(ValueError, match="values_a: expected the accuracies of at least 2 seeds"):
        compare_seeds("a", values, "b", [0.5, 0.6], 100)
