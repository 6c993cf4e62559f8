"""What every method shares. A method only computes the losses of one step; the trainer does
the rest (data, optimiser, schedule, evaluation, checkpoints).

Shared steps, each written once: one forward of all inputs through the shared backbone (so
BatchNorm sees source and target together, as in tllib), the supervised loss on every head,
and the optional adversarial alignment (DANN or CDAN) on the features.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pnl_da.errors import UsageError
from pnl_da.losses.adversarial import (
    ConditionalDomainAdversarialLoss,
    DomainAdversarialLoss,
    MultiLinearMap,
    RandomizedMultiLinearMap,
)
from pnl_da.methods.options import (
    ADVERSARIAL,
    CDAN_ONLY,
    COMMON_RANGES,
    AdversarialOptions,
    MethodConfig,
)
from pnl_da.models.averaging import ema_update, warmed_decay
from pnl_da.models.grl import WarmStartGRL
from pnl_da.models.heads import Classifier, DomainDiscriminator


@dataclass
class Batch:
    """One step's data: each domain's views of the same images, and the source labels."""

    source: dict[str, torch.Tensor]
    labels: torch.Tensor
    target: dict[str, torch.Tensor]
    # each target image's index in its split (a method keeping a memory per image: FlexMatch)
    target_index: torch.Tensor | None = None


@dataclass
class Outputs:
    features: torch.Tensor
    logits: list[torch.Tensor]  # one per head

    def probs(self) -> torch.Tensor:
        """Mean of the heads' softmaxes."""
        return torch.stack([torch.softmax(z.float(), dim=1) for z in self.logits]).mean(0)


class Alignment(nn.Module):
    """DANN or CDAN on the (bottleneck) features, with its own discriminator."""

    def __init__(self, kind: str, cfg, features_dim: int, num_classes: int):
        super().__init__()
        self.kind, self.trade_off = kind, cfg.trade_off
        self.grl = WarmStartGRL(cfg.grl_alpha)
        if kind == "dann":
            self.loss = DomainAdversarialLoss(DomainDiscriminator(features_dim, cfg.disc_hidden),
                                              self.grl)
        elif kind == "cdan":
            if cfg.randomized:
                mapping = RandomizedMultiLinearMap(features_dim, num_classes, cfg.randomized_dim)
                width = cfg.randomized_dim
            else:
                mapping, width = MultiLinearMap(), features_dim * num_classes
            self.loss = ConditionalDomainAdversarialLoss(
                DomainDiscriminator(width, cfg.disc_hidden), self.grl, mapping, cfg.entropy)
        else:
            raise ValueError(f"unknown alignment {kind!r}")

    def forward(self, source: Outputs, target: Outputs,
                weights: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``weights``: (source, target) per-image weights of DANN's discriminator loss."""
        if self.kind == "dann":
            return self.loss(source.features, target.features, *(weights or ()))
        if weights is not None:
            raise ValueError("per-image weights are DANN's (method.align=dann)")
        return self.loss(source.features, target.features, source.probs(), target.probs())


class Method(nn.Module):
    """Base of every method. Subclasses set ``name`` and ``options`` (the dataclass of their
    configuration, checked by Hydra: a misspelt option is an error) and override ``losses``.

    What the rest of pnl-da needs to know about a method, it asks the class: the bounds of its
    options (``ranges``), the checks the schema cannot express (``check``, ``check_classes``),
    the options that would change nothing in a configuration (``inert_options``), its place in
    tables (``order``) and what its predictions are (``prediction_names``)."""

    name = "method"
    options: type = MethodConfig
    summary = ""  # one line for `pnl-da list methods`
    # entries of losses() that are logged, not optimised (FixMatch's mask_rate); every other
    # entry is a loss term and goes into the total
    metrics: tuple[str, ...] = ()
    ssl_summary = ""  # its semi-supervised form, where the line differs
    order = 100  # place among the methods in tables and lists (lower first)
    # bounds of numeric options: name -> (lowest, highest or None, lowest excluded)
    ranges: dict[str, tuple] = COMMON_RANGES

    def __init__(self, cfg, model: Classifier, num_classes: int):
        super().__init__()
        self.cfg, self.model, self.num_classes = cfg, model, num_classes
        kind = self.alignment_of(cfg)
        self.alignment = (Alignment(kind, cfg, model.features_dim, num_classes)
                          if kind != "none" else None)
        self.progress = 0.0
        # the method's own random draws (PNL's negatives); the trainer seeds it per process
        # (reseed) and checkpoints it (random_state)
        self.generator = torch.Generator()
        # method.eval_ema > 0: runs are scored with an EMA of the weights (USB's evaluation);
        # checkpointed with the method, never optimised
        self.weight_average = None
        if cfg.eval_ema > 0:
            self.weight_average = copy.deepcopy(model).requires_grad_(False)
            self.register_buffer("average_updates", torch.zeros((), dtype=torch.long))

    # -- what the class declares about a configuration (no data, no model needed) ---------

    @classmethod
    def alignment_of(cls, cfg) -> str:
        """The adversarial alignment this configuration trains with: none, dann or cdan."""
        return "none"

    @classmethod
    def check(cls, cfg) -> None:
        """The checks of the options that the schema and ``ranges`` cannot express, made at
        composition."""
        decay = float(cfg.eval_ema)
        if not 0.0 <= decay < 1.0:
            raise UsageError(f"bad value {decay} for 'method.eval_ema'; use a decay in [0, 1), "
                             "e.g. 0.999, or 0 to score the trained weights")

    @classmethod
    def check_classes(cls, cfg, num_classes: int) -> None:
        """The checks that need the number of classes of the data (before anything is
        written)."""

    @classmethod
    def inert_options(cls, cfg) -> dict[str, str]:
        """Options of this configuration that change nothing, each with the reason (given on
        the command line they are refused: ``method=dann method.entropy=true`` would look
        like DANN+E). Here: the alignment options under no alignment, CDAN's under DANN."""
        if not issubclass(cls.options, AdversarialOptions):
            return {}
        aligner = cls.alignment_of(cfg)
        if aligner == "none":
            return dict.fromkeys(ADVERSARIAL, f"{cfg.name} aligns nothing here "
                                              "(method.align=none)")
        if aligner == "dann":
            return dict.fromkeys(CDAN_ONLY, "it is an option of CDAN's conditioning, and "
                                            f"{cfg.name} aligns with DANN")
        if not cfg.randomized:
            return {"randomized_dim": "it sizes CDAN's randomized map, which is off "
                                      "(method.randomized=false)"}
        return {}

    @classmethod
    def prediction_names(cls, heads: dict, eval_ema: float = 0.0) -> dict[str, str]:
        """What each evaluated prediction of a semi-supervised run is (result.json's
        ``prediction_is``, evaluate's report); ``eval_ema``: the run scores an EMA of its
        weights."""
        if len(heads) == 2:  # one head: "a" and "mean" are the same model
            names = {"a": "the model", "mean": "the model"}
        else:
            names = {"a": "submodel A", "b": "submodel B", "mean": "mean of both softmaxes"}
        if eval_ema:
            names = {h: f"{n}, EMA of the weights (decay {eval_ema})" for h, n in names.items()}
        return names

    # -- what the trainer asks of a method ---------------------------------------------------

    def reseed(self, seed: int, device) -> None:
        """The method's generator, on the training device, from this process's seed."""
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def random_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_random_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def logged_values(self) -> dict:
        """Numbers of the method's schedule logged with each evaluation (metrics.jsonl, and
        TensorBoard's train/; a dict of numbers is a group of its own): the gradient-reversal
        coefficient where it aligns."""
        if self.alignment is None:
            return {}
        return {"grl_coeff": round(self.alignment.grl.coeff, 5)}

    def logged_only(self) -> frozenset[str]:
        """The names in losses() that are metrics, not loss terms: ``metrics``, and the
        discriminator's accuracy where the method aligns."""
        return frozenset(self.metrics) | ({"domain_acc"} if self.alignment is not None
                                          else frozenset())

    def forward(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """A method's forward is its losses: DistributedDataParallel wraps the method and
        reduces the gradients of every module the losses used."""
        return self.losses(batch, step)

    def eval_model(self) -> nn.Module:
        """The model evaluation scores: the weights, or their EMA with ``method.eval_ema``
        (Mean Teacher: teacher and student side by side)."""
        return self.weight_average if self.weight_average is not None else self.model

    def after_step(self) -> None:
        """Called after each optimiser step (Mean Teacher updates its teacher here)."""
        if self.weight_average is not None:
            ema_update(self.weight_average, self.model,
                       warmed_decay(self.cfg.eval_ema, self.average_updates))
            self.average_updates += 1

    def views(self) -> dict[str, tuple[str, ...]]:
        """Views of each domain's batch this method needs ("none", "weak", "strong")."""
        return {"source": (self.cfg.source_view,), "target": (self.cfg.target_view,)}

    def bind_sizes(self, source: int, target: int) -> None:
        """The number of images of each training split, given before the method moves to its
        device; a method keeping a memory per image (FlexMatch) sizes it here."""

    def bind_task(self, partial_set: bool) -> None:
        """What the run's task tells a method, before it moves to its device: whether the
        unlabeled images may lack some of the labeled images' classes (``benchmark.partial``,
        partial-set adaptation)."""

    def refresh_every(self, epoch_steps: int) -> int:
        """Steps between the passes over every unlabeled training image whose logits
        ``refresh`` receives (0: never); ``epoch_steps``: the steps of one pass over them at the
        run's unlabeled batch size."""
        return 0

    @torch.no_grad()
    def refresh(self, logits: list[torch.Tensor]) -> None:
        """The logits of each prediction head on every unlabeled training image, without
        augmentation and in eval mode, at the steps ``refresh_every`` names (before that step's
        update): PADA's class weights."""

    def set_progress(self, progress: float) -> None:
        """Progress of the run in [0, 1]; drives the GRL warm start and ramps."""
        self.progress = progress
        if self.alignment is not None:
            self.alignment.grl.progress = progress

    def extra_param_groups(self) -> list[dict]:
        if self.alignment is None:
            return []
        return [{"params": list(self.alignment.parameters()), "lr_mult": 1.0}]

    def forward_all(self, *inputs: torch.Tensor) -> list[Outputs]:
        """One pass of every input through the shared model, split back per input."""
        features, logits = self.model(torch.cat(inputs) if len(inputs) > 1 else inputs[0])
        sizes = [len(x) for x in inputs]
        parts = zip(features.split(sizes), *(z.split(sizes) for z in logits))
        return [Outputs(f, list(zs)) for f, *zs in parts]

    @staticmethod
    def supervised_loss(outputs: Outputs, labels: torch.Tensor,
                        class_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of every head. With ``class_weight`` (C,), F.cross_entropy's weighted
        mean ``sum_i w(y_i) l_i / sum_i w(y_i)`` (PADA's source loss, as tllib's), except that
        a batch whose weights are all 0 gives 0 where F.cross_entropy gives NaN."""
        if class_weight is None:
            return sum(F.cross_entropy(z.float(), labels) for z in outputs.logits)
        weights = class_weight[labels].float()
        return sum((F.cross_entropy(z.float(), labels, reduction="none") * weights).sum()
                   / weights.sum().clamp_min(1e-12) for z in outputs.logits)

    def align(self, source: Outputs, target: Outputs, losses: dict,
              weights: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        if self.alignment is not None:
            loss, accuracy = self.alignment(source, target, weights)
            losses["transfer"] = self.alignment.trade_off * loss
            losses["domain_acc"] = accuracy  # a metric (logged_only)

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """The supervised loss, plus alignment where the method has one."""
        source, target = self.forward_all(batch.source[self.cfg.source_view],
                                          batch.target[self.cfg.target_view])
        losses = {"cls": self.supervised_loss(source, batch.labels)}
        self.align(source, target, losses)
        return losses


def logged_weights(weight: torch.Tensor) -> dict[str, float]:
    """Class weights (partial-set methods) as metrics.jsonl keeps them; TensorBoard shows them
    as class_weight/<class index>."""
    return {str(c): round(float(w), 5) for c, w in enumerate(weight.tolist())}


def total_loss(losses: dict[str, torch.Tensor],
               logged_only: frozenset[str] = frozenset()) -> torch.Tensor:
    """Sum of the loss terms: every entry but the metrics the method declares (``logged_only``).
    A name is never guessed from: a term called ``x_rate`` is optimised unless declared."""
    return sum(v for k, v in losses.items() if k not in logged_only)
