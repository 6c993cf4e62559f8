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

from pnl_da.losses.adversarial import (
    ConditionalDomainAdversarialLoss,
    DomainAdversarialLoss,
    MultiLinearMap,
    RandomizedMultiLinearMap,
)
from pnl_da.methods.options import MethodConfig
from pnl_da.models.averaging import ema_update, warmed_decay
from pnl_da.models.grl import WarmStartGRL
from pnl_da.models.heads import Classifier, DomainDiscriminator


@dataclass
class Batch:
    """One step's data: each domain's views of the same images, and the source labels."""

    source: dict[str, torch.Tensor]
    labels: torch.Tensor
    target: dict[str, torch.Tensor]


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

    def forward(self, source: Outputs, target: Outputs) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "dann":
            return self.loss(source.features, target.features)
        return self.loss(source.features, target.features, source.probs(), target.probs())


class Method(nn.Module):
    """Base of every method. Subclasses set ``name`` and ``options`` (the dataclass of their
    configuration, checked by Hydra: a misspelt option is an error) and override ``losses``."""

    name = "method"
    options: type = MethodConfig
    summary = ""  # one line for `pnl-da list methods`
    # entries of losses() that are logged, not optimised (FixMatch's mask_rate); every other
    # entry is a loss term and goes into the total
    metrics: tuple[str, ...] = ()
    ssl_summary = ""  # its semi-supervised form, where the line differs

    def __init__(self, cfg, model: Classifier, num_classes: int):
        super().__init__()
        self.cfg, self.model, self.num_classes = cfg, model, num_classes
        kind = self.alignment_kind()
        self.alignment = (Alignment(kind, cfg, model.features_dim, num_classes)
                          if kind != "none" else None)
        self.progress = 0.0
        # method.eval_ema > 0: runs are scored with an EMA of the weights (USB's evaluation);
        # checkpointed with the method, never optimised
        self.weight_average = None
        if cfg.eval_ema > 0:
            self.weight_average = copy.deepcopy(model).requires_grad_(False)
            self.register_buffer("average_updates", torch.zeros((), dtype=torch.long))

    def alignment_kind(self) -> str:
        return "none"

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
    def supervised_loss(outputs: Outputs, labels: torch.Tensor) -> torch.Tensor:
        return sum(F.cross_entropy(z.float(), labels) for z in outputs.logits)

    def align(self, source: Outputs, target: Outputs, losses: dict) -> None:
        if self.alignment is not None:
            loss, accuracy = self.alignment(source, target)
            losses["transfer"] = self.alignment.trade_off * loss
            losses["domain_acc"] = accuracy  # a metric (logged_only)

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        """The supervised loss, plus alignment where the method has one."""
        source, target = self.forward_all(batch.source[self.cfg.source_view],
                                          batch.target[self.cfg.target_view])
        losses = {"cls": self.supervised_loss(source, batch.labels)}
        self.align(source, target, losses)
        return losses


def total_loss(losses: dict[str, torch.Tensor],
               logged_only: frozenset[str] = frozenset()) -> torch.Tensor:
    """Sum of the loss terms: every entry but the metrics the method declares (``logged_only``).
    A name is never guessed from: a term called ``x_rate`` is optimised unless declared."""
    return sum(v for k, v in losses.items() if k not in logged_only)
