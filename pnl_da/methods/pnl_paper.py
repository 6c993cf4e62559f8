"""The PNL authors' semi-supervised recipe (method.md section 4): pseudo-negative labels
inside Dual Student.

Two submodels A and B (two networks with ``ssl.model=dual``), each with a class head and a
consistency head, see two weak views v1 and v2 of every image. For submodel X, with Y the other:

* class: cross-entropy of X's class head on the labeled images (v1);
* logit distance: ``logit_distance`` x the mean squared difference of X's class and
  consistency logits (Mean Teacher's two-output trick);
* consistency: ``consistency_scale`` x softmax-MSE between X's consistency head on v1 and its
  own class prediction on v2 (no gradient through the target);
* stabilization: an image is *stable* for a submodel when its class predictions on v1 and v2
  agree and one of them is above ``stabilization_threshold``. X learns from Y (softmax-MSE
  towards Y's class prediction, scale ``stabilization_scale``) on the unlabeled images where Y
  is stable and X is not, or both are and X's two views disagree more;
* pseudo-negative labels: on the unlabeled images where X gets no stabilization target, Y's
  argmax rules out a class and k random others (with replacement, as the authors' code)
  become X's negatives (section 2's negative-learning loss), weight ``weight``.
The three unlabeled terms ramp up as ``exp(-5 (1 - t/T)^2)`` over ``rampup_epochs``.

Two deliberate differences from the authors' code (method.md lists its defects): no NaN when
no image is selected, any number of classes; stabilization and negatives use the unlabeled
images only (a negative drawn for a labeled image could be its true class).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pnl_da.choice import Align
from pnl_da.losses.consistency import softmax_mse_per_image
from pnl_da.losses.negative import negative_learning_loss, select_negatives
from pnl_da.methods.base import Batch
from pnl_da.methods.pnl import PNL, PNLConfig, sigmoid_rampup


def stability(v1_logits: torch.Tensor, v2_logits: torch.Tensor, threshold: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: stable (same class on both views, one of them above the threshold) and the
    squared distance between the two views' softmaxes."""
    p1 = torch.softmax(v1_logits.detach().float(), dim=1)
    p2 = torch.softmax(v2_logits.detach().float(), dim=1)
    conf1, cls1 = p1.max(dim=1)
    conf2, cls2 = p2.max(dim=1)
    stable = (cls1 == cls2) & ((conf1 > threshold) | (conf2 > threshold))
    return stable, ((p1 - p2) ** 2).sum(dim=1)


@dataclass
class PNLPaperConfig(PNLConfig):
    """The authors' CIFAR-10 recipe (method.md section 4): PNL inside Dual Student."""

    name: str = "pnl_paper"
    extra_heads: int = 1  # a consistency head beside each submodel's class head
    align: Align = Align.none
    replacement: bool = True
    weight: float = 2.0
    stabilization_threshold: float = 0.8
    stabilization_scale: float = 100.0
    consistency_scale: float = 10.0
    logit_distance: float = 0.01
    rampup_epochs: float = 5.0  # consistency, stabilization and negative-learning ramps
    epochs: int = 100  # the run's length, for the ramps (trainer.epochs)


class PNLPaper(PNL):
    name = "pnl_paper"
    options = PNLPaperConfig
    order = 80
    summary = "PNL inside Dual Student: the authors' CIFAR-10 recipe (method.md section 4)"
    ssl_summary = summary
    metrics = ("stable_rate",)  # the share of unlabeled images stable for a submodel

    CLASS, CONS = (0, 1), (2, 3)  # logit layout of the model: A_cls, B_cls, A_cons, B_cons

    def views(self) -> dict[str, tuple[str, ...]]:
        return {"source": ("weak", "weak2"), "target": ("weak", "weak2")}

    def ramp(self) -> float:
        """Over ``rampup_epochs`` of ``epochs``; a run measured in steps (``trainer.epochs=0``)
        ramps over the fraction ``ramp`` of its steps instead."""
        cfg = self.cfg
        length = cfg.rampup_epochs / cfg.epochs if cfg.epochs > 0 else cfg.ramp
        return sigmoid_rampup(self.progress, length)

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        n_labeled = len(batch.labels)
        l1, u1, l2, u2 = self.forward_all(batch.source["weak"], batch.target["weak"],
                                          batch.source["weak2"], batch.target["weak2"])
        v1 = [torch.cat([a, b]) for a, b in zip(l1.logits, u1.logits)]
        v2 = [torch.cat([a, b]) for a, b in zip(l2.logits, u2.logits)]
        ramp = self.ramp()
        stable, distance = zip(*(stability(u1.logits[h], u2.logits[h],
                                           cfg.stabilization_threshold) for h in self.CLASS))

        zero = v1[0].new_zeros((), dtype=torch.float32)
        losses = {"cls": zero, "logit_distance": zero, "consistency": zero,
                  "stabilization": zero, "nl": zero}
        for x, y in ((0, 1), (1, 0)):
            cls_x, cons_x = self.CLASS[x], self.CONS[x]
            losses["cls"] = losses["cls"] + torch.nn.functional.cross_entropy(
                v1[cls_x][:n_labeled].float(), batch.labels)
            losses["logit_distance"] = losses["logit_distance"] + cfg.logit_distance * (
                (v1[cls_x].float() - v1[cons_x].float()) ** 2).mean()
            losses["consistency"] = losses["consistency"] + cfg.consistency_scale * ramp * \
                softmax_mse_per_image(v1[cons_x], v2[cls_x]).mean()
            # X learns from Y where Y is stable and X is not, or X is the less stable one
            learns = stable[y] & (~stable[x] | (distance[x] > distance[y]))
            towards = softmax_mse_per_image(u1.logits[cls_x], u1.logits[self.CLASS[y]])
            losses["stabilization"] = losses["stabilization"] + cfg.stabilization_scale * \
                ramp * (towards * learns.float()).mean()
            generator_probs = torch.softmax(u1.logits[self.CLASS[y]].detach().float(), dim=1)
            negatives = select_negatives(generator_probs, cfg.k, cfg.selection, tau=cfg.tau,
                                         replacement=cfg.replacement,
                                         confidence=cfg.confidence, generator=self.generator,
                                         learner_probs=torch.softmax(
                                             u1.logits[cls_x].detach().float(), dim=1))
            negatives &= ~learns.unsqueeze(1)  # only where X got no stabilization target
            losses["nl"] = losses["nl"] + cfg.weight * ramp * negative_learning_loss(
                u1.logits[cls_x], negatives)
        losses["stable_rate"] = (stable[0].float().mean() + stable[1].float().mean()) / 2
        return losses
