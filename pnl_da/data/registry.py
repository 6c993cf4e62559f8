"""Every benchmark pnl-da knows, by name."""

from __future__ import annotations

from pnl_da.data.base import Benchmark
from pnl_da.data.digits import DIGITS
from pnl_da.data.office import OFFICE31, OFFICEHOME, VISDA2017
from pnl_da.errors import UsageError

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b for b in (DIGITS, OFFICE31, OFFICEHOME, VISDA2017)}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name.lower()]
    except KeyError:
        from pnl_da.data.ssl_datasets import SSL_DATASETS

        if name.lower() in SSL_DATASETS:
            raise UsageError(f"'{name}' is a semi-supervised dataset, not a domain-adaptation "
                             f"benchmark; run `pnl-da ssl {name.lower()} --labels N`") from None
        raise UsageError(f"unknown benchmark '{name}'; choose one of: "
                         f"{', '.join(BENCHMARKS)} (see `pnl-da list benchmarks`)") from None
