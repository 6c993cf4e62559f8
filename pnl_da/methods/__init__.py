"""Method registry: a method is one class (one file) and one config under configs/method/
(domain adaptation) or configs/ssl/method/ (semi-supervised)."""

from __future__ import annotations

from pnl_da.methods.base import Batch, Method, total_loss
from pnl_da.methods.cdan import CDAN
from pnl_da.methods.dann import DANN
from pnl_da.methods.fixmatch import FixMatch
from pnl_da.methods.mean_teacher import MeanTeacher
from pnl_da.methods.pnl import PNL
from pnl_da.methods.pnl_paper import PNLPaper
from pnl_da.methods.source_only import SourceOnly
from pnl_da.methods.supervised import Supervised

# Domain adaptation: source_only, dann, cdan, pnl. Semi-supervised: supervised, fixmatch,
# mean_teacher, pnl, pnl_paper (pnl serves both: the labeled set is its "source").
METHODS: dict[str, type[Method]] = {m.name: m for m in (
    SourceOnly, DANN, CDAN, PNL, Supervised, FixMatch, MeanTeacher, PNLPaper)}


def create_method(cfg, model, num_classes: int) -> Method:
    return METHODS[cfg.name](cfg, model, num_classes)


__all__ = ["METHODS", "Batch", "Method", "create_method", "total_loss"]
