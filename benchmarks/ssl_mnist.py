"""Semi-supervised MNIST sample with 20 labels: every SSL method x 5 seeds, test error.

Each run is `pnl-da ssl mnist-sample --labels 20 method=M seed=S` (`--dataset uci`: the other
bundled set) with the default digits
schedule (LeNet, 2000 steps, 32 labeled images per step; unlabeled images per step as each
method's recipe sets them, in its own column); the labeled subset
follows the seed (split seed = run seed), so every method sees the same 5 subsets. Finished runs
are reused, so an interrupted benchmark continues where it stopped.

    python benchmarks/ssl_mnist.py [--seeds 0,1,2,3,4] [--methods ...] [--jobs 1] [--out FILE.md]
        [--dataset mnist-sample|uci]
        [--launcher hydra/launcher=submitit_local ...]
        [--threads N] [--variant NAME=METHOD,KEY=VALUE,...]   (repeatable: an extra row)
        [--no-reference]

A reference row (not a baseline) trains `supervised` on every training image the balanced split
allows (3,450 of the sample's 3,999: 345 per class, the training 5s' count), with the same network
and schedule: the error this sample and LeNet reach with full labels, to tell how much of the
distance to the paper's full-MNIST figure is the 20 labels and how much the small sample.
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

from _common import emit, machine  # noqa: E402

from pnl_da.config import to_yaml  # noqa: E402
from pnl_da.engine.run import ENV, finished_result  # noqa: E402
from pnl_da.engine.sweep import labelled_sweep, launch  # noqa: E402

METHODS = ("supervised", "mean_teacher", "fixmatch", "pnl", "pnl_paper")
BASELINES = ("supervised", "mean_teacher", "fixmatch")
# pnl_paper is the authors' CIFAR-10 recipe; on 28x28 digits it keeps everything but the
# network size and schedule, which follow the digits preset so the row is comparable.
EXTRA = {"pnl_paper": ["backbone=lenet", "trainer=digits", "ssl.model=dual"]}
PAPER_FULL_MNIST_20 = 0.81  # method.md section 4: PNL, full MNIST, 20 labels
REFERENCE = "supervised-all-labels"  # the full-label row; never counted as a baseline


def plan(name: str, method: str, variant: list[str], seed: int, root: str,
         extra: list[str], dataset: str):
    """One (row, seed): its configuration and run folder."""
    from pnl_da.config import compose

    cfg = compose([f"dataset={dataset}", "dataset.labels=20", f"method={method}",
                   f"seed={seed}", "trainer.progress=false", *EXTRA.get(method, []), *variant,
                   *extra], mode="ssl")
    return cfg, run_dir(root, name, seed)


VARIANTS: dict[str, tuple[str, list[str]]] = {}  # row name -> (method, overrides)


def parse_variant(text: str) -> tuple[str, tuple[str, list[str]]]:
    name, _, spec = text.partition("=")
    method, *overrides = spec.split(",")
    if not name or not method:
        raise SystemExit(f"--variant {text!r}: write NAME=METHOD,KEY=VALUE,...")
    return name, (method, overrides)


def full_label_count(dataset: str) -> int:
    """The largest class-balanced labeled split of the set's training part."""
    from pnl_da.data.registry import get_ssl_dataset
    from pnl_da.data.ssl_datasets import largest_balanced_split

    source = get_ssl_dataset(dataset)
    return largest_balanced_split(source.load("datasets", "train").labels, source.num_classes)


def baseline_verdict(mine: dict[int, float], theirs: dict[int, float]) -> str:
    """How a pnl row compares with one baseline: the gap of the means, the script's test (the
    gap must exceed the larger standard deviation) and, since a seed is the same labeled subset
    for both, on how many seeds the row's error is the lower (ties count as not lower)."""
    mean, std = mean_std(mine.values())
    m2, s2 = mean_std(theirs.values())
    margin = m2 - mean
    verdict = "beats it by more than one std" if margin > max(std, s2) else "does NOT"
    seeds = sorted(set(mine) & set(theirs))
    lower = sum(mine[s] < theirs[s] for s in seeds)
    return (f"by {margin:.2f} points ({verdict}); lower on {lower} of {len(seeds)} seeds "
            "(same labeled subsets)")


def run_dir(root: str | Path, row: str, seed: int) -> Path:
    """Where one (row, seed) run lives under the --runs folder."""
    return Path(root) / row / f"seed{seed}"


def made_on(run_dirs) -> str:
    """Where the runs were made, from each run's env.json: reused runs may come from another
    machine (an H200 sweep tabulated on a laptop), and this process's machine says nothing of
    them. E.g. "NVIDIA H200, torch 2.11.0+cu130, 1 torch thread (10 runs)"."""
    counts: dict[str, int] = {}
    for folder in run_dirs:
        try:
            env = json.loads((Path(folder) / ENV).read_text())
            threads = env.get("cpu_threads")
            # the GPU, else the processor (older env.json files lack "cpu": their platform)
            name = env.get("gpu") or env.get("cpu") or env.get("platform")
            where = (f"{name or 'unknown machine'}, "
                     f"torch {env.get('torch')}, {threads} torch thread{'s' * (threads != 1)}")
        except (OSError, ValueError):
            where = "unknown machine (no readable env.json)"
        counts[where] = counts.get(where, 0) + 1
    return "; ".join(f"{where} ({n} run{'s' * (n != 1)})" for where, n in counts.items())


def unlabeled_per_step(cfg) -> int:
    """Unlabeled images a run reads per step (0: the method reads none)."""
    if cfg.method.target_view == "none":
        return 0
    return int(cfg.trainer.unlabeled_batch_size or cfg.trainer.batch_size)


def mean_std(values) -> tuple[float, float]:
    values = list(values)
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--dataset", default="mnist-sample", choices=("mnist-sample", "uci"),
                        help="the bundled set (default: mnist-sample)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time (Hydra's joblib launcher; 1: one after another)")
    parser.add_argument("--launcher", action="append", default=[],
                        help="a Hydra launcher setting instead, e.g. hydra/launcher=slurm_gpu "
                        "(repeatable)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per run (default: the cores shared among the jobs)")
    parser.add_argument("--runs", default="benchmarks/runs/ssl_mnist")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=METHOD,KEY=VALUE,...: one more row (repeatable)")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help=f"skip the {REFERENCE} row (supervised with every training label)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE for every run")
    args = parser.parse_args()
    VARIANTS.update(parse_variant(v) for v in args.variant)
    if args.reference:
        VARIANTS[REFERENCE] = ("supervised",
                               [f"dataset.labels={full_label_count(args.dataset)}"])

    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m] + list(VARIANTS)
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.jobs))
    # Every run is a job of one Hydra multirun (pnl_da/engine/sweep.py): its launcher runs
    # them one after another, in parallel (joblib) or on a cluster (submitit); finished runs
    # are reused and unfinished ones resumed, so an interrupted benchmark continues.
    keys = [(m, s) for m in methods for s in seeds]
    planned = {key: plan(key[0], *VARIANTS.get(key[0], (key[0], [])), key[1], args.runs,
                         args.overrides, args.dataset) for key in keys}
    waiting = [job for job in planned.values()
               if finished_result(job[1], to_yaml(job[0])) is None]
    launcher = args.launcher or (["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}"]
                                 if args.jobs > 1 else [])
    if waiting and launch(labelled_sweep("ssl", waiting, launcher, Path(args.runs).resolve(),
                                         threads=threads), log=print):
        raise SystemExit("not every run finished (see above); run the same command again")
    made = {job[1] for job in waiting}
    done = [(m, s, json.loads((planned[m, s][1] / "result.json").read_text()),
             planned[m, s][1] in made) for m, s in keys]

    errors: dict[str, dict[int, float]] = {}
    times: dict[str, list[float]] = {}
    for method, seed, result, _ in done:
        errors.setdefault(method, {})[seed] = result["metrics"]["error"]
        times.setdefault(method, []).append(result["wall_time_s"])

    made_now = sum(new for *_, new in done)
    lines = [f"# SSL, {args.dataset}, 20 labels: test error of the final model "
             f"({len(seeds)} seeds)",
             "", f"Machine: {machine()} in this process; {made_now} of {len(done)} runs made now, "
             f"each with {threads} torch thread(s), {max(1, args.jobs)} run(s) at a time. Runs "
             f"made on: {made_on(run_dir(args.runs, m, s) for m, s, *_ in done)}; "
             f"{datetime.date.today()}. Seeds {args.seeds} "
             "(the labeled subset follows the seed). LeNet, default digits schedule "
             f"{' '.join(args.overrides) or '(2000 steps, 32 labeled images per step)'}."
             " Test set: the set's fixed 20% per-class holdout.", "",
             "| method | test error % (mean ± std) | per seed | prediction | unlabeled per step "
             "| minutes per run |",
             "|---|---|---|---|---|---|"]
    summary = {}
    for method in methods:
        mean, std = mean_std(errors[method].values())
        summary[method] = (mean, std)
        per_seed = " ".join(f"{errors[method][s]:.2f}" for s in seeds)
        prediction = next(r["prediction_is"] for m, _, r, _ in done if m == method)
        lines.append(f"| {method} | {mean:.2f} ± {std:.2f} | {per_seed} | {prediction} | "
                     f"{unlabeled_per_step(planned[method, seeds[0]][0])} | "
                     f"{statistics.mean(times[method]) / 60:.1f} |")
    baselines = [m for m in summary
                 if m != REFERENCE and VARIANTS.get(m, (m,))[0] in BASELINES]
    for row, (mean, _) in summary.items():
        if VARIANTS.get(row, (row,))[0] != "pnl" or not baselines:
            continue
        margins = [f"{method} {baseline_verdict(errors[row], errors[method])}"
                   for method in baselines]
        lines += ["", f"{row} vs baselines: " + "; ".join(margins) + "."]
        if args.dataset != "mnist-sample":  # the paper's figure is an MNIST one
            continue
        lines.append(f"The paper reports {PAPER_FULL_MNIST_20}% for PNL on full MNIST (60,000 "
                     f"training images, Conv-Large, long schedule) with 20 labels; {row} on the "
                     f"sample is {mean - PAPER_FULL_MNIST_20:.2f} points above it.")
        if REFERENCE in summary:
            full = summary[REFERENCE][0]
            lines[-1] += (f" With every training label ({REFERENCE}) the same network and schedule"
                          f" reach {full:.2f}%: {mean - full:.2f} of those points are the 20 "
                          f"labels, {full - PAPER_FULL_MNIST_20:.2f} the sample and the network.")
    emit("\n".join(lines) + "\n", args.out)
    if args.json:
        args.json.write_text(json.dumps({m: errors[m] for m in methods}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
