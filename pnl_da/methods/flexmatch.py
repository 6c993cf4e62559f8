"""FlexMatch (Zhang et al., NeurIPS 2021): FixMatch's hard pseudo labels under curriculum
thresholds, one per class, that rise with how many unlabeled images the model already predicts
confidently as that class. USB's semantics (semilearn/algorithms/flexmatch); see
pnl_da/losses/thresholds.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pnl_da.losses.thresholds import CurriculumThreshold
from pnl_da.methods.base import Batch
from pnl_da.methods.fixmatch import FixMatch, FixMatchConfig


@dataclass
class FlexMatchConfig(FixMatchConfig):
    name: str = "flexmatch"
    # threshold (tau, 0.95): the highest bar, and the one an image is remembered at
    warmup: bool = True  # the never-remembered images count in the normaliser (threshold warm-up)


class FlexMatch(FixMatch):
    name = "flexmatch"
    options = FlexMatchConfig
    summary = "FlexMatch: curriculum class thresholds from each class's learning effect"
    order = 71

    def __init__(self, cfg, model, num_classes: int):
        super().__init__(cfg, model, num_classes)
        self.threshold = CurriculumThreshold(num_classes, cfg.threshold, cfg.warmup)

    def bind_sizes(self, source: int, target: int) -> None:
        self.threshold.size(target)

    def logged_values(self) -> dict[str, float]:
        """The mean class threshold (it climbs from 0 towards method.threshold)."""
        return {"threshold": round(float(self.threshold.class_thresholds().mean()), 5)}

    def bars(self, probs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.threshold(probs, batch.target_index)
