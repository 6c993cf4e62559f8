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
        raise UsageError(f"unknown benchmark '{name}'; choose one of: "
                         f"{', '.join(BENCHMARKS)} (see `pnl-da list benchmarks`)") from None
