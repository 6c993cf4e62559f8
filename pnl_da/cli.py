"""pnl-da command line: run, ssl, compare, report, analyze, evaluate, predict, export,
download, list.

Errors the user can fix are one line on stderr with the exit code of the interface contract
(2 usage/configuration, 3 data, 1 other); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import traceback
from pathlib import Path

from pnl_da import __version__
from pnl_da.errors import Interrupted, PnlError, UsageError, first_line

DEFAULT_METHODS = ("source_only", "dann", "cdan", "pnl")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line and exit 2, as every other usage error
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _data_root(arg: str | None) -> str:
    return str(Path(arg or os.environ.get("PNL_DA_DATA") or "data").expanduser().resolve())


def _base_overrides(benchmark: str, task: str, data_root: str | None,
                    overrides: list[str]) -> list[str]:
    from pnl_da.config import quoted
    from pnl_da.data.registry import get_benchmark

    bench = get_benchmark(benchmark)
    source, target = bench.parse_task(task)
    refuse_task_overrides(overrides)
    base = [f"benchmark={bench.name}", f"benchmark.source={quoted(source.name)}",
            f"benchmark.target={quoted(target.name)}"]
    return base + _data_root_override(data_root, overrides) + list(overrides)


def refuse_task_overrides(overrides: list[str]) -> None:
    """The task is what the command's arguments say, never an override's."""
    for item in overrides:
        key = item.partition("=")[0].lstrip("+~")
        if key in ("benchmark", "benchmark.name", "benchmark.source", "benchmark.target",
                   "benchmark.num_classes"):
            raise UsageError(f"'{item}' would change the task the command names; give the "
                             "benchmark and task as arguments: `pnl-da run BENCHMARK "
                             "SOURCE->TARGET`")


def _data_root_override(data_root: str | None, overrides: list[str]) -> list[str]:
    """``data.root`` from --data-root (or its default), unless only an override sets it."""
    from pnl_da.config import quoted

    if not any(o.startswith("data.root=") for o in overrides) or data_root:
        return [f"data.root={quoted(_data_root(data_root))}"]
    return []


def _out_dir(arg: str | None, default: Path) -> Path:
    if arg is not None and not arg.strip():  # `--out "$UNSET_VAR"` must not mean the default
        raise UsageError("--out is empty; give a folder, or leave --out out for the default")
    return Path(arg).expanduser() if arg else default


def cmd_run(args) -> int:
    from pnl_da.engine.tasks import compose, default_out_dir

    if args.multirun:
        from pnl_da.data.registry import get_benchmark
        from pnl_da.engine.sweep import tasks_of

        bench = get_benchmark(args.benchmark)
        refuse_task_overrides(args.overrides)
        base = [f"benchmark={bench.name}", *_data_root_override(args.data_root, args.overrides)]
        top = Path("runs") / bench.name  # a single run's folder is below it
        return _sweep(args, "da", base, tasks_of(bench.name, args.task), top,
                      lambda cfg: default_out_dir(cfg).relative_to(top))
    _refuse_sweeps(args)
    cfg = compose(_base_overrides(args.benchmark, args.task, args.data_root, args.overrides))
    return _show_or_execute(cfg, args, default_out_dir(cfg))


def _refuse_sweeps(args) -> None:
    """Several tasks or values need --multirun (a single run would take only one)."""
    from pnl_da.engine.sweep import expand, is_hydra_override

    several = "," in getattr(args, "task", "")
    plain = [o for o in args.overrides if not is_hydra_override(o)]
    try:
        jobs = len(expand(plain))
    except UsageError:  # unreadable: composing it names the override
        jobs = 1
    if several or jobs > 1:
        what = f"tasks '{args.task}'" if several else "values to sweep"
        raise UsageError(f"several {what}: add --multirun to run one job each "
                         "(`pnl-da run BENCHMARK 'A->W,D->W' --multirun method=dann,pnl`)")
    hydra = [o for o in args.overrides if is_hydra_override(o)]
    if hydra:
        raise UsageError(f"'{hydra[0]}' sets how Hydra launches a sweep; add --multirun")
    if args.objective:
        raise UsageError("--objective chooses among the jobs of a sweep; add --multirun")


def _sweep(args, mode: str, base: list[str], tasks, top: Path, relative) -> int:
    """``--multirun``: plan every job, then launch them with Hydra (``--show-config``: print
    the plan)."""
    from pnl_da.engine.sweep import launch, product_sweep

    root = _out_dir(args.out, top).resolve()
    sweep = product_sweep(mode, base, args.overrides, root, relative, tasks,
                          objective=args.objective)
    if args.show_config:
        print(f"{len(sweep.jobs)} jobs:")
        for job in sweep.jobs:
            print(f"  {job.out}: {' '.join(job.overrides)}")
        return 0
    return launch(sweep, log=lambda m: print(m, file=sys.stderr))


def _show_or_execute(cfg, args, default_out: Path) -> int:
    """``--show-config`` prints the resolved configuration; otherwise train it into --out (or
    ``default_out``) and print the result line."""
    from pnl_da.config import to_annotated_yaml
    from pnl_da.engine.run import execute

    if args.show_config:
        print(to_annotated_yaml(cfg), end="")
        return 0
    out = _out_dir(args.out, default_out)
    result = execute(cfg, out, resume=args.resume or args.resume_from is not None,
                     from_previous=args.resume_from == "prev",
                     log=lambda m: print(m, file=sys.stderr))
    if result is not None:  # None: a process other than 0 under torchrun, which stays quiet
        from pnl_da.engine.tasks import task_class

        print(task_class(cfg).result_line(result, out))
    return 0


FOLDER_OPTIONS = {"--labeled": "labeled", "--unlabeled": "unlabeled", "--test": "test"}


def _ssl_dataset_overrides(args) -> tuple[list[str], str]:
    """The dataset's overrides and its name: a dataset by name with --labels N, or your own
    folders (``pnl-da ssl folders --labeled DIR --unlabeled DIR [--test DIR] [--labels N]``)."""
    from pnl_da.config import quoted
    from pnl_da.data.registry import get_ssl_dataset

    folders = {option: getattr(args, attr) for option, attr in FOLDER_OPTIONS.items()
               if getattr(args, attr) is not None}
    if args.dataset.strip().lower() == "folders":
        missing = [o for o in ("--labeled", "--unlabeled") if o not in folders]
        if missing:
            raise UsageError(f"{' and '.join(missing)} required: `pnl-da ssl folders --labeled "
                             "DIR --unlabeled DIR` (DIR: below --data-root, or absolute; the "
                             "labeled one holds a folder per class)")
        base = ["dataset=folders", f"dataset.labels={args.labels or 0}"]
        base += [f"dataset.{attr}_folder={quoted(folders[option])}"
                 for option, attr in FOLDER_OPTIONS.items() if option in folders]
        return base, "folders"
    dataset = get_ssl_dataset(args.dataset)
    if folders:
        raise UsageError(f"{next(iter(folders))} names a folder of your own images: `pnl-da ssl "
                         f"folders --labeled DIR --unlabeled DIR`; {dataset.name} has its own")
    if args.labels is None:
        raise UsageError("--labels N is required: the number of labeled images, a multiple of "
                         f"{dataset.num_classes} for {dataset.name} (e.g. --labels "
                         f"{4 * dataset.num_classes})")
    return [f"dataset={dataset.name}", f"dataset.labels={args.labels}"], dataset.name


def cmd_ssl(args) -> int:
    from pnl_da.engine.tasks import compose, default_out_dir

    base, name = _ssl_dataset_overrides(args)
    for item in args.overrides:
        key = item.partition("=")[0]
        if key in ("dataset", "dataset.name", "dataset.labels") or key.endswith("_folder"):
            raise UsageError(f"set the dataset and labels with the arguments, not '{item}': "
                             f"`pnl-da ssl DATASET --labels N`")
        if key == "dataset.split_seed" and args.split_seed is not None:
            raise UsageError(f"the split seed is given twice (--split-seed {args.split_seed} and "
                             f"'{item}'); keep one")
    if args.split_seed is not None:
        base.append(f"dataset.split_seed={args.split_seed}")
    base += _data_root_override(args.data_root, args.overrides)
    if args.multirun:
        top = Path("runs") / "ssl" / f"{name}-{args.labels}"
        return _sweep(args, "ssl", base, None, top,
                      lambda cfg: default_out_dir(cfg).relative_to(top))
    _refuse_sweeps(args)
    cfg = compose(base + list(args.overrides), mode="ssl")
    return _show_or_execute(cfg, args, default_out_dir(cfg))


def cmd_compare(args) -> int:
    from pnl_da.engine.compare import compare
    from pnl_da.engine.sweep import is_hydra_override

    # each method and seed once, in the order given (a repeat would count one run twice)
    methods = list(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip()))
    if not methods:
        raise UsageError(f"--methods '{args.methods}' names no method; write e.g. "
                         f"--methods {','.join(DEFAULT_METHODS)}")
    try:
        seeds = list(dict.fromkeys(int(s) for s in args.seeds.split(",") if s.strip()))
    except ValueError:
        seeds = None
    if not seeds:
        raise UsageError(f"--seeds '{args.seeds}' is not a comma-separated list of integers; "
                         "write e.g. --seeds 0,1,2")
    # Hydra's settings (hydra/launcher=joblib) say how to launch the runs, not what they are
    hydra = [o for o in args.overrides if is_hydra_override(o)]
    overrides = [o for o in args.overrides if not is_hydra_override(o)]
    refuse_task_overrides(overrides)
    base = _base_overrides(args.benchmark, args.task, args.data_root, [])
    compare(base, methods, seeds, overrides, hydra, _out_dir(args.out, None),
            log=lambda m: print(m, file=sys.stderr))
    return 0


def cmd_report(args) -> int:
    from pnl_da.report.report import write_report

    root = Path(args.runs_dir).expanduser()
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder; pass the folder that holds the runs "
                         "(e.g. runs/)")
    from pnl_da.engine.run import CONFIG

    # a folder of runs holds its report; a single run's goes beside it, never into it
    beside = (root / CONFIG).is_file()
    whole = root.resolve()
    out = _out_dir(args.out, whole.parent / f"{whole.name}-report" if beside
                   else root / "report")
    files = write_report(root, out, log=lambda m: print(m, file=sys.stderr))
    print(files["md"].read_text(), end="")
    print(f"written: {', '.join(str(p) for p in files.values())}")
    return 0


def cmd_analyze(args) -> int:
    from pnl_da.report.analyze import analyze_run

    run = Path(args.run_dir).expanduser()
    out = _out_dir(args.out, run / "analysis")
    summary = analyze_run(run, out, data_root=_data_root(args.data_root) if args.data_root
                          else None, images=args.images)
    for line in summary["lines"]:
        print(line)
    print(json.dumps(summary["metrics"]))
    return 0


def cmd_evaluate(args) -> int:
    from pnl_da.engine.evaluate_run import evaluate_run

    metrics, report = evaluate_run(Path(args.run_dir), domain=args.domain, split=args.split,
                                   data_root=_data_root(args.data_root) if args.data_root
                                   else None)
    print(report)
    print(json.dumps(metrics))
    return 0


def cmd_predict(args) -> int:
    from pnl_da.engine.predict import predict_run

    out = _out_dir(args.out, None)
    predict_run(Path(args.run_dir).expanduser(), args.paths, out=out, top_k=args.top_k,
                batch_size=args.batch_size, workers=args.workers, device=args.device,
                log=lambda m: print(m, file=sys.stderr))
    if out is not None:
        print(f"written: {out}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    from pnl_da.engine.export import export_run

    done = export_run(Path(args.run_dir).expanduser(), args.format, _out_dir(args.out, None),
                      data_root=_data_root(args.data_root) if args.data_root else None,
                      log=lambda m: print(m, file=sys.stderr))
    check = done["check"]
    print(f"exported {done['format']}: {done['files'][0]} (preprocessing and classes: "
          f"{done['files'][1]}); on {check['images']} its probabilities differ from PyTorch's "
          f"by at most {check['max_abs_difference']:.2e} (tolerance {check['tolerance']:g})")
    return 0


def cmd_download(args) -> int:
    from pnl_da.data.registry import BENCHMARKS, SSL_DATASETS, get_benchmark, get_ssl_dataset
    from pnl_da.engine.tasks import check_data_root

    root = _data_root(args.data_root)
    # a benchmark (domain adaptation) or a semi-supervised dataset: both have name + download
    name = args.name.lower()
    if name in BENCHMARKS:
        source, nothing = get_benchmark(name), "nothing to download"
    elif name in SSL_DATASETS:
        source, nothing = get_ssl_dataset(name), "bundled with pnl-da, nothing to download"
    else:
        raise UsageError(f"unknown dataset '{args.name}'; choose a benchmark "
                         f"({', '.join(BENCHMARKS)}) or a semi-supervised dataset "
                         f"({', '.join(SSL_DATASETS)})")
    check_data_root(root)
    if source.download is None:
        print(f"{source.name}: {nothing}")
        return 0
    from pnl_da.data.download import folders_near, remove_empty_folders

    created = {d for d in (Path(root), *Path(root).parents) if not d.exists()}
    before = folders_near(Path(root))
    try:
        lines = source.download(root)
    except BaseException as exc:
        # a failed download leaves no folder that it made and left empty, unless its message
        # asks for a file to be put there (office31/downloads/)
        named = str(exc)
        remove_empty_folders(d for d in created | (folders_near(Path(root)) - before)
                             if f"{d}/" not in named)
        raise
    for line in lines:
        print(line)
    return 0


def cmd_list(args) -> int:
    from pnl_da.config import available
    from pnl_da.data.registry import BENCHMARKS
    from pnl_da.data.ssl_datasets import SSL_DATASETS
    from pnl_da.methods import METHODS

    what = args.what or "all"
    if what in ("datasets", "all"):
        print("semi-supervised datasets (pnl-da ssl DATASET --labels N):")
        for d in SSL_DATASETS.values():
            print(f"  {d.name}: {d.num_classes} classes; {d.description}")
    if what in ("benchmarks", "all"):
        print("benchmarks:")
        for bench in BENCHMARKS.values():
            print(f"  {bench.name}: {bench.description}; tasks e.g. "
                  f"{', '.join(bench.standard_tasks)}")
            for d in bench.domains:
                alias = f" ({', '.join(d.aliases)})" if d.aliases else ""
                print(f"    {d.name}{alias}: {d.description}")
            if bench.partial_protocol:
                kept = bench.partial_protocol
                print(f"    partial-set (benchmark.partial=true): the target keeps {len(kept)} of "
                      f"{bench.num_classes} classes: {', '.join(kept)}")
    if what in ("methods", "all"):
        def in_order(names):  # the methods' own order, as in the report's tables
            return sorted(names, key=lambda name: (METHODS[name].order, name))

        print("methods (pnl-da run / compare):")
        for name in in_order(available("method")):
            print(f"  {name}: {METHODS[name].summary}")
        print("methods (pnl-da ssl):")
        for name in in_order(available("method", "ssl")):
            print(f"  {name}: {METHODS[name].ssl_summary or METHODS[name].summary}")
    if what in ("backbones", "all"):
        print("backbones (pnl-da run / compare):")
        for name in available("backbone"):
            print(f"  {name}")
        print("backbones (pnl-da ssl):")
        for name in available("backbone", "ssl"):
            print(f"  {name}")
        print("  either mode: any timm model name, e.g. backbone.name=resnet50 (input size: "
              "data.image_size)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pnl-da", description=(
        "Domain adaptation and semi-supervised classification with pseudo-negative labels "
        "(PNL), beside DANN, CDAN, MCC, MDD, FixMatch and Mean Teacher."))
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"pnl-da {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    def common(p, overrides=True):
        p.add_argument("--debug", action="store_true", help="show tracebacks")
        p.add_argument("--data-root", default=None,
                       help="datasets folder (default: $PNL_DA_DATA, else ./data)")
        p.set_defaults(accepts_overrides=overrides)

    def training(p):
        """The options of the commands that train (run, ssl)."""
        p.add_argument("--resume", action="store_true", help="continue from checkpoints/last.pt")
        p.add_argument("--resume-from", choices=("last", "prev"), default=None,
                       help="prev: continue from checkpoints/prev.pt, the checkpoint before the "
                       "last (last.pt is set aside, not deleted)")
        p.add_argument("--show-config", action="store_true",
                       help="print the resolved configuration and exit (--multirun: the jobs)")
        p.add_argument("--multirun", "-m", action="store_true",
                       help="a sweep: one job per task and value (method=dann,pnl seed=0,1,2), "
                       "launched by Hydra (hydra/launcher=joblib|submitit_local|slurm_gpu)")
        p.add_argument("--objective", default=None,
                       help="--multirun: the label-free score to choose by (entropy, im, snd, "
                       "dev; an optimising sweeper such as hydra/sweeper=optuna maximises or "
                       "minimises it)")
        common(p)

    shorter = ("A shorter run: add trainer.steps=N (e.g. trainer.steps=500; it also replaces "
               "a preset's length in epochs; --show-config shows the length). On a CPU a run "
               "uses the cores it may use; trainer.threads=N sets its torch threads.")
    run = sub.add_parser("run", help="train one method on one task",
                         usage="pnl-da run BENCHMARK TASK [KEY=VALUE ...] [options]",
                         epilog=shorter)
    run.add_argument("benchmark")
    run.add_argument("task", help="SOURCE->TARGET, e.g. 'uci->mnist-sample' (quote it); "
                     "then any KEY=VALUE overrides, e.g. method=dann trainer.steps=500")
    run.add_argument("--out", default=None, help="run folder (default: runs/<benchmark>/...)")
    training(run)
    run.set_defaults(func=cmd_run)

    ssl = sub.add_parser("ssl", help="semi-supervised: train one method on DATASET with N "
                         "labeled images",
                         usage="pnl-da ssl DATASET --labels N [KEY=VALUE ...] [options]",
                         epilog=shorter)
    ssl.add_argument("dataset", help="cifar10, cifar100, svhn, mnist, mnist-sample, uci, or "
                     "folders (your own: --labeled DIR --unlabeled DIR); then "
                     "any KEY=VALUE overrides, e.g. method=fixmatch or ssl.model=shared")
    ssl.add_argument("--labels", type=int, default=None,
                     help="labeled images in all, class-balanced (a multiple of the classes); "
                     "folders: optional, default every labeled image")
    ssl.add_argument("--labeled", default=None, metavar="DIR",
                     help="folders: your labeled images, a folder per class")
    ssl.add_argument("--unlabeled", default=None, metavar="DIR",
                     help="folders: your unlabeled images")
    ssl.add_argument("--test", default=None, metavar="DIR",
                     help="folders: labeled images to score on (default: the unlabeled folder, "
                     "by accuracy where it has class folders, else by label-free scores)")
    ssl.add_argument("--split-seed", type=int, default=None,
                     help="seed of the labeled subset (default: the run seed)")
    ssl.add_argument("--out", default=None,
                     help="run folder (default: runs/ssl/<dataset>-<labels>/<method>/seed<seed>, "
                     "then -split<S> where the split seed is another)")
    training(ssl)
    ssl.set_defaults(func=cmd_ssl)

    cmp = sub.add_parser("compare", help="several methods x seeds on one task, one table",
                         usage="pnl-da compare BENCHMARK TASK [KEY=VALUE ...] [options]")
    cmp.add_argument("benchmark")
    cmp.add_argument("task", help="SOURCE->TARGET (quote it); then any KEY=VALUE overrides, "
                     "given to every method that reads them")
    cmp.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                     help="comma-separated (default: %(default)s)")
    cmp.add_argument("--seeds", default="0,1,2", help="comma-separated (default: %(default)s)")
    cmp.add_argument("--out", default=None, help="folder of the runs and the table")
    common(cmp)
    cmp.set_defaults(func=cmd_compare)

    ev = sub.add_parser("evaluate", help="score a finished run on a domain and split")
    ev.add_argument("run_dir")
    ev.add_argument("--domain", "--dataset", default=None,
                    help="default: the run's target domain (SSL runs: its dataset); for an SSL "
                    "run, any dataset with the same classes, e.g. --dataset mnist")
    ev.add_argument("--split", default=None, choices=("test", "train", "all"),
                    help="default: the split the run was scored on (test where there is one)")
    common(ev, overrides=False)
    ev.set_defaults(func=cmd_evaluate)

    rep = sub.add_parser("report", help="every finished run below a folder: tables (md, csv, "
                         "tex, html), pictures, label-free model selection")
    rep.add_argument("runs_dir")
    rep.add_argument("--out", default=None, help="default: RUNS_DIR/report; for a single run's "
                     "folder, RUN_DIR-report beside it")
    rep.add_argument("--debug", action="store_true")
    rep.set_defaults(func=cmd_report, accepts_overrides=False)

    an = sub.add_parser("analyze", help="a finished run's features: t-SNE by domain and class, "
                        "proxy A-distance")
    an.add_argument("run_dir")
    an.add_argument("--out", default=None, help="default: RUN_DIR/analysis")
    an.add_argument("--images", type=int, default=1000,
                    help="images per domain (a fixed subset; default %(default)s)")
    common(an, overrides=False)
    an.set_defaults(func=cmd_analyze)

    pr = sub.add_parser("predict", help="classify image files with a finished run's model: a "
                        "CSV of path, class, probability",
                        usage="pnl-da predict RUN_DIR PATH... [--out FILE.csv] [--top-k K]")
    pr.add_argument("run_dir")
    pr.add_argument("paths", nargs="*", metavar="PATH",
                    help="image files and folders (searched recursively)")
    pr.add_argument("--out", default=None, help="CSV file (default: standard output)")
    pr.add_argument("--top-k", type=int, default=1,
                    help="also the 2nd to k-th most likely classes (default %(default)s)")
    pr.add_argument("--batch-size", type=int, default=None,
                    help="images per batch (default: the run's evaluation batch, at most 256)")
    pr.add_argument("--workers", type=int, default=None,
                    help="processes decoding images (default: up to 4)")
    pr.add_argument("--device", default="auto", help="auto (the GPU where there is one), cpu, "
                    "cuda, cuda:N")
    pr.add_argument("--debug", action="store_true", help="show tracebacks")
    pr.set_defaults(func=cmd_predict, accepts_overrides=False)

    ex = sub.add_parser("export", help="a finished run's model as ONNX or TorchScript, with its "
                        "preprocessing and class names in a JSON beside it",
                        usage="pnl-da export RUN_DIR [--format onnx|torchscript] [--out FILE]")
    ex.add_argument("run_dir")
    ex.add_argument("--format", default="onnx", choices=("onnx", "torchscript"))
    ex.add_argument("--out", default=None,
                    help="model file (default: RUN_DIR/export/model.onnx or model.pt)")
    common(ex, overrides=False)
    ex.set_defaults(func=cmd_export)

    dl = sub.add_parser("download", help="fetch a benchmark's datasets into the data root")
    dl.add_argument("name")
    common(dl, overrides=False)
    dl.set_defaults(func=cmd_download)

    ls = sub.add_parser("list", help="benchmarks, datasets, methods or backbones")
    ls.add_argument("what", nargs="?",
                    choices=("benchmarks", "datasets", "methods", "backbones"))
    ls.add_argument("--debug", action="store_true")
    ls.set_defaults(func=cmd_list)
    return parser


def _under_torchrun() -> bool:
    from pnl_da.engine import distributed

    return distributed.launched()


def _resume_command(argv: list[str]) -> str:
    """The command that was run, with --resume (and without a --resume-from)."""
    words, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--resume-from":
            skip = True
        elif word != "--resume" and not word.startswith("--resume-from="):
            words.append(word)
    from pnl_da.engine import distributed

    size = distributed.world().size
    start = ["torchrun", f"--nproc_per_node={size}", "-m", "pnl_da"] if size > 1 else ["pnl-da"]
    return shlex.join([*start, *words, "--resume"])


def _interrupted_message(exc: KeyboardInterrupt, command: str | None, argv: list[str]) -> str:
    """What a stop left behind and how to go on: a compare resumes by itself when run again,
    a single run with the same command and --resume; before a run's first checkpoint there is
    nothing to resume."""
    signum = getattr(exc, "signum", signal.SIGINT)
    how = "interrupted (Ctrl-C)" if signum == signal.SIGINT else \
        f"stopped by {signal.Signals(signum).name}"
    during = getattr(exc, "during", None)
    if during is not None:  # what the stop's unwinding raised, named rather than hidden
        how += f" (on the way out: {type(during).__name__}: {first_line(during)})"
    if not isinstance(exc, Interrupted) or exc.out_dir is None:
        return how
    at = f" at step {exc.step}" if exc.step is not None else ""
    if not exc.has_checkpoint:
        return (f"{how}{at}, before the first checkpoint of {exc.out_dir}; nothing to resume: "
                "the same command starts it afresh")
    if command == "compare":
        how_on = "run the same command again: finished runs are reused and this one resumes"
    else:
        how_on = f"continue with: {_resume_command(argv)}"
    return (f"{how}{at}; {exc.out_dir} keeps its checkpoint of step {exc.checkpoint_step}; "
            f"{how_on}")


def main(argv: list[str] | None = None) -> int:
    from pnl_da.engine.threads import share_cores

    share_cores()  # before torch is imported: OpenMP reads it once
    from pnl_da.engine import distributed, signals

    # SIGTERM and SIGINT stop every command with one line and 128 + the signal, from here on
    try:
        with signals.handled():
            if distributed.world().main:
                return _main(sys.argv[1:] if argv is None else argv)
            # under torchrun, process 0 speaks for all: the others print nothing
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), \
                    contextlib.redirect_stderr(quiet):
                return _main(sys.argv[1:] if argv is None else argv)
    finally:
        distributed.shutdown()


def _main(argv: list[str]) -> int:
    debug = "--debug" in argv
    command = None
    try:
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
        command = getattr(args, "command", None)
        if not command:
            parser.print_help()
            return 2
        if _under_torchrun() and getattr(args, "multirun", False):
            raise UsageError("--multirun launches its jobs itself; start it without torchrun "
                             "(a job on several processes: hydra/launcher=slurm_8gpu)")
        if command not in ("run", "ssl") and _under_torchrun():
            raise UsageError(f"`pnl-da {command}` runs in one process: start it without "
                             "torchrun (torchrun trains one run on several processes: "
                             "`pnl-da run` and `pnl-da ssl`)")
        # Hydra overrides (KEY=VALUE) may stand anywhere among the options.
        args.overrides = [a for a in rest if "=" in a and not a.startswith("-")]
        unknown = [a for a in rest if a not in args.overrides]
        ssl_only = [option for option in (a.partition("=")[0] for a in rest)
                    if option in ("--labels", "--split-seed", "--labeled", "--unlabeled")]
        if args.command in ("run", "compare") and ssl_only:
            raise UsageError(f"{ssl_only[0]} belongs to semi-supervised runs: `pnl-da ssl DATASET "
                             f"--labels N`; `pnl-da {args.command}` trains on a labeled source "
                             f"domain and takes no {ssl_only[0]}")
        if unknown or (args.overrides and not getattr(args, "accepts_overrides", False)):
            bad = (unknown or args.overrides)[0]
            raise UsageError(f"unrecognized argument '{bad}' for `pnl-da {args.command}` "
                             f"(see `pnl-da {args.command} --help`)")
        return args.func(args)
    except KeyboardInterrupt as exc:  # SIGINT or SIGTERM: 128 + the signal, as a shell reports
        during = getattr(exc, "during", None)
        if debug and during is not None:
            traceback.print_exception(during)
        print(f"pnl-da: {_interrupted_message(exc, command, argv)}", file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    except BrokenPipeError:
        # the reader of stdout went away (`pnl-da list | head`): stop quietly, as shell tools
        # do; stdout goes to /dev/null so that Python's flush at exit cannot fail again
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141  # 128 + SIGPIPE
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        from pnl_da.engine.signals import stopped_by

        # raised while a signal unwound the command: the stop's doing, even where it reads as
        # a refusal
        if stopped_by() is not None:
            if debug:
                traceback.print_exc()
            stop = Interrupted(None, None, stopped_by(), during=exc)
            print(f"pnl-da: {_interrupted_message(stop, command, argv)}", file=sys.stderr)
            return 128 + stop.signum
        if isinstance(exc, PnlError):
            if debug:  # the traceback as well, and the same exit code
                traceback.print_exc()
            print(f"pnl-da: error: {exc}", file=sys.stderr)
            return exc.exit_code
        if debug:
            traceback.print_exc()
            return 1
        print(f"pnl-da: error: {type(exc).__name__}: {first_line(exc, None)} (rerun with "
              "--debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
