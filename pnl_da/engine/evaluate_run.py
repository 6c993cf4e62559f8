"""Score a finished run's final model on any domain and split of its benchmark, or, for a
semi-supervised run, on any dataset with the same classes (e.g. a mnist-sample run on MNIST)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from pnl_da.config import on_schema
from pnl_da.data.registry import get_benchmark
from pnl_da.engine.checkpoint import LAST, load_checkpoint
from pnl_da.engine.evaluate import batches_for, evaluate
from pnl_da.engine.results import RESULT, chosen_prediction, headline_metrics, prediction_names
from pnl_da.engine.run import CONFIG, comparison_runs
from pnl_da.engine.tasks import check_data_root, prepare_domain
from pnl_da.engine.trainer import autocast, resolve_device
from pnl_da.errors import UsageError
from pnl_da.methods import create_method
from pnl_da.models.factory import create_model


def describe_task(dataset) -> str:
    plural = "s" if dataset.channels > 1 else ""
    return (f"{dataset.num_classes} {dataset.label_set}, {dataset.image_size}x"
            f"{dataset.image_size}, {dataset.channels} channel{plural}")


def finished_run_config(run_dir: Path, data_root: str | None = None):
    """The configuration of a finished run (data.root replaced where given); a folder that is
    not one is a usage error saying what it is."""
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a folder; pass the folder of a finished run "
                         "(it holds result.json)")
    missing = [p for p in (RESULT, CONFIG, str(LAST)) if not (run_dir / p).is_file()]
    if missing and (run_dir.parent / RESULT).is_file():  # a run's checkpoints/ folder
        raise UsageError(f"{run_dir} is inside a run; pass the run's folder, {run_dir.parent}")
    if missing:
        runs = comparison_runs(run_dir, RESULT)
        if runs:  # a compare folder: its runs are one level further down
            raise UsageError(f"{run_dir} is a comparison folder ({len(runs)} finished "
                             f"run{'s' if len(runs) > 1 else ''}), not one run; pass one of its "
                             f"runs, e.g. {runs[0]}")
        command = "ssl" if (run_dir / "labeled_indices.json").is_file() else "run"
        raise UsageError(f"{run_dir} is not a finished run (no {missing[0]}); finish it with "
                         f"`pnl-da {command} ... --resume --out {run_dir}` first")
    cfg = on_schema(OmegaConf.load(run_dir / CONFIG))
    root = data_root or cfg.data.root
    check_data_root(root)
    cfg.data.root = root
    return cfg


def load_method(run_dir: Path, cfg, num_classes: int, device):
    """The run's whole method with its final weights, so that what it evaluates (Mean
    Teacher: its teacher) is restored too."""
    method = create_method(cfg.method, create_model(cfg, num_classes), num_classes)
    method.load_state_dict(load_checkpoint(run_dir / LAST, map_location="cpu")["method"])
    return method.to(device)


def evaluate_run(run_dir: Path, domain: str | None = None, split: str | None = None,
                 data_root: str | None = None) -> tuple[dict, str]:
    """Returns the metrics of the run's prediction (as in result.json) and a readable report."""
    cfg = finished_run_config(run_dir, data_root)
    ssl = "dataset" in cfg
    root = cfg.data.root
    if ssl:
        from pnl_da.data.registry import SSL_DATASETS, get_ssl_dataset

        trained = get_ssl_dataset(cfg.dataset.name)
        source = get_ssl_dataset(domain or cfg.dataset.name)
        num_classes = int(cfg.dataset.num_classes)
        if not source.same_task(trained):
            same = [d.name for d in SSL_DATASETS.values() if d.same_task(trained)]
            raise UsageError(f"{source.name} ({describe_task(source)}) is not what the run was "
                             f"trained on ({trained.name}: {describe_task(trained)}); evaluate "
                             f"on a dataset with the same classes and input format: "
                             f"{', '.join(same)}")
        raw = source.load(root, split or "test")
    else:
        source = get_benchmark(cfg.benchmark.name).domain(domain or cfg.benchmark.target)
        num_classes = int(cfg.benchmark.num_classes)
        if split and source.resolve_split(split) != split:
            # training falls back to the whole domain; an explicit --split must not
            raise UsageError(f"domain '{source.name}' has no {split} split, only all its "
                             "images; pass --split all (or leave --split out)")
        raw = source.load(root, split or cfg.benchmark.target_eval_split)
    data = prepare_domain(cfg, raw)

    device = resolve_device("auto")
    method = load_method(run_dir, cfg, num_classes, device)
    result = evaluate(method.eval_model(), batches_for(cfg, data, device), num_classes,
                      lambda: autocast(device, device.type == "cuda"))
    heads = result["heads"]
    predict, chosen = chosen_prediction(result, cfg.method.predict)
    # semi-supervised runs name what each head is (Mean Teacher: a is the teacher)
    names = (prediction_names(cfg.method.name, heads, cfg.method.get("eval_ema", 0.0))
             if ssl else {})
    lines = [f"{run_dir}: {cfg.method.name} on {source.name} ({data.split}, {len(data)} images)"]
    for name, s in heads.items():
        what = f" ({names[name]})" if name in names else ""
        lines.append(f"  head {name:>4}{what}: accuracy {s['accuracy']:.2f}%, "
                     f"mean class accuracy {s['mean_class_accuracy']:.2f}%")
    lines.append(f"  reported: head {predict}{f' ({names[predict]})' if predict in names else ''}")
    return headline_metrics(chosen, error=ssl), "\n".join(lines)
