"""The one training engine: every method, every benchmark.

It owns data streams, model, optimiser, schedule, evaluation, logging and checkpoints; a
method only turns a batch into a dict of losses. Everything random comes from seeded
generators whose state is checkpointed, so a resumed run ends with exactly the weights of an
uninterrupted one (on CPU; on GPU up to the nondeterminism of its kernels).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from pnl_da.data.base import DomainData
from pnl_da.data.streams import DomainStream, Normalizer
from pnl_da.engine.checkpoint import load_checkpoint, save_checkpoint
from pnl_da.engine.evaluate import batches_for, evaluate, task_section
from pnl_da.engine.seeding import rng_state, seed_everything, set_rng_state
from pnl_da.errors import PnlError, UsageError
from pnl_da.methods import Batch, create_method, total_loss
from pnl_da.models.factory import create_model

CHECKPOINT = Path("checkpoints") / "last.pt"
METRICS = "metrics.jsonl"


@dataclass
class RunData:
    source: DomainData  # labeled, for training
    target_train: DomainData  # unlabeled, for training (its labels are never read)
    target_eval: DomainData  # for evaluation


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown trainer.device '{name}'; use auto, cpu, cuda or "
                         "cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"trainer.device={name} but no CUDA device is visible; "
                         "use trainer.device=cpu or auto")
    return device


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on the device, or nothing (float32)."""
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lr_factor(step: int, gamma: float, decay: float) -> float:
    """tllib's schedule: lr * (1 + gamma * step) ** -decay."""
    return (1.0 + gamma * step) ** (-decay)


def total_steps(tcfg, train_images: int) -> int:
    """``trainer.steps``, or with ``trainer.epochs`` > 0 that many passes over the training
    images (labeled and unlabeled together) at batch_size + unlabeled_batch_size per step."""
    if tcfg.epochs <= 0:
        return int(tcfg.steps)
    per_step = tcfg.batch_size + (tcfg.unlabeled_batch_size or tcfg.batch_size)
    return int(tcfg.epochs) * max(1, train_images // per_step)


def without_decay_on_1d(groups: list[dict]) -> list[dict]:
    """Each group split in two: its matrices and kernels, and its one-dimensional parameters
    (normalisation scales and shifts, biases) with weight decay 0 (USB's ``bn_wd_skip``)."""
    split = []
    for group in groups:
        split.append({**group, "params": [p for p in group["params"] if p.ndim > 1]})
        split.append({**group, "params": [p for p in group["params"] if p.ndim <= 1],
                      "weight_decay": 0.0})
    return split


def make_sgd(groups: list[dict], tcfg) -> torch.optim.SGD:
    """SGD with Nesterov momentum; the fused kernel where torch has one (on a 2-core CPU it
    takes the optimiser step from about 10 ms to under 2 ms for LeNet + discriminator)."""
    if not tcfg.decay_norm_and_bias:
        groups = without_decay_on_1d(groups)
    groups = [g for g in groups if g["params"]]
    kwargs = dict(lr=tcfg.lr, momentum=tcfg.momentum, nesterov=tcfg.nesterov,
                  weight_decay=tcfg.weight_decay)
    try:
        return torch.optim.SGD(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.SGD(groups, **kwargs)


def metrics_records(path: Path) -> list[tuple[str, dict]]:
    """The records of a metrics.jsonl, each with its line (none if there is no file). Blank
    lines are skipped, and so is a line cut short by a process killed while appending it: the
    log is appended to, not written atomically."""
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append((line, record))
    return records


class Trainer:
    def __init__(self, cfg: DictConfig, data: RunData, run_dir: Path | None = None):
        # this segment's clock starts with the trainer (model building included); a resumed
        # run adds the wall time of its earlier segments, up to the checkpoint it resumed from
        self._segment_start = time.perf_counter()
        self.earlier_wall_time = 0.0
        self.cfg, self.data = cfg, data
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        tcfg = cfg.trainer
        self.device = resolve_device(tcfg.device)
        on_gpu = self.device.type == "cuda"
        self.bf16 = tcfg.precision == "bf16" or (tcfg.precision == "auto" and on_gpu)
        self.channels_last = tcfg.channels_last == "true" or (tcfg.channels_last == "auto"
                                                              and on_gpu)
        if on_gpu and tcfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = bool(on_gpu and tcfg.cudnn_benchmark
                                              and not tcfg.deterministic)
        if cfg.method.predict == "b" and cfg.method.heads < 2:
            raise UsageError(f"method.predict=b needs two heads, but method '{cfg.method.name}' "
                             "has one; use method.predict=a or mean")

        seed = int(cfg.seed)
        seed_everything(seed)
        section = task_section(cfg)
        num_classes = int(section.num_classes)
        self.num_classes = num_classes
        model = create_model(cfg, num_classes)
        self.method = create_method(cfg.method, model, num_classes).to(self.device)
        if self.channels_last:
            self.method.to(memory_format=torch.channels_last)
            model.channels_last = True
        # the separate networks: two for a dual model, else the model itself
        networks = list(getattr(model, "networks", [model]))
        self.cuda_graphs = on_gpu and tcfg.cuda_graphs
        if tcfg.compile or self.cuda_graphs:
            for net in networks:
                # in place: state_dict keys (checkpoints) stay the same
                net.backbone.compile(mode="reduce-overhead" if self.cuda_graphs else "default")
        self.method.generator = torch.Generator(device=self.device).manual_seed(seed + 101)

        # One optimiser per network: two for a dual model (each submodel keeps its own, as in
        # the SSL papers' code), one otherwise; a method's own modules join the first.
        per_network = [net.param_groups(cfg.backbone.lr_mult) for net in networks]
        per_network[0] = per_network[0] + self.method.extra_param_groups()
        self.optimizers = [make_sgd([{**g, "lr": tcfg.lr * g["lr_mult"]} for g in groups], tcfg)
                           for groups in per_network]

        self.normalize = Normalizer(section.normalize_mean, section.normalize_std)
        augmentations = {"weak": cfg.data.weak, "strong": cfg.data.strong}
        self.views = self.method.views()
        self.source = self.stream(data.source, seed * 1000 + 1, self.views["source"],
                                  augmentations)
        self.target = self.stream(data.target_train, seed * 1000 + 2, self.views["target"],
                                  augmentations,
                                  tcfg.unlabeled_batch_size or tcfg.batch_size)
        self.total_steps = total_steps(tcfg, len(data.source) + len(data.target_train))
        self.step = 0
        self.saved_step: int | None = None  # step of the last checkpoint written or resumed
        self.data_time = 0.0  # seconds spent producing batches (on GPU: launching the work)

    # -- pieces -----------------------------------------------------------------------------

    def stream(self, data, seed: int, views: tuple, augmentations: dict,
               batch_size: int | None = None):
        """In-memory domains stream from tensors on the device; image lists through workers."""
        cfg = self.cfg
        batch_size = batch_size or cfg.trainer.batch_size
        if isinstance(data, DomainData):
            return DomainStream(data, batch_size, seed, self.device, self.normalize,
                                augmentations, on_device=cfg.data.on_device)
        from pnl_da.data.loader_stream import LoaderStream
        from pnl_da.data.transforms import build_views

        transforms = build_views(cfg.data.image_size, cfg.benchmark.train_crop)
        return LoaderStream(data.decoded, batch_size, seed, self.device,
                            transforms, views, cfg.data.workers, self.normalize)

    def autocast(self):
        return autocast(self.device, self.bf16)

    def lr_factor(self, step: int) -> float:
        tcfg = self.cfg.trainer
        if tcfg.schedule in ("cosine", "fixmatch_cosine"):
            progress = min(step, self.total_steps) / max(1, self.total_steps)
            if tcfg.schedule == "fixmatch_cosine":
                return math.cos(7 * math.pi * progress / 16)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return lr_factor(step, tcfg.lr_gamma, tcfg.lr_decay)

    def set_lr(self, step: int) -> float:
        factor = self.lr_factor(step)
        for optimizer in self.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self.cfg.trainer.lr * group["lr_mult"] * factor
        return self.cfg.trainer.lr * factor

    def next_batch(self) -> Batch:
        source_views, labels = self.source.next(self.views["source"])
        target_views = self.target.next(self.views["target"])[0] if self.views["target"] else {}
        return Batch(source_views, labels, target_views)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        if self.cuda_graphs:  # a new step: the last step's graph outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        self.method.set_progress(step / self.total_steps)
        self.set_lr(step)
        t0 = time.perf_counter()
        batch = self.next_batch()
        self.data_time += time.perf_counter() - t0
        with self.autocast():
            losses = self.method.losses(batch, step)
        loss = total_loss(losses)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in self.optimizers:
            optimizer.step()
        self.method.after_step()
        losses["total"] = loss
        return {k: v.detach() for k, v in losses.items()}

    def evaluate(self, data=None) -> dict:
        data = data or self.data.target_eval
        return evaluate(self.method.eval_model(), batches_for(self.cfg, data, self.device),
                        data.labels, self.num_classes, self.autocast,
                        cuda_graphs=self.cuda_graphs)

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "method": self.method.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "source": self.source.state_dict(),
            "target": self.target.state_dict(),
            "method_generator": self.method.generator.get_state(),
            "rng": rng_state(),
            "wall_time_s": self.wall_time(),
        }

    def wall_time(self) -> float:
        """Seconds this run has trained, over every segment of a resumed run."""
        return self.earlier_wall_time + time.perf_counter() - self._segment_start

    def load_state_dict(self, state: dict) -> None:
        saved = state["optimizers"] if "optimizers" in state else [state["optimizer"]]
        if len(saved) != len(self.optimizers):  # checked first: a refusal loads nothing
            raise UsageError(f"the checkpoint holds {len(saved)} optimiser(s), this run has "
                             f"{len(self.optimizers)}; resume with the run's own settings")
        self.step = state["step"]
        self.earlier_wall_time = float(state.get("wall_time_s", 0.0))  # older checkpoints: 0
        self.method.load_state_dict(state["method"])
        for optimizer, optimizer_state in zip(self.optimizers, saved):
            optimizer.load_state_dict(optimizer_state)
        self.source.load_state_dict(state["source"])
        self.target.load_state_dict(state["target"])
        self.method.generator.set_state(state["method_generator"])
        set_rng_state(state["rng"])

    def resume(self) -> bool:
        """Continue from ``checkpoints/last.pt`` if there is one; drop later log lines."""
        path = self.run_dir / CHECKPOINT if self.run_dir else None
        if path is None or not path.is_file():
            return False
        # On the CPU first: generator states must stay CPU tensors; load_state_dict moves
        # weights and optimiser state to the training device.
        self.load_state_dict(load_checkpoint(path, map_location="cpu"))
        self.saved_step = self.step
        metrics = self.run_dir / METRICS
        if metrics.is_file():
            kept = [line for line, record in metrics_records(metrics)
                    if record.get("step", 0) <= self.step]
            metrics.write_text("".join(line + "\n" for line in kept))
        return True

    # -- the loop ---------------------------------------------------------------------------

    def fit(self, stop_at: int | None = None) -> dict:
        """Train to ``total_steps`` (or stop after ``stop_at`` steps, for tests); returns the
        last evaluation and timings."""
        from tqdm import tqdm

        tcfg = self.cfg.trainer
        total, eval_every = self.total_steps, max(1, int(tcfg.eval_every))
        end = total if stop_at is None else min(stop_at, total)
        self.method.train()
        bar = tqdm(total=total, initial=self.step, disable=not tcfg.progress, file=sys.stderr,
                   dynamic_ncols=True, desc=f"{self.cfg.method.name}", leave=True,
                   mininterval=1.0)
        sums: dict[str, torch.Tensor] = {}
        count, train_time = 0, 0.0
        self.data_time = 0.0
        start_wall, last, first_step = time.perf_counter(), None, self.step
        window_start = time.perf_counter()
        while self.step < end:
            t0 = time.perf_counter()
            losses = self.train_step(self.step)
            train_time += time.perf_counter() - t0
            for key, value in losses.items():
                sums[key] = sums[key] + value if key in sums else value.clone()
            count += 1
            self.step += 1
            if self.step % 50 == 0 or self.step == end:
                current = float(losses["total"])  # one sync per 50 steps, for the bar anyway
                self.check_finite(current)
                bar.update(self.step - bar.n)
                shown = {"loss": f"{current:.3f}"}
                if last is not None:
                    shown["acc"] = f"{last['heads'][self.cfg.method.predict]['accuracy']:.1f}"
                bar.set_postfix(shown, refresh=False)
            if self.step % eval_every == 0 or self.step == total:
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                window = time.perf_counter() - window_start
                means = {k: float(v) / count for k, v in sums.items()}
                self.check_finite(means["total"])
                last = self.evaluate()
                self.log(last, means, count, window)
                sums, count, self.data_time = {}, 0, 0.0
                self.checkpoint()
                window_start = time.perf_counter()
        bar.close()
        if last is None:
            last = self.evaluate()
        return {"evaluation": last, "train_time_s": train_time,
                "steps_trained": self.step - first_step,
                "wall_time_s": time.perf_counter() - start_wall, "steps_run": self.step}

    def check_finite(self, loss: float) -> None:
        """Stop a diverged run. A non-finite loss has already reached the weights (the
        optimiser stepped on it), so nothing after it is evaluated, logged or checkpointed:
        the last checkpoint stays the last good state."""
        if math.isfinite(loss):
            return
        if self.saved_step:  # the folder holds a run with the old settings
            kept = f"its checkpoint of step {self.saved_step} is kept"
            where = f" into another --out (or delete {self.run_dir})" if self.run_dir else ""
        else:
            kept, where = "nothing was checkpointed", ""
        raise PnlError(f"training diverged: the loss is {loss} by step {self.step}; {kept}; "
                       f"train again with a lower trainer.lr (now {self.cfg.trainer.lr:g}){where}")

    def log(self, evaluation: dict, losses: dict, count: int, window_s: float) -> None:
        heads = evaluation["heads"]
        record = {
            "step": self.step,
            "lr": self.cfg.trainer.lr * self.lr_factor(self.step - 1),
            "losses": {k: round(v, 5) for k, v in losses.items()},
            # unrounded, like result.json: the oracle figure read from here must match the
            # final model's when they are the same step
            "accuracy": {h: s["accuracy"] for h, s in heads.items()},
            "mean_class_accuracy": {h: s["mean_class_accuracy"] for h, s in heads.items()},
            "steps_per_s": round(count / window_s, 2) if window_s > 0 else None,
            "data_wait_fraction": round(self.data_time / window_s, 4) if window_s > 0 else None,
        }
        if self.method.alignment is not None:
            record["grl_coeff"] = round(self.method.alignment.grl.coeff, 5)
        if self.run_dir is not None:
            with open(self.run_dir / METRICS, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    def checkpoint(self) -> None:
        if self.run_dir is not None:
            save_checkpoint(self.state_dict(), self.run_dir / CHECKPOINT)
            self.saved_step = self.step
