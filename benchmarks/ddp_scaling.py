"""DDP scaling: training steps per second with 1 and N processes (torchrun), same run.

Each measurement is `torchrun --nproc_per_node=P -m pnl_da run ...` (PNL on uci->mnist-sample
by default) with the same per-process batch (weak scaling, as timm reports images per second),
read from the run's metrics.jsonl (the training windows between evaluations, the first one left
out as warm-up). Scaling efficiency = images/s with P processes / (P x images/s with 1). On a
CPU every process gets ``--threads`` torch threads (gloo all-reduces the gradients); a
one-process run with P x threads is printed beside it, the other way to spend the same cores.

    python benchmarks/ddp_scaling.py [--processes 2] [--threads 1] [--steps 300]
        [--batch 64] [--out benchmarks/results/ddp_scaling_cpu.md] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def measure(processes: int, threads: int, args, work: Path) -> dict:
    """Steps/s of one run on ``processes`` processes with ``threads`` torch threads each."""
    out = work / f"p{processes}t{threads}"
    batch = args.batch * processes  # the global batch: the same per process
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={processes}", "-m", "pnl_da", "run", args.benchmark,
               args.task, f"trainer.steps={args.steps}", f"trainer.eval_every={args.steps // 3}",
               f"trainer.batch_size={batch}", "trainer.progress=false", *args.overrides,
               "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stderr[-2000:]}")
    windows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [w["steps_per_s"] for w in windows[1:]]  # the first window holds the warm-up
    steps_per_s = statistics.mean(rates)
    return {"processes": processes, "threads": threads, "batch": batch,
            "steps_per_s": steps_per_s, "images_per_s": steps_per_s * batch * 2,  # + target
            "device": json.loads((out / "env.json").read_text())["device"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64, help="images per process and domain")
    parser.add_argument("--benchmark", default="digits")
    parser.add_argument("--task", default="uci->mnist-sample")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE for every run, e.g. "
                        "trainer.device=cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pnl-da-scaling-") as work:
        base = measure(1, args.threads, args, Path(work))
        many = measure(args.processes, args.threads, args, Path(work))
        wide = measure(1, args.threads * args.processes, args, Path(work))
    efficiency = many["images_per_s"] / (args.processes * base["images_per_s"])
    rows = [base, many, wide]
    lines = [f"# DDP scaling: {args.benchmark} {args.task}, 1 and {args.processes} processes",
             "", f"Machine: {machine()}; device {base['device']}; {datetime.date.today()}. "
             f"PNL (default options{', ' + ' '.join(args.overrides) if args.overrides else ''}), "
             f"{args.batch} source + {args.batch} target images per process and step, "
             f"{args.steps} steps; steps/s from metrics.jsonl after the first evaluation "
             "window.", "",
             "| processes | torch threads each | global batch | steps/s | images/s "
             "| vs 1 process |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['processes']} | {row['threads']} | {row['batch']} | "
                     f"{row['steps_per_s']:.2f} | {row['images_per_s']:.0f} | "
                     f"{row['images_per_s'] / base['images_per_s']:.2f}x |")
    lines += ["", f"Scaling efficiency with {args.processes} processes: {efficiency:.2f} "
              f"(images/s with {args.processes} / ({args.processes} x images/s with 1))."]
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
