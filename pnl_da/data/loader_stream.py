"""Endless batches of decoded images through DataLoader workers (image-list benchmarks).

Workers read the decoded uint8 cache and run albumentations; batches arrive in pinned memory
and are copied to the device without blocking. Every sample's augmentation is seeded by
(run seed, pass, index), so a resumed run sees exactly the batches an uninterrupted one would,
whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from pnl_da.engine.seeding import seed_worker


class EndlessSampler(Sampler):
    """Sample codes ``pass * n + index``; a fresh permutation per pass, drop-last per pass."""

    def __init__(self, size: int, batch_size: int, seed: int, start: int = 0):
        self.size, self.batch_size, self.seed, self.start = size, batch_size, seed, start
        self.per_pass = size - size % batch_size if size >= batch_size else size

    def order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=generator)[: self.per_pass]

    def __iter__(self) -> Iterator[int]:
        epoch, position = divmod(self.start, self.per_pass)
        while True:
            for index in self.order(epoch)[position:].tolist():
                yield epoch * self.size + index
            epoch, position = epoch + 1, 0


class DecodedDataset(Dataset):
    def __init__(self, array: np.ndarray, labels: list[int], transforms: dict, views: tuple,
                 seed: int):
        self.array, self.labels = array, labels
        self.transforms, self.views, self.seed = transforms, views, seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, code: int):
        epoch, index = divmod(int(code), len(self.labels))
        image = np.asarray(self.array[index])
        out = {}
        for k, view in enumerate(self.views):
            transform = self.transforms[view]
            transform.set_random_seed(hash((self.seed, epoch, index, k)) & 0x7FFFFFFF)
            out[view] = transform(image=image)["image"]
        return out, self.labels[index]


class LoaderStream:
    """Same interface as DomainStream: ``next(views) -> (dict of views, labels)``."""

    def __init__(self, decoded, batch_size: int, seed: int, device: torch.device,
                 transforms: dict, views: tuple, workers: int):
        self.decoded, self.batch_size, self.seed = decoded, batch_size, seed
        self.device, self.transforms, self.views, self.workers = device, transforms, views, workers
        self.consumed = 0  # samples handed to the trainer: the whole resume state
        self.iterator = None

    def _start(self) -> None:
        dataset = DecodedDataset(self.decoded.array, self.decoded.labels, self.transforms,
                                 self.views, self.seed)
        sampler = EndlessSampler(len(dataset), self.batch_size, self.seed, self.consumed)
        loader = DataLoader(dataset, batch_size=self.batch_size, sampler=sampler,
                            num_workers=self.workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=self.workers > 0, worker_init_fn=seed_worker,
                            prefetch_factor=4 if self.workers > 0 else None)
        self.iterator = iter(loader)

    def next(self, views: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        if self.iterator is None:
            self._start()
        batch, labels = next(self.iterator)
        self.consumed += len(labels)
        out = {v: batch[v].to(self.device, non_blocking=True) for v in views}
        return out, labels.to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {"consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.consumed, self.iterator = state["consumed"], None


def eval_loader(decoded, transform, batch_size: int, workers: int, device) -> Iterator:
    dataset = DecodedDataset(decoded.array, decoded.labels, {"eval": transform}, ("eval",), 0)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        pin_memory=device.type == "cuda")
    for batch, labels in loader:
        yield (batch["eval"].to(device, non_blocking=True),
               labels.to(device, non_blocking=True))
