"""The one training engine: every method, every benchmark.

It keeps the loop: data streams, model, optimisers, evaluation. It calls three parts for the
rest: the learning-rate schedule (pnl_da/engine/schedule.py), the log of each evaluation
(metrics.jsonl and TensorBoard: ``RunLog``) and the checkpoints with their resume policy
(``CheckpointSaver``). A method only turns a batch into a dict of losses. Everything random
comes from seeded generators whose state is checkpointed, so a resumed run ends with exactly
the weights of an uninterrupted one (on CPU; on GPU up to the nondeterminism of its kernels).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig

from pnl_da.data.base import DomainData
from pnl_da.data.streams import DomainStream
from pnl_da.engine import distributed, signals
from pnl_da.engine.distributed import rank_seed
from pnl_da.engine.evaluate import batches_for, evaluate
from pnl_da.engine.metrics_log import RunLog
from pnl_da.engine.progress import Progress, score_text
from pnl_da.engine.saver import CheckpointSaver
from pnl_da.engine.schedule import create_schedule, total_steps
from pnl_da.engine.seeding import rng_state, seed_everything, set_rng_state
from pnl_da.engine.tasks import RunData, task_of
from pnl_da.errors import Interrupted, PnlError, UsageError
from pnl_da.methods import Batch, create_method, total_loss
from pnl_da.models.factory import create_model


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


@dataclass
class Window:
    """What the next metrics.jsonl record averages: the losses of the steps since the last
    evaluation. Checkpointed, so that a run stopped between two evaluations (SIGTERM) logs
    exactly the record an uninterrupted run would."""

    sums: dict = field(default_factory=dict)  # loss name -> sum over the trained steps
    trained: int = 0  # steps whose losses are in ``sums``
    steps: int = 0  # steps run, skipped ones included
    skipped: int = 0  # steps whose loss was not finite (trainer.on_nan=skip)
    data_time: float = 0.0  # seconds producing batches (on GPU: launching the work)
    earlier_s: float = 0.0  # seconds of this window spent in earlier segments of the run

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.trained += 1

    def state_dict(self) -> dict:
        return {"sums": {k: v.cpu() for k, v in self.sums.items()}, "trained": self.trained,
                "steps": self.steps, "skipped": self.skipped, "data_time": self.data_time,
                "earlier_s": self.earlier_s}

    @classmethod
    def from_state(cls, state: dict | None, device: torch.device) -> Window:
        if not state:  # a checkpoint written at an evaluation, or by an older version
            return cls()
        return cls({k: v.to(device) for k, v in state["sums"].items()}, state["trained"],
                   state["steps"], state["skipped"], state["data_time"], state["earlier_s"])


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
        self.device = resolve_device(distributed.device_for(tcfg.device))
        # under torchrun: this process's place; each draws 1/size of every batch
        self.world = distributed.init(self.device)
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
        self.task = task_of(cfg)
        num_classes = self.task.num_classes
        self.num_classes = num_classes
        model = create_model(cfg, num_classes, dual=self.task.dual_model)
        method = create_method(cfg.method, model, num_classes, self.task.partial_set)
        method.bind_sizes(source=len(data.source), target=len(data.target_train))
        self.method = method.to(self.device)
        if self.world.distributed and tcfg.sync_bn:
            # BatchNorm statistics over the global batch, source and target images of every
            # process together, as one process would compute them
            self.method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
            model = self.method.model
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
        self.method.reseed(rank_seed(seed + 101, self.world.rank), self.device)
        # Gradients averaged over the processes: DDP wraps the method, whose forward is its
        # losses, so that every module a loss uses (heads, discriminator) is reduced.
        self.ddp = None
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(
                self.method, device_ids=[self.device.index] if on_gpu else None)

        # One optimiser per network: two for a dual model (each submodel keeps its own, as in
        # the SSL papers' code), one otherwise; a method's own modules join the first.
        per_network = [net.param_groups(cfg.backbone.lr_mult) for net in networks]
        per_network[0] = per_network[0] + self.method.extra_param_groups()
        self.optimizers = [make_sgd([{**g, "lr": tcfg.lr * g["lr_mult"]} for g in groups], tcfg)
                           for groups in per_network]

        self.normalize = self.task.normalizer()
        augmentations = {"weak": cfg.data.weak, "strong": cfg.data.strong}
        self.views = self.method.views()
        self.source = self.stream(data.source, seed * 1000 + 1, self.views["source"],
                                  augmentations)
        self.target = self.stream(data.target_train, seed * 1000 + 2, self.views["target"],
                                  augmentations,
                                  tcfg.unlabeled_batch_size or tcfg.batch_size)
        self.total_steps = total_steps(tcfg, len(data.source) + len(data.target_train))
        # a method's passes over the unlabeled images (PADA's class weights), every so many steps
        epoch_steps = math.ceil(len(data.target_train)
                                / (tcfg.unlabeled_batch_size or tcfg.batch_size))
        self.refresh_every = self.method.refresh_every(max(1, epoch_steps))
        self.schedule = create_schedule(tcfg, self.total_steps)
        main = self.world.main
        self.saver = (CheckpointSaver(self.run_dir, cfg, data, writes=main)
                      if self.run_dir is not None else None)
        self.run_log = RunLog(self.run_dir, tcfg.tensorboard, writes=main)
        self.step = 0
        self.saved_step: int | None = None  # step of the last checkpoint written or resumed
        self.window = Window()
        self.skip_nonfinite = tcfg.on_nan == "skip"
        self.skipped_steps = 0  # over the whole run (trainer.on_nan=skip)
        # the first non-finite step and its loss terms, kept on the device: no sync per step
        self._nonfinite: dict | None = None
        self.resumed_from: Path | None = None  # the checkpoint this run resumed from
        self.set_aside: Path | None = None  # a last.pt moved aside by --resume-from prev

    # -- pieces -----------------------------------------------------------------------------

    def stream(self, data, seed: int, views: tuple, augmentations: dict,
               batch_size: int | None = None):
        """In-memory domains stream from tensors on the device; image lists through workers.
        ``batch_size`` is the global batch: each process draws its share of it."""
        cfg = self.cfg
        batch_size = batch_size or cfg.trainer.batch_size
        shard = (self.world.rank, self.world.size)
        if isinstance(data, DomainData):
            return DomainStream(data, batch_size, seed, self.device, self.normalize,
                                augmentations, on_device=cfg.data.on_device, shard=shard)
        from pnl_da.data.loader_stream import LoaderStream
        from pnl_da.data.transforms import build_views

        transforms = build_views(cfg.data.image_size, cfg.benchmark.train_crop)
        return LoaderStream(data.decoded, batch_size, seed, self.device,
                            transforms, views, cfg.data.workers, self.normalize, shard=shard,
                            augmentations=augmentations)

    def autocast(self):
        return autocast(self.device, self.bf16)

    def next_batch(self) -> Batch:
        source_views, labels = self.source.next(self.views["source"])
        if not self.views["target"]:
            return Batch(source_views, labels, {})
        target_views = self.target.next(self.views["target"])[0]
        return Batch(source_views, labels, target_views, self.target.last_index)

    def train_step(self, step: int) -> dict[str, torch.Tensor] | None:
        """One step; None when its loss was not finite and trainer.on_nan=skip skipped it."""
        if self.cuda_graphs:  # a new step: the last step's graph outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        self.method.set_progress(step / self.total_steps)
        if self.refresh_every and step and step % self.refresh_every == 0:
            self.refresh_method()
        self.schedule.apply(self.optimizers, step)
        t0 = time.perf_counter()
        batch = self.next_batch()
        self.window.data_time += time.perf_counter() - t0
        # the forward updates BatchNorm statistics: a skipped step puts them back
        buffers = list(self.method.buffers()) if self.skip_nonfinite else []
        saved = [b.detach().clone() for b in buffers]
        with self.autocast():
            losses = (self.ddp or self.method)(batch, step)
        loss = total_loss(losses, self.method.logged_only())
        if self.skip_nonfinite:
            finite = distributed.all_reduce(torch.isfinite(loss).float(), "min")  # every process
            if not bool(finite):  # a sync per step: the price of skipping
                with torch.no_grad():
                    for buffer, value in zip(buffers, saved):
                        buffer.copy_(value)
                return None
        else:
            self.track_nonfinite(losses, loss, step + 1)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in self.optimizers:
            optimizer.step()
        self.method.after_step()
        losses["total"] = loss
        return {k: v.detach() for k, v in losses.items()}

    def refresh_method(self) -> None:
        """Give the method the logits of every unlabeled training image (``Method.refresh``).
        Each process scores all of them, so that under torchrun every process gets the same."""
        from pnl_da.engine.evaluate import head_logits

        logits = head_logits(self.method.model,
                             batches_for(self.task, self.data.target_train, self.device),
                             self.autocast, self.cuda_graphs)
        self.method.refresh([z.to(self.device) for z in logits])

    def track_nonfinite(self, losses: dict[str, torch.Tensor], loss: torch.Tensor,
                        step: int) -> None:
        """Record, on the device, the first step whose loss terms are not all finite, and
        their values: ``check_finite`` names them (a few tiny kernels, no sync)."""
        logged = self.method.logged_only()
        names = [k for k in losses if k not in logged] + ["total"]
        values = torch.stack([losses[k].detach().float().reshape(()) for k in names[:-1]]
                             + [loss.detach().float().reshape(())])
        if self._nonfinite is None or self._nonfinite["names"] != names:
            self.check_finite()  # the terms changed (never within a method): settle the old
            self._nonfinite = {"names": names, "values": torch.zeros_like(values),
                               "step": torch.full((), -1, dtype=torch.long,
                                                  device=values.device)}
        record = self._nonfinite
        newly = values.isfinite().all().logical_not() & (record["step"] < 0)
        record["step"] = torch.where(newly, step, record["step"])
        record["values"] = torch.where(newly, values, record["values"])

    def validation_scores(self) -> dict[str, float]:
        """The label-free model-selection scores (pnl_da/engine/validators.py) on a fixed
        subset of the unlabeled target training images; DEV where the source has a held-out
        split. Every process computes the same (no collective)."""
        from pnl_da.engine import validators
        from pnl_da.engine.evaluate import outputs

        model, predict = self.method.eval_model(), self.cfg.method.predict
        target = self.data.target_train
        chosen = validators.subset(len(target))
        probs, features, _ = outputs(model, batches_for(self.task, target, self.device,
                                                        indices=chosen),
                                     self.autocast, predict, self.cuda_graphs)
        source = None
        heldout = self.data.source_heldout
        if heldout is not None:
            picked = validators.subset(len(heldout), seed=1)
            source_probs, source_features, labels = outputs(
                model, batches_for(self.task, heldout, self.device, indices=picked),
                self.autocast, predict, self.cuda_graphs)
            losses = -source_probs.gather(1, labels.view(-1, 1)).clamp_min(1e-12).log()[:, 0]
            source = (source_features, losses)
        return validators.scores(probs, source, features)

    def evaluate(self, data=None) -> dict:
        """Scores on ``data`` (the evaluation split); under torchrun each process scores its
        share of the batches and the confusion matrices are summed. Images without labels (a
        target given as a folder of unlabeled images) have no accuracy: the run is scored by
        its label-free validation scores alone."""
        data = data or self.data.target_eval
        if not data.labeled:
            return {"heads": {}, "confusion": {}, "labeled": False}
        shard = (self.world.rank, self.world.size)
        return evaluate(self.method.eval_model(),
                        batches_for(self.task, data, self.device, shard=shard), self.num_classes,
                        self.autocast, cuda_graphs=self.cuda_graphs,
                        reduce=distributed.all_reduce)

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The whole state, as process 0 holds it; under torchrun, with every process's own
        random streams under ``ranks`` (a collective: every process calls it)."""
        state = {
            "step": self.step,
            "method": self.method.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            **self.rank_state(),
            "wall_time_s": self.wall_time(),
            "window": self.window.state_dict(),
            "skipped_steps": self.skipped_steps,
            "processes": self.world.size,
        }
        if self.world.distributed:
            state["ranks"] = distributed.gather(self.rank_state())
        return state

    def rank_state(self) -> dict:
        """What differs from process to process: the streams' augmentation draws, the
        method's generator, the global generators."""
        return {"source": self.source.state_dict(), "target": self.target.state_dict(),
                "method_generator": self.method.random_state(), "rng": rng_state()}

    def load_rank_state(self, state: dict) -> None:
        self.source.load_state_dict(state["source"])
        self.target.load_state_dict(state["target"])
        self.method.set_random_state(state["method_generator"])
        set_rng_state(state["rng"])

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
        ranks = state.get("ranks") or [state]
        if len(ranks) == self.world.size:  # the same number of processes: each its own
            self.load_rank_state(ranks[self.world.rank])
        else:
            # Another number of processes: the data streams continue from the global position
            # (process 0's), and the other processes' random draws start afresh from their
            # seed and the step: the run goes on, though not draw for draw as it would have.
            self.load_rank_state(ranks[0])
            if self.world.rank:
                again = 7_919 * self.step
                for stream in (self.source, self.target):
                    stream.reseed(rank_seed(again, self.world.rank))
                self.method.reseed(rank_seed(int(self.cfg.seed) + 101 + again, self.world.rank),
                                   self.device)
        self.window = Window.from_state(state.get("window"), self.device)
        self.skipped_steps = int(state.get("skipped_steps", 0))

    def resume(self, from_previous: bool = False) -> bool:
        """Continue from the checkpoint the saver's policy picks (``from_previous``: from
        ``prev.pt``, setting ``last.pt`` aside), if there is one; drop later log records."""
        path = self.saver.to_resume(from_previous) if self.saver is not None else None
        if path is None:
            return False
        # On the CPU first; load_state_dict moves weights and optimiser state to the device.
        self.load_state_dict(self.saver.read(path))
        if from_previous:
            self.set_aside = self.saver.set_last_aside()
        self.saved_step, self.resumed_from = self.step, path
        self.run_log.resumed_at(self.step)
        return True

    # -- the loop ---------------------------------------------------------------------------

    def fit(self, stop_at: int | None = None) -> dict:
        """Train to ``total_steps`` (or stop after ``stop_at`` steps, for tests); returns the
        last evaluation and timings. A SIGTERM or SIGINT (pnl_da/engine/signals.py) ends the
        step under way, checkpoints it and raises Interrupted."""
        tcfg = self.cfg.trainer
        total, eval_every = self.total_steps, max(1, int(tcfg.eval_every))
        end = total if stop_at is None else min(stop_at, total)
        self.method.train()
        # a bar on a terminal; lines in a log file or a cluster job's output
        progress = Progress(tcfg.progress, total, self.step, self.cfg.method.name)
        predict = self.cfg.method.predict
        train_time = 0.0
        start_wall, last, first_step = time.perf_counter(), None, self.step
        window_start, current = time.perf_counter(), None
        with signals.deferred():
            while self.step < end:
                t0 = time.perf_counter()
                losses = self.train_step(self.step)
                train_time += time.perf_counter() - t0
                self.window.steps += 1
                if losses is None:
                    self.window.skipped += 1
                    self.skipped_steps += 1
                else:
                    self.window.add(losses)
                    current = losses["total"]
                self.step += 1
                if self.step % 50 == 0 or self.step == end:
                    self.check_finite()
                    progress.update(self.step, current, score_text(last, predict))
                if self.step % eval_every == 0 or self.step == total:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize()
                    self.check_finite()
                    window_s = self.window.earlier_s + time.perf_counter() - window_start
                    last = self.evaluate()
                    last["validation"] = self.validation_scores()
                    self.log(last, window_s)
                    self.window = Window()
                    self.checkpoint()
                    window_start = time.perf_counter()
                    progress.line(self.step, current, score_text(last, predict))
                elif progress.due():  # never a sync of the processes: each has its own clock
                    progress.line(self.step, current, score_text(last, predict))
                if self.stop_requested(end):
                    progress.close()
                    self.window.earlier_s += time.perf_counter() - window_start
                    self.stop_for_signal(signals.received() or signal.SIGTERM)
        progress.close()
        if last is None:
            last = self.evaluate()
            last["validation"] = self.validation_scores()
        self.run_log.close()
        return {"evaluation": last, "train_time_s": train_time,
                "steps_trained": self.step - first_step,
                "wall_time_s": time.perf_counter() - start_wall, "steps_run": self.step}

    def stop_requested(self, end: int) -> bool:
        """Whether a signal asks the run to stop after this step. Under torchrun every process
        must stop at the same step: they agree every 50 steps (and at the last), where the
        loss check syncs anyway, rather than paying an all-reduce per step."""
        if not self.world.distributed:
            return signals.received() is not None
        if self.step % 50 and self.step != end:
            return False
        return distributed.any_process(signals.received() is not None, self.device)

    def stop_for_signal(self, signum: int) -> None:
        """Checkpoint the step just finished (unless it was checkpointed, or its loss was not
        finite) and stop; a job system's own handler of the signal (submitit requeues the job
        on its SIGUSR2) runs after the checkpoint."""
        if self.run_dir is not None and self.saved_step != self.step:
            self.check_finite()
            self.checkpoint()
        signals.pass_on(signum)
        raise Interrupted(self.run_dir, self.saved_step, signum, step=self.step)

    def check_finite(self) -> None:
        """Stop a diverged run, naming the first step whose loss was not finite and its loss
        term. Its update has already reached the weights (the optimiser stepped on it), so
        nothing after it is evaluated, logged or checkpointed: the last checkpoint stays the
        last good state."""
        record = self._nonfinite
        if record is None:
            return
        first = record["step"]
        if self.world.distributed:  # the earliest over the processes, so that all stop
            never = 2**62
            first = distributed.all_reduce(torch.where(first < 0, never, first), "min")
            first = torch.where(first == never, -1, first)
        step = int(first)  # the one sync, every 50 steps
        if step < 0:
            return
        if step != int(record["step"]):  # another process's loss: this one's were finite
            record = {**record, "values": torch.full_like(record["values"], float("nan"))}
        values = dict(zip(record["names"], record["values"].tolist()))
        # a term of its own before the total (which is bad whenever a term is)
        term = next((n for n, v in values.items() if n != "total" and not math.isfinite(v)),
                    "total")
        if self.saved_step:  # the folder holds a run with the old settings
            kept = f"its checkpoint of step {self.saved_step} is kept"
            where = f" into another --out (or delete {self.run_dir})" if self.run_dir else ""
        else:
            kept, where = "nothing was checkpointed", ""
        raise PnlError(f"training diverged: loss term '{term}' is {values[term]} at step "
                       f"{step}; {kept}; train again with a lower trainer.lr (now "
                       f"{self.cfg.trainer.lr:g}) or with trainer.on_nan=skip to skip such "
                       f"steps{where}")

    def log(self, evaluation: dict, window_s: float) -> None:
        heads, window = evaluation["heads"], self.window
        sums = window.sums
        if self.world.distributed and sums:  # the mean over every process's batches
            names = list(sums)  # the same order in every process
            total = distributed.all_reduce(torch.stack([sums[k].float() for k in names]))
            sums = dict(zip(names, total / self.world.size))
        means = {k: round(float(v) / max(1, window.trained), 5) for k, v in sums.items()}
        logged = self.method.logged_only()
        record = {
            "step": self.step,
            "lr": self.schedule.lr(self.step - 1),
            # the loss terms (and their total), and apart from them what the method declares
            # a metric (the discriminator's accuracy, FixMatch's mask rate)
            "losses": {k: v for k, v in means.items() if k not in logged},
            "train_metrics": {k: v for k, v in means.items() if k in logged},
            # unrounded, like result.json: the oracle figure read from here must match the
            # final model's when they are the same step
            "accuracy": {h: s["accuracy"] for h, s in heads.items()},
            "mean_class_accuracy": {h: s["mean_class_accuracy"] for h, s in heads.items()},
            "steps_per_s": round(window.steps / window_s, 2) if window_s > 0 else None,
            "data_wait_fraction": (round(window.data_time / window_s, 4) if window_s > 0
                                   else None),
        }
        if self.skip_nonfinite:
            record["skipped_steps"] = window.skipped
        if "validation" in evaluation:  # label-free model-selection scores
            record["validation"] = evaluation["validation"]
        record.update(self.method.logged_values())  # its schedule (DANN's GRL coefficient)
        self.run_log.write(record)

    def checkpoint(self) -> None:
        """Write the checkpoint (process 0; every process takes part in gathering it)."""
        if self.saver is None:
            return
        self.saver.save(self.state_dict())
        self.saved_step = self.step
