"""CDAN (Long et al., NeurIPS 2018): the discriminator is conditioned on class predictions
through the multilinear (or randomized) map; ``entropy=true`` gives CDAN+E."""

from __future__ import annotations

from dataclasses import dataclass

from pnl_da.methods.base import Method
from pnl_da.methods.options import ADVERSARIAL_RANGES, AdversarialOptions, MethodConfig


@dataclass
class CDANConfig(MethodConfig, AdversarialOptions):
    name: str = "cdan"


class CDAN(Method):
    name = "cdan"
    options = CDANConfig
    summary = ("CDAN / CDAN+E: discriminator conditioned on class predictions "
               "(multilinear or randomized map)")

    order = 20
    ranges = ADVERSARIAL_RANGES

    @classmethod
    def alignment_of(cls, cfg) -> str:
        return "cdan"
