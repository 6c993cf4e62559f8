"""Two runs sharing the CPU: two demo runs side by side against the same two one after the other.

Each run is the demo's command (`pnl-da run digits 'uci->mnist-sample'`, PNL, seed 0, 3000
steps) in a process of its own, timed from its start to its exit. Measured in the same call:

- one after the other, then side by side, with pnl-da's choice (pnl_da/engine/threads.py:
  the cores the process may use, OpenMP threads that sleep while they wait);
- the same two shapes with OpenMP's own waiting (threads spin a while before they sleep; set
  here with GOMP_SPINCOUNT=300000, libgomp's default, which pnl-da leaves alone), and side by
  side with one torch thread each (what joblib and torchrun give their children), both at
  ``--baseline-steps`` steps: spinning side by side takes ten times as long.

The first run one after the other is the demo on an idle machine (`make demo`'s figure).

    python benchmarks/sharing_cpu.py [--steps 3000] [--baseline-steps 400]
        [--out benchmarks/results/sharing_cpu.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit, machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEMO = ["run", "digits", "uci->mnist-sample"]


def start(out: Path, steps: int, env: dict, extra=()) -> tuple[subprocess.Popen, float]:
    command = [sys.executable, "-m", "pnl_da", *DEMO, f"trainer.steps={steps}", *extra,
               "--out", str(out)]
    log = open(out.with_suffix(".log"), "w")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log), time.time()


def finish(process: subprocess.Popen, began: float, out: Path) -> dict:
    code = process.wait()
    seconds = time.time() - began
    if code:
        raise SystemExit(f"{out} failed:\n{out.with_suffix('.log').read_text()[-2000:]}")
    result = json.loads((out / "result.json").read_text())
    return {"seconds": seconds, "accuracy": result["metrics"]["accuracy"],
            "threads": json.loads((out / "env.json").read_text())["cpu_threads"]}


def sequential(work: Path, name: str, steps: int, env: dict, extra=()) -> dict:
    runs, began = [], time.time()
    for i in range(2):
        out = work / f"{name}-seq{i}"
        runs.append(finish(*start(out, steps, env, extra), out))
    return {"wall": time.time() - began, "runs": runs}


def concurrent(work: Path, name: str, steps: int, env: dict, extra=()) -> dict:
    began = time.time()
    started = [(start(work / f"{name}-conc{i}", steps, env, extra), work / f"{name}-conc{i}")
               for i in range(2)]
    runs = [finish(*p, out) for p, out in started]
    return {"wall": time.time() - began, "runs": runs}


def row(what: str, steps: int, shape: str, measured: dict, sequential_wall: float) -> str:
    runs = measured["runs"]
    each = " / ".join(f"{r['seconds']:.1f}" for r in runs)
    accuracy = " / ".join(f"{r['accuracy']:.2f}" for r in runs)
    ratio = measured["wall"] / sequential_wall
    return (f"| {what} | {runs[0]['threads']} | {steps} | {shape} | {measured['wall']:.1f} | "
            f"{ratio:.2f}x | {each} | {accuracy} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="the demo's steps")
    parser.add_argument("--baseline-steps", type=int, default=400,
                        help="steps of the spinning and one-thread comparisons")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    # pnl-da's choice: what the command line sets when the environment does not say
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS",
                         "MKL_NUM_THREADS")}
    spinning = {**base, "GOMP_SPINCOUNT": "300000"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seq = sequential(work, "shared", args.steps, base)
        conc = concurrent(work, "shared", args.steps, base)
        short_seq = sequential(work, "short", args.baseline_steps, base)
        spin_seq = sequential(work, "spin", args.baseline_steps, spinning)
        spin_conc = concurrent(work, "spin", args.baseline_steps, spinning)
        one_conc = concurrent(work, "one", args.baseline_steps, base, ["trainer.threads=1"])
    demo = seq["runs"][0]
    lines = [
        "# Two runs sharing the CPU", "",
        f"`python benchmarks/sharing_cpu.py --steps {args.steps} --baseline-steps "
        f"{args.baseline_steps}`, {datetime.date.today()}. Machine: {machine()}.", "",
        "Each run: `pnl-da run digits 'uci->mnist-sample'` (PNL, seed 0) in its own process, "
        "timed from start to exit. Ratio: the pair's wall time over two runs of pnl-da's choice "
        "and the same length one after the other, measured in this call.", "",
        "| waiting threads | torch threads each | steps | two runs | wall s | ratio | each run s "
        "| accuracy % |",
        "|---|---|---|---|---|---|---|---|",
        row("sleep (pnl-da)", args.steps, "one after the other", seq, seq["wall"]),
        row("sleep (pnl-da)", args.steps, "side by side", conc, seq["wall"]),
        row("sleep (pnl-da)", args.baseline_steps, "one after the other", short_seq,
            short_seq["wall"]),
        row("spin (OpenMP default)", args.baseline_steps, "one after the other", spin_seq,
            short_seq["wall"]),
        row("spin (OpenMP default)", args.baseline_steps, "side by side", spin_conc,
            short_seq["wall"]),
        row("sleep, trainer.threads=1", args.baseline_steps, "side by side", one_conc,
            short_seq["wall"]),
        "",
        f"The demo alone on the idle machine (the first run above): {demo['seconds']:.1f} s, "
        f"target accuracy {demo['accuracy']:.2f}%.",
    ]
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
