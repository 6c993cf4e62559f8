"""What the remaining differences from tllib's digits recipe change, for DANN and CDAN.

Each difference is applied alone to the digits study's default (benchmarks/digits_tasks.py:
1000 steps of 64 + 64 images, LeNet with the 256-d bottleneck, lr 0.01), on both choice tasks
(uci->mnist-sample is tllib's U->M, mnist-sample->uci its M->U), seeds 0, 1, 2:

* tllib's GRL warm-up: its coefficient 2 / (1 + exp(-step / 1000)) - 1 follows a fixed 1000
  iterations; here it follows the run's progress (grl_alpha=10). At 1000 steps tllib's is
  grl_alpha=1.
* tllib's batch: 128 images per domain and step (here 64).
* tllib's learning rate per task: 0.1 for U->M, 0.01 for M->U (here 0.01 for both), so the
  variant changes uci->mnist-sample only and reuses the default's mnist-sample->uci runs.
* a longer run: 3000 steps, this project's digits default, towards tllib's 50,000 iterations
  (which do not fit a CPU); it shows which way length moves each method.
* no bottleneck: the architecture before this project adopted tllib's 256-d bottleneck.

The default's and the no-bottleneck runs share the study's folders and are reused if present.

    python benchmarks/tllib_differences.py [--jobs 2] [--runs benchmarks/runs/digits_tasks]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.digits_tasks import (  # noqa: E402
    BOTTLENECK_0,
    CHOICE_TASKS,
    SEEDS,
    accuracy,
    cell,
    plan,
    run_all,
    write_report,
)

DEFAULT = "default (this project)"
# variant -> {task: overrides}; a task a variant leaves unchanged reads the default's runs
DIFFERENCES: dict[str, dict[str, list[str]]] = {
    DEFAULT: {task: [] for task in CHOICE_TASKS},
    "tllib's GRL warm-up (grl_alpha=1 at 1000 steps)":
        {task: ["method.grl_alpha=1.0"] for task in CHOICE_TASKS},
    "tllib's batch (128 per domain)":
        {task: ["trainer.batch_size=128"] for task in CHOICE_TASKS},
    "tllib's learning rate (0.1 on U->M)": {"uci->mnist-sample": ["trainer.lr=0.1"]},
    "longer: 3000 steps (this project's default)":
        {task: ["trainer.steps=3000"] for task in CHOICE_TASKS},
    "no bottleneck (before this change)": {task: BOTTLENECK_0 for task in CHOICE_TASKS},
}
LABELS = {DEFAULT: "default", "no bottleneck (before this change)": "bottleneck 0"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/digits_tasks"))
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/tllib_differences.md"))
    args = parser.parse_args()

    def variant_of(name: str, task: str) -> str:
        return name if task in DIFFERENCES[name] else DEFAULT

    jobs = {(task, method, name, seed): plan(task, method, LABELS.get(name, name),
                                             DIFFERENCES[name][task], seed, args.runs, args.steps)
            for task in CHOICE_TASKS for method in ("dann", "cdan")
            for name in DIFFERENCES if task in DIFFERENCES[name] for seed in SEEDS}
    run_all(jobs, args.jobs, args.runs)
    acc = {key: accuracy(out) for key, (_, out) in jobs.items()}
    lines = ["# The remaining differences from tllib's digits recipe, measured", "",
             f"`python benchmarks/tllib_differences.py --steps {args.steps}`: each difference "
             "alone on the digits study's default (LeNet, 256-d bottleneck, "
             f"{args.steps} steps of 64 + 64 images, lr 0.01), target accuracy (%), mean ± "
             f"sample std over seeds {', '.join(map(str, SEEDS))}; change: the mean over both "
             "tasks minus the default's (a cell in italics is the default's: the variant "
             "leaves that task as it is).", "",
             "| method | variant | " + " | ".join(CHOICE_TASKS) + " | change |",
             "|---|---|" + "---|" * (len(CHOICE_TASKS) + 1)]
    for method in ("dann", "cdan"):
        base = statistics.mean(acc[t, method, DEFAULT, s] for t in CHOICE_TASKS for s in SEEDS)
        for name in DIFFERENCES:
            values = [acc[t, method, variant_of(name, t), s] for t in CHOICE_TASKS
                      for s in SEEDS]
            cells = []
            for t in CHOICE_TASKS:
                text = cell([acc[t, method, variant_of(name, t), s] for s in SEEDS])
                cells.append(text if variant_of(name, t) == name else f"*{text}*")
            change = statistics.mean(values) - base
            lines.append(f"| {method.upper()} | {name} | " + " | ".join(cells)
                         + f" | {change:+.2f} |")
    write_report(lines, args.jobs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
