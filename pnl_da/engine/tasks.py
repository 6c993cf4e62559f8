"""What a run trains on and reports. A task hands the trainer a labeled stream, an unlabeled
stream and the images it is scored on (``RunData``); the run pipeline (pnl_da/engine/run.py)
is the same for every task.

* Domain adaptation (``pnl-da run``): the source domain is the labeled stream, the target
  domain the unlabeled one, scored on its test split (or all of it).
* Semi-supervised (``pnl-da ssl``): a class-balanced labeled subset of one dataset's training
  split and the rest of that split, scored on its test split. The subset is drawn with
  ``dataset.split_seed`` (default: the run seed) by a generator that gives the same indices on
  every machine, and saved in the run folder (``labeled_indices.json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from pnl_da.engine.results import (
    HEADLINE,
    chosen_prediction,
    headline_metrics,
    oracle_best,
    prediction_names,
    train_rate,
)
from pnl_da.engine.trainer import METRICS, RunData
from pnl_da.errors import DataError, UsageError
from pnl_da.files import write_json

SPLIT_FILE = "labeled_indices.json"


def task_of(cfg: DictConfig) -> Task:
    """The task of a composed configuration: semi-supervised ones have a ``dataset``."""
    return SemiSupervised(cfg) if "dataset" in cfg else DomainAdaptation(cfg)


def default_out_dir(cfg: DictConfig) -> Path:
    return task_of(cfg).default_out_dir()


class Task:
    """One run's data and report; subclasses say what the two streams are."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.class_names: tuple[str, ...] = ()

    def default_out_dir(self) -> Path:
        raise NotImplementedError

    def load(self) -> RunData:
        """Every file found and checked before anything is written."""
        raise NotImplementedError

    def check_resume(self, out_dir: Path) -> None:
        """Refuse to resume a run whose data differ from what it started with."""

    def write_records(self, out_dir: Path, resumed: bool) -> None:
        """What the run folder keeps of the data (process 0)."""

    def report(self, evaluation: dict, error: bool = False) -> dict:
        predict, chosen = chosen_prediction(evaluation, self.cfg.method.predict)
        return {"method": self.cfg.method.name, "seed": int(self.cfg.seed),
                "metrics": headline_metrics(chosen, error=error), "prediction": predict}

    def summarize(self, evaluation: dict, wall_time: float, fit: dict, out_dir: Path,
                  steps: int) -> dict:
        raise NotImplementedError


class DomainAdaptation(Task):
    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        from pnl_da.data.registry import get_benchmark

        self.benchmark = get_benchmark(cfg.benchmark.name)
        self.class_names = self.benchmark.class_names

    def default_out_dir(self) -> Path:
        b = self.cfg.benchmark
        return Path("runs") / b.name / task_dirname(b.source, b.target) / \
            self.cfg.method.name / f"seed{self.cfg.seed}"

    def load(self) -> RunData:
        cfg = self.cfg
        check_data_root(cfg.data.root)
        source = self.benchmark.domain(cfg.benchmark.source)
        target = self.benchmark.domain(cfg.benchmark.target)
        # Source: its training split; evaluation on the target's test split, or the whole
        # target domain where it has none (bundled digits, Office-31).
        wanted = [(source, "train"), (target, cfg.benchmark.target_train_split),
                  (target, cfg.benchmark.target_eval_split)]
        # Where the target trains and is evaluated on the same split (uci, mnist-sample,
        # Office), it is read, checked and prepared once and serves both.
        keys = [(d.name, d.resolve_split(s)) for d, s in wanted]
        raw: dict[tuple[str, str], object] = {}
        for (domain, split), key in zip(wanted, keys):
            if key not in raw:
                raw[key] = domain.load(cfg.data.root, split)
        classes = [len(set(raw[k].labels.tolist())) for k in (keys[0], keys[2])]
        if classes[0] != classes[1]:
            raise DataError(f"source {source.name} has {classes[0]} classes but target "
                            f"{target.name} has {classes[1]}; both lists must use the same "
                            f"{self.benchmark.num_classes} class indices")
        prepared = {k: prepare_domain(cfg, d) for k, d in raw.items()}
        heldout = None
        if "test" in source.splits and keys[0][1] != "test":  # DEV's labeled validation set
            heldout = prepare_domain(cfg, source.load(cfg.data.root, "test"))
        return RunData(*(prepared[k] for k in keys), source_heldout=heldout)

    def summarize(self, evaluation: dict, wall_time: float, fit: dict, out_dir: Path,
                  steps: int) -> dict:
        b = self.cfg.benchmark
        return {"benchmark": b.name, "task": f"{b.source}->{b.target}", "source": b.source,
                "target": b.target, **self.report(evaluation), "steps": steps,
                "headline": HEADLINE.get(b.name, "accuracy"), "heads": evaluation["heads"],
                "wall_time_s": round(wall_time, 2), "train_steps_per_s": train_rate(fit),
                "validation": evaluation.get("validation")}


class SemiSupervised(Task):
    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        from pnl_da.data.registry import get_ssl_dataset

        self.dataset = get_ssl_dataset(cfg.dataset.name)
        self.split: dict | None = None  # the labeled subset, once drawn

    def split_seed(self) -> int:
        """The seed of the labeled subset: ``dataset.split_seed``, unset meaning the run seed."""
        seed = self.cfg.dataset.split_seed
        return int(self.cfg.seed if seed is None else seed)

    def default_out_dir(self) -> Path:
        """``runs/ssl/<dataset>-<labels>/<method>/seed<seed>``, with ``-split<S>`` where the
        split seed is not the run seed, so that runs on several subsets sit side by side."""
        cfg, split = self.cfg, self.split_seed()
        suffix = f"-split{split}" if split != int(cfg.seed) else ""
        return (Path("runs") / "ssl" / f"{cfg.dataset.name}-{cfg.dataset.labels}"
                / cfg.method.name / f"seed{cfg.seed}{suffix}")

    def load(self) -> RunData:
        from pnl_da.data.ssl_datasets import balanced_labeled_split, unlabeled_pool

        cfg, dataset = self.cfg, self.dataset
        check_data_root(cfg.data.root)
        if int(cfg.dataset.num_classes) != dataset.num_classes:
            raise UsageError(f"dataset.num_classes={cfg.dataset.num_classes} but {dataset.name} "
                             f"has {dataset.num_classes} classes; leave dataset.num_classes "
                             "unset")
        train = dataset.load(cfg.data.root, "train")
        test = dataset.load(cfg.data.root, "test")
        seed = self.split_seed()
        labeled = balanced_labeled_split(train.labels, int(cfg.dataset.labels),
                                         dataset.num_classes, seed)
        unlabeled = unlabeled_pool(len(train), labeled)
        self.split = {"dataset": dataset.name, "labels": int(cfg.dataset.labels),
                      "split_seed": seed, "train_size": len(train), "labeled": labeled.tolist()}
        return RunData(prepare_domain(cfg, _subset(train, labeled, "labeled")),
                       prepare_domain(cfg, _subset(train, unlabeled, "unlabeled")),
                       prepare_domain(cfg, test))

    def check_resume(self, out_dir: Path) -> None:
        """On resume, the labeled subset must be the one the run started with."""
        path = out_dir / SPLIT_FILE
        if path.is_file() and json.loads(path.read_text()).get("labeled") != \
                self.split["labeled"]:
            raise UsageError(f"the labeled subset in {path} differs from the one drawn now "
                             f"(split seed {self.split['split_seed']}); resume with the run's "
                             "own dataset.split_seed and data, or choose another --out")

    def write_records(self, out_dir: Path, resumed: bool) -> None:
        # a resume recreates a deleted record: the same settings draw the same subset
        if not (resumed and (out_dir / SPLIT_FILE).is_file()):
            write_json(out_dir / SPLIT_FILE, self.split)

    def summarize(self, evaluation: dict, wall_time: float, fit: dict, out_dir: Path,
                  steps: int) -> dict:
        cfg, heads = self.cfg, evaluation["heads"]
        report = self.report(evaluation, error=True)
        names = prediction_names(cfg.method.name, heads, cfg.method.eval_ema)
        return {"dataset": cfg.dataset.name, "labels": int(cfg.dataset.labels),
                "split_seed": self.split_seed(), **report, "steps": steps, "headline": "error",
                "prediction_is": names.get(report["prediction"], report["prediction"]),
                "heads": {h: {**s, "error": 100 - s["accuracy"]} for h, s in heads.items()},
                "oracle_best_test_error": oracle_best(out_dir / METRICS, report["prediction"]),
                "validation": evaluation.get("validation"),
                "wall_time_s": round(wall_time, 2), "train_steps_per_s": train_rate(fit)}


def task_dirname(source: str, target: str) -> str:
    """``uci2mnist-sample``: tllib's A2W style; '->' would be a redirection in shells."""
    return f"{source}2{target}"


def check_data_root(root: str) -> None:
    path = Path(root)
    if path.exists() and not path.is_dir():
        raise DataError(f"data root {path} is a file, not a folder; pass --data-root with the "
                        "folder that holds the datasets")


def _subset(data, index: np.ndarray, split: str):
    import torch

    from pnl_da.data.base import DomainData

    rows = torch.from_numpy(index.astype(np.int64))
    return DomainData(data.images.index_select(0, rows), data.labels.index_select(0, rows),
                      data.name, split)


def prepare_domain(cfg: DictConfig, data):
    """In-memory domains: resized to the backbone's format. Image lists: decoded once into
    the cache, at 256/224 of the training crop (tllib's resize 256, crop 224)."""
    from pnl_da.data.base import DomainData, format_images
    from pnl_da.data.image_cache import CachedDomain, load_or_build

    size, channels = cfg.data.image_size, cfg.backbone.channels
    if isinstance(data, DomainData):
        data.images = format_images(data.images, size, channels)
        return data
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else data.base / ".pnl-da-cache"
    decoded = load_or_build(data.base, data.images, data.name, round(size * 256 / 224),
                            cache_dir, skip_bad=cfg.data.skip_bad_images,
                            workers=max(1, cfg.data.workers),
                            log=lambda m: print(m, file=sys.stderr))
    return CachedDomain(decoded, data.name, data.split)


def load_data(cfg: DictConfig) -> RunData:
    """The data of a composed configuration (benchmarks and tests that drive a Trainer)."""
    return task_of(cfg).load()
