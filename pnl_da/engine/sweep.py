"""Sweeps through Hydra's multirun: its sweep syntax, its launchers (joblib, submitit).

    pnl-da run office31 'A->W,D->W' --multirun method=dann,pnl seed=0,1,2
    pnl-da run office31 'A->W,D->W' --multirun method=dann,pnl seed=0,1,2 hydra/launcher=joblib
    pnl-da ssl mnist-sample --labels 20 --multirun method=pnl,fixmatch seed=0,1,2,3,4 \\
        hydra/launcher=slurm_gpu

Every job is planned before any starts: Hydra's own expansion of the overrides (its basic
sweeper's) gives the jobs, each is composed and checked as a single run would be, and its run
folder is looked at, so a bad value or a folder holding another run fails the sweep before it
trains anything. Hydra then launches the jobs; each job runs its planned configuration into its
own run folder (a finished one is reused, an unfinished one resumed: running the same sweep
again finishes it). Hydra's own files (multirun.yaml, each job's .hydra/ and log) go to
``<root>/multirun/<date_time>/<job number>/``, beside the run folders, not into them.

A submitit job preempted or timed out on Slurm gets submitit's SIGUSR2: the run checkpoints the
step under way, and submitit requeues the job, which resumes from that checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from pnl_da.errors import PnlError, UsageError

# the launchers of the plugins pnl-da's extra "sweep" installs
PLUGINS = ("joblib", "submitit_local", "submitit_slurm")
JOB_GROUP = "pnl_da_job"  # +pnl_da_job=job3 names a planned job, where jobs are no product
TASK_GROUP = "task"  # a domain-adaptation task, as a sweepable choice: +task=amazon2webcam


def is_hydra_override(item: str) -> bool:
    """``hydra/launcher=joblib``, ``hydra.launcher.n_jobs=4``: Hydra's own settings."""
    key = item.partition("=")[0].lstrip("+~")
    return key == "hydra" or key.startswith(("hydra/", "hydra."))


def check_launchers(hydra_args: list[str]) -> None:
    """A launcher that is neither installed nor a preset of configs/hydra/launcher/ is named
    with what brings it, before anything is planned."""
    from hydra.core.config_store import ConfigStore
    from hydra.core.plugins import Plugins

    from pnl_da.config import config_dir

    presets = config_dir("da") / "hydra" / "launcher"
    for item in hydra_args:
        key, _, value = item.partition("=")
        if key.lstrip("+") != "hydra/launcher":
            continue
        base, seen = value, set()
        while (presets / f"{base}.yaml").is_file() and base not in seen:  # a preset's base
            from omegaconf import OmegaConf

            seen.add(base)
            defaults = OmegaConf.load(presets / f"{base}.yaml").get("defaults") or []
            base = next((d for d in defaults if isinstance(d, str) and d != "_self_"), base)
        Plugins.instance()  # registers the installed plugins' launchers
        installed = [name.removesuffix(".yaml") for name in
                     ConfigStore.instance().repo.get("hydra", {}).get("launcher", {})]
        if base in installed:
            continue
        if base in PLUGINS:
            raise UsageError(f"hydra/launcher={value} needs Hydra's {base.split('_')[0]} "
                             "launcher plugin: pip install 'pnl-da[sweep]'")
        known = sorted({*installed, *PLUGINS, *(p.stem for p in presets.glob("*.yaml"))})
        raise UsageError(f"unknown launcher hydra/launcher={value}; choose one of: "
                         f"{', '.join(known)}")


def expand(overrides: list[str]) -> list[list[str]]:
    """The jobs of a sweep, as Hydra's basic sweeper makes them (the cartesian product of
    every swept value, in its order and spelling)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        return BasicSweeper.split_arguments(parsed, None)[0]
    except HydraException as exc:
        reason = " ".join(str(exc).split("See https")[0].split())
        raise UsageError(f"cannot read the sweep ({reason}); write KEY=A,B or "
                         "KEY=range(0,3)") from None


def swept_keys(jobs: list[list[str]]) -> list[str]:
    """The keys whose value differs between jobs."""
    values: dict[str, set] = {}
    for job in jobs:
        for item in job:
            key, _, value = item.partition("=")
            values.setdefault(key, set()).add(value)
    return [k for k, v in values.items() if len(v) > 1]


@dataclass
class Job:
    overrides: list[str]  # the job's overrides as Hydra hands them over (its identity)
    cfg: DictConfig  # composed and checked as a single run's
    out: Path  # its run folder
    resume_hint: str = "run the same command again"
    threads: int | None = None  # torch threads of its process (None: torch's default)


@dataclass
class Sweep:
    mode: str  # "da" or "ssl"
    jobs: list[Job]
    hydra_args: list[str]  # the sweep as given to Hydra, and Hydra's own settings
    root: Path
    task_nodes: dict[str, tuple[str, str]] = field(default_factory=dict)  # +task choices
    labelled: bool = False  # jobs named by +pnl_da_job=N (compare), not by their overrides
    # a sweeper that chooses its jobs as it goes (Optuna): the job of a set of overrides
    planner: Callable[[list[str]], Job] | None = None
    objective: str | None = None  # the label-free score each job returns to the sweeper


def folder_for(root: Path, relative: Path, job: list[str], extra_keys: list[str]) -> Path:
    """A job's run folder: the single run's default below ``root``, with the other swept
    options as a folder before its ``seed<N>`` (``pnl/method.k=3/seed0``), so that no two
    jobs share one."""
    extras = [item for item in job if item.partition("=")[0] in extra_keys]
    if not extras:
        return root / relative
    name = ",".join(item.lstrip("+").replace("/", "_") for item in extras)
    return root / relative.parent / name / relative.name


def register(sweep: Sweep) -> None:
    """The config nodes the sweep's job labels name (kept in Hydra's ConfigStore, which Hydra
    hands to every launched job)."""
    from hydra.core.config_store import ConfigStore

    from pnl_da.config import register_schemas

    register_schemas()
    store = ConfigStore.instance()
    for name, (source, target) in sweep.task_nodes.items():
        store.store(group=TASK_GROUP, name=name, package="_global_",
                    node={"benchmark": {"source": source, "target": target}})
    if sweep.labelled:
        for index in range(len(sweep.jobs)):
            store.store(group=JOB_GROUP, name=f"job{index}", node={}, package="_global_")


def launch(sweep: Sweep, log=print) -> int:
    """Run the planned jobs through Hydra's multirun with its launcher; returns the exit code
    (0 when every job finished, else that of the first failure)."""
    import hydra

    from pnl_da.config import config_dir

    register(sweep)
    plans = {tuple(job.overrides): job for job in sweep.jobs}
    failures: list[int] = []

    def run_job(_cfg):
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
        job = plans.get(tuple(overrides))
        if job is None and sweep.planner is not None:  # a job the sweeper chose
            try:
                job = sweep.planner(overrides)
            except PnlError as exc:
                print(f"pnl-da: error: {' '.join(overrides)}: {exc}", file=sys.stderr)
                return float("nan") if sweep.objective else None
        if job is None:
            raise RuntimeError(f"a job pnl-da did not plan: {overrides}")
        result = run_planned(job)
        if sweep.objective is None:
            return result
        # the sweeper optimises a score of target images alone, never a target-label metric
        value = ((result or {}).get("validation") or {}).get(sweep.objective)
        return float("nan") if value is None else float(value)

    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    argv = ["--multirun", f"hydra.sweep.dir={sweep.root}/multirun/{stamp}",
            "hydra.sweep.subdir=${hydra.job.num}", *sweep.hydra_args]
    if sweep.mode == "ssl":  # the launcher presets live in configs/hydra/, for both modes
        argv.insert(1, f"hydra.searchpath=[file://{config_dir('da')}]")
    app = hydra.main(version_base=None, config_path=str(config_dir(sweep.mode)),
                     config_name="config")(run_job)
    saved = sys.argv
    sys.argv = ["pnl-da", *argv]
    try:
        app()
    except SystemExit as exc:  # Hydra's own failure, already printed (a job never raises)
        failures.append(int(exc.code or 1))
    finally:
        sys.argv = saved
    if sweep.planner is not None and not sweep.jobs:  # the sweeper's jobs: found afterwards
        sweep.jobs = [job for job in (_job_of(sweep, f) for f in _results_below(sweep.root))
                      if job is not None]
    finished = [job for job in sweep.jobs if (job.out / "result.json").is_file()]
    log(f"{len(finished)} of {len(sweep.jobs)} jobs finished, in {sweep.root}")
    if sweep.objective and finished:
        from pnl_da.engine.validators import BETTER

        scored = [(json.loads((job.out / "result.json").read_text()).get("validation") or {})
                  .get(sweep.objective) for job in finished]
        pairs = [(v, job) for v, job in zip(scored, finished) if v is not None]
        if pairs:
            pick = (max if BETTER[sweep.objective] == "higher" else min)(pairs,
                                                                          key=lambda p: p[0])
            log(f"chosen by {sweep.objective} ({BETTER[sweep.objective]} is better, no target "
                f"label read): {pick[1].out} ({sweep.objective} {pick[0]:.4f})")
    for job in sweep.jobs:
        if job not in finished:
            log(f"  not finished: {job.out} ({' '.join(job.overrides)})")
    if failures or len(finished) < len(sweep.jobs):
        return failures[0] if failures else 1
    return 0


def _results_below(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("config.yaml")
                  if "multirun" not in p.relative_to(root).parts)


def _job_of(sweep: Sweep, folder: Path) -> Job | None:
    from omegaconf import OmegaConf

    try:
        return Job([], OmegaConf.load(folder / "config.yaml"), folder)
    except Exception:  # noqa: BLE001 - not a run of the sweep
        return None


def run_planned(job: Job) -> dict | None:
    """One job: its run, reused, resumed or trained. An error is the job's one line (the other
    jobs go on); a signal stops the sweep."""
    from pnl_da.engine.run import execute, holds_run
    from pnl_da.engine.tasks import task_class

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if job.threads:  # the run sets them (trainer.threads, not what it computes)
        job.cfg.trainer.threads = job.threads
    from pnl_da.engine import distributed

    join_submitit_tasks()
    if not distributed.world().main:  # process 0 of the job speaks for it
        log = lambda message: None  # noqa: E731
    try:
        result = execute(job.cfg, job.out, resume=holds_run(job.out), log=log,
                         go_on=job.resume_hint)
    except PnlError as exc:
        log(f"pnl-da: error: {job.out}: {exc}")
        return None
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a job's unexpected failure is still one line
        log(f"pnl-da: error: {job.out}: {type(exc).__name__}: {exc}")
        return None
    finally:
        distributed.shutdown()  # a job of several tasks: its process group ends with it
    if result is not None:
        print(task_class(job.cfg).result_line(result, job.out), flush=True)
    return result


def join_submitit_tasks() -> None:
    """A submitit job of several tasks (``hydra.launcher.tasks_per_node=8``) is one run on as
    many processes: submitit's helper sets the variables torchrun would (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR/PORT), and the run trains with DDP as under torchrun."""
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def check_folders(jobs: list[Job]) -> None:
    """Refuse, before anything trains, a job folder holding another run, and two jobs in one
    folder."""
    from pnl_da.config import to_yaml
    from pnl_da.engine.run import saved_run_difference

    seen: dict[Path, Job] = {}
    for job in jobs:
        if job.out in seen:
            raise UsageError(f"two jobs would share {job.out} ({' '.join(seen[job.out].overrides)}"
                             f" and {' '.join(job.overrides)}); give each its own value")
        seen[job.out] = job
        diff = saved_run_difference(job.out, to_yaml(job.cfg))
        if diff:
            raise UsageError(f"{job.out} holds a run with another configuration ({diff}); a "
                             "sweep reuses identical runs only: choose another --out, or delete "
                             "that folder to train it again")


def product_sweep(mode: str, base: list[str], overrides: list[str], root: Path,
                  relative, tasks: dict[str, tuple[str, str]] | None = None,
                  objective: str | None = None) -> Sweep:
    """The sweep of ``run``/``ssl --multirun``: ``base`` (the command's arguments as overrides),
    ``overrides`` (KEY=A,B sweeps and Hydra settings), the tasks (domain adaptation); each job
    composed and placed at ``root / relative(cfg)``, the single run's folder below ``root``.
    With a sweeper that chooses its jobs (``hydra/sweeper=optuna``), the settings it leaves
    fixed are checked now and each job when the sweeper makes it; ``objective`` names the
    label-free score a job returns to it."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from pnl_da.config import quoted
    from pnl_da.engine.tasks import compose
    from pnl_da.engine.validators import BETTER

    hydra_args = [o for o in overrides if is_hydra_override(o)]
    check_launchers(hydra_args)
    optimising = any(o.partition("=")[0].lstrip("+") == "hydra/sweeper" and
                     not o.endswith("=basic") for o in hydra_args)
    if objective is not None and objective not in BETTER:
        raise UsageError(f"--objective {objective}: a sweep optimises a score of target images "
                         f"alone, never a target-label metric; choose one of: "
                         f"{', '.join(BETTER)}")
    if optimising and objective is None:
        raise UsageError("a sweeper that optimises needs the score to optimise: add --objective "
                         f"with one of {', '.join(BETTER)} (computed without target labels)")
    if objective and optimising and not any(o.startswith("hydra.sweeper.direction=")
                                            for o in hydra_args):
        direction = "maximize" if BETTER[objective] == "higher" else "minimize"
        hydra_args.append(f"hydra.sweeper.direction={direction}")
    sweep_args = [*base, *(o for o in overrides if not is_hydra_override(o))]
    if tasks:
        sweep_args.append(f"+{TASK_GROUP}={','.join(tasks)}")
    if optimising:  # the sweeper draws the values: they become the jobs' folders
        parsed = OverridesParser.create().parse_overrides(sweep_args)
        extra = [o.get_key_element() for o in parsed if o.is_sweep_override()]
    else:
        expanded = expand(sweep_args)
        extra = swept_keys(expanded)
    extra = [k for k in extra if k not in ("method", "seed", "dataset.split_seed",
                                            f"+{TASK_GROUP}")]

    def planner(job: list[str]) -> Job:
        ours = [o for o in job if not o.startswith(f"+{TASK_GROUP}=")]
        name = next((o.split("=", 1)[1] for o in job if o.startswith(f"+{TASK_GROUP}=")), None)
        if name is not None:
            source, target = tasks[name]
            ours += [f"benchmark.source={quoted(source)}", f"benchmark.target={quoted(target)}"]
        cfg = compose(ours, mode=mode)
        return Job(job, cfg, folder_for(root, relative(cfg), job, extra))

    if optimising:
        fixed = [o for o in OverridesParser.create().parse_overrides(sweep_args)
                 if not o.is_sweep_override()]
        planner([o.input_line for o in fixed])  # what the sweeper leaves fixed, checked now
        jobs = []
    else:
        jobs = [planner(job) for job in expanded]
        check_folders(jobs)
    return Sweep(mode, jobs, [*sweep_args, *hydra_args], root, tasks or {},
                 planner=planner if optimising else None, objective=objective)


def labelled_sweep(mode: str, planned: list[tuple[DictConfig, Path]], hydra_args: list[str],
                   root: Path, threads: int | None = None) -> Sweep:
    """A sweep of jobs planned elsewhere (compare's methods and seeds, each method with its
    own options): Hydra launches ``+pnl_da_job=0,1,...``, each naming one of them."""
    check_launchers(hydra_args)
    jobs = [Job([f"+{JOB_GROUP}=job{i}"], cfg, out, threads=threads)
            for i, (cfg, out) in enumerate(planned)]
    labels = ",".join(f"job{i}" for i in range(len(jobs)))
    return Sweep(mode, jobs, [f"+{JOB_GROUP}={labels}", *hydra_args], root, labelled=True)


def tasks_of(benchmark: str, tasks: str) -> dict[str, tuple[str, str]]:
    """``'A->W,D->W'`` as sweep choices: {"amazon2webcam": ("amazon", "webcam"), ...}."""
    from pnl_da.data.registry import get_benchmark

    bench = get_benchmark(benchmark)
    found = {}
    for task in (t.strip() for t in tasks.split(",")):
        if not task:
            continue
        source, target = bench.parse_task(task)
        # the choice's name stands in an override (+task=NAME): folder names may not
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", bench.task_dirname(source.name, target.name))
        found[label] = (source.name, target.name)
    if not found:
        raise UsageError(f"'{tasks}' names no task; write e.g. 'A->W,D->W'")
    return found


