"""What every benchmark prints the same way: the machine, and the table (to stdout and --out)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from pnl_da.engine.run import cpu_model


def machine() -> str:
    """The GPU where there is one, else the CPU; torch threads and version."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return (f"{cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}")


def pnl_da(*argv, env=None) -> subprocess.CompletedProcess:
    """``python -m pnl_da ARGV`` from the repository, its output captured; a failure stops the
    benchmark with the command and its error."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "pnl_da", *map(str, argv)], cwd=root, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"pnl-da {shlex.join(map(str, argv))} failed:\n{done.stderr}")
    return done


def emit(text: str, out: Path | None) -> None:
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def sync(device) -> None:
    """Wait for the device, so that a clock read after it covers the queued work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_trainer(trainer, warmup: int, steps: int) -> dict:
    """Run ``warmup`` then ``steps`` of the trainer's real train_step; returns the warm-up
    seconds, seconds per timed step, peak GPU memory (GiB; nan on CPU) and the fraction of the
    timed steps spent producing batches."""
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for step in range(warmup):  # worker start-up, cudnn autotuning, compilation
        trainer.train_step(step)
    sync(trainer.device)
    warmup_s = time.perf_counter() - start
    trainer.window.data_time = 0.0
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        trainer.train_step(step)
    sync(trainer.device)
    elapsed = time.perf_counter() - start
    return {"warmup_s": warmup_s, "per_step": elapsed / steps,
            "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
            "data_wait": trainer.window.data_time / elapsed}
