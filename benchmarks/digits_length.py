"""The digits study's chosen configurations at the default length (3000 steps, not 1000).

tllib_differences.py found that 3000 steps instead of 1000 raise DANN and CDAN by about 3.5
points on the choice tasks, more than PNL's margin over CDAN there in the 1000-step study. This
runs every method's configuration as the study chose it (benchmarks/results/digits_tasks.json)
at 3000 steps, this project's digits default, on the two choice tasks, seeds 0, 1, 2, and
tables them beside each other. Written before its runs; nothing is chosen on it and no default
changes because of it.

    python benchmarks/digits_length.py [--jobs 2] [--steps 3000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.digits_tasks import (  # noqa: E402
    CANDIDATES,
    CHOICE_TASKS,
    NAMES,
    SEEDS,
    accuracy,
    cell,
    plan,
    run_all,
    write_report,
)

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/digits_length"))
    parser.add_argument("--out", type=Path, default=RESULTS / "digits_length.md")
    args = parser.parse_args()
    chosen = json.loads((RESULTS / "digits_tasks.json").read_text())["chosen"]
    jobs = {(task, method, seed): plan(task, method, chosen[method],
                                       CANDIDATES[method][chosen[method]], seed, args.runs,
                                       args.steps)
            for task in CHOICE_TASKS for method in CANDIDATES for seed in SEEDS}
    run_all(jobs, args.jobs, args.runs)
    acc = {key: accuracy(out) for key, (_, out) in jobs.items()}
    lines = [f"# The digits study's chosen configurations at {args.steps} steps", "",
             f"`python benchmarks/digits_length.py --steps {args.steps}`: each method as "
             "`digits_tasks.md` chose it, LeNet with the 256-d bottleneck, "
             f"{args.steps} steps of 64 + 64 images, target accuracy (%) of the final model, "
             f"mean ± sample std over seeds {', '.join(map(str, SEEDS))}.", "",
             "| method (configuration) | " + " | ".join(CHOICE_TASKS) + " | mean |",
             "|---|" + "---|" * (len(CHOICE_TASKS) + 1)]
    for method in CANDIDATES:
        cells = [cell([acc[t, method, s] for s in SEEDS]) for t in CHOICE_TASKS]
        mean = statistics.mean(acc[t, method, s] for t in CHOICE_TASKS for s in SEEDS)
        lines.append(f"| {NAMES[method]} ({chosen[method]}) | " + " | ".join(cells)
                     + f" | {mean:.2f} |")
    write_report(lines, args.jobs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
