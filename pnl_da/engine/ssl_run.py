"""Semi-supervised runs: the labeled subset, the unlabeled pool and the test set of one dataset,
trained by the same engine as domain adaptation (labeled = its "source", unlabeled = its
"target").

The labeled subset is class-balanced, drawn with ``dataset.split_seed`` (default: the run
seed) by a generator that gives the same indices on every machine, and saved in the run
directory (``labeled_indices.json``). The reported figure is the final model's test error;
the best test error seen during training is kept as an oracle figure only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pnl_da.data.base import DomainData
from pnl_da.engine.run import chosen_prediction, headline_metrics, train_rate
from pnl_da.engine.trainer import METRICS, metrics_records
from pnl_da.errors import UsageError

SPLIT_FILE = "labeled_indices.json"


def split_seed(cfg: DictConfig) -> int:
    return int(cfg.dataset.split_seed if cfg.dataset.split_seed is not None else cfg.seed)


def default_ssl_out_dir(cfg: DictConfig) -> Path:
    """``runs/ssl/<dataset>-<labels>/<method>/seed<seed>``, with ``-split<S>`` where the
    split seed is not the run seed, so that runs on several subsets sit side by side."""
    split = split_seed(cfg)
    suffix = f"-split{split}" if split != int(cfg.seed) else ""
    return (Path("runs") / "ssl" / f"{cfg.dataset.name}-{cfg.dataset.labels}" / cfg.method.name
            / f"seed{cfg.seed}{suffix}")


def _subset(data: DomainData, index: np.ndarray, split: str) -> DomainData:
    import torch

    rows = torch.from_numpy(index.astype(np.int64))
    return DomainData(data.images.index_select(0, rows), data.labels.index_select(0, rows),
                      data.name, split)


def load_ssl_data(cfg: DictConfig):
    """(RunData, split record). Everything is found and checked before anything is written."""
    from pnl_da.data.ssl_datasets import balanced_labeled_split, get_ssl_dataset, unlabeled_pool
    from pnl_da.engine.run import check_data_root, prepare_domain
    from pnl_da.engine.trainer import RunData

    check_data_root(cfg.data.root)
    dataset = get_ssl_dataset(cfg.dataset.name)
    if int(cfg.dataset.num_classes) != dataset.num_classes:
        raise UsageError(f"dataset.num_classes={cfg.dataset.num_classes} but {dataset.name} has "
                         f"{dataset.num_classes} classes; leave dataset.num_classes unset")
    train = dataset.load(cfg.data.root, "train")
    test = dataset.load(cfg.data.root, "test")
    seed = split_seed(cfg)
    labeled = balanced_labeled_split(train.labels, int(cfg.dataset.labels),
                                     dataset.num_classes, seed)
    unlabeled = unlabeled_pool(len(train), labeled)
    record = {"dataset": dataset.name, "labels": int(cfg.dataset.labels), "split_seed": seed,
              "train_size": len(train), "labeled": labeled.tolist()}
    data = RunData(prepare_domain(cfg, _subset(train, labeled, "labeled")),
                   prepare_domain(cfg, _subset(train, unlabeled, "unlabeled")),
                   prepare_domain(cfg, test))
    return data, record


def check_saved_split(out_dir: Path, record: dict) -> None:
    """On resume, the labeled subset must be the one the run started with."""
    path = out_dir / SPLIT_FILE
    if path.is_file() and json.loads(path.read_text()).get("labeled") != record["labeled"]:
        raise UsageError(f"the labeled subset in {path} differs from the one drawn now "
                         f"(split seed {record['split_seed']}); resume with the run's own "
                         "dataset.split_seed and data, or choose another --out")


def oracle_best(metrics_path: Path, head: str) -> dict | None:
    """Best test accuracy over the logged evaluations: an oracle figure (it picks a step by
    looking at the test set), reported beside the final model's, never instead of it."""
    best = None
    for _, record in metrics_records(metrics_path):
        acc = record["accuracy"].get(head, record["accuracy"].get("mean"))
        if acc is not None and (best is None or acc > best["accuracy"]):
            best = {"step": record["step"], "accuracy": acc}
    if best is None:
        return None
    return {"step": best["step"], "error": 100 - best["accuracy"]}


def prediction_names(method: str, heads: dict, eval_ema: float = 0.0) -> dict[str, str]:
    """What each evaluated prediction of a semi-supervised run is (result.json's
    ``prediction_is``, evaluate's report); ``eval_ema``: the run scores an EMA of its weights."""
    if method == "mean_teacher":
        names = {"a": "teacher (EMA)", "b": "student", "mean": "mean of both softmaxes"}
    elif len(heads) == 2:  # one head: "a" and "mean" are the same model
        names = {"a": "the model", "mean": "the model"}
    else:
        names = {"a": "submodel A", "b": "submodel B", "mean": "mean of both softmaxes"}
    if eval_ema:
        names = {h: f"{n}, EMA of the weights (decay {eval_ema})" for h, n in names.items()}
    return names


def summarize_ssl(cfg: DictConfig, evaluation: dict, wall_time: float, fit: dict,
                  out_dir: Path, steps: int) -> dict:
    predict, chosen = chosen_prediction(evaluation, cfg.method.predict)
    heads = evaluation["heads"]
    names = prediction_names(cfg.method.name, heads, cfg.method.eval_ema)
    return {
        "dataset": cfg.dataset.name, "labels": int(cfg.dataset.labels),
        "split_seed": split_seed(cfg),
        "method": cfg.method.name, "seed": int(cfg.seed), "steps": steps,
        "metrics": headline_metrics(chosen, error=True),
        "headline": "error",
        "prediction": predict,
        "prediction_is": names.get(predict, predict),
        "heads": {h: {**s, "error": 100 - s["accuracy"]} for h, s in heads.items()},
        "oracle_best_test_error": oracle_best(out_dir / METRICS, predict),
        "validation": evaluation.get("validation"),
        "wall_time_s": round(wall_time, 2),
        "train_steps_per_s": train_rate(fit),
    }
