"""Mean Teacher (Tarvainen & Valpola, 2017): the student matches, on another view of each
unlabeled image, the softmax of its own exponential moving average (the teacher)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from pnl_da.choice import Predict, View
from pnl_da.errors import UsageError
from pnl_da.losses.consistency import softmax_mse_per_image
from pnl_da.methods.base import Batch, Method
from pnl_da.methods.options import MethodConfig
from pnl_da.models.averaging import ema_update, warmed_decay
from pnl_da.models.heads import DualClassifier


@dataclass
class MeanTeacherConfig(MethodConfig):
    name: str = "mean_teacher"
    source_view: View = View.weak
    target_view: View = View.weak  # it reads unlabeled images (two weak views)
    predict: Predict = Predict.a  # a: the teacher (EMA), b: the student
    ema_decay: float = 0.999  # teacher = decay * teacher + (1 - decay) * student
    weight: float = 50.0  # maximum weight of the softmax-MSE consistency (USB's lambda_u)
    ramp: float = 0.4  # fraction of training over which it ramps up, linearly (USB's warm-up)


def linear_rampup(progress: float, length: float) -> float:
    """``t / T`` for t < T, then 1 (USB's ``unsup_warmup``); ``length`` T as a fraction of the
    run, 0: no ramp."""
    return 1.0 if length <= 0 else min(1.0, progress / length)


class MeanTeacher(Method):
    name = "mean_teacher"
    options = MeanTeacherConfig
    summary = "Mean Teacher: consistency with an EMA of the model on another view"
    order = 60
    ranges = {"ema_decay": (0, 1, False), "weight": (0, None, False), "ramp": (0, 1, False)}

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)
        if cfg.eval_ema > 0:
            raise UsageError("mean_teacher already scores its EMA teacher (method.ema_decay); "
                             "leave method.eval_ema at 0")

    @classmethod
    def prediction_names(cls, heads: dict, eval_ema: float = 0.0) -> dict[str, str]:
        return {"a": "teacher (EMA)", "b": "student", "mean": "mean of both softmaxes"}

    def __init__(self, cfg, model, num_classes: int):
        super().__init__(cfg, model, num_classes)
        self.teacher = copy.deepcopy(model)  # checkpointed with the method, never optimised
        self.teacher.requires_grad_(False)
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    def views(self) -> dict[str, tuple[str, ...]]:
        return {"source": (self.cfg.source_view,), "target": ("weak", "weak2")}

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        labeled, student = self.forward_all(batch.source[self.cfg.source_view],
                                            batch.target["weak2"])
        with torch.no_grad():
            self.teacher.train(self.training)
            _, teacher_logits = self.teacher(batch.target["weak"])
        # mean squared softmax difference over images and classes (USB's scale, for
        # which its weight of 50 is tuned)
        consistency = softmax_mse_per_image(student.logits[0], teacher_logits[0]).mean()
        weight = self.cfg.weight * linear_rampup(self.progress, self.cfg.ramp)
        return {"cls": self.supervised_loss(labeled, batch.labels),
                "consistency": weight * consistency}

    def ema_decay(self) -> torch.Tensor:
        """The configured decay, lowered at the start (``warmed_decay``)."""
        return warmed_decay(self.cfg.ema_decay, self.ema_updates)

    def after_step(self) -> None:
        ema_update(self.teacher, self.model, self.ema_decay())
        self.ema_updates += 1

    def eval_model(self) -> nn.Module:
        """Head a: the teacher; head b: the student."""
        return DualClassifier(self.teacher, self.model)
