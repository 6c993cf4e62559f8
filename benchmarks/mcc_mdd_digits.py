"""MCC and MDD on the digits choice tasks, pnl-da's against tllib's loss run through the same
data, model and trainer.

tllib's published digits numbers use other tasks, so the comparison is made here: each method
with its default configuration (LeNet with the 256-d bottleneck, tllib's 1024 for MDD, 3000
steps of 64 + 64 images, lr 0.01 with tllib's decay) on uci->mnist-sample and
mnist-sample->uci, seeds 0, 1, 2. With ``--tllib DIR`` (a checkout of tllib's source outside
this repository; it is not a dependency) the same runs are made again with tllib's own loss
module in place of pnl-da's, one component swapped and nothing else. The reference in
docs/method.md section 7 (tllib's whole modules on these digits) is printed beside them.

    python benchmarks/mcc_mdd_digits.py [--methods mcc,mdd] [--tasks uci->mnist-sample]
        [--seeds 0,1,2] [--tllib /tmp/tllib_src] [--jobs 2]
        [--out benchmarks/results/mcc_mdd_digits.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import digits_run, emit, in_fresh_processes, machine  # noqa: E402

# docs/method.md section 7: tllib's modules on these digits (seeds 0 / 1 / 2)
REFERENCE = {("mcc", "uci->mnist-sample"): [74.95, 83.01, 85.61],
             ("mcc", "mnist-sample->uci"): [97.50]}


def swap_in_tllib(root: str) -> None:
    """pnl-da's MCC and MDD methods compute tllib's own loss modules from here on."""
    from benchmarks.tllib_losses_fixture import tllib_modules
    from pnl_da.methods import mcc, mdd

    theirs_mcc, theirs_mdd = tllib_modules(root)
    mcc.MinimumClassConfusionLoss = theirs_mcc.MinimumClassConfusionLoss
    mdd.ClassificationMarginDisparityDiscrepancy = (
        theirs_mdd.ClassificationMarginDisparityDiscrepancy)


def run(method: str, task: str, seed: int, root: Path, tllib: str | None = None,
        threads: int = 0) -> float:
    """One run (reused when finished); with ``tllib``, tllib's loss is swapped in first."""
    from pnl_da.data.registry import get_benchmark

    if tllib:
        swap_in_tllib(tllib)
    source, target = get_benchmark("digits").parse_task(task)
    out = root / f"{source.name}2{target.name}" / method / f"seed{seed}"
    return digits_run(method, task, seed, out, threads=threads)


def cell(values: list[float]) -> str:
    shown = " / ".join(f"{v:.2f}" for v in values)
    if len(values) > 1:
        shown += f" (mean {statistics.mean(values):.2f} ± {statistics.stdev(values):.2f})"
    return shown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="mcc,mdd")
    parser.add_argument("--tasks", default="uci->mnist-sample,mnist-sample->uci")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tllib", default=None, help="tllib's source (its tllib/ inside)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one thread each)")
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/mcc_mdd_digits"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    methods, tasks = args.methods.split(","), args.tasks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]

    plans = {("ours", m, t, s): (m, t, s, args.runs / "pnl-da", None)
             for m in methods for t in tasks for s in seeds}
    if args.tllib:
        plans.update({("tllib", m, t, s): (m, t, s, args.runs / "tllib-loss", args.tllib)
                      for m in methods for t in tasks for s in seeds})
    threads = 1 if args.jobs > 1 else 0
    acc = in_fresh_processes(run, {key: (*plan, threads) for key, plan in plans.items()},
                             args.jobs)
    ours = {(m, t): [acc["ours", m, t, s] for s in seeds] for m in methods for t in tasks}
    theirs = ({(m, t): [acc["tllib", m, t, s] for s in seeds] for m in methods for t in tasks}
              if args.tllib else {})
    lines = ["# MCC and MDD on the digits choice tasks", "",
             f"`python benchmarks/mcc_mdd_digits.py --methods {args.methods} --tasks "
             f"'{args.tasks}' --seeds {args.seeds} --jobs {args.jobs}"
             f"{' --tllib DIR' if args.tllib else ''}`. Machine: {machine()}"
             + ("; one torch thread a run." if args.jobs > 1 else "."), "",
             "Default configurations (3000 steps of 64 + 64 images, LeNet with a 256-d bottleneck, "
             "tllib's 1024 for MDD); "
             "target accuracy %, seeds " + ", ".join(map(str, seeds)) + ".", "",
             "| method | task | pnl-da | tllib's loss in pnl-da | tllib's modules "
             "(docs/method.md section 7) |", "|---|---|---|---|---|"]
    for (method, task), values in ours.items():
        other = theirs.get((method, task))
        reference = REFERENCE.get((method, task))
        lines.append(f"| {method} | {task} | {cell(values)} | "
                     f"{cell(other) if other else 'not run'} | "
                     f"{cell(reference) if reference else 'none'} |")
    emit("\n".join(lines) + "\n", args.out)
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(
            {"ours": {f"{m} {t}": v for (m, t), v in ours.items()},
             "tllib_loss": {f"{m} {t}": v for (m, t), v in theirs.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
