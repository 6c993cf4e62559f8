"""Score a finished run's final model on any domain and split of its benchmark."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from pnl_da.config import RunConfig
from pnl_da.data.registry import get_benchmark
from pnl_da.engine.checkpoint import load_checkpoint
from pnl_da.engine.evaluate import batches_for, evaluate
from pnl_da.engine.run import CONFIG, RESULT, check_data_root, prepare_domain
from pnl_da.engine.trainer import CHECKPOINT, autocast, resolve_device
from pnl_da.errors import UsageError
from pnl_da.models import create_classifier


def evaluate_run(run_dir: Path, domain: str | None = None, split: str | None = None,
                 data_root: str | None = None) -> tuple[dict, str]:
    """Returns the metrics of the run's prediction (as in result.json) and a readable report."""
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a folder; pass the folder of a finished run "
                         "(it holds result.json)")
    missing = [p for p in (RESULT, CONFIG, str(CHECKPOINT)) if not (run_dir / p).is_file()]
    if missing:
        raise UsageError(f"{run_dir} is not a finished run (no {missing[0]}); finish it with "
                         "`pnl-da run ... --resume --out " + str(run_dir) + "` first")
    # On the schema: a run written before a key existed gets that key's default.
    cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.load(run_dir / CONFIG))
    root = data_root or cfg.data.root
    check_data_root(root)
    bench = get_benchmark(cfg.benchmark.name)
    target = bench.domain(domain or cfg.benchmark.target)
    cfg.data.root = root
    data = prepare_domain(cfg, target.load(root, split or cfg.benchmark.target_eval_split))

    device = resolve_device("auto")
    model = create_classifier(cfg.backbone, int(cfg.benchmark.num_classes), int(cfg.method.heads),
                              int(cfg.data.image_size))
    state = load_checkpoint(run_dir / CHECKPOINT)["method"]
    model.load_state_dict({k[len("model."):]: v for k, v in state.items()
                           if k.startswith("model.")})
    model.to(device)
    result = evaluate(model, batches_for(cfg, data, device), data.labels,
                      int(cfg.benchmark.num_classes),
                      lambda: autocast(device, device.type == "cuda"))
    heads = result["heads"]
    lines = [f"{run_dir}: {cfg.method.name} on {target.name} ({data.split}, {len(data)} images)"]
    for name, s in heads.items():
        lines.append(f"  head {name:>4}: accuracy {s['accuracy']:.2f}%, "
                     f"mean class accuracy {s['mean_class_accuracy']:.2f}%")
    chosen = heads.get(cfg.method.predict, heads["mean"])
    metrics = {"accuracy": round(chosen["accuracy"], 3),
               "mean_class_accuracy": round(chosen["mean_class_accuracy"], 3)}
    return metrics, "\n".join(lines)
