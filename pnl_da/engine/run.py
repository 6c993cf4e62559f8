"""One run from a resolved configuration to a finished run directory.

Order matters so that bad input never costs anything already written: configuration and
output folder are checked, then the data is loaded, and only then is anything written.
"""

from __future__ import annotations

import json
import platform
import signal
import socket
import subprocess
import time
from pathlib import Path

from omegaconf import DictConfig

from pnl_da.config import first_difference, to_yaml
from pnl_da.engine import distributed, signals
from pnl_da.engine.checkpoint import LAST, PREVIOUS, checkpoint_step
from pnl_da.engine.evaluate import per_class_table
from pnl_da.engine.metrics_log import METRICS
from pnl_da.engine.results import RESULT, chosen_prediction
from pnl_da.engine.tasks import comparable, task_class, task_of
from pnl_da.engine.trainer import Trainer, resolve_device
from pnl_da.errors import Interrupted, PnlError, UsageError, first_line
from pnl_da.files import WriteFailed, lock_folder, remove_stale_temporaries, write_json, write_text
from pnl_da.models.factory import (
    check_input_size,
    check_weights_available,
    check_weights_file,
)

CONFIG = "config.yaml"
ENV = "env.json"  # versions, device, processor, commit: where each segment of the run was made
# what makes a folder hold a run (see holds_run)
RUN_FILES = (RESULT, str(LAST), str(PREVIOUS), METRICS)
# what env.json keeps of each segment of a run (a resumed run has one per start)
SEGMENT_KEYS = ("host", "device", "gpu", "cpu", "cpu_threads", "torch", "git_commit",
                "git_tracked_files_changed")


def saved_config(out_dir: Path) -> dict:
    """The comparable configuration of the run kept in ``out_dir``; a config.yaml that is not
    pnl-da's (unparsable, or keys pnl-da does not have) is a usage error, not a traceback."""
    path = out_dir / CONFIG
    try:
        return comparable(path.read_text())
    except Exception as exc:  # YAML errors, schema errors, undecodable bytes
        reason = first_line(exc) or type(exc).__name__
        raise UsageError(f"{path} is not a pnl-da run configuration ({reason}); {out_dir} is "
                         "not a pnl-da run: choose another --out") from None


def finished_result(out_dir: Path, cfg_yaml: str) -> dict | None:
    """The result of a finished run in ``out_dir`` made with the same configuration, if any."""
    result, config = out_dir / RESULT, out_dir / CONFIG
    if not (result.is_file() and config.is_file()):
        return None
    if saved_config(out_dir) != comparable(cfg_yaml):
        return None
    return json.loads(result.read_text())


def holds_run(out_dir: Path) -> bool:
    """A run is something to keep once it has a checkpoint or a result. A folder holding only
    the config.yaml and env.json of a run that stopped before its first checkpoint (a crash, a
    Ctrl-C, a compare that was killed) is started afresh: there is nothing in it to resume."""
    return any((out_dir / name).is_file() for name in RUN_FILES)


def saved_run_difference(out_dir: Path, cfg_yaml: str) -> str | None:
    """How the run kept in ``out_dir`` differs from ``cfg_yaml`` (None: no run, or the same)."""
    if not (holds_run(out_dir) and (out_dir / CONFIG).is_file()):
        return None
    saved, now = saved_config(out_dir), comparable(cfg_yaml)
    kinds = [task_class(c).description for c in (saved, now)]
    if kinds[0] != kinds[1]:
        return f"the run is {kinds[0]}, this command is {kinds[1]}"
    return first_difference(saved, now)


def comparison_runs(folder: Path, marker: str = CONFIG) -> list[Path]:
    """The run folders of a comparison below ``folder`` (``<method>/seed<N>/``), those holding
    ``marker``: config.yaml for every run begun, result.json for the finished ones."""
    return sorted(p.parent for p in folder.glob(f"*/seed*/{marker}"))


def refuse_file(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"output folder {out_dir} is a file; pass --out with a folder path")


def check_out_dir(out_dir: Path, cfg_yaml: str, resume: bool) -> None:
    """Refuse an output folder that cannot be written or already holds another run."""
    refuse_file(out_dir)
    # a comparison: its table, or (while it trains, or after it was stopped) its runs, each
    # in <method>/seed<N>/ below it
    has_table, runs = (out_dir / "comparison.md").is_file(), comparison_runs(out_dir)
    if has_table or runs:
        what = ("comparison.md" if has_table
                else f"{runs[0].relative_to(out_dir)}/ and {len(runs) - 1} more run(s)")
        raise UsageError(f"output folder {out_dir} holds a comparison ({what}); give the "
                         f"run a folder of its own, e.g. --out {out_dir / 'single'}")
    if (out_dir / CONFIG).is_file():
        saved_config(out_dir)  # someone else's config.yaml is refused, never overwritten
    has_run = holds_run(out_dir)
    if has_run and not (out_dir / CONFIG).is_file():
        # every pnl-da run writes its config.yaml before anything else of it
        kept = [n for n in RUN_FILES if (out_dir / n).is_file()]
        raise UsageError(f"output folder {out_dir} holds {', '.join(kept)} but no {CONFIG}: it "
                         "is not a pnl-da run (or its config.yaml was deleted); choose another "
                         "--out")
    if has_run and not resume:
        diff = saved_run_difference(out_dir, cfg_yaml)
        if diff:  # the default folder names method and seed, not every option
            raise UsageError(f"output folder {out_dir} already holds a run of another "
                             f"configuration ({diff}); pass --out with a folder for this one")
        state = "a finished run" if (out_dir / RESULT).exists() else "an unfinished run"
        hint = ("pass --resume to continue it" if state == "an unfinished run"
                else "its result.json has the numbers")
        raise UsageError(f"output folder {out_dir} already holds {state}; {hint}, "
                         "or choose another --out")
    if resume:
        diff = saved_run_difference(out_dir, cfg_yaml)
        if diff:
            raise UsageError(f"cannot resume {out_dir} with another configuration ({diff}); "
                             "use the run's own settings or another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".pnl-da-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to output folder {out_dir} ({exc.strerror or exc}); "
                         "pass --out with a writable folder") from None


def environment(device: str) -> dict:
    import hydra
    import numpy
    import torch
    import torchvision

    def version(name):
        try:
            from importlib.metadata import version as v

            return v(name)
        except Exception:
            return None

    commit, changed = git_state(Path(__file__).resolve().parent)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"python": platform.python_version(), "platform": platform.platform(),
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": version("timm"), "albumentations": version("albumentations"),
            "hydra": hydra.__version__, "numpy": numpy.__version__,
            "pnl_da": version("pnl-da"), "host": socket.gethostname(), "device": device,
            "gpu": gpu, "cpu": cpu_model(),
            "cpu_threads": torch.get_num_threads(), "git_commit": commit,
            "git_tracked_files_changed": changed}


def cpu_model() -> str:
    """The processor's name. CPU float kernels differ by instruction set (AVX2, AVX-512), so a
    CPU run repeats its numbers exactly only on the same kind of processor."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def git_state(folder: Path) -> tuple[str | None, list[str] | None]:
    """(HEAD commit, tracked files that differ from it) of the checkout holding ``folder``;
    (None, None) outside one. The commit alone would pass a run made with edited code off as
    that commit's."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=folder,
                              timeout=5)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return None, None
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None, None
    changed = [line[3:] for line in status.stdout.splitlines()] if not status.returncode else None
    return head.stdout.strip() or None, changed


def execute(cfg: DictConfig, out_dir: Path, resume: bool = False, log=print,
            from_previous: bool = False, go_on: str = "continue with --resume") -> dict:
    """Train one configuration into ``out_dir``; returns (and writes) result.json.

    The folder is locked for the whole call (one writer per run folder); ``go_on`` is what a
    message says to do to continue after a stop (compare: run the same command again)."""
    cfg_yaml = to_yaml(cfg)
    # the folders this call creates (the run folder and missing parents), deepest first
    created = [d for d in (out_dir, *out_dir.parents) if not d.exists()]
    preflight(cfg)
    # under torchrun, process 0 looks at the folder and writes; the others follow its word
    world = distributed.init(resolve_device(distributed.device_for(cfg.trainer.device)))
    resume = resume or from_previous
    try:
        with signals.handled():
            lock = None
            try:
                if world.main:
                    lock, done = _claim(out_dir, cfg_yaml, resume, log)
                else:
                    done = _follow()
                if done is not None:
                    return done
                return _execute(cfg, cfg_yaml, out_dir, resume, from_previous,
                                log if world.main else (lambda message: None), world)
            finally:
                if lock is not None:
                    lock.release()
    except BaseException as exc:
        # a failure before anything was written (bad data, most often): leave no empty
        # folder behind
        from pnl_da.data.download import remove_empty_folders

        if not world.main:
            raise
        remove_empty_folders(created)
        if isinstance(exc, Interrupted):
            raise
        stop = signals.stopped_by()
        if isinstance(exc, KeyboardInterrupt):  # a signal outside the training loop
            raise Interrupted(out_dir, kept_step(out_dir),
                              getattr(exc, "signum", signal.SIGINT)) from None
        # an error raised while the stop unwound is the stop's doing, even one that reads as a
        # refusal; an exit (SystemExit) is left alone
        if stop is not None and isinstance(exc, Exception):
            raise Interrupted(out_dir, kept_step(out_dir), stop, during=exc) from None
        if isinstance(exc, WriteFailed) and out_dir.resolve() in exc.path.resolve().parents:
            step = kept_step(out_dir)
            kept = (f"{out_dir} keeps its checkpoint of step {step}: {go_on}" if step is not None
                    else "nothing was checkpointed: the same command starts the run afresh")
            raise exc.with_hint(kept) from None
        raise


def _claim(out_dir: Path, cfg_yaml: str, resume: bool, log):
    """Process 0's look at the folder: (its lock, the result of a finished run or None), told
    to the other processes; a refusal too, so that they stop with it."""
    try:
        refuse_file(out_dir)
        lock = lock_folder(out_dir)
        try:
            check_out_dir(out_dir, cfg_yaml, resume)
            # what writers killed mid-write left; none is being written: we hold the lock
            stale = [*remove_stale_temporaries(out_dir),
                     *remove_stale_temporaries(out_dir / LAST.parent)]
            if stale:
                log(f"removed {len(stale)} temporary file(s) left in {out_dir} by an "
                    "interrupted write")
            done = finished_result(out_dir, cfg_yaml) if resume else None
        except BaseException:
            lock.release()
            raise
    except PnlError as exc:
        distributed.broadcast({"refused": exc.exit_code})
        raise
    distributed.broadcast({"refused": None, "done": done})
    if done is not None:
        log(f"{out_dir} is already finished; nothing to do")
    return lock, done


def _follow():
    """What process 0 found (the other processes under torchrun)."""
    word = distributed.broadcast(None)
    if word["refused"] is not None:
        refusal = PnlError("refused by process 0")
        refusal.exit_code = word["refused"]
        raise refusal
    return word["done"]


def kept_step(out_dir: Path) -> int | None:
    """The step of the whole checkpoint a run folder keeps (None: nothing to resume)."""
    for name in (LAST, PREVIOUS):
        step = checkpoint_step(out_dir / name)
        if step is not None:
            return step
    return None


def record_environment(out_dir: Path, device: str, step: int, resumed: bool,
                       processes: int = 1) -> None:
    """env.json: this segment's environment, and every segment's (where it ran, from which
    step): a resumed run may continue on another machine."""
    env = environment(device)
    segments = []
    if resumed and (out_dir / ENV).is_file():
        try:
            old = json.loads((out_dir / ENV).read_text())
            # written before segments were recorded: its one segment is the file itself
            segments = old.get("segments") or [{"started": None, "from_step": None,
                                                **{k: old.get(k) for k in SEGMENT_KEYS}}]
        except (OSError, ValueError, AttributeError):
            segments = []
    segments.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "from_step": step,
                     "processes": processes, **{k: env[k] for k in SEGMENT_KEYS}})
    write_json(out_dir / ENV, {**env, "segments": segments})


def preflight(cfg: DictConfig) -> None:
    """The checks a configuration can fail without data or a folder (backbone name, weights
    file and input size, device, the method's checks that need the number of classes): made
    before the output folder is looked at, so that a bad option is named first, whatever the
    folder holds."""
    from pnl_da.methods import METHODS
    from pnl_da.models.factory import check_backbone_name, check_timm_input_size

    check_backbone_name(cfg.backbone.name)
    check_weights_file(cfg.backbone)
    check_processes(cfg)
    check_input_size(cfg.backbone.name, cfg.data.image_size)
    check_timm_input_size(cfg.backbone.name, int(cfg.backbone.channels), int(cfg.data.image_size))
    resolve_device(cfg.trainer.device)
    METHODS[cfg.method.name].check_classes(cfg.method, task_of(cfg).num_classes)


def check_processes(cfg: DictConfig) -> None:
    """Under torchrun: batches that split evenly over the processes, SyncBatchNorm on GPUs."""
    from pnl_da.engine import distributed

    size = distributed.world().size
    if size == 1:
        return
    tcfg = cfg.trainer
    for key in ("batch_size", "unlabeled_batch_size"):
        value = int(tcfg[key])
        if value % size:
            raise UsageError(f"trainer.{key}={value} is the global batch and does not split "
                             f"over {size} processes; use a multiple of {size}")
    device = resolve_device(distributed.device_for(tcfg.device))
    if tcfg.sync_bn and device.type != "cuda":
        raise UsageError("trainer.sync_bn=true needs GPUs (torch's SyncBatchNorm runs on CUDA "
                         "only); leave it out on CPUs")


def _execute(cfg: DictConfig, cfg_yaml: str, out_dir: Path, resume: bool, from_previous: bool,
             log, world) -> dict | None:
    """Load, train, score; the files are process 0's to write (the others return None)."""
    from pnl_da.engine import threads

    threads_line = threads.apply(cfg.trainer.threads)  # before any work, the data's included
    task = task_of(cfg)  # domain adaptation or semi-supervised: the only difference
    data = task.load()
    # the network last: a missing dataset or a bad option is named before unreachable weights
    check_weights_available(cfg.backbone)
    if resume:
        task.check_resume(out_dir)
    trainer = Trainer(cfg, data, out_dir)
    resumed = resume and trainer.resume(from_previous)
    if world.main:
        if not resumed:
            write_text(out_dir / CONFIG, cfg_yaml)
            (out_dir / METRICS).unlink(missing_ok=True)
        task.write_records(out_dir, resumed)
        record_environment(out_dir, str(trainer.device), trainer.step, resumed, world.size)
    if trainer.set_aside is not None:
        log(f"{out_dir / LAST} was set aside as {trainer.set_aside} (kept)")
    if resumed and trainer.resumed_from.name == PREVIOUS.name and not from_previous:
        log(f"{out_dir / LAST} is missing (a checkpoint write was interrupted): resuming from "
            f"{trainer.resumed_from}")
    if resumed:
        log(f"resuming {out_dir} from step {trainer.step}")
    elif resume:
        log(f"{out_dir} has no checkpoint to resume: starting the run")
    log(task.data_line(data))
    if trainer.device.type == "cpu":
        log(threads_line)
    summary = trainer.fit()
    if not world.main:
        return None
    wall_time = trainer.wall_time()  # a resumed run's includes its earlier segments
    evaluation = summary["evaluation"]
    if evaluation["heads"]:  # a target without labels has no per-class accuracy
        predicted = chosen_prediction(evaluation, cfg.method.predict)[0]
        write_text(out_dir / "per_class.csv",
                   per_class_table(evaluation["confusion"][predicted], task.class_names))
    result = task.summarize(evaluation, wall_time, summary, out_dir, trainer.total_steps)
    skipped = {d.name: len(d.skipped) for d in (data.source, data.target_train,
                                                data.target_eval) if d.skipped}
    if skipped:  # data.skip_bad_images left these out: the numbers are on fewer images
        result["skipped_images"] = skipped
    if trainer.skipped_steps:  # trainer.on_nan=skip: steps whose update was skipped
        result["skipped_steps"] = trainer.skipped_steps
    result["processes"] = world.size  # torchrun: the batch above is the global one
    write_json(out_dir / RESULT, result)
    return result
