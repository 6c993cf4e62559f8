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


def digits_run(method: str, task: str, seed: int, out: Path, overrides=(),
               threads: int = 0) -> float:
    """One default-recipe digits run (reused when finished); its target accuracy."""
    from pnl_da.data.registry import get_benchmark
    from pnl_da.engine.run import execute
    from pnl_da.engine.tasks import compose

    source, target = get_benchmark("digits").parse_task(task)
    cfg = compose([f"method={method}", f"benchmark.source={source.name}",
                   f"benchmark.target={target.name}", f"seed={seed}",
                   "trainer.progress=false", "trainer.tensorboard=false",
                   *([f"trainer.threads={threads}"] if threads else []), *overrides])
    return execute(cfg, out, resume=True, log=lambda message: None)["metrics"]["accuracy"]


def in_fresh_processes(function, calls: dict, jobs: int) -> dict:
    """``function(*args)`` for each key's args, ``jobs`` at a time, each in a process of its own
    (spawned, so what one call patches, a tllib swap, stays in it); results by key."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        futures = {key: pool.submit(function, *args) for key, args in calls.items()}
        return {key: future.result() for key, future in futures.items()}
