"""Structured configuration: the schema every run is checked against, and its composition.

The YAML files under ``configs/`` (installed as ``pnl_da.configs``) choose values; the
dataclasses here fix which keys exist and their types, so a typo in a key or a value of the
wrong type is an error (exit 2) instead of being silently ignored.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from pnl_da.choice import Choice, Toggle
from pnl_da.engine.schedule import SCHEDULES
from pnl_da.errors import UsageError
from pnl_da.resources import packaged_dir


class TrainCrop(Choice):
    random = "random"  # random resized crop (tllib's default)
    center = "center"  # resize and centre crop (VisDA preset)


class Padding(Choice):
    zeros = "zeros"
    reflection = "reflection"


class Precision(Choice):
    auto = "auto"  # bf16 on GPU, fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"


# the learning-rate schedules registered in pnl_da/engine/schedule.py (their maths is there)
Schedule = Choice("Schedule", {name: name for name in SCHEDULES})


class OnNan(Choice):
    stop = "stop"
    skip = "skip"


class SSLModel(Choice):
    dual = "dual"  # two networks, an optimiser each
    shared = "shared"  # one backbone, two heads


@dataclass
class BenchmarkConfig:
    name: str = MISSING
    source: str = MISSING  # canonical domain names, filled in from the TASK argument
    target: str = MISSING
    num_classes: int = MISSING
    target_train_split: str = "train"  # unlabeled target data used for training
    target_eval_split: str = "test"  # falls back to "all" for domains without a test split
    # per channel, or one value for all; empty: the backbone's own (LeNet and DTN: tllib's
    # --norm-mean 0.5 --norm-std 0.5; a timm model's pretrained configuration: ImageNet's for
    # ResNets), filled in when the run is composed
    normalize_mean: list[float] = field(default_factory=list)
    normalize_std: list[float] = field(default_factory=list)
    train_crop: TrainCrop = TrainCrop.random  # image lists: random | center (VisDA preset)
    # the class names, in label order, of a benchmark whose classes come from its data
    # (folders: the source's class folders), filled in when the run is composed
    classes: list[str] = field(default_factory=list)
    # Partial-set adaptation: the target holds only some of the source's classes. true: the
    # benchmark's partial protocol (tllib's default_partial; digits: 0-4; folders: the target's
    # class folders) fills target_classes in when the run is composed. The label space stays the
    # source's; methods with a partial-set form (PNL's method.partial=auto) switch it on.
    partial: bool = False
    # the class names the target keeps, in training and evaluation alike (setting it makes the
    # run partial-set); null: every class
    target_classes: list[str] | None = None


@dataclass
class BackboneConfig:
    name: str = MISSING
    pretrained: bool = False
    weights: str | None = None
    channels: int = 1  # every domain is delivered with this channel count
    bottleneck_dim: int = 0  # 0: no bottleneck (heads sit on the backbone features)
    lr_mult: float = 1.0  # learning-rate multiplier of the backbone (0.1 when fine-tuning)
    head_weight_norm: bool = False  # weight-normalised linear heads (Conv-Large)


@dataclass
class AugmentConfig:
    """A random affine map applied on the device to a whole batch at once."""

    rotate: float = 0.0  # degrees, uniform in [-rotate, rotate]
    translate: float = 0.0  # fraction of the image side, uniform in [-t, t] per axis
    scale: float = 0.0  # uniform in [1 - scale, 1 + scale]
    shear: float = 0.0  # degrees
    erase: float = 0.0  # probability of blanking one random square (cutout) of side 1/3
    contrast: float = 0.0  # contrast factor uniform in [1 - c, 1 + c]
    brightness: float = 0.0  # brightness shift uniform in [-b, b] (images in [0, 1])
    solarize: float = 0.0  # probability of inverting pixels above 0.5
    flip: float = 0.0  # probability of a horizontal flip
    padding: Padding = Padding.zeros  # what the affine map shows outside the image
    # > 0: RandAugment: this many of the ops above per image, drawn at random among those set
    # (and identity), each at a random magnitude up to its setting, instead of all of them;
    # flip and erase (Cutout) stay on for every image, as in FixMatch's strong view
    rand_ops: int = 0


@dataclass
class DataConfig:
    root: str = "data"
    # Training crop and network input (images are cached at 256/224 of it); the backbone's
    # config sets it (LeNet 28, DTN 32, ResNet 224), and a timm model takes any size.
    image_size: int = 224
    on_device: bool = True  # hold in-memory domains (digits) as tensors on the training device
    cache_dir: str = ""  # decoded-image cache; empty: <benchmark folder>/.pnl-da-cache
    workers: int = 4  # DataLoader workers for image-list benchmarks
    skip_bad_images: bool = False  # skip (and count) unreadable images instead of failing
    # On-device views of in-memory domains (digits); image-list benchmarks use the
    # albumentations views of pnl_da/data/transforms.py instead.
    weak: AugmentConfig = field(default_factory=AugmentConfig)
    strong: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainerConfig:
    steps: int = 3000
    batch_size: int = 64  # images per domain per step
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-3
    # false: no weight decay on one-dimensional parameters (normalisation scales and shifts,
    # biases), as USB and FixMatch's code train; true: on every parameter, as tllib does
    decay_norm_and_bias: bool = True
    lr_gamma: float = 0.001  # lr * (1 + gamma * step) ** -decay, as in tllib
    lr_decay: float = 0.75
    eval_every: int = 500
    eval_batch_size: int = 1000
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Precision = Precision.auto  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16
    channels_last: Toggle = Toggle.auto  # auto (on GPU) | true | false
    progress: bool = True
    # torch threads on the CPU (0: OMP_NUM_THREADS where set, else the cores the process may
    # use; pnl_da/engine/threads.py). A CPU run repeats its numbers at the same count only.
    threads: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms on GPU
    compile: bool = False  # torch.compile the backbone (pays off on long GPU runs)
    # On a GPU (ignored on CPU, like cudnn_benchmark): torch.compile the backbone in mode
    # reduce-overhead, so that its forward and backward replay as CUDA graphs. For steps bound
    # by launching kernels: ResNet-50 with 64 images per step on an H100 runs 2.1x faster.
    cuda_graphs: bool = False
    # cuDNN autotuning for fixed input shapes; off where bit-identical reruns matter more than
    # speed (digits), on for the image benchmarks (as tllib's scripts do)
    cudnn_benchmark: bool = False
    # Semi-supervised runs: unlabeled images per step (0: batch_size), the learning-rate
    # schedule, and a length in epochs (passes over the training set, labeled and unlabeled
    # images together) that sets trainer.steps when above 0.
    unlabeled_batch_size: int = 0
    # inverse (tllib's) | cosine | fixmatch_cosine (FixMatch's and USB's): pnl_da/engine/schedule.py
    schedule: Schedule = Schedule.inverse
    epochs: int = 0
    # A non-finite loss: stop (the default: the run is named, with the step and the loss term)
    # or skip that step's update and go on, counting it in metrics.jsonl (costs a device sync
    # per step)
    on_nan: OnNan = OnNan.stop
    # Under torchrun: BatchNorm statistics over every process's images (SyncBatchNorm, GPUs
    # only). In domain adaptation a BatchNorm layer normalises source and target images
    # together; with N processes each would otherwise see 1/N of the batch.
    sync_bn: bool = False
    # also write the metrics as TensorBoard scalars (<run>/tensorboard/), where the tensorboard
    # package is installed (pip install 'pnl-da[tensorboard]')
    tensorboard: bool = True


@dataclass
class RunConfig:
    seed: int = 0
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)


@dataclass
class SSLDatasetConfig:
    name: str = MISSING
    num_classes: int = MISSING
    labels: int = MISSING  # labeled images in all, class-balanced (--labels)
    split_seed: int | None = None  # seed of the labeled subset; None: the run seed
    normalize_mean: list[float] = field(default_factory=lambda: [0.5])
    normalize_std: list[float] = field(default_factory=lambda: [0.5])
    # dataset=folders (your own images: `pnl-da ssl folders --labeled DIR --unlabeled DIR`):
    # the folders below the data root, and the classes of the labeled one, filled in when the
    # run is composed; labels=0 means every labeled image
    labeled_folder: str = ""
    unlabeled_folder: str = ""
    test_folder: str = ""  # labeled images to score on; empty: the unlabeled folder
    classes: list[str] = field(default_factory=list)


@dataclass
class SSLOptions:
    # How the two submodels of a two-model method (pnl, pnl_paper) are built: dual = two
    # networks with an optimiser each; shared = one backbone with two heads.
    model: SSLModel = SSLModel.dual


@dataclass
class SSLRunConfig:
    seed: int = 0
    dataset: SSLDatasetConfig = field(default_factory=SSLDatasetConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    ssl: SSLOptions = field(default_factory=SSLOptions)


def method_schemas() -> dict[str, type]:
    """Each method's options dataclass, by method name. The dataclass lives in the method's own
    file (``options`` on its class), so a new method is one file and one YAML."""
    from pnl_da.methods import METHODS

    return {name: method.options for name, method in METHODS.items()}


# Numbers with a range: (lowest, highest or None, lowest excluded). Checked once at composition
# (as Hydra checks the choices, Enum fields), so that a run that could only crash or train
# nothing is refused before its folder is written. Keys a configuration lacks are skipped; a
# method's own options have their bounds on its class (``ranges``, pnl_da/methods/).
RANGES = {
    "seed": (0, None, False),
    "dataset.split_seed": (0, None, False),
    "trainer.threads": (0, None, False),  # 0: chosen (pnl_da/engine/threads.py)
    "trainer.batch_size": (0, None, True),
    "trainer.unlabeled_batch_size": (0, None, False),  # 0: trainer.batch_size
    "trainer.eval_every": (0, None, True),
    "trainer.eval_batch_size": (0, None, True),
    "trainer.lr": (0, None, True),
    "trainer.momentum": (0, 1, False),
    "trainer.weight_decay": (0, None, False),
    "trainer.lr_gamma": (0, None, False),
    "trainer.lr_decay": (0, None, False),
    "backbone.lr_mult": (0, None, False),
    "backbone.bottleneck_dim": (0, None, False),
    "data.image_size": (0, None, True),
    "data.workers": (0, None, False),
    "data.weak.rand_ops": (0, None, False),
    "data.strong.rand_ops": (0, None, False),
    **{f"data.{view}.{p}": (0, 1, False) for view in ("weak", "strong")
       for p in ("erase", "solarize", "flip")},  # probabilities
}
# Keys also set by a command-line option, named in their error messages.
OPTION_OF = {"dataset.split_seed": "--split-seed"}


def quoted(value: str) -> str:
    """``value`` as a quoted Hydra override value, read back as itself (a folder name with
    spaces, commas, brackets, quotes or backslashes): quotes and the backslashes before a quote
    or the end are escaped, as Hydra's grammar asks."""
    import re

    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, str(value))
    return "'" + value.replace("'", "\\'") + "'"


def register_schemas() -> None:
    """Make the dataclasses known to Hydra, so YAML files can name them in their defaults."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(name="ssl_schema", node=SSLRunConfig)
    for name, schema in method_schemas().items():
        store.store(group="method", name=f"{name}_schema", node=schema)


def config_dir(mode: str = "da") -> Path:
    """The ``configs/`` folder installed with the package; ``configs/ssl`` for semi-supervised
    runs, which have their own datasets, methods, backbones and trainer presets."""
    root = packaged_dir("configs")
    return root / "ssl" if mode == "ssl" else root


def available(group: str, mode: str = "da") -> list[str]:
    """Names of the YAML configs of one group (``method``, ``backbone``, ...)."""
    return sorted(p.stem for p in (config_dir(mode) / group).glob("*.yaml"))


def inert_options(method: DictConfig) -> dict[str, str]:
    """Options of this method configuration that change nothing, each with the reason: the
    method's class says which (``Method.inert_options``)."""
    return _method_class(method).inert_options(method)


def inert_overrides(method: DictConfig, overrides: list[str]) -> dict[str, str]:
    """The command-line overrides (``method.entropy=true``) that set an inert option of this
    method configuration, each with the reason."""
    inert = inert_options(method)
    found = {}
    for item in overrides:
        key = item.partition("=")[0]
        if key.startswith("method.") and key.removeprefix("method.") in inert:
            found[item] = inert[key.removeprefix("method.")]
    return found


def _check_inert(cfg: DictConfig, overrides: list[str]) -> None:
    inert = inert_overrides(cfg.method, overrides)
    if inert:
        item, reason = next(iter(inert.items()))
        raise UsageError(f"'{item}' changes nothing: {reason}; leave it out")


def compose(overrides: list[str], mode: str = "da", allow_inert: bool = False) -> DictConfig:
    """Compose the run configuration from the packaged configs and command-line overrides;
    ``mode="ssl"`` composes a semi-supervised run (``configs/ssl``). A method option that
    would change nothing is an error unless ``allow_inert`` (compare gives one option to
    several methods)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_schemas()
    _check_group_choices(overrides, mode)
    overrides = _length_wins(_choices_as_written(overrides, mode))
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir(mode)), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise UsageError(_one_line_config_error(exc, mode)) from exc
    finally:
        GlobalHydra.instance().clear()
    _check_bounds(cfg)
    _method_class(cfg.method).check(cfg.method)
    if not allow_inert:
        _check_inert(cfg, overrides)
    if mode == "ssl":
        _check_ssl_only_options(cfg, overrides)
    return cfg


def _check_ssl_only_options(cfg: DictConfig, overrides: list[str]) -> None:
    """Options that mean nothing in a semi-supervised run of this method."""
    if cfg.method.get("align", "none") != "none":
        raise UsageError(f"method.align={cfg.method.align} aligns a source domain with a target "
                         "domain; a semi-supervised run has one dataset, so leave method.align "
                         "out (domain adaptation: `pnl-da run`)")
    keys = {item.partition("=")[0] for item in overrides}
    if cfg.method.target_view == "none" and "trainer.unlabeled_batch_size" in keys:
        raise UsageError(f"'trainer.unlabeled_batch_size' changes nothing: {cfg.method.name} "
                         "reads no unlabeled images; leave it out")
    if cfg.method.heads != 2 and any(o.startswith("ssl.model=") for o in overrides):
        raise UsageError(f"ssl.model chooses how the two submodels of pnl and pnl_paper are "
                         f"built; {cfg.method.name} trains one network, so leave ssl.model out")


def _length_wins(overrides: list[str]) -> list[str]:
    """A run's length is trainer.steps or trainer.epochs (pnl_paper's schedule counts epochs).
    The one given on the command line wins: the other is set to 0, so that ``trainer.steps=30``
    shortens a pnl_paper run instead of being ignored."""
    keys = {item.partition("=")[0] for item in overrides}
    if "trainer.steps" in keys and "trainer.epochs" not in keys:
        return [*overrides, "trainer.epochs=0"]
    if "trainer.epochs" in keys and "trainer.steps" not in keys:
        return [*overrides, "trainer.steps=0"]
    return overrides


def _check_group_choices(overrides: list[str], mode: str = "da") -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"override '{item}' has no value; write KEY=VALUE, e.g. seed=1")
        try:
            parser.parse_override(item)
        except HydraException as exc:  # Hydra's grammar: its innermost message is 'None'
            reason = " ".join(str(exc).split("See https")[0].split())
            raise UsageError(f"cannot read override '{item}': {reason}; quote a value that "
                             "holds brackets, commas or spaces, e.g. 'key=\"a,b\"'") from exc
        if key.startswith(("+", "~")):
            # The schema fixes the keys: adding or deleting one would silently change nothing.
            raise UsageError(f"override '{item}' adds or removes a key; the configuration's keys "
                             f"are fixed, so write {key.lstrip('+~')}=VALUE")
        if key in ("trainer_method", "benchmark_method"):  # follow the choices they join
            first = key.split("_")[0]
            raise UsageError(f"'{item}' is not an option: {key} follows {first}= and "
                             "method=; choose those instead")
        groups = ("method", "backbone", "trainer", *(("dataset",) if mode == "ssl" else
                                                      ("benchmark", "augment")))
        if key in groups:
            names = available(key, mode)
            if value not in names:
                where = " for semi-supervised runs" if mode == "ssl" else ""
                see = "" if key == "trainer" else f" (see `pnl-da list {key}s`)"  # no list
                raise UsageError(
                    f"unknown {key} '{value}'{where}; choose one of: {', '.join(names)}{see}")


def choice_fields(mode: str = "da") -> dict[str, type[Choice]]:
    """Every option with a fixed set of values, by key (``trainer.precision``, and each
    method's, as ``method.selection``), with its Enum."""
    found: dict[str, type[Choice]] = {}

    def walk(schema: type, prefix: str) -> None:
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            kind = hints[f.name]
            if isinstance(kind, type) and issubclass(kind, Choice):
                found[prefix + f.name] = kind
            elif dataclasses.is_dataclass(kind):
                walk(kind, f"{prefix}{f.name}.")

    walk(SSLRunConfig if mode == "ssl" else RunConfig, "")
    for schema in method_schemas().values():
        walk(schema, "method.")
    return found


def _choices_as_written(overrides: list[str], mode: str) -> list[str]:
    """A choice's value in any case (``trainer.schedule=Cosine``), and ``true`` / ``false``
    for the auto/true/false choices (which Hydra would read as booleans), as the Enum's own
    string; any other value is left for Hydra to refuse."""
    fields = choice_fields(mode)
    written = []
    for item in overrides:
        key, _, value = item.partition("=")
        kind = fields.get(key)
        if kind is not None and value.strip("'\"").lower() in kind.values():
            item = f"{key}='{value.strip(chr(39) + chr(34)).lower()}'"
        written.append(item)
    return written


def _one_line_config_error(exc: BaseException, mode: str = "da") -> str:
    """Hydra and OmegaConf explain a bad override over several chained exceptions; the
    OmegaConf one among them names the key (``full_key``), the value and the schema that
    refused it: keep those facts, on one line."""
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        OmegaConfBaseException,
        ValidationError,
    )

    chain = []
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    cause = next((e for e in chain if isinstance(e, OmegaConfBaseException)
                  and getattr(e, "full_key", None)), None)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        name = cause.full_key
        section = name.rsplit(".", 1)[0] if "." in name else "the run configuration"
        return (f"unknown configuration key '{name}'; check its spelling against the keys of "
                f"{section} (`pnl-da {'ssl' if mode == 'ssl' else 'run'} ... --show-config` "
                "prints them)")
    if isinstance(cause, ValidationError):
        kind = _field_type(cause.object_type, cause.key)
        if isinstance(kind, type) and issubclass(kind, Enum):
            wanted = "choose one of: " + ", ".join(m.value for m in kind)
        elif list in {typing.get_origin(t) for t in (kind, *typing.get_args(kind))}:
            wanted = f"expected a list in brackets, e.g. '{cause.full_key}=[a,b]'"
        else:
            wanted = f"expected {getattr(kind, '__name__', 'a value of another type')}"
        return f"bad value '{cause.value}' for '{cause.full_key}'; {wanted}"
    last = " ".join(str(chain[-1]).split()) if chain else ""
    return f"configuration error: {last}"


def _field_type(schema, key) -> Any:
    """The declared type of ``schema.key`` (a dataclass field), or None."""
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        return None
    return typing.get_type_hints(schema).get(str(key))


def _check_length(cfg: DictConfig) -> None:
    """trainer.steps and trainer.epochs: one of them sets the run's length, the other is 0."""
    steps, epochs = int(cfg.trainer.steps), int(cfg.trainer.epochs)
    if epochs < 0:
        raise UsageError(f"bad value {epochs} for 'trainer.epochs'; use a number >= 1 (passes "
                         "over the training set), or 0 to let trainer.steps set the length")
    if steps < 0 or (steps == 0 and epochs == 0):
        raise UsageError(f"bad value {steps} for 'trainer.steps'; use a number >= 1 (e.g. "
                         "trainer.steps=2000), or 0 with trainer.epochs >= 1 setting the length")
    if steps > 0 and epochs > 0:
        raise UsageError(f"trainer.steps={steps} and trainer.epochs={epochs} both set the run's "
                         "length; set one of them and the other to 0")


def _method_class(method: DictConfig):
    from pnl_da.methods import METHODS

    return METHODS[method.name]


def _check_bounds(cfg: DictConfig) -> None:
    _check_length(cfg)
    own = {f"method.{name}": bounds for name, bounds in _method_class(cfg.method).ranges.items()}
    for key, (low, high, low_excluded) in {**RANGES, **own}.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None or ((value > low if low_excluded else value >= low)
                             and (high is None or value <= high)):
            continue
        option = f" ({OPTION_OF[key]})" if key in OPTION_OF else ""
        wanted = f"{'>' if low_excluded else '>='} {low}" + (
            f" and <= {high}" if high is not None else "")
        raise UsageError(f"bad value {value} for '{key}'{option}; use a number {wanted}")


def on_schema(saved: DictConfig, schema: type) -> DictConfig:
    """A saved run configuration (its config.yaml) on ``schema`` (its task's: which one is the
    task's to say, pnl_da/engine/tasks.py) and its method's, so that a key added since the run
    was written takes its default."""
    merged = OmegaConf.merge(OmegaConf.structured(schema), saved)
    method_schema = method_schemas().get(OmegaConf.select(saved, "method.name", default=""))
    if method_schema is not None:
        merged.method = OmegaConf.merge(OmegaConf.structured(method_schema), saved.method)
    return merged


# Keys that say where and how visibly a run trains, not what it trains: a finished run is
# reused, and a checkpoint resumed, across them (the device and the CPU threads change float
# rounding only; env.json records both for each segment of a run).
IGNORED_FOR_REUSE = ("trainer.progress", "trainer.device", "trainer.threads",
                     "trainer.tensorboard", "data.root")


def first_difference(old: dict, new: dict, prefix: str = "") -> str | None:
    # a section's name first: another method reads "method.name", not one of its options
    for key in sorted(set(old) | set(new), key=lambda k: (k != "name", k)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}: {a!r} in the run, {b!r} now"
    return None


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_annotated_yaml(cfg: DictConfig) -> str:
    """``--show-config``'s view: the configuration with a comment on each method option that
    changes nothing in it (CDAN's ``entropy`` under DANN), since setting one is refused. The
    comments keep it valid YAML."""
    inert = inert_options(cfg.method)
    lines, in_method = [], False
    for line in to_yaml(cfg).splitlines():
        if not line.startswith(" "):
            in_method = line == "method:"
        key = line.strip().partition(":")[0]
        if in_method and line.startswith("  ") and not line.startswith("   ") and key in inert:
            line += f"  # inert: {inert[key]}"
        lines.append(line)
    return "\n".join(lines) + "\n"
