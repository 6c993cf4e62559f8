"""Score a finished run's final model on any domain and split of its benchmark, or, for a
semi-supervised run, on any dataset with the same classes (e.g. a mnist-sample run on MNIST)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from pnl_da.engine.checkpoint import LAST, load_checkpoint
from pnl_da.engine.evaluate import batches_for, evaluate
from pnl_da.engine.results import (
    RESULT,
    chosen_prediction,
    headline_metrics,
    label_free_line,
)
from pnl_da.engine.run import CONFIG, comparison_runs
from pnl_da.engine.tasks import check_data_root, load_saved, task_class, task_of
from pnl_da.engine.trainer import autocast, resolve_device
from pnl_da.errors import UsageError
from pnl_da.methods import create_method
from pnl_da.models.factory import create_model


def finished_run_config(run_dir: Path, data_root: str | None = None):
    """The configuration of a finished run (data.root replaced where given); a folder that is
    not one is a usage error saying what it is."""
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a folder; pass the folder of a finished run "
                         "(it holds result.json)")
    missing = [p for p in (RESULT, CONFIG, str(LAST)) if not (run_dir / p).is_file()]
    if missing and (run_dir.parent / RESULT).is_file():  # a run's checkpoints/ folder
        raise UsageError(f"{run_dir} is inside a run; pass the run's folder, {run_dir.parent}")
    if missing and (run_dir / CONFIG).is_file():  # a run begun here and not finished
        command = task_class(OmegaConf.load(run_dir / CONFIG)).command
        raise UsageError(f"{run_dir} is not a finished run (no {missing[0]}); finish it with "
                         f"`pnl-da {command} ... --resume --out {run_dir}` first")
    if missing:  # a folder of runs (a compare's, runs/), or none
        raise UsageError(runs_inside(run_dir))
    cfg = load_saved(run_dir / CONFIG)
    root = data_root or cfg.data.root
    check_data_root(root)
    cfg.data.root = root
    return cfg


def runs_inside(folder: Path, shown: int = 3) -> str:
    """What to pass instead of ``folder``, which holds no run of its own: the finished runs
    below it, by name."""
    runs = sorted(p.parent for p in folder.rglob(RESULT) if (p.parent / CONFIG).is_file())
    if not runs:
        begun = sorted(p.parent for p in folder.rglob(CONFIG))
        if begun:
            return (f"{folder} is not a run and the {len(begun)} run(s) below it are "
                    f"unfinished (e.g. {begun[0]}); finish one with --resume --out <its folder>")
        return (f"{folder} is not a run folder (no {CONFIG}, no runs below it); pass the folder "
                "of a finished run (it holds result.json)")
    kind = "a comparison folder" if comparison_runs(folder, RESULT) == runs else "a folder"
    more = f" and {len(runs) - shown} more" if len(runs) > shown else ""
    return (f"{folder} is {kind} of {len(runs)} finished run{'s' if len(runs) > 1 else ''}, "
            f"not one run; pass one of them: {', '.join(map(str, runs[:shown]))}{more}")


def load_method(run_dir: Path, task, device):
    """The run's whole method with its final weights, so that what it evaluates (Mean
    Teacher: its teacher) is restored too."""
    cfg, num_classes = task.cfg, task.num_classes
    method = create_method(cfg.method, create_model(cfg, num_classes, dual=task.dual_model),
                           num_classes, task.partial_set)
    method.load_state_dict(load_checkpoint(run_dir / LAST, map_location="cpu")["method"])
    return method.to(device)


def evaluate_run(run_dir: Path, domain: str | None = None, split: str | None = None,
                 data_root: str | None = None) -> tuple[dict, str]:
    """Returns the metrics of the run's prediction (as in result.json) and a readable report;
    images without labels are scored by the label-free scores."""
    from pnl_da.engine import validators
    from pnl_da.engine.evaluate import outputs

    cfg = finished_run_config(run_dir, data_root)
    task = task_of(cfg)
    name, data = task.scoring_data(domain, split)
    device = resolve_device("auto")
    method = load_method(run_dir, task, device)
    model = method.eval_model()
    cast = lambda: autocast(device, device.type == "cuda")  # noqa: E731
    lines = [f"{run_dir}: {cfg.method.name} on {name} ({data.split}, {len(data)} images)"]
    if not data.labeled:
        # the images and batches the run's own validation scores read
        chosen = validators.subset(len(data))
        probs, _, _ = outputs(model, batches_for(task, data, device, indices=chosen), cast,
                              cfg.method.predict)
        scores = validators.scores(probs)
        lines.append(f"  no labels, so no accuracy: {label_free_line(scores)}")
        return scores, "\n".join(lines)
    result = evaluate(model, batches_for(task, data, device), task.num_classes, cast)
    heads = result["heads"]
    predict, chosen = chosen_prediction(result, cfg.method.predict)
    names = task.prediction_names(heads)
    for head, s in heads.items():
        what = f" ({names[head]})" if head in names else ""
        lines.append(f"  head {head:>4}{what}: accuracy {s['accuracy']:.2f}%, "
                     f"mean class accuracy {s['mean_class_accuracy']:.2f}%")
    lines.append(f"  reported: head {predict}{f' ({names[predict]})' if predict in names else ''}")
    return headline_metrics(chosen, error=task.reports_error), "\n".join(lines)
