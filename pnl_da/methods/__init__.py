"""Method registry: a method is one class (one file) and one config under configs/method/."""

from __future__ import annotations

from pnl_da.methods.base import Batch, Method, total_loss
from pnl_da.methods.cdan import CDAN
from pnl_da.methods.dann import DANN
from pnl_da.methods.pnl import PNL
from pnl_da.methods.source_only import SourceOnly

METHODS: dict[str, type[Method]] = {m.name: m for m in (SourceOnly, DANN, CDAN, PNL)}


def create_method(cfg, model, num_classes: int) -> Method:
    return METHODS[cfg.name](cfg, model, num_classes)


__all__ = ["METHODS", "Batch", "Method", "create_method", "total_loss"]
