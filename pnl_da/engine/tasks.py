"""What a run trains on and reports. A task hands the trainer a labeled stream, an unlabeled
stream and the images it is scored on (``RunData``); the run pipeline (pnl_da/engine/run.py)
is the same for every task.

* Domain adaptation (``pnl-da run``): the source domain is the labeled stream, the target
  domain the unlabeled one, scored on its test split (or all of it). A target without labels
  (``folders``) is scored by the label-free validation scores instead of accuracy.
* Semi-supervised (``pnl-da ssl``): a class-balanced labeled subset of one dataset's training
  split and the rest of that split, scored on its test split. The subset is drawn with
  ``dataset.split_seed`` (default: the run seed) by a generator that gives the same indices on
  every machine, and saved in the run folder (``labeled_indices.json``).

``task_class`` is the one place that tells the two apart (by the section a configuration has:
``benchmark`` or ``dataset``); everything else asks the task.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from pnl_da.config import IGNORED_FOR_REUSE, RunConfig, SSLRunConfig, on_schema
from pnl_da.engine.metrics_log import METRICS
from pnl_da.engine.results import (
    HEADLINE,
    LABEL_FREE_HEADLINE,
    chosen_prediction,
    headline_metrics,
    label_free_line,
    oracle_best,
    train_rate,
)
from pnl_da.errors import DataError, UsageError
from pnl_da.files import write_json

SPLIT_FILE = "labeled_indices.json"


@dataclass
class RunData:
    source: object  # labeled, for training (DomainData, or a decoded image list)
    target_train: object  # unlabeled, for training (its labels are never read)
    target_eval: object  # for evaluation (labels -1 throughout: no target labels)
    # the source's held-out labeled split, where it has one: DEV's validation set
    source_heldout: object | None = None


def task_class(cfg) -> type[Task]:
    """The kind of task of a configuration (a composed one, a saved config.yaml, or its
    dictionary): semi-supervised ones have a ``dataset`` section, adaptation a ``benchmark``;
    a semi-supervised run on your own folders is ``dataset.name=folders``."""
    if "dataset" not in cfg:
        return DomainAdaptation
    return FolderSemiSupervised if cfg["dataset"].get("name") == "folders" else SemiSupervised


def task_of(cfg: DictConfig) -> Task:
    return task_class(cfg)(cfg)


def default_out_dir(cfg: DictConfig) -> Path:
    return task_of(cfg).default_out_dir()


def compose(overrides: list[str], mode: str = "da", allow_inert: bool = False) -> DictConfig:
    """A run's configuration: composed from the packaged configs and ``overrides``
    (pnl_da/config.py), then completed with what its data and backbone decide (a folder
    task's classes, the backbone's normalisation), so that config.yaml and ``--show-config``
    hold them."""
    from pnl_da.config import compose as compose_config

    cfg = compose_config(overrides, mode, allow_inert)
    task_class(cfg).resolve(cfg)
    return cfg


def comparable(cfg_yaml: str) -> dict:
    """The configuration as compared for reuse and resume: on its task's schema, so that a run
    saved before a key existed compares equal when that key is at its default; keys that
    change nothing computed (IGNORED_FOR_REUSE) left out."""
    saved = OmegaConf.create(cfg_yaml)
    kind = task_class(saved)
    data = OmegaConf.to_container(on_schema(saved, kind.schema), resolve=True)
    kind.normalise_saved(data)
    for key in IGNORED_FOR_REUSE:
        section, _, leaf = key.partition(".")
        data.get(section, {}).pop(leaf, None)
    return data


def load_saved(path: Path) -> DictConfig:
    """A run folder's config.yaml on its task's schema."""
    saved = OmegaConf.load(path)
    return on_schema(saved, task_class(saved).schema)


class Task:
    """One run's data and report; subclasses say what the two streams are."""

    section = ""  # the configuration section of the task: benchmark | dataset
    schema: type = RunConfig
    command = ""  # the pnl-da command that trains it
    description = ""
    reports_error = False  # the headline is the test error (100 - accuracy)

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    # -- what a configuration (or its dictionary) says, without data ------------------------

    @classmethod
    def resolve(cls, cfg: DictConfig) -> None:
        """Fill in what the data and the backbone decide, at composition: here the
        normalisation, where the configuration leaves it to the backbone."""
        settings = cfg[cls.section]
        if not settings.normalize_mean and not settings.normalize_std:
            settings.normalize_mean, settings.normalize_std = normalization_of(cfg, settings)

    @classmethod
    def normalise_saved(cls, data: dict) -> None:
        """A saved configuration's dictionary, made comparable with a freshly composed one."""

    @classmethod
    def table_of(cls, config: dict) -> str:
        """The report table a run belongs to (``config``: a flattened configuration)."""
        raise NotImplementedError

    @classmethod
    def label_of(cls, config: dict) -> str:
        """The task as a report's column names it."""
        raise NotImplementedError

    # what a run's line says where its evaluation images have no labels
    no_labels = "no labels to score on"

    @classmethod
    def result_line(cls, result: dict, out: Path) -> str:
        """The line a finished run prints (``run``, ``ssl``, each job of a sweep)."""
        if result.get("target_labels") is False:
            name = result.get("task") or result.get("dataset")
            return (f"{result['method']} {name} seed {result['seed']}: {cls.no_labels}; "
                    f"label-free scores of the final model: "
                    f"{label_free_line(result['metrics'])} -> {out / 'result.json'}")
        return cls.scored_line(result, out)

    @classmethod
    def scored_line(cls, result: dict, out: Path) -> str:
        """The line of a run scored on labels."""
        raise NotImplementedError

    @property
    def settings(self) -> DictConfig:
        return self.cfg[self.section]

    @property
    def num_classes(self) -> int:
        return int(self.settings.num_classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(str(c) for c in range(self.num_classes))

    @property
    def dual_model(self) -> bool:
        """Two separate networks (semi-supervised ``ssl.model=dual``) instead of one."""
        return False

    @property
    def partial_set(self) -> bool:
        """The unlabeled images may lack some of the labeled images' classes (partial-set
        adaptation); a method's partial-set form reads it."""
        return False

    def prediction_names(self, heads: dict) -> dict[str, str]:
        """What each evaluated prediction is, where the task names them."""
        return {}

    def normalization(self) -> tuple[list[float], list[float]]:
        """(mean, std) of the inputs: the configuration's, filled in at composition (a
        configuration composed without its task, in tests, takes the backbone's here)."""
        return normalization_of(self.cfg, self.settings)

    def normalizer(self):
        from pnl_da.data.streams import Normalizer

        return Normalizer(*self.normalization())

    def input_format(self):
        """How an image file becomes an input of this run (pnl_da/data/transforms.py): the
        backbone's size and channels, the whole image for small inputs, tllib's resize to
        256/224 of the crop and centre crop for larger ones."""
        from pnl_da.data.transforms import InputFormat

        size = int(self.cfg.data.image_size)
        resize = size if size <= IN_MEMORY_SIZE else round(size * 256 / 224)
        mean, std = self.normalization()
        return InputFormat(resize, size, int(self.cfg.backbone.channels), tuple(mean),
                           tuple(std))

    def prepare(self, data):
        """A domain in the backbone's input format. In-memory domains (digits) are resized to
        it. Image files are decoded once into the cache (at ``input_format().resize``): small
        inputs are then held in memory as tensors like the digits, larger ones read from the
        cache by data workers that crop them."""
        import torch

        from pnl_da.data.base import DomainData, format_images
        from pnl_da.data.image_cache import CachedDomain, load_or_build

        cfg, spec = self.cfg, self.input_format()
        if isinstance(data, DomainData):
            data.images = format_images(data.images, spec.crop, spec.channels)
            return data
        decoded = load_or_build(data.base, data.images, data.name, spec.resize,
                                cache_dir(cfg), skip_bad=cfg.data.skip_bad_images,
                                workers=max(1, cfg.data.workers),
                                log=lambda m: print(m, file=sys.stderr))
        if spec.resize != spec.crop:
            return CachedDomain(decoded, data.name, data.split)
        # in chunks (each a copy of the read-only cache): a grey conversion goes through
        # float, 12 bytes a pixel, for one chunk at a time
        formatted = torch.cat([
            format_images(torch.from_numpy(np.array(decoded.array[i:i + 4096])).permute(
                0, 3, 1, 2), spec.crop, spec.channels)
            for i in range(0, len(decoded.array), 4096)])
        return DomainData(formatted, torch.tensor(decoded.labels, dtype=torch.long), data.name,
                          data.split, skipped=tuple(decoded.skipped))

    def default_out_dir(self) -> Path:
        raise NotImplementedError

    # -- data --------------------------------------------------------------------------------

    def load(self) -> RunData:
        """Every file found and checked before anything is written."""
        raise NotImplementedError

    def scoring_data(self, domain: str | None, split: str | None):
        """What ``pnl-da evaluate`` scores: the run's evaluation images, or those of
        ``domain`` (and ``split``) where given."""
        raise NotImplementedError

    def analysis_data(self) -> list[tuple[str, object]]:
        """(role, data) of the domains ``pnl-da analyze`` embeds."""
        raise UsageError(f"a {self.description} run has no source and target domains: analyze "
                         "compares a source and a target domain (pnl-da run)")

    def data_line(self, data: RunData) -> str:
        """What the run reads, in one line: the input format the backbone takes (size,
        channels, normalisation) and the images of each stream."""
        cfg = self.cfg
        size, channels = int(cfg.data.image_size), int(cfg.backbone.channels)

        def numbers(values) -> str:
            return "/".join(f"{float(v):g}" for v in values)

        scored = (f"{len(data.target_eval):,} scored" if data.target_eval.labeled else
                  f"{len(data.target_eval):,} scored without labels (label-free scores, no "
                  "accuracy)")
        mean, std = self.normalization()
        return (f"input {size}x{size}, {channels} channel{'s' if channels > 1 else ''} "
                f"({cfg.backbone.name}), normalised with mean {numbers(mean)} and std "
                f"{numbers(std)}; {len(data.source):,} labeled "
                f"and {len(data.target_train):,} unlabeled training images, {scored}")

    def check_resume(self, out_dir: Path) -> None:
        """Refuse to resume a run whose data differ from what it started with."""

    def write_records(self, out_dir: Path, resumed: bool) -> None:
        """What the run folder keeps of the data (process 0)."""

    def report(self, evaluation: dict) -> dict:
        predict = self.cfg.method.predict
        if not evaluation.get("labeled", True):
            return {"method": self.cfg.method.name, "seed": int(self.cfg.seed),
                    "metrics": dict(evaluation.get("validation") or {}),
                    "prediction": predict, "target_labels": False,
                    "headline": LABEL_FREE_HEADLINE}
        predict, chosen = chosen_prediction(evaluation, predict)
        return {"method": self.cfg.method.name, "seed": int(self.cfg.seed),
                "metrics": headline_metrics(chosen, error=self.reports_error),
                "prediction": predict}

    def summarize(self, evaluation: dict, wall_time: float, fit: dict, out_dir: Path,
                  steps: int) -> dict:
        raise NotImplementedError


class DomainAdaptation(Task):
    section = "benchmark"
    schema = RunConfig
    command = "run"
    description = "domain adaptation (pnl-da run)"

    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        from pnl_da.data.registry import get_benchmark

        self.benchmark = get_benchmark(cfg.benchmark.name).bind(cfg.benchmark.classes)

    @classmethod
    def resolve(cls, cfg: DictConfig) -> None:
        from pnl_da.data.registry import get_benchmark

        b = cfg.benchmark
        if OmegaConf.is_missing(b, "source") or OmegaConf.is_missing(b, "target"):
            return  # composed without a task (tests of the configuration alone)
        facts = get_benchmark(b.name).facts(cfg.data.root, b.source, b.target)
        for key, value in facts.items():
            OmegaConf.update(cfg, key, value)
        benchmark = get_benchmark(b.name).bind(b.classes)
        if b.partial and b.target_classes is None:
            kept = benchmark.partial_classes(cfg.data.root, b.target)
            b.target_classes = list(kept) if kept else None
        if b.target_classes is not None:
            b.partial = True
            check_target_classes(list(b.target_classes), benchmark)
        super().resolve(cfg)

    @classmethod
    def table_of(cls, config: dict) -> str:
        return config.get("benchmark.name", "?")

    @classmethod
    def label_of(cls, config: dict) -> str:
        label = f"{config.get('benchmark.source')}->{config.get('benchmark.target')}"
        kept = config.get("benchmark.target_classes")
        if kept:  # a partial-set task: the target's classes, or how many where they are long
            names = ",".join(str(k) for k in kept)
            label += f" [{names}]" if len(names) <= 24 else f" [{len(kept)} classes]"
        return label

    no_labels = "no target labels, so no accuracy"

    @classmethod
    def scored_line(cls, result: dict, out: Path) -> str:
        m = result["metrics"]
        names = {"accuracy": "accuracy", "mean_class_accuracy": "mean class accuracy"}
        first = result.get("headline", "accuracy")
        second = "mean_class_accuracy" if first == "accuracy" else "accuracy"
        kept = result.get("target_classes")
        over = f" over its {len(kept)} classes" if kept else ""
        return (f"{result['method']} {result['task']} seed {result['seed']}: target "
                f"{names[first]} {m[first]:.2f}%{over} ({names[second]} {m[second]:.2f}%, "
                f"prediction: {result.get('prediction', 'mean')}) -> {out / 'result.json'}")

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.benchmark.class_names or super().class_names

    @property
    def partial_set(self) -> bool:
        """The target may lack some of the source's classes: ``benchmark.partial``, or a class
        list, read here too because a configuration composed without ``resolve`` (the study
        scripts' ``pnl_da.config.compose``) has the list but not the flag."""
        b = self.cfg.benchmark
        return bool(b.partial) or b.target_classes is not None

    def kept_labels(self) -> set[int] | None:
        """The class indices the target keeps; None: every class."""
        kept = self.cfg.benchmark.target_classes
        if kept is None:
            return None
        index = {name: i for i, name in enumerate(self.class_names)}
        return {index[str(name)] for name in kept}

    def target_subset(self, data, what: str):
        """``data`` (a target split) with only the classes the target keeps."""
        kept = self.kept_labels()
        if kept is None:
            return data
        if not data.labeled:
            raise DataError(f"target {data.name} has no labels, so its images cannot be chosen "
                            "by class; leave benchmark.target_classes and benchmark.partial out "
                            "(method.partial=true runs PNL's partial-set form on it)")
        subset = data.keep_classes(kept)
        if len(subset) == 0:
            kept_names = ", ".join(self.cfg.benchmark.target_classes)
            raise DataError(f"target {data.name} ({what}) holds no image of the classes "
                            f"benchmark.target_classes keeps ({kept_names}); list classes it "
                            "has")
        return subset

    def default_out_dir(self) -> Path:
        b = self.cfg.benchmark
        task = self.benchmark.task_dirname(b.source, b.target)
        if b.target_classes is not None:  # beside the closed-set run of the same task
            task += partial_tag(list(b.target_classes), self.benchmark.partial_protocol)
        return Path("runs") / b.name / task / self.cfg.method.name / f"seed{self.cfg.seed}"

    def load(self) -> RunData:
        cfg = self.cfg
        check_data_root(cfg.data.root)
        source = self.benchmark.domain(cfg.benchmark.source, source=True)
        target = self.benchmark.domain(cfg.benchmark.target)
        # Source: its training split; evaluation on the target's test split, or the whole
        # target domain where it has none (bundled digits, Office-31).
        wanted = [(source, "train"), (target, cfg.benchmark.target_train_split),
                  (target, cfg.benchmark.target_eval_split)]
        # Where the target trains and is evaluated on the same split (uci, mnist-sample,
        # Office, folders), it is read, checked and prepared once and serves both.
        keys = [(d.name, d.resolve_split(s)) for d, s in wanted]
        raw: dict[tuple[str, str], object] = {}
        for i, ((domain, split), key) in enumerate(zip(wanted, keys)):
            if key not in raw:
                raw[key] = domain.load(cfg.data.root, split)
                if i:  # a target split: only the classes it keeps (partial-set)
                    raw[key] = self.target_subset(raw[key], split)
        if (raw[keys[2]].labeled and not self.benchmark.partial_targets
                and cfg.benchmark.target_classes is None):
            classes = [len(set(raw[k].labels.tolist())) for k in (keys[0], keys[2])]
            if classes[0] != classes[1]:
                raise DataError(f"source {source.name} has {classes[0]} classes but target "
                                f"{target.name} has {classes[1]}; both lists must use the same "
                                f"{self.benchmark.num_classes} class indices")
        prepared = {k: self.prepare(d) for k, d in raw.items()}
        heldout = None
        if "test" in source.splits and keys[0][1] != "test":  # DEV's labeled validation set
            heldout = self.prepare(source.load(cfg.data.root, "test"))
        return RunData(*(prepared[k] for k in keys), source_heldout=heldout)

    def scoring_data(self, domain: str | None, split: str | None):
        source = self.benchmark.domain(domain or self.cfg.benchmark.target)
        if split and source.resolve_split(split) != split:
            # training falls back to the whole domain; an explicit --split must not
            raise UsageError(f"domain '{source.name}' has no {split} split, only all its "
                             "images; pass --split all (or leave --split out)")
        raw = source.load(self.cfg.data.root, split or self.cfg.benchmark.target_eval_split)
        if source.name == self.cfg.benchmark.target:  # the run's target: its classes only
            raw = self.target_subset(raw, split or self.cfg.benchmark.target_eval_split)
        return source.name, self.prepare(raw)

    def analysis_data(self) -> list[tuple[str, object]]:
        b = self.cfg.benchmark
        found = []
        for role, name, split in (("source", b.source, "train"),
                                  ("target", b.target, b.target_eval_split)):
            domain = self.benchmark.domain(name, source=role == "source")
            raw = domain.load(self.cfg.data.root, split)
            found.append((role, self.prepare(raw if role == "source" else
                                             self.target_subset(raw, split))))
        return found

    def summarize(self, evaluation: dict, wall_time: float, fit: dict, out_dir: Path,
                  steps: int) -> dict:
        b = self.cfg.benchmark
        report = self.report(evaluation)
        partial = ({"target_classes": list(b.target_classes)} if b.target_classes is not None
                   else {})
        return {"benchmark": b.name, "task": f"{b.source}->{b.target}", "source": b.source,
                "target": b.target, **partial, "headline": HEADLINE.get(b.name, "accuracy"),
                **report,
                "steps": steps, "heads": evaluation["heads"],
                "wall_time_s": round(wall_time, 2), "train_steps_per_s": train_rate(fit),
                "validation": evaluation.get("validation")}


def check_target_classes(kept: list, benchmark) -> None:
    """``benchmark.target_classes``: two or more of the source's classes, each once."""
    names = benchmark.class_names or tuple(str(c) for c in range(benchmark.num_classes))
    kept = [str(k) for k in kept]
    if not kept:
        raise UsageError("benchmark.target_classes=[] keeps no class; list the classes the "
                         "target keeps (at least two), or leave it out for every class")
    unknown = [k for k in kept if k not in names]
    if unknown:
        shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12
                                         else "")
        raise UsageError(f"benchmark.target_classes names '{unknown[0]}', a class the source "
                         f"does not have; choose among its classes: {shown}")
    twice = next((k for i, k in enumerate(kept) if k in kept[:i]), None)
    if twice is not None:
        raise UsageError(f"benchmark.target_classes names '{twice}' twice; list each class once")
    if len(kept) == 1:
        raise UsageError(f"benchmark.target_classes keeps one class ('{kept[0]}'): every target "
                         "image would be that class, with nothing to classify; list at least two")


def partial_tag(kept: list[str], protocol: tuple[str, ...]) -> str:
    """The suffix of a partial-set task's folder: ``-partial`` for the benchmark's protocol,
    else the classes kept (``-partial56789``), or their number and a digest where names are
    long."""
    import hashlib

    if tuple(kept) == tuple(protocol):
        return "-partial"
    if all(len(k) == 1 for k in kept):
        return "-partial" + "".join(kept)
    digest = hashlib.sha1("\n".join(kept).encode()).hexdigest()[:6]
    return f"-partial{len(kept)}-{digest}"


class SemiSupervised(Task):
    section = "dataset"
    schema = SSLRunConfig
    command = "ssl"
    description = "semi-supervised (pnl-da ssl)"
    reports_error = True

    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        from pnl_da.data.registry import get_ssl_dataset

        self.dataset = get_ssl_dataset(cfg.dataset.name)
        self.split: dict | None = None  # the labeled subset, once drawn

    @classmethod
    def normalise_saved(cls, data: dict) -> None:
        dataset = data.get("dataset")
        if dataset is not None and dataset.get("split_seed") is None:
            dataset["split_seed"] = data.get("seed")  # unset means the run seed: the same subset

    @classmethod
    def table_of(cls, config: dict) -> str:
        return "ssl"

    @classmethod
    def label_of(cls, config: dict) -> str:
        return f"{config['dataset.name']}-{config['dataset.labels']}"

    no_labels = "no labels to score on, so no test error"

    @classmethod
    def scored_line(cls, result: dict, out: Path) -> str:
        m = result["metrics"]
        oracle = result.get("oracle_best_test_error")
        extra = (f"; oracle best-step test error {oracle['error']:.2f}% at step "
                 f"{oracle['step']}" if oracle else "")
        labels = result['labels'] or 'all the'
        return (f"{result['method']} {result['dataset']} {labels} labels seed "
                f"{result['seed']}: test error {m['error']:.2f}% of the final model "
                f"({result['prediction_is']}{extra}) -> {out / 'result.json'}")

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.dataset.class_names or super().class_names

    @property
    def dual_model(self) -> bool:
        return self.cfg.ssl.model == "dual" and int(self.cfg.method.heads) == 2

    def prediction_names(self, heads: dict) -> dict[str, str]:
        # the method's to say (Mean Teacher: a is the teacher; one network: a and mean are the
        # same model)
        from pnl_da.methods import METHODS

        return METHODS[self.cfg.method.name].prediction_names(heads, self.cfg.method.eval_ema)

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
        return RunData(self.prepare(_subset(train, labeled, "labeled")),
                       self.prepare(_subset(train, unlabeled, "unlabeled")),
                       self.prepare(test))

    def scoring_data(self, domain: str | None, split: str | None):
        from pnl_da.data.registry import SSL_DATASETS, get_ssl_dataset

        scored = get_ssl_dataset(domain or self.dataset.name)
        if not scored.same_task(self.dataset):
            same = [d.name for d in SSL_DATASETS.values() if d.same_task(self.dataset)]
            raise UsageError(f"{scored.name} ({describe_dataset(scored)}) is not what the run "
                             f"was trained on ({self.dataset.name}: "
                             f"{describe_dataset(self.dataset)}); evaluate on a dataset with "
                             f"the same classes and input format: {', '.join(same)}")
        return scored.name, self.prepare(scored.load(self.cfg.data.root, split or "test"))

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
        report = self.report(evaluation)
        names = self.prediction_names(heads)
        return {"dataset": cfg.dataset.name, "labels": int(cfg.dataset.labels),
                "split_seed": self.split_seed(), "headline": "error", **report, "steps": steps,
                "prediction_is": names.get(report["prediction"], report["prediction"]),
                "heads": {h: {**s, "error": 100 - s["accuracy"]} for h, s in heads.items()},
                "oracle_best_test_error": oracle_best(out_dir / METRICS, report["prediction"]),
                "validation": evaluation.get("validation"),
                "wall_time_s": round(wall_time, 2), "train_steps_per_s": train_rate(fit)}


class FolderSemiSupervised(SemiSupervised):
    """``pnl-da ssl folders --labeled DIR --unlabeled DIR [--test DIR] [--labels N]``: your own
    images. The labeled folder holds class folders (its classes are the run's); the unlabeled
    one, images. With ``--labels N`` a class-balanced subset of the labeled images keeps its
    labels and the others join the unlabeled ones, as the datasets' splits do. Scored on the
    test folder (labeled), else on the unlabeled folder: by accuracy where it holds class
    folders, by the label-free scores where it does not."""

    def __init__(self, cfg: DictConfig):
        Task.__init__(self, cfg)
        self.split = None

    @classmethod
    def resolve(cls, cfg: DictConfig) -> None:
        from pnl_da.data.folders import check_domain, source_classes

        d = cfg.dataset
        if not d.labeled_folder or not d.unlabeled_folder:
            raise UsageError("a semi-supervised run on folders needs --labeled DIR (class "
                             "folders) and --unlabeled DIR (images)")
        classes = source_classes(cfg.data.root, d.labeled_folder)
        for name, role in ((d.unlabeled_folder, "unlabeled"), (d.test_folder, "test")):
            if name:
                check_domain(cfg.data.root, name, classes, role)
        d.classes, d.num_classes = list(classes), len(classes)
        super().resolve(cfg)

    @classmethod
    def label_of(cls, config: dict) -> str:
        labels = config.get("dataset.labels") or "all"
        return f"{Path(str(config.get('dataset.labeled_folder'))).name}-{labels}"

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.cfg.dataset.classes)

    def default_out_dir(self) -> Path:
        d = self.cfg.dataset
        label = self.label_of({"dataset.labeled_folder": d.labeled_folder,
                               "dataset.labels": d.labels})
        return Path("runs") / "ssl" / f"folders-{label}" / self.cfg.method.name / \
            f"seed{self.cfg.seed}"

    def _domain(self, name: str, source: bool = False):
        from pnl_da.data.folders import load_domain

        return load_domain(self.cfg.data.root, name, tuple(self.cfg.dataset.classes), "all",
                           source=source)

    def load(self) -> RunData:
        from pnl_da.data.image_list import ImageList, ImageListData
        from pnl_da.data.ssl_datasets import balanced_labeled_split, unlabeled_pool

        cfg, d = self.cfg, self.cfg.dataset
        check_data_root(cfg.data.root)
        labeled = self._domain(d.labeled_folder, source=True)
        unlabeled = self._domain(d.unlabeled_folder)
        scored = self._domain(d.test_folder) if d.test_folder else unlabeled
        if int(d.labels):  # a balanced subset keeps its labels; the rest join the unlabeled
            seed = self.split_seed()
            chosen = balanced_labeled_split(np.asarray(labeled.images.labels), int(d.labels),
                                            self.num_classes, seed)
            rest = unlabeled_pool(len(labeled), chosen)
            self.split = {"dataset": "folders", "labels": int(d.labels), "split_seed": seed,
                          "train_size": len(labeled), "labeled": chosen.tolist()}

            root = Path(cfg.data.root)  # both folders' paths, relative to the data root

            def relative(data, rows) -> list[str]:
                return [os.path.relpath(data.base / data.images.paths[i], root) for i in rows]

            kept = ImageList(relative(labeled, chosen),
                             [labeled.images.labels[i] for i in chosen], labeled.images.source)
            pool = ImageList(relative(labeled, rest) + relative(unlabeled, range(len(unlabeled))),
                             [-1] * (len(rest) + len(unlabeled)), unlabeled.images.source)
            labeled = ImageListData(root, kept, labeled.name, "labeled")
            unlabeled = ImageListData(root, pool, unlabeled.name, "unlabeled")
        return RunData(self.prepare(labeled), self.prepare(unlabeled), self.prepare(scored))

    def scoring_data(self, domain: str | None, split: str | None):
        name = domain or self.cfg.dataset.test_folder or self.cfg.dataset.unlabeled_folder
        return name, self.prepare(self._domain(name))

    def check_resume(self, out_dir: Path) -> None:
        if self.split is not None:
            super().check_resume(out_dir)

    def write_records(self, out_dir: Path, resumed: bool) -> None:
        if self.split is not None:
            super().write_records(out_dir, resumed)


def normalization_of(cfg: DictConfig, settings) -> tuple[list[float], list[float]]:
    """The section's (mean, std), or the backbone's own where it names none."""
    from pnl_da.models.factory import backbone_normalization

    mean, std = settings.normalize_mean, settings.normalize_std
    if not mean and not std:
        mean, std = backbone_normalization(cfg.backbone.name, int(cfg.backbone.channels))
    return [float(m) for m in mean], [float(s) for s in std]


def describe_dataset(dataset) -> str:
    plural = "s" if dataset.channels > 1 else ""
    return (f"{dataset.num_classes} {dataset.label_set}, {dataset.image_size}x"
            f"{dataset.image_size}, {dataset.channels} channel{plural}")


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


# Inputs of at most this side are held as tensors and augmented on the device (the digits
# and CIFAR recipes: the whole image at the input size); larger ones are decoded into a cache at
# 256/224 of the input and cropped by data workers (tllib's ImageNet recipe).
IN_MEMORY_SIZE = 64


def cache_dir(cfg: DictConfig) -> Path:
    """Where decoded images are kept: ``data.cache_dir``, else ``$PNL_DA_CACHE``, else the
    user's cache folder (``$XDG_CACHE_HOME/pnl-da``, ``~/.cache/pnl-da``); never inside the
    data, which may be read-only or someone else's."""
    if cfg.data.cache_dir:
        return Path(cfg.data.cache_dir).expanduser()
    if os.environ.get("PNL_DA_CACHE"):
        return Path(os.environ["PNL_DA_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pnl-da"


def load_data(cfg: DictConfig) -> RunData:
    """The data of a composed configuration (benchmarks and tests that drive a Trainer)."""
    return task_of(cfg).load()
