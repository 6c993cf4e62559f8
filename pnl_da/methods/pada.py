"""PADA (Cao et al., ECCV 2018), partial-set adaptation with tllib's semantics
(tllib/reweight/pada.py): DANN whose source losses are weighted by how much of each class the
target seems to hold.

Every ``method.update_steps`` steps (0: one pass over the target's training images at the
run's batch size, tllib's "epoch") the class weights are recomputed from every target training
image:

    gamma = mean_i softmax(z_i / T),    gamma <- gamma / max_c gamma(c)

with z_i the classifier's logits (eval mode) and T ``method.temperature`` (tllib's 0.1; its
Office-Home runs use 0.01). Until the first pass every weight is 1. The source cross-entropy is
``F.cross_entropy(z_s, y_s, weight=gamma)`` (a mean over the batch's weights) and DANN's
discriminator loss weighs each source image ``gamma[y_s]`` and each target image the batch's
mean of those (pnl_da/losses/adversarial.py ``class_weighted``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pnl_da.losses.adversarial import class_weighted
from pnl_da.methods.base import Batch, Method, logged_weights
from pnl_da.methods.options import ADVERSARIAL_RANGES, AdversarialOptions, MethodConfig


@dataclass
class PADAConfig(MethodConfig, AdversarialOptions):
    name: str = "pada"
    temperature: float = 0.1  # T of the class weights' softmax
    update_steps: int = 0  # steps between two passes over the target (0: one per epoch)


def class_weights(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``gamma = mean_i softmax(z_i / T)``, divided by its largest entry."""
    gamma = torch.softmax(logits.float() / temperature, dim=1).mean(0)
    return gamma / gamma.max()


class PADA(Method):
    name = "pada"
    options = PADAConfig
    summary = ("PADA (partial-set): DANN with source losses weighted by the target's average "
               "prediction")

    order = 12
    ranges = {**ADVERSARIAL_RANGES, "temperature": (0, None, True),
              "update_steps": (0, None, False)}

    @classmethod
    def alignment_of(cls, cfg) -> str:
        return "dann"

    def __init__(self, cfg, model, num_classes: int):
        super().__init__(cfg, model, num_classes)
        # checkpointed with the method: a resumed run goes on with the weights it had
        self.register_buffer("class_weight", torch.ones(num_classes))

    def refresh_every(self, epoch_steps: int) -> int:
        return int(self.cfg.update_steps) or epoch_steps

    @torch.no_grad()
    def refresh(self, logits: list[torch.Tensor]) -> None:
        self.class_weight.copy_(class_weights(logits[0], float(self.cfg.temperature)))

    def logged_values(self) -> dict:
        return {**super().logged_values(), "class_weight": logged_weights(self.class_weight)}

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        source, target = self.forward_all(batch.source[self.cfg.source_view],
                                          batch.target[self.cfg.target_view])
        weight = self.class_weight
        losses = {"cls": self.supervised_loss(source, batch.labels, weight)}
        self.align(source, target, losses, class_weighted(weight, batch.labels))
        return losses
