"""Digits study: every method tuned by one rule on two tasks, then scored on tasks it never saw.

The rule (written, with the candidates below, before any of these runs was made):

1. Every method gets the same budget: at most three candidate configurations, each run on the
   two *choice tasks* (uci->mnist-sample, mnist-sample->uci) with seeds 0, 1, 2.
2. A method's configuration is its candidate with the highest mean target accuracy over those
   six runs (ties: the one listed first, the method's default). The candidates of PNL are the
   current default and the two best rows of its ablation (benchmarks/results/pnl_ablation.md);
   those of DANN and CDAN are their default, the learning rate 0.02, and the weak augmented
   views PNL trains with; source only gets its default and the weak view. (When the rule was
   written, the GRL candidate was dropped on the belief that at 1000 steps grl_alpha=10 is
   tllib's warm-up; it is not: tllib's coefficient follows exp(-step / 1000), which is
   grl_alpha=1 here. benchmarks/tllib_differences.py measures it apart.)
3. The chosen configurations are then run on the *held-out tasks*, built from the bundled data
   (pnl_da/data/digits.py), seeds 0, 1, 2; no choice looks at them.
4. (Issue 30, written before its runs.) MCC and MDD join with the same budget and the same three
   kinds of candidate as DANN and CDAN: their tllib defaults, the learning rate 0.02, and the
   weak views. PNL's three candidates become its current default (on DANN), PNL on DANN and
   MCC (method.mcc_weight=1), and PNL on MCC alone (method.align=none method.mcc_weight=1):
   PNL's default is re-chosen by rule 2 among them. Every other method's rows are rerun with
   them, so that the whole table comes from one run of this script on one machine.

The bottleneck rows (backbone.bottleneck_dim=0: the pre-tllib architecture) measure what the
move to tllib's 256-d bottleneck changed, on the choice tasks.

The schedule is the default one shortened to 1000 steps (64 + 64 images, SGD lr 0.01,
tllib's decay), so that the 132 runs fit two CPU cores in about 80 minutes; one thread a run,
two runs at a time (with MCC, MDD and PNL's new candidates, 192 runs: about two hours).
Finished runs are reused.

    python benchmarks/digits_tasks.py [--jobs 2] [--steps 1000] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import emit, machine  # noqa: E402
from pnl_da.config import to_yaml  # noqa: E402
from pnl_da.engine.run import finished_result  # noqa: E402
from pnl_da.engine.sweep import labelled_sweep, launch  # noqa: E402

CHOICE_TASKS = ("uci->mnist-sample", "mnist-sample->uci")
HELD_OUT_TASKS = ("mnist-sample->mnist-m-sample", "mnist-sample->mnist-sample-inverted",
                  "mnist-sample->mnist-sample-thick", "uci-lowres->mnist-sample")
SEEDS = (0, 1, 2)
WEAK = ["method.source_view=weak", "method.target_view=weak"]
# method -> {candidate: overrides}; the first candidate is the method's default
CANDIDATES: dict[str, dict[str, list[str]]] = {
    "source_only": {"default": [], "weak view": ["method.source_view=weak"]},
    "dann": {"default": [], "lr 0.02": ["trainer.lr=0.02"], "weak views": WEAK},
    "cdan": {"default": [], "lr 0.02": ["trainer.lr=0.02"], "weak views": WEAK},
    "mcc": {"default": [], "lr 0.02": ["trainer.lr=0.02"], "weak views": WEAK},
    "mdd": {"default": [], "lr 0.02": ["trainer.lr=0.02"], "weak views": WEAK},
    # "default": PNL's default when rule 4 was written; the rule then chose MCC under it
    "pnl": {"default": ["method.mcc_weight=0.0"],
            "on DANN and MCC": ["method.mcc_weight=1.0"],
            "on MCC": ["method.align=none", "method.mcc_weight=1.0"]},
}
NAMES = {"source_only": "source only", "dann": "DANN", "cdan": "CDAN", "mcc": "MCC",
         "mdd": "MDD", "pnl": "PNL"}
BOTTLENECK_ROWS = ("source_only", "dann", "cdan")  # what the move to the 256-d bottleneck changed
BOTTLENECK_0 = ["backbone.bottleneck_dim=0"]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")


def plan(task: str, method: str, label: str, overrides: list[str], seed: int, root: Path,
         steps: int):
    from pnl_da.config import compose
    from pnl_da.data.registry import get_benchmark

    source, target = get_benchmark("digits").parse_task(task)
    cfg = compose([f"method={method}", f"benchmark.source={source.name}",
                   f"benchmark.target={target.name}", f"trainer.steps={steps}",
                   "trainer.eval_every=500", "trainer.progress=false", "trainer.tensorboard=false",
                   f"seed={seed}", *overrides])
    return cfg, root / f"{source.name}2{target.name}" / method / _slug(label) / f"seed{seed}"


def run_all(jobs: dict, n_jobs: int, root: Path) -> None:
    waiting = [job for job in jobs.values() if finished_result(job[1], to_yaml(job[0])) is None]
    threads = max(1, (os.cpu_count() or 1) // max(1, n_jobs))
    launcher = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"] if n_jobs > 1 else []
    if waiting and launch(labelled_sweep("da", waiting, launcher, root.resolve(),
                                         threads=threads), log=print):
        raise SystemExit("not every run finished (see above); run the same command again")


def accuracy(out: Path) -> float:
    return json.loads((out / "result.json").read_text())["metrics"]["accuracy"]


def cell(values: list[float]) -> str:
    return (f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
            if len(values) > 1 else f"{values[0]:.2f}")


def choose(acc: dict, candidates: dict, tasks, seeds) -> dict[str, str]:
    """Each method's candidate with the highest mean accuracy over ``tasks`` x ``seeds`` (ties:
    the one listed first); ``acc``: (task, method, candidate, seed) -> accuracy."""
    chosen = {}
    for method, options in candidates.items():
        means = {label: statistics.mean(acc[t, method, label, s] for t in tasks for s in seeds)
                 for label in options}
        chosen[method] = max(options, key=lambda label: (means[label],
                                                         -list(options).index(label)))
        print(f"{method}: " + ", ".join(f"{k} {v:.2f}" for k, v in means.items())
              + f" -> {chosen[method]}", flush=True)
    return chosen


def write_report(lines: list[str], n_jobs: int, out: Path) -> None:
    """The study scripts' common footer (machine, parallelism), then print and save."""
    lines += ["", f"Machine: {machine()}; one thread a run, {n_jobs} runs at a time."]
    emit("\n".join(lines) + "\n", out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/digits_tasks"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/digits_tasks.md"))
    args = parser.parse_args()

    # phase 1: every candidate, and the bottleneck-0 baselines, on the choice tasks
    phase1 = {}
    for task in CHOICE_TASKS:
        for method, candidates in CANDIDATES.items():
            for label, overrides in candidates.items():
                for seed in SEEDS:
                    phase1[task, method, label, seed] = plan(task, method, label, overrides,
                                                             seed, args.runs, args.steps)
            if method in BOTTLENECK_ROWS:
                for seed in SEEDS:
                    phase1[task, method, "bottleneck 0", seed] = plan(
                        task, method, "bottleneck 0", BOTTLENECK_0, seed, args.runs, args.steps)
    run_all(phase1, args.jobs, args.runs)
    acc1 = {key: accuracy(out) for key, (_, out) in phase1.items()}
    chosen = choose(acc1, CANDIDATES, CHOICE_TASKS, SEEDS)

    # phase 2: the chosen configurations on the held-out tasks
    phase2 = {(task, method, chosen[method], seed): plan(
        task, method, chosen[method], CANDIDATES[method][chosen[method]], seed, args.runs,
        args.steps) for task in HELD_OUT_TASKS for method in CANDIDATES for seed in SEEDS}
    run_all(phase2, args.jobs, args.runs)
    acc = {**acc1, **{key: accuracy(out) for key, (_, out) in phase2.items()}}

    tasks = (*CHOICE_TASKS, *HELD_OUT_TASKS)
    short = {t: t.replace("mnist-sample", "ms").replace("mnist-m-sample", "mms")
             .replace("ms-inverted", "msi").replace("ms-thick", "mst") for t in tasks}
    lines = [f"# Digits: {len(tasks)} tasks, every method tuned by one rule", "",
             f"Made by `python benchmarks/digits_tasks.py --steps {args.steps}` (the rule is in "
             "its docstring). LeNet with tllib's 256-d bottleneck, "
             f"{args.steps} steps of 64 + 64 images, SGD lr 0.01 with tllib's decay unless a row "
             "says otherwise; target accuracy (%) of the final model on every target image, "
             f"mean ± sample std over seeds {', '.join(map(str, SEEDS))}. Choice tasks: "
             f"{', '.join(CHOICE_TASKS)}; the others are held out.", "",
             "## The table", "",
             "| method (configuration chosen) | " + " | ".join(short[t] for t in tasks)
             + " | avg held-out |",
             "|---|" + "---|" * (len(tasks) + 1)]
    for method in CANDIDATES:
        label = chosen[method]
        cells = [cell([acc[t, method, label, s] for s in SEEDS]) for t in tasks]
        held = statistics.mean(acc[t, method, label, s] for t in HELD_OUT_TASKS for s in SEEDS)
        lines.append(f"| {NAMES[method]} ({label}) | " + " | ".join(cells) + f" | {held:.2f} |")
    lines += ["", "## The choice: every candidate on the choice tasks", "",
              "| method | candidate | overrides | " + " | ".join(short[t] for t in CHOICE_TASKS)
              + " | mean | chosen |", "|---|---|---|" + "---|" * (len(CHOICE_TASKS) + 2)]
    for method, candidates in CANDIDATES.items():
        for label, overrides in {**candidates, **({"bottleneck 0": BOTTLENECK_0}
                                                  if method in BOTTLENECK_ROWS else {})}.items():
            cells = [cell([acc1[t, method, label, s] for s in SEEDS]) for t in CHOICE_TASKS]
            mean = statistics.mean(acc1[t, method, label, s] for t in CHOICE_TASKS for s in SEEDS)
            mark = "yes" if label == chosen[method] else ("(not a candidate)"
                                                          if label == "bottleneck 0" else "")
            lines.append(f"| {NAMES[method]} | {label} | `{' '.join(overrides) or '-'}` | "
                         + " | ".join(cells) + f" | {mean:.2f} | {mark} |")
    write_report(lines, args.jobs, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"chosen": chosen, "runs": [{"task": k[0], "method": k[1], "candidate": k[2],
                                     "seed": k[3], "accuracy": v} for k, v in acc.items()]},
        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
