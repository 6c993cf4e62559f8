"""DANN (Ganin et al., JMLR 2016): supervised loss plus a domain discriminator behind a
warm-started gradient-reversal layer, on the features."""

from __future__ import annotations

from pnl_da.methods.base import Method


class DANN(Method):
    name = "dann"
    summary = "DANN: domain discriminator behind a warm-started gradient-reversal layer"

    def alignment_kind(self) -> str:
        return "dann"
