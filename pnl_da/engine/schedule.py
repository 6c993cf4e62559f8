"""Learning-rate schedules, by name (``trainer.schedule``), and a run's length in steps.

A schedule is a multiplier of ``trainer.lr`` at each step; ``create_schedule`` makes it from
the trainer's settings and the run's total steps, and ``apply`` sets it on the optimisers'
groups (each scaled by its ``lr_mult``: the backbone's 0.1 in tllib's recipes).
"""

from __future__ import annotations

import math
from collections.abc import Callable

# name -> factor(step, total_steps, trainer settings); trainer.schedule accepts these names
SCHEDULES: dict[str, Callable[[int, int, object], float]] = {}


def register_schedule(name: str):
    def add(fn):
        SCHEDULES[name] = fn
        return fn
    return add


def _progress(step: int, total: int) -> float:
    return min(step, total) / max(1, total)


@register_schedule("inverse")
def inverse(step: int, total: int, tcfg) -> float:
    """tllib's: (1 + gamma * step) ** -decay (trainer.lr_gamma, trainer.lr_decay)."""
    return (1.0 + tcfg.lr_gamma * step) ** (-tcfg.lr_decay)


@register_schedule("cosine")
def cosine(step: int, total: int, tcfg) -> float:
    """Half a cosine, from 1 to 0 at the last step."""
    return 0.5 * (1.0 + math.cos(math.pi * _progress(step, total)))


@register_schedule("fixmatch_cosine")
def fixmatch_cosine(step: int, total: int, tcfg) -> float:
    """FixMatch's and USB's cos(7 pi p / 16), p = step / total: 0.195 at the end, not 0."""
    return math.cos(7 * math.pi * _progress(step, total) / 16)


def total_steps(tcfg, train_images: int) -> int:
    """``trainer.steps``, or with ``trainer.epochs`` > 0 that many passes over the training
    images (labeled and unlabeled together) at batch_size + unlabeled_batch_size per step."""
    if tcfg.epochs <= 0:
        return int(tcfg.steps)
    per_step = tcfg.batch_size + (tcfg.unlabeled_batch_size or tcfg.batch_size)
    return int(tcfg.epochs) * max(1, train_images // per_step)


class Schedule:
    """The learning rate of each step of one run."""

    def __init__(self, name: str, base_lr: float, total: int, tcfg):
        self.name, self.base_lr, self.total = str(name), float(base_lr), int(total)
        self._factor, self._tcfg = SCHEDULES[self.name], tcfg

    def factor(self, step: int) -> float:
        return self._factor(step, self.total, self._tcfg)

    def lr(self, step: int) -> float:
        """The rate of a group with lr_mult 1 at ``step`` (what metrics.jsonl logs)."""
        return self.base_lr * self.factor(step)

    def apply(self, optimizers, step: int) -> float:
        """Set every group's rate for ``step``; returns the base rate."""
        factor = self.factor(step)
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = self.base_lr * group["lr_mult"] * factor
        return self.base_lr * factor


def create_schedule(tcfg, total: int) -> Schedule:
    """The schedule ``trainer.schedule`` names, over ``total`` steps at ``trainer.lr``."""
    return Schedule(tcfg.schedule, tcfg.lr, total, tcfg)
