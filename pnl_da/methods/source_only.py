"""Source only (ERM): the supervised loss on labeled source images, nothing else."""

from __future__ import annotations

from dataclasses import dataclass

from pnl_da.methods.base import Batch, Method
from pnl_da.methods.options import MethodConfig


@dataclass
class SourceOnlyConfig(MethodConfig):
    name: str = "source_only"


class SourceOnly(Method):
    name = "source_only"
    options = SourceOnlyConfig
    summary = "source only (ERM): supervised loss on the labeled source"
    order = 0

    def views(self) -> dict[str, tuple[str, ...]]:
        return {"source": (self.cfg.source_view,), "target": ()}

    def losses(self, batch: Batch, step: int):
        (source,) = self.forward_all(batch.source[self.cfg.source_view])
        return {"cls": self.supervised_loss(source, batch.labels)}
