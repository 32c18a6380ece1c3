"""The course's training loop on several processes: DistributedDataParallel started by ``torchrun``.

A runnable module (notebook 07a, ``tests/test_distributed.py``)::

    torchrun --standalone --nproc_per_node=2 -m course_utils.distributed --epochs 3 --out runs/ddp
    python -m course_utils.distributed --epochs 3 --out runs/one      # the same run on one process

Each process initialises the process group (``gloo`` on the CPU, ``nccl`` on CUDA GPUs) from the
variables ``torchrun`` sets (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``),
loads MNIST with the course's loader, and trains a course model with :func:`course_utils.fit` exactly as
a notebook does: ``fit`` sees the initialised group and wraps the model in ``DistributedDataParallel``.
``--global-batch`` is the batch of one step of all processes together; each process takes its share.
Rank 0 alone evaluates on the test split and writes one checkpoint, ``model.safetensors`` (the
unwrapped model's ``state_dict``), and ``figures.json``. :func:`launch` runs the module in subprocesses,
through ``sys.executable -m torch.distributed.run`` (the ``torchrun`` command, found without ``PATH``);
:func:`run_here` runs it as one process in this one (no start-up: the single-process comparison).

Tested on Linux with gloo on the CPU. Not tested: NCCL on several GPUs, several machines, and Windows
(where :func:`launch` sets ``USE_LIBUV=0``, as PyTorch's Windows builds have lacked libuv).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import distributed as dist
from torch import nn

from .data import ImageSet, load_mnist
from .models import CNN, MLP
from .runsize import set_seed
from .training import evaluate, fit

CHECKPOINT = "model.safetensors"
FIGURES = "figures.json"
MODELS = ("mlp", "cnn")
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder that holds course_utils/


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The module's command line (see ``python -m course_utils.distributed --help``)."""
    parser = argparse.ArgumentParser(prog="python -m course_utils.distributed",
                                     description="Train a course model on MNIST on one or several processes.")
    parser.add_argument("--out", required=True, help="folder for model.safetensors and figures.json (rank 0)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--global-batch", type=int, default=128,
                        help="rows per step of all processes together; each process takes global-batch / world size")
    parser.add_argument("--lr", type=float, default=1e-3, help="the peak learning rate of fit's one-cycle schedule")
    parser.add_argument("--model", choices=MODELS, default="mlp")
    parser.add_argument("--train-limit", type=int, default=None, help="training digits (default: all)")
    parser.add_argument("--test-limit", type=int, default=None, help="test digits (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: one CUDA GPU per process when there are enough, else the CPU")
    parser.add_argument("--log-dir", default=None, help="a TensorBoard folder (rank 0 writes it)")
    return parser.parse_args(argv)


def make_model(name: str) -> nn.Module:
    """A fresh course model: ``"mlp"`` (``MLP(hidden=(256,))``) or ``"cnn"`` (notebook 02's ``CNN()``);
    images ``(B, 1, 28, 28)`` -> logits ``(B, 10)``.

    Raises:
        ValueError: ``name`` is not one of ``MODELS``.
    """
    if name == "mlp":
        return MLP(hidden=(256,))
    if name == "cnn":
        return CNN()
    raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {name!r}")


def load_data(train_limit: int | None = None, test_limit: int | None = None) -> tuple[ImageSet, ImageSet, ImageSet]:
    """MNIST as every notebook splits it: ``(train, val, test)``, ``val`` a seeded 10% of the training digits."""
    train, val = load_mnist("train").take(train_limit).split(fraction=0.1, seed=0)
    return train, val, load_mnist("test").take(test_limit)


def setup(device: str = "auto") -> tuple[int, int, torch.device]:
    """Join the process group when ``torchrun`` started this process; return ``(rank, world size, device)``.

    Without ``torchrun`` (no ``RANK`` / ``WORLD_SIZE`` in the environment) nothing is initialised:
    ``(0, 1, device)``, and :func:`course_utils.fit` trains as in any notebook.

    Args:
        device: ``"cuda"`` (GPU ``LOCAL_RANK``, backend ``nccl``), ``"cpu"`` (backend ``gloo``), or
            ``"auto"``: CUDA when this machine has a GPU for each of its processes, else the CPU.
    Raises:
        ValueError: ``device`` is none of those, or ``"cuda"`` without enough GPUs.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if device == "auto":
        device = "cuda" if torch.cuda.device_count() >= local_world else "cpu"
    if device == "cuda":
        if torch.cuda.device_count() < local_world:
            raise ValueError(f"device='cuda' needs a GPU per process: {local_world} processes on this machine, "
                             f"{torch.cuda.device_count()} GPUs")
        torch.cuda.set_device(local_rank)
    chosen = torch.device("cuda", local_rank) if device == "cuda" else torch.device("cpu")
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, chosen
    if device == "cuda":
        dist.init_process_group(backend="nccl", device_id=chosen)
    else:
        dist.init_process_group(backend="gloo")
    return dist.get_rank(), dist.get_world_size(), chosen


def train(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> dict[str, Any] | None:
    """Train ``args.model`` with :func:`course_utils.fit`; on rank 0, write the checkpoint and the figures.

    Returns:
        on rank 0 the figures written to ``figures.json``; ``None`` on the other ranks.
    Raises:
        ValueError: ``--global-batch`` is not a multiple of the number of processes.
    """
    if args.global_batch % world != 0:
        raise ValueError(f"--global-batch {args.global_batch} must be a multiple of the {world} processes")
    if rank == 0:  # rank 0 first: a download (when online) happens once, then the others read the files
        data = load_data(args.train_limit, args.test_limit)
    if world > 1:
        dist.barrier()
    if rank != 0:
        data = load_data(args.train_limit, args.test_limit)
    train_set, val, test = (part.to(device) for part in data)
    set_seed(args.seed)
    model = make_model(args.model).to(device)  # DistributedDataParallel copies rank 0's weights to all
    torch.manual_seed(args.seed + rank)  # each process its own dropout masks
    history = fit(model, train_set, val, epochs=args.epochs, lr=args.lr, batch_size=args.global_batch // world,
                  seed=args.seed, log_dir=args.log_dir)
    if rank != 0:
        return None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()}, str(out / CHECKPOINT))
    figures = {"world_size": world, "backend": dist.get_backend() if dist.is_initialized() else None,
               "device": device.type, "threads_per_process": torch.get_num_threads(), "model": args.model,
               "epochs": len(history.rows), "global_batch": args.global_batch,
               "batch_per_process": args.global_batch // world, "lr": args.lr,
               "train_size": len(train_set), "val_size": len(val), "test_size": len(test),
               "val_acc": history.rows[-1]["val_acc"], "test_acc": evaluate(model, test)["acc"],
               "train_seconds": history.seconds, "checkpoint": CHECKPOINT, "history": history.rows}
    (out / FIGURES).write_text(json.dumps(figures, indent=2) + "\n")
    print(f"rank 0 of {world}: wrote {CHECKPOINT} and {FIGURES} (the test accuracy is in {FIGURES})")
    return figures


def main(argv: list[str] | None = None) -> int:
    """Set up, train, and leave the process group; every rank but 0 trains silently."""
    args = parse_args(argv)
    rank, world, device = setup(args.device)
    try:
        with open(os.devnull, "w") as silent, \
                contextlib.redirect_stdout(silent) if rank != 0 else contextlib.nullcontext():
            train(args, rank, world, device)
        if world > 1:
            dist.barrier()  # every rank waits for rank 0's checkpoint: none tears the group down under another
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _cores() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _flags(options: dict[str, Any]) -> list[str]:
    """The module's command-line options: ``{"global_batch": 128}`` -> ``["--global-batch", "128"]``; ``None``
    leaves an option out."""
    return [str(item) for name, value in options.items() if value is not None
            for item in (f"--{name.replace('_', '-')}", value)]


def run_here(out: str | Path, **options: Any) -> dict[str, Any]:
    """Run the module in this process, without ``torchrun``: one process, as ``python -m course_utils.distributed``.

    Args:
        out, options: as in :func:`launch`.
    Returns:
        the figures of ``figures.json``, plus ``wall_seconds`` (data loading included) and ``command``.
    Raises:
        RuntimeError: this process is already in a process group (started by ``torchrun``).
    """
    if dist.is_initialized():
        raise RuntimeError("run_here trains one process; this one is already in a process group: call train()")
    argv = ["--out", str(out), *_flags(options)]
    start = time.perf_counter()
    main(argv)
    figures = json.loads((Path(out) / FIGURES).read_text())
    return {**figures, "wall_seconds": time.perf_counter() - start,
            "command": " ".join(["python -m course_utils.distributed", *argv])}


def launch(nproc: int, out: str | Path, timeout: float = 600, **options: Any) -> dict[str, Any]:
    """Run this module on ``nproc`` processes (``torchrun``) or, for ``nproc=1``, as one plain process.

    Each process gets ``cores // nproc`` threads (``OMP_NUM_THREADS``), so the runs share the same cores.

    Args:
        nproc: processes on this machine.
        out: the folder for the checkpoint and ``figures.json`` (relative to the current folder).
        timeout: seconds before the run is stopped (``subprocess.TimeoutExpired``).
        options: the module's options, ``global_batch=128`` for ``--global-batch 128``; ``None`` leaves one out.
    Returns:
        the figures of ``figures.json``, plus ``wall_seconds`` (start to end, process start-up included),
        ``command`` (as typed in a terminal) and ``log`` (rank 0's printed lines).
    Raises:
        ValueError: ``nproc`` is below 1.
        RuntimeError: the run failed; the message ends with its last output.
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc: expected a number of processes of at least 1, got {nproc!r}")
    module = ["-m", "course_utils.distributed", "--out", str(out), *_flags(options)]
    runner = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, _cores() // nproc)),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
    if sys.platform == "win32":
        env["USE_LIBUV"] = "0"  # Windows builds have shipped without libuv, the store's default (pytorch#139990)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *runner, *module], env=env, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-60:])  # a rank's own error, then torchrun's
        raise RuntimeError(f"the run on {nproc} process(es) exited with status {done.returncode}:\n{tail}")
    figures = json.loads((Path(out) / FIGURES).read_text())
    shown = " ".join(["torchrun", *runner[2:]] if nproc > 1 else ["python"]) + " " + " ".join(module)
    return {**figures, "wall_seconds": wall, "command": shown, "log": done.stdout}


if __name__ == "__main__":
    raise SystemExit(main())
