"""Every benchmark (domain adaptation) and semi-supervised dataset pnl-da knows, by name."""

from __future__ import annotations

from pnl_da.data.base import Benchmark
from pnl_da.data.digits import DIGITS
from pnl_da.data.folders import FOLDERS
from pnl_da.data.office import OFFICE31, OFFICEHOME, VISDA2017
from pnl_da.data.ssl_datasets import SSL_DATASETS, SSLDataset
from pnl_da.errors import UsageError

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b for b in (DIGITS, OFFICE31, OFFICEHOME, VISDA2017, FOLDERS)}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name.lower()]
    except KeyError:
        if name.lower() in SSL_DATASETS:
            raise UsageError(f"'{name}' is a semi-supervised dataset, not a domain-adaptation "
                             f"benchmark; run `pnl-da ssl {name.lower()} --labels N`") from None
        raise UsageError(f"unknown benchmark '{name}'; choose one of: "
                         f"{', '.join(BENCHMARKS)} (see `pnl-da list benchmarks`)") from None


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "").replace("-", "")


def get_ssl_dataset(name: str) -> SSLDataset:
    """The dataset called ``name`` (case-insensitive; ``CIFAR-10`` finds ``cifar10``)."""
    key = name.strip().lower()
    if key in SSL_DATASETS:
        return SSL_DATASETS[key]
    for dataset in SSL_DATASETS.values():
        if _key(dataset.name) == _key(name):
            return dataset
    if key in BENCHMARKS:
        raise UsageError(f"'{name}' is a domain-adaptation benchmark, not a semi-supervised "
                         f"dataset; run `pnl-da run {key} SOURCE->TARGET` (without --labels)")
    raise UsageError(f"unknown SSL dataset '{name}'; choose one of: "
                     f"{', '.join(SSL_DATASETS)} (see `pnl-da list datasets`)")
