"""Supervised: the labeled images only, the lower bound of every semi-supervised table."""

from __future__ import annotations

from dataclasses import dataclass

from pnl_da.choice import Predict, View
from pnl_da.methods.options import MethodConfig
from pnl_da.methods.source_only import SourceOnly


@dataclass
class SupervisedConfig(MethodConfig):
    name: str = "supervised"
    source_view: View = View.weak
    predict: Predict = Predict.a  # one head


class Supervised(SourceOnly):
    """The same loss as source-only domain adaptation: cross-entropy on the labeled batch (its
    weak view), no unlabeled data."""

    name = "supervised"
    order = 50
    options = SupervisedConfig
    summary = "supervised: cross-entropy on the labeled images only (SSL lower bound)"
