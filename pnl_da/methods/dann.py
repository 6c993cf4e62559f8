"""DANN (Ganin et al., JMLR 2016): supervised loss plus a domain discriminator behind a
warm-started gradient-reversal layer, on the features."""

from __future__ import annotations

from dataclasses import dataclass

from pnl_da.methods.base import Method
from pnl_da.methods.options import ADVERSARIAL_RANGES, AdversarialOptions, MethodConfig


@dataclass
class DANNConfig(MethodConfig, AdversarialOptions):
    name: str = "dann"


class DANN(Method):
    name = "dann"
    options = DANNConfig
    summary = "DANN: domain discriminator behind a warm-started gradient-reversal layer"

    order = 10
    ranges = ADVERSARIAL_RANGES

    @classmethod
    def alignment_of(cls, cfg) -> str:
        return "dann"
