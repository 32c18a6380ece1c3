"""Run sizes, device choice, plans and seeding (course_utils.runsize)."""
from __future__ import annotations

import dataclasses
import random
import time
import warnings

import numpy as np
import pytest
import torch

from course_utils import runsize
from course_utils.runsize import PLANS, RUN_SIZES, get_device, get_run_size, run_plan, set_seed


@pytest.mark.parametrize("cuda, expected", [(True, "gpu"), (False, "cpu")])
def test_size_is_chosen_by_cuda_when_the_variable_is_unset(monkeypatch, cuda, expected):
    monkeypatch.delenv("COURSE_RUN_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert get_run_size() == expected
    assert run_plan("01_mnist_mlp").size == expected


@pytest.mark.filterwarnings("ignore:run size 'gpu' on a machine without a CUDA GPU")
@pytest.mark.parametrize("value, expected", [("smoke", "smoke"), ("cpu", "cpu"), (" GPU ", "gpu"), ("", "cpu")])
def test_environment_variable_overrides_the_choice(monkeypatch, value, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("COURSE_RUN_SIZE", value)
    assert get_run_size() == expected
    assert run_plan("02_mnist_cnn").size == expected


def test_unknown_size_in_the_variable_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("COURSE_RUN_SIZE", "fast")
    with pytest.raises(ValueError) as error:
        get_run_size()
    message = str(error.value)
    assert "COURSE_RUN_SIZE" in message and "'fast'" in message
    assert all(size in message for size in RUN_SIZES)
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        run_plan("01_mnist_mlp")


@pytest.mark.parametrize("written", ["smoke", "SMOKE", " Smoke ", "smoke\n"])
def test_the_argument_reads_like_the_environment_variable(monkeypatch, written):
    """run_plan(size=...) accepts what COURSE_RUN_SIZE accepts: case and spaces do not matter."""
    monkeypatch.setenv("COURSE_RUN_SIZE", written)
    assert get_run_size() == "smoke"
    assert run_plan("01_mnist_mlp", size=written).size == "smoke"


def test_gpu_without_cuda_warns(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="without a CUDA GPU"):
        plan = run_plan("01_mnist_mlp", size="GPU")
    assert plan.size == "gpu" and plan.device.type == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_plan("01_mnist_mlp", size="cpu")


def test_unknown_size_argument_is_a_clear_error():
    for bad in ("huge", 3, ""):
        with pytest.raises(ValueError, match="is not a run size"):
            run_plan("01_mnist_mlp", size=bad)
    with pytest.raises(ValueError) as error:
        run_plan("01_mnist_mlp", size="huge")
    assert "'huge'" in str(error.value) and all(size in str(error.value) for size in RUN_SIZES)


def test_plan_exposes_its_settings_as_attributes():
    plan = run_plan("01_mnist_mlp", size="smoke")
    expected = PLANS["01_mnist_mlp"]["smoke"]
    assert (plan.notebook, plan.size) == ("01_mnist_mlp", "smoke")
    assert plan.device == get_device()
    assert plan.epochs == expected["epochs"] and plan.train_limit == expected["train_limit"]
    assert "smoke" in str(plan) and f"epochs={expected['epochs']}" in str(plan)
    with pytest.raises(AttributeError, match="epochs"):  # the message lists the settings there are
        plan.epochz


def test_plan_settings_are_a_copy():
    plan = run_plan("01_mnist_mlp", size="cpu")
    plan.settings["epochs"] = 999
    assert PLANS["01_mnist_mlp"]["cpu"]["epochs"] != 999
    assert run_plan("01_mnist_mlp", size="cpu").epochs == PLANS["01_mnist_mlp"]["cpu"]["epochs"]


def test_plan_elapsed_counts_from_the_plan_start(monkeypatch):
    before = time.perf_counter()
    plan = run_plan("00_setup_and_tour", size="smoke")
    assert before <= plan.started <= time.perf_counter()
    plan = dataclasses.replace(plan, started=100.0)
    monkeypatch.setattr(runsize.time, "perf_counter", lambda: 112.5)
    assert plan.elapsed() == 12.5


def test_unknown_notebook_names_the_known_ones():
    with pytest.raises(KeyError) as error:
        run_plan("01_mnist_mpl", size="smoke")
    assert "01_mnist_mpl" in str(error.value) and "01_mnist_mlp" in str(error.value)


@pytest.mark.parametrize("notebook", sorted(PLANS))
def test_every_plan_has_every_size_with_the_same_settings(notebook):
    sizes = PLANS[notebook]
    assert set(sizes) == set(RUN_SIZES), f"{notebook}: sizes {sorted(sizes)}"
    keys = [set(settings) for settings in sizes.values()]
    assert all(k == keys[0] for k in keys), f"{notebook}: a setting is missing at some run size: {keys}"


@pytest.mark.parametrize("notebook", sorted(PLANS))
def test_smoke_is_never_bigger_than_cpu(notebook):
    """smoke must stay a quick test: no data limit of None (the whole split), no more epochs/steps than cpu."""
    smoke, cpu = PLANS[notebook]["smoke"], PLANS[notebook]["cpu"]
    for key, value in smoke.items():
        if key.endswith("_limit"):
            assert value is not None, f"{notebook}.{key}: smoke must not use the whole split"
        sized = key.endswith("_limit") or "epochs" in key or "steps" in key
        if sized and isinstance(cpu[key], int):
            assert value <= cpu[key], f"{notebook}.{key}: smoke {value} > cpu {cpu[key]}"


def _draw() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_run_plan_seeds_everything_reproducibly():
    run_plan("01_mnist_mlp", size="smoke")
    first = _draw()
    run_plan("01_mnist_mlp", size="smoke")
    assert _draw() == first
    run_plan("01_mnist_mlp", size="smoke", seed=1)
    assert _draw() != first


def test_set_seed_makes_a_model_initialisation_reproducible():
    set_seed(3)
    a = torch.nn.Linear(4, 2).weight.detach().clone()
    set_seed(3)
    b = torch.nn.Linear(4, 2).weight.detach().clone()
    assert torch.equal(a, b)
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


def test_device_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runsize.get_device().type == "cuda"
