"""What the remaining differences from tllib's digits recipe change, for DANN and CDAN.

tllib trains digits with its GRL warm-up over a fixed 1000 iterations (coefficient
2 / (1 + exp(-step / 1000)) - 1; here the warm-up follows the run's progress, grl_alpha=10).
That, and the bottleneck this project lacked before, are each applied alone to the
digits study's default (benchmarks/digits_tasks.py: 1000 steps, LeNet with the 256-d
bottleneck), on both choice tasks, seeds 0, 1, 2; the study's own runs are the reference and
are reused. At 1000 steps tllib's warm-up is grl_alpha=1.

    python benchmarks/tllib_differences.py [--jobs 2] [--runs benchmarks/runs/digits_tasks]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import emit, machine  # noqa: E402
from benchmarks.digits_tasks import (  # noqa: E402
    BOTTLENECK_0,
    CHOICE_TASKS,
    SEEDS,
    accuracy,
    cell,
    plan,
    run_all,
)

DIFFERENCES = {
    "default (this project)": [],
    "tllib's GRL warm-up (grl_alpha=1 at 1000 steps)": ["method.grl_alpha=1.0"],
    "no bottleneck (before this change)": BOTTLENECK_0,
}
LABELS = {"default (this project)": "default", "no bottleneck (before this change)":
          "bottleneck 0"}  # the study's folders, reused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/digits_tasks"))
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/tllib_differences.md"))
    args = parser.parse_args()
    jobs = {(task, method, name, seed): plan(task, method, LABELS.get(name, name), overrides,
                                             seed, args.runs, args.steps)
            for task in CHOICE_TASKS for method in ("dann", "cdan")
            for name, overrides in DIFFERENCES.items() for seed in SEEDS}
    run_all(jobs, args.jobs, args.runs)
    acc = {key: accuracy(out) for key, (_, out) in jobs.items()}
    lines = ["# The remaining differences from tllib's digits recipe, measured", "",
             f"`python benchmarks/tllib_differences.py --steps {args.steps}`: each difference "
             "alone on the digits study's default (LeNet, 256-d bottleneck, "
             f"{args.steps} steps of 64 + 64 images, lr 0.01), target accuracy (%), mean ± "
             f"sample std over seeds {', '.join(map(str, SEEDS))}; change: the mean over both "
             "tasks minus the default's.", "",
             "| method | variant | " + " | ".join(CHOICE_TASKS) + " | change |",
             "|---|---|" + "---|" * (len(CHOICE_TASKS) + 1)]
    for method in ("dann", "cdan"):
        base = statistics.mean(acc[t, method, "default (this project)", s]
                               for t in CHOICE_TASKS for s in SEEDS)
        for name in DIFFERENCES:
            values = [acc[t, method, name, s] for t in CHOICE_TASKS for s in SEEDS]
            cells = [cell([acc[t, method, name, s] for s in SEEDS]) for t in CHOICE_TASKS]
            change = statistics.mean(values) - base
            lines.append(f"| {method.upper()} | {name} | " + " | ".join(cells)
                         + f" | {change:+.2f} |")
    lines += ["", f"Machine: {machine()}; one thread a run, {args.jobs} runs at a time."]
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
