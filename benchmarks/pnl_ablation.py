"""Ablation of PNL's options on digits uci->mnist-sample (LeNet, default 3000-step schedule).

Each row changes one option of the starting point (PNL stacked on DANN, random k=2 negatives,
both directions, weak generator view, ramp 0.3) and reports target accuracy per seed.
Finished runs are reused, so an interrupted ablation continues where it stopped.

    python benchmarks/pnl_ablation.py [--seeds 0] [--jobs 2] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pnl_da.config import to_yaml  # noqa: E402
from pnl_da.engine.run import finished_result  # noqa: E402
from pnl_da.engine.sweep import labelled_sweep, launch  # noqa: E402

# Every PNL row is the starting point plus one change; the starting point is pinned here, so
# the table does not move when configs/method/pnl.yaml changes its defaults.
START = ["method=pnl", "method.align=dann", "method.k=2", "method.selection=random",
         "method.replacement=false", "method.exchange=both", "method.generator_view=weak",
         "method.weight=1.0", "method.ramp=0.3", "method.diversity=0.0", "method.predict=mean"]
VARIANTS: dict[str, list[str]] = {
    "start: pnl + dann, random k=2, both, weak view, weight 1, ramp 0.3": START,
    "align=none (PNL alone)": [*START, "method.align=none"],
    "align=cdan": [*START, "method.align=cdan"],
    "selection=lowest": [*START, "method.selection=lowest"],
    "selection=sampled": [*START, "method.selection=sampled"],
    "selection=threshold (tau 0.05)": [*START, "method.selection=threshold"],
    "random with replacement (authors' code)": [*START, "method.replacement=true"],
    "k=1": [*START, "method.k=1"],
    "k=4": [*START, "method.k=4"],
    "exchange=alternate": [*START, "method.exchange=alternate"],
    "generator_view=same (the default)": [*START, "method.generator_view=same"],
    "weight=2": [*START, "method.weight=2.0"],
    "diversity=0.1": [*START, "method.diversity=0.1"],
    "predict=a (head A only)": [*START, "method.predict=a"],
    "reference: dann, no augmentation (tllib)": ["method=dann"],
    "reference: dann with the same weak views": ["method=dann", "method.source_view=weak",
                                                  "method.target_view=weak"],
}
TASK = ["benchmark.source=uci", "benchmark.target=mnist-sample", "trainer.progress=false"]


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")[:60]


def plan(name: str, overrides: list[str], seed: int, root: str):
    """One (row, seed): its configuration and run folder."""
    from pnl_da.config import compose

    cfg = compose(TASK + overrides + [f"seed={seed}"], allow_inert=True)  # pinned START
    return cfg, Path(root) / _slug(name) / f"seed{seed}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--jobs", type=int, default=2,
                        help="runs at a time (Hydra's joblib launcher; 1: one after another)")
    parser.add_argument("--only", default="", help="comma-separated row numbers (1-based)")
    parser.add_argument("--runs", default="benchmarks/runs/ablation")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pnl_ablation.md"))
    parser.add_argument("--json", type=Path, default=None,
                        help="also write {variant: {overrides, accuracy per seed}} here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = list(VARIANTS)
    if args.only:
        names = [names[int(i) - 1] for i in args.only.split(",")]
    threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    # every (row, seed) a job of one Hydra multirun (pnl_da/engine/sweep.py); finished runs
    # are reused, unfinished ones resumed
    planned = {(n, s): plan(n, VARIANTS[n], s, args.runs) for n in names for s in seeds}
    waiting = [job for job in planned.values()
               if finished_result(job[1], to_yaml(job[0])) is None]
    launcher = (["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"]
                if args.jobs > 1 else [])
    if waiting and launch(labelled_sweep("da", waiting, launcher, Path(args.runs).resolve(),
                                         threads=threads), log=print):
        raise SystemExit("not every run finished (see above); run the same command again")
    results: dict[str, dict[int, float]] = {}
    for (name, seed), (_, out) in planned.items():
        acc = json.loads((out / "result.json").read_text())["metrics"]["accuracy"]
        results.setdefault(name, {})[seed] = acc
        print(f"{name} seed {seed}: {acc:.2f}", flush=True)

    lines = ["# PNL ablation on digits uci->mnist-sample", "",
             f"LeNet, 3000 steps of 64+64 images, lr 0.01; target accuracy (%) of the final "
             f"model on all 4,998 MNIST-sample images. Date: {datetime.date.today()}. "
             f"Runs: `python benchmarks/pnl_ablation.py --seeds {args.seeds}`.", "",
             "| # | variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
             "|---|---|" + "---|" * (len(seeds) + 1)]
    for i, name in enumerate(VARIANTS, 1):
        if name not in results:
            continue
        accs = [results[name].get(s) for s in seeds]
        cells = " | ".join(f"{a:.2f}" if a is not None else "-" for a in accs)
        mean = statistics.mean(a for a in accs if a is not None)
        lines.append(f"| {i} | {name} | {cells} | {mean:.2f} |")
    import torch

    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
              else f"CPU ({threads} threads per run)")
    lines += ["", f"Device: {device}; {'bf16 autocast' if torch.cuda.is_available() else 'fp32'}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.json:
        args.json.write_text(json.dumps({n: {"overrides": VARIANTS[n], "accuracy": results[n]}
                                         for n in results}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists() and args.only:
        args.out = args.out.with_suffix(".partial.md")
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
