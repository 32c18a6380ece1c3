"""The training loop on several processes (course_utils.distributed, and fit_tensors under torch.distributed).

- A 2-process CPU (gloo) job started by ``torchrun`` trains an MLP on MNIST to the single-process run's
  test accuracy within 1 point, and writes exactly one checkpoint that safetensors loads back to the
  recorded accuracy; rank 0 alone writes the TensorBoard log.
- Two processes each given half of a global batch take the same steps as one process given all of it
  (the same rows, the same averaged gradient), and every process returns the same History.
- The shards of an epoch cover every row, one share per process, and the helpers refuse bad input.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import distributed as dist
from torch import multiprocessing, nn
from torch.nn import functional as F

from course_utils import distributed, training
from course_utils.distributed import CHECKPOINT, FIGURES, launch, load_data, make_model, run_here, setup
from course_utils.training import evaluate

# The same global settings for one process and for two: 64 digits per process per step on two.
SETTINGS = {"epochs": 3, "global_batch": 128, "lr": 3e-3, "train_limit": 4000, "test_limit": None, "device": "cpu"}


@pytest.mark.slow
def test_two_processes_reach_one_process_accuracy_and_write_one_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_OFFLINE", "1")  # the embedded MNIST, whatever the network
    one = run_here(tmp_path / "one", **SETTINGS)  # one process: this one
    two = launch(2, tmp_path / "two", log_dir=tmp_path / "runs", **SETTINGS)

    assert (one["world_size"], one["backend"], one["batch_per_process"]) == (1, None, 128)
    assert (two["world_size"], two["backend"], two["batch_per_process"]) == (2, "gloo", 64)
    assert two["command"].startswith("torchrun --standalone --nproc_per_node=2 -m course_utils.distributed")
    assert abs(two["test_acc"] - one["test_acc"]) <= 0.01, (one["test_acc"], two["test_acc"])
    assert two["test_acc"] >= 0.85, "both runs learned (two broken runs could tie too)"
    assert "epoch 3/3" in two["log"] and two["log"].count("rank 0 of 2") == 1, "rank 0 alone prints"

    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted([CHECKPOINT, FIGURES])
    assert len(list(tmp_path.rglob("*.safetensors"))) == 2, "one checkpoint per run"
    model = make_model(two["model"])
    model.load_state_dict(load_file(str(tmp_path / "two" / CHECKPOINT)))
    test = load_data(SETTINGS["train_limit"], SETTINGS["test_limit"])[2]
    assert len(test) == two["test_size"]
    assert evaluate(model, test)["acc"] == two["test_acc"]
    assert len(list((tmp_path / "runs").glob("events.out.tfevents.*"))) == 1, "rank 0 alone writes the log"


def _separable(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=generator)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def _loss_and_hits(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(x)
    return F.cross_entropy(logits, y), (logits.argmax(1) == y).sum()


def _fit_tiny(batch_size: int, patience: int | None = None) -> tuple[nn.Module, training.History]:
    """A linear model on 96 rows, with a validation metric that stops it after epoch 4 (best: epoch 2)."""
    x, y = _separable(96)
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    scores = iter([0.5, 0.6, 0.55, 0.55, 0.9])

    def validate(m: nn.Module) -> dict[str, float]:
        assert not isinstance(m, nn.parallel.DistributedDataParallel), "evaluate gets the model itself"
        return {"val_acc": next(scores)}

    history = training.fit_tensors(model, (x, y), _loss_and_hits, epochs=5, batch_size=batch_size, lr=0.05,
                                   evaluate=validate, patience=patience, progress=True)
    return model, history


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    """One process of the two: joins the group through a file, trains, saves what it saw."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model, history = _fit_tiny(batch_size=8, patience=2)
        torch.save({"weights": model.weight.detach(), "rows": history.rows, "steps": len(history.step_losses),
                    "stopped_early": history.stopped_early, "best_epoch": history.best_epoch},
                   Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_with_half_the_batch_take_the_steps_of_one_process(tmp_path, capsys):
    # fork: the two processes start with everything this one has imported (spawn would import it all again). A
    # child forked after this process ran autograd on a GPU cannot run autograd at all, so such a process spawns.
    fork = sys.platform == "linux" and not torch.cuda.is_initialized()
    context = multiprocessing.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                                              join=False, start_method="fork" if fork else "spawn")
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):  # raises if a process failed
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two processes did not finish within 120 s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    torch.manual_seed(0)
    model, history = _fit_tiny(batch_size=16, patience=2)  # one process, the whole global batch

    assert ranks[0]["rows"] == ranks[1]["rows"], "every process returns the same History"
    assert ranks[0]["stopped_early"] and ranks[1]["stopped_early"] and history.stopped_early
    assert ranks[0]["best_epoch"] == ranks[1]["best_epoch"] == history.best_epoch == 2
    assert len(ranks[0]["rows"]) == len(history.rows) == 4
    # 96 rows: 48 per process, 6 steps of 8 an epoch, as one process takes 6 steps of 16
    assert ranks[0]["steps"] == ranks[1]["steps"] == len(history.step_losses) == 4 * 6
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"]), "the replicas stay identical"
    torch.testing.assert_close(ranks[0]["weights"], model.weight.detach(), atol=1e-5, rtol=0)
    for distributed_row, row in zip(ranks[0]["rows"], history.rows):
        assert distributed_row["train_loss"] == pytest.approx(row["train_loss"], abs=1e-5)
        assert distributed_row["train_acc"] == row["train_acc"] and distributed_row["val_acc"] == row["val_acc"]


def test_the_shards_of_an_epoch_cover_every_row_once_per_global_batch():
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    shards = [training.shard_rows(order, rank, 4) for rank in range(4)]
    assert [len(s) for s in shards] == [3] * 4, "ceil(10 / 4) rows each: every process takes as many steps"
    assert set(torch.cat(shards).tolist()) == set(range(10))
    # step k of the 4 processes (2 rows each) holds rows 8k .. 8k + 7 of the order, as one process with 8 would
    assert sorted(torch.cat([s[:2] for s in shards]).tolist()) == sorted(order[:8].tolist())
    assert training.shard_rows(order[:1], 2, 3).tolist() == order[:1].tolist(), "fewer rows than processes: repeated"
    assert torch.equal(training.shard_rows(order, 0, 1), order), "one process: the order itself"


@pytest.mark.parametrize("order, rank, world, message", [
    (torch.arange(4), 2, 2, "0 <= rank < world, got rank=2, world=2"),
    (torch.arange(4), 0, 0, "world >= 1"),
    (torch.arange(0), 0, 1, "non-empty 1-D tensor of row indices, got \\(0,\\)"),
    ([0, 1], 0, 1, "got list"),
])
def test_shard_rows_refuses_bad_input_by_name(order, rank, world, message):
    with pytest.raises(ValueError, match=message):
        training.shard_rows(order, rank, world)


def test_without_torchrun_setup_initialises_nothing(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert setup("cpu") == (0, 1, torch.device("cpu"))
    assert not dist.is_initialized()


def test_bad_input_is_refused_by_name(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="device: expected 'auto', 'cpu' or 'cuda', got 'tpu'"):
        setup("tpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ValueError, match="device='cuda' needs a GPU per process"):
        setup("cuda")
    with pytest.raises(ValueError, match="model: expected one of mlp, cnn, got 'vit'"):
        make_model("vit")
    with pytest.raises(ValueError, match="nproc: expected a number of processes of at least 1, got 0"):
        launch(0, tmp_path)
    args = distributed.parse_args(["--out", str(tmp_path), "--global-batch", "127"])
    with pytest.raises(ValueError, match="--global-batch 127 must be a multiple of the 2 processes"):
        distributed.train(args, rank=0, world=2, device=torch.device("cpu"))


class _FakeRun:
    """Stands in for subprocess.run: records the command and environment, answers as a run would."""

    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.returncode, self.stderr, self.calls = returncode, stderr, []

    def __call__(self, command: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
        self.calls.append((command, env))
        out = Path(command[command.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / FIGURES).write_text(json.dumps({"test_acc": 0.5}))
        return subprocess.CompletedProcess(command, self.returncode, "rank 0 line\n", self.stderr)


def test_launch_runs_torchrun_through_this_python(tmp_path, monkeypatch):
    fake = _FakeRun()
    monkeypatch.setattr(subprocess, "run", fake)
    monkeypatch.setattr(distributed, "_cores", lambda: 4)
    monkeypatch.setenv("PYTHONPATH", "elsewhere")
    result = launch(2, tmp_path / "two", epochs=3, global_batch=64, train_limit=None)
    command, env = fake.calls[0]
    assert command[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert command[5:] == ["-m", "course_utils.distributed", "--out", str(tmp_path / "two"), "--epochs", "3",
                           "--global-batch", "64"], "None leaves an option out"
    assert env["OMP_NUM_THREADS"] == "2", "4 cores shared by 2 processes"
    assert env["PYTHONPATH"].split(os.pathsep) == [str(distributed.PACKAGE_ROOT), "elsewhere"]
    assert result["test_acc"] == 0.5 and result["log"] == "rank 0 line\n" and result["wall_seconds"] >= 0
    assert result["command"] == (f"torchrun --standalone --nproc_per_node=2 -m course_utils.distributed "
                                 f"--out {tmp_path / 'two'} --epochs 3 --global-batch 64")
    launch(1, tmp_path / "one")
    command, env = fake.calls[1]
    assert command[:3] == [sys.executable, "-m", "course_utils.distributed"] and env["OMP_NUM_THREADS"] == "4"
    assert "USE_LIBUV" not in env
    monkeypatch.setattr(sys, "platform", "win32")
    launch(2, tmp_path / "two")
    assert fake.calls[2][1]["USE_LIBUV"] == "0", "Windows builds of PyTorch have no libuv"


def test_a_failed_run_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "run", _FakeRun(2, "usage: ...\nerror: argument --model: invalid choice: 'vit'"))
    with pytest.raises(RuntimeError, match=r"on 1 process\(es\) exited with status 2:\n(.|\n)*invalid choice: 'vit'"):
        launch(1, tmp_path, model="vit")


def test_run_here_trains_one_process_writes_one_checkpoint_and_says_how_to_type_it(tmp_path, monkeypatch, capsys):
    """`python -m course_utils.distributed` without torchrun, in this process: fit, one checkpoint, the figures."""
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    figures = run_here(tmp_path, epochs=1, train_limit=500, test_limit=200, device="cpu", log_dir=None)
    sizes = (figures["world_size"], figures["train_size"], figures["val_size"], figures["test_size"])
    assert sizes == (1, 450, 50, 200) and figures["backend"] is None
    assert figures["epochs"] == 1 and 0 <= figures["test_acc"] <= 1 and figures["history"][0]["epoch"] == 1
    assert figures["command"] == (f"python -m course_utils.distributed --out {tmp_path} --epochs 1 --train-limit 500 "
                                  "--test-limit 200 --device cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT, FIGURES])
    assert "rank 0 of 1: wrote model.safetensors" in capsys.readouterr().out


def test_run_here_refuses_a_process_that_is_already_in_a_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        with pytest.raises(RuntimeError, match="already in a process group"):
            run_here(tmp_path / "out")
    finally:
        dist.destroy_process_group()
