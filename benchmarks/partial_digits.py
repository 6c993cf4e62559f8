"""Partial-set digits study: the target holds only some of the source's ten classes (issue 32).

The rule (written, with the candidates and tasks below, before any of these runs was made):

1. Tasks, built from the bundled data: the target keeps digits 0-4 on uci->mnist-sample and
   mnist-sample->uci (the *choice tasks*), and on mnist-sample->mnist-m-sample and digits 5-9 on
   uci->mnist-sample (the *held-out tasks*). The label space stays the source's ten classes;
   a prediction of a class the target lacks counts as wrong.
2. Every method gets the same budget: two candidate configurations, each run on the two choice
   tasks with seeds 0, 1, 2. A method's configuration is its candidate with the highest mean
   target accuracy over those six runs (ties: the one listed first).
   * source only: the weak view (its choice in the closed-set digits study,
     benchmarks/results/digits_tasks.md), its default (no view);
   * DANN: the weak views (its closed-set choice), its default;
   * PADA: the weak views with tllib's temperature 0.1, the weak views with 0.01 (tllib's
     Office-Home runs);
   * PNL: its default (on DANN and MCC) with its partial-set form, which a partial-set run
     switches on; PNL on MCC alone (method.align=none, the closed-set study's runner-up), with
     the same form less its alignment part, which has no discriminator to weigh.
3. The chosen configurations are then run on the held-out tasks, seeds 0, 1, 2; no choice looks
   at them.
4. Ablation of PNL's partial-set form, on every task with seeds 0, 1, 2, from PNL's chosen
   configuration: the whole form off (method.partial=false: closed-set PNL), and each part off
   alone (partial_supervision, partial_alignment where PNL aligns with DANN, partial_negatives).
5. Reported as it comes: the table, every candidate, the ablation, and the class weights PADA
   and PNL end with on the classes the target keeps and on those it lacks.

Added after phase 1, outside the rule: phase 1 chose PNL on MCC, which has no discriminator, so
step 4 has no row for the alignment weights. That part is ablated from PNL's default (on DANN
and MCC) instead: the default and the default without alignment weights on every task, seeds
0, 1, 2 (the default's choice-task runs are phase 1's). These runs choose nothing.

The schedule is the digits study's: the default one shortened to 1000 steps (64 + 64 images,
SGD lr 0.01, tllib's decay); one thread a run, two runs at a time. Finished runs are reused.

    python benchmarks/partial_digits.py [--jobs 2] [--steps 1000] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.digits_tasks import (  # noqa: E402
    _slug,
    accuracy,
    cell,
    choose,
    run_all,
    write_report,
)

LOW, HIGH = tuple("01234"), tuple("56789")
CHOICE_TASKS = (("uci->mnist-sample", LOW), ("mnist-sample->uci", LOW))
HELD_OUT_TASKS = (("mnist-sample->mnist-m-sample", LOW), ("uci->mnist-sample", HIGH))
SEEDS = (0, 1, 2)
WEAK = ["method.source_view=weak", "method.target_view=weak"]
# method -> {candidate: overrides}
CANDIDATES: dict[str, dict[str, list[str]]] = {
    "source_only": {"weak view": ["method.source_view=weak"], "default": []},
    "dann": {"weak views": WEAK, "default": []},
    "pada": {"weak views, T 0.1": WEAK, "weak views, T 0.01": [*WEAK,
                                                              "method.temperature=0.01"]},
    "pnl": {"default": [], "on MCC": ["method.align=none"]},
}
NAMES = {"source_only": "source only", "dann": "DANN", "pada": "PADA", "pnl": "PNL"}
# PNL's ablation: name -> overrides added to its chosen configuration
ABLATION = {"form off (closed-set PNL)": ["method.partial=false"],
            "without supervision weights": ["method.partial_supervision=false"],
            "without alignment weights": ["method.partial_alignment=false"],
            "without absent-class negatives": ["method.partial_negatives=false"]}


def name(task: tuple[str, tuple[str, ...]]) -> str:
    text, kept = task
    short = text.replace("mnist-sample", "ms").replace("mnist-m-sample", "mms")
    return f"{short} [{kept[0]}-{kept[-1]}]"


def plan(task, method: str, label: str, overrides: list[str], seed: int, root: Path,
         steps: int):
    from pnl_da.config import compose
    from pnl_da.data.registry import get_benchmark

    text, kept = task
    source, target = get_benchmark("digits").parse_task(text)
    cfg = compose([f"method={method}", f"benchmark.source={source.name}",
                   f"benchmark.target={target.name}", f"trainer.steps={steps}",
                   f"benchmark.target_classes=[{','.join(kept)}]",
                   "trainer.eval_every=500", "trainer.progress=false", "trainer.tensorboard=false",
                   f"seed={seed}", *overrides])
    folder = f"{source.name}2{target.name}-{''.join(kept)}"
    return cfg, root / folder / method / _slug(label) / f"seed{seed}"


def class_weights(out: Path, kept: tuple[str, ...]) -> tuple[float, float] | None:
    """The mean class weight a run ends with on the kept classes and on the absent ones."""
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    weights = last.get("class_weight")
    if not weights:
        return None
    present = [w for c, w in weights.items() if c in kept]
    absent = [w for c, w in weights.items() if c not in kept]
    return statistics.mean(present), statistics.mean(absent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=Path, default=Path("benchmarks/runs/partial_digits"))
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/partial_digits.md"))
    args = parser.parse_args()

    # phase 1: every candidate on the choice tasks
    phase1 = {(task, method, label, seed): plan(task, method, label, overrides, seed,
                                                 args.runs, args.steps)
              for task in CHOICE_TASKS for method, candidates in CANDIDATES.items()
              for label, overrides in candidates.items() for seed in SEEDS}
    run_all(phase1, args.jobs, args.runs)
    acc = {key: accuracy(out) for key, (_, out) in phase1.items()}
    chosen = choose(acc, CANDIDATES, CHOICE_TASKS, SEEDS)

    # phase 2: the chosen configurations on the held-out tasks; phase 3: PNL's ablation
    tasks = (*CHOICE_TASKS, *HELD_OUT_TASKS)
    later = {(task, method, chosen[method], seed): plan(
        task, method, chosen[method], CANDIDATES[method][chosen[method]], seed, args.runs,
        args.steps) for task in HELD_OUT_TASKS for method in CANDIDATES for seed in SEEDS}
    pnl = CANDIDATES["pnl"][chosen["pnl"]]
    aligned = "method.align=none" not in pnl
    ablation = {label: overrides for label, overrides in ABLATION.items()
                if aligned or "partial_alignment" not in overrides[0]}
    # outside the rule (see the docstring): the alignment weights, from PNL's aligned default
    extra = {} if aligned else {"default": [], "default without alignment weights":
                                ["method.partial_alignment=false"]}
    pnl_runs = {**{label: pnl + overrides for label, overrides in ablation.items()},
                **{label: CANDIDATES["pnl"]["default"] + overrides
                   for label, overrides in extra.items()}}
    for label, overrides in pnl_runs.items():
        for task in tasks:
            for seed in SEEDS:  # the default's choice-task runs are phase 1's: not in `later`
                later.setdefault((task, "pnl", label, seed), plan(
                    task, "pnl", label, overrides, seed, args.runs, args.steps))
    run_all(later, args.jobs, args.runs)
    runs = {**phase1, **later}
    acc.update({key: accuracy(out) for key, (_, out) in later.items()})

    lines = ["# Partial-set digits: the target keeps five of the ten classes", "",
             f"Made by `python benchmarks/partial_digits.py --steps {args.steps}` (the rule is "
             "in its docstring, committed before the runs). LeNet with tllib's 256-d "
             f"bottleneck, {args.steps} steps of 64 + 64 images, SGD lr 0.01 with tllib's decay; "
             "target accuracy (%) of the final model on every target image of the kept classes "
             "(a prediction of a class the target lacks is wrong), mean ± sample std over "
             f"seeds {', '.join(map(str, SEEDS))}. Choice tasks: "
             f"{', '.join(name(t) for t in CHOICE_TASKS)}; held out: "
             f"{', '.join(name(t) for t in HELD_OUT_TASKS)}.", "",
             "## The table", "",
             "| method (configuration chosen) | " + " | ".join(name(t) for t in tasks)
             + " | mean | avg held-out |", "|---|" + "---|" * (len(tasks) + 2)]
    for method in CANDIDATES:
        label = chosen[method]
        cells = [cell([acc[t, method, label, s] for s in SEEDS]) for t in tasks]
        mean = statistics.mean(acc[t, method, label, s] for t in tasks for s in SEEDS)
        held = statistics.mean(acc[t, method, label, s] for t in HELD_OUT_TASKS for s in SEEDS)
        lines.append(f"| {NAMES[method]} ({label}) | " + " | ".join(cells)
                     + f" | {mean:.2f} | {held:.2f} |")
    lines += ["", "## The choice: every candidate on the choice tasks", "",
              "| method | candidate | overrides | "
              + " | ".join(name(t) for t in CHOICE_TASKS) + " | mean | chosen |",
              "|---|---|---|" + "---|" * (len(CHOICE_TASKS) + 2)]
    for method, candidates in CANDIDATES.items():
        for label, overrides in candidates.items():
            cells = [cell([acc[t, method, label, s] for s in SEEDS]) for t in CHOICE_TASKS]
            mean = statistics.mean(acc[t, method, label, s] for t in CHOICE_TASKS for s in SEEDS)
            lines.append(f"| {NAMES[method]} | {label} | `{' '.join(overrides) or '-'}` | "
                         + " | ".join(cells) + f" | {mean:.2f} | "
                         + ("yes" if label == chosen[method] else "") + " |")
    def pnl_rows(rows: dict[str, str]) -> list[str]:
        """A table of PNL's runs on every task: row name -> the runs' label."""
        table = ["| PNL | " + " | ".join(name(t) for t in tasks) + " | mean |",
                 "|---|" + "---|" * (len(tasks) + 1)]
        for row, key in rows.items():
            cells = [cell([acc[t, "pnl", key, s] for s in SEEDS]) for t in tasks]
            mean = statistics.mean(acc[t, "pnl", key, s] for t in tasks for s in SEEDS)
            table.append(f"| {row} | " + " | ".join(cells) + f" | {mean:.2f} |")
        return table

    lines += ["", f"## Ablation of PNL's partial-set form (from PNL {chosen['pnl']})", "",
              *pnl_rows({"full form": chosen["pnl"], **{label: label for label in ablation}})]
    if extra:
        lines += ["", "## Outside the rule: PNL's alignment weights, from its default (on DANN "
                  "and MCC)", "", "Phase 1 chose PNL on MCC, which has no alignment to weigh; "
                  "these runs, added after phase 1, ablate that part from PNL's default.", "",
                  *pnl_rows({label: label for label in extra})]
    lines += ["", "## Class weights at the end: mean on the kept classes / on the absent ones",
              "", "| method | " + " | ".join(name(t) for t in tasks) + " |",
              "|---|" + "---|" * len(tasks)]
    for method in ("pada", "pnl"):
        cells = []
        for task in tasks:
            found = [class_weights(runs[task, method, chosen[method], s][1], task[1])
                     for s in SEEDS]
            found = [f for f in found if f]
            cells.append(f"{statistics.mean(f[0] for f in found):.2f} / "
                         f"{statistics.mean(f[1] for f in found):.2f}" if found else "-")
        lines.append(f"| {NAMES[method]} ({chosen[method]}) | " + " | ".join(cells) + " |")
    write_report(lines, args.jobs, args.out)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"chosen": chosen, "runs": [{"task": k[0][0], "target_classes": list(k[0][1]),
                                     "method": k[1], "configuration": k[2], "seed": k[3],
                                     "accuracy": v} for k, v in acc.items()]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
