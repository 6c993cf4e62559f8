"""Endless batches of decoded images through DataLoader workers (image-list benchmarks).

Workers read the decoded uint8 cache and run albumentations; batches arrive in pinned memory
and are copied to the device without blocking. Each batch's augmentation is seeded by
(run seed, pass, position), so a resumed run sees exactly the batches an uninterrupted one would,
whatever the number of workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from pnl_da.data.augment import augment, changes_images
from pnl_da.engine.seeding import seed_worker
from pnl_da.engine.signals import ignore_in_worker


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
    """Whole batches from the decoded cache: ``dataset[codes]`` augments every image of one
    batch into preallocated uint8 arrays, one per view (no per-sample collation), and gives
    the images' indices in the split under ``"index"``."""

    def __init__(self, array: np.ndarray, labels: list[int], transforms: dict, views: tuple,
                 seed: int):
        self.array, self.labels = array, labels
        self.transforms, self.views, self.seed = transforms, views, seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, codes):
        codes = [int(c) for c in codes]
        size = len(self.labels)
        height, width = self.array.shape[1:3]
        out = {}
        for k, view in enumerate(self.views):
            transform = self.transforms[view]
            # one seed per batch and view: the batch is fixed by (seed, pass, position)
            transform.set_random_seed(hash((self.seed, codes[0], len(codes), k)) & 0x7FFFFFFF)
            first = transform(image=np.asarray(self.array[codes[0] % size]))["image"]
            batch = np.empty((len(codes), *first.shape), dtype=np.uint8)
            batch[0] = first
            for j, code in enumerate(codes[1:], 1):
                batch[j] = transform(image=np.asarray(self.array[code % size]))["image"]
            # NHWC memory seen as NCHW: channels_last layout, no copy
            out[view] = torch.from_numpy(batch).permute(0, 3, 1, 2)
        labels = torch.tensor([self.labels[c % size] for c in codes], dtype=torch.long)
        out["index"] = torch.tensor([c % size for c in codes], dtype=torch.long)
        return out, labels


def single_threaded_opencv() -> None:
    """OpenCV (under albumentations) runs a thread pool as wide as the host in every worker; with
    two streams of N workers that oversubscribes the host and slows the process launching the
    GPU work (on a 16-core H200 host, PNL's ResNet-50 step went from 29.8 to 33.7 steps/s).
    Set in the parent before the workers fork: calling it inside a forked worker can deadlock
    on the parent's pool."""
    try:
        import cv2
    except ImportError:
        return
    cv2.setNumThreads(1)


def init_worker(worker_id: int) -> None:
    ignore_in_worker()
    seed_worker(worker_id)


def own_generator(seed: int) -> torch.Generator:
    """A DataLoader draws its workers' base seed from this, not from the global generator:
    a loader created lazily after a resume must not shift the global random state."""
    return torch.Generator().manual_seed(seed)


class ShardOfBatches(Sampler):
    """Process ``rank``'s slice of each global batch (torchrun); the whole batch for one."""

    def __init__(self, batches, rank: int, size: int):
        self.batches, self.rank, self.size = batches, rank, size

    def __iter__(self):
        for batch in self.batches:
            share = len(batch) // self.size
            yield batch[self.rank * share:(self.rank + 1) * share]


class LoaderStream:
    """Same interface as DomainStream: ``next(views) -> (dict of views, labels)``. With
    ``shard=(rank, size)`` every process reads its slice of the same global batches; the
    augmentation of a slice is seeded by its first sample, so it is the process's own.

    ``augmentations`` (view name -> AugmentConfig: ``data.weak``, ``data.strong``) add the
    on-device views of DomainStream after the workers' crops, where a view sets any; their
    generator is the process's own and checkpointed."""

    def __init__(self, decoded, batch_size: int, seed: int, device: torch.device,
                 transforms: dict, views: tuple, workers: int, normalize,
                 shard: tuple[int, int] = (0, 1), augmentations: dict | None = None):
        from pnl_da.engine.distributed import rank_seed

        self.shard = shard
        self.decoded, self.batch_size, self.seed = decoded, batch_size, seed
        self.normalize = normalize  # applied on the device to the uint8 batches
        self.device, self.transforms, self.views, self.workers = device, transforms, views, workers
        self.consumed = 0  # samples of the global batches consumed
        self.iterator = None
        self.last_index = None  # the indices in the split of the last batch's images
        self.augmentations = {name: aug for name, aug in (augmentations or {}).items()
                              if changes_images(aug)}
        self.augment_generator = torch.Generator(device=device).manual_seed(
            rank_seed(seed + 7919, shard[0]))

    def _start(self) -> None:
        if self.workers > 0:
            single_threaded_opencv()
        dataset = DecodedDataset(self.decoded.array, self.decoded.labels, self.transforms,
                                 self.views, self.seed)
        sampler = EndlessSampler(len(dataset), self.batch_size, self.seed, self.consumed)
        batches = ShardOfBatches(BatchSampler(sampler, self.batch_size, drop_last=True),
                                 *self.shard)
        loader = DataLoader(dataset, batch_size=None, sampler=batches,
                            num_workers=self.workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=self.workers > 0, worker_init_fn=init_worker,
                            prefetch_factor=4 if self.workers > 0 else None,
                            generator=own_generator(self.seed))
        self.iterator = iter(loader)

    def next(self, views: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        if self.iterator is None:
            self._start()
        batch, labels = next(self.iterator)
        self.consumed += len(labels) * self.shard[1]
        self.last_index = batch["index"]
        out = {}
        for view in views:
            images = batch[view].to(self.device, non_blocking=True)
            aug = self.augmentations.get("weak" if view == "weak2" else view)
            if aug is None:  # the workers' view alone: scaled and normalised in one pass
                out[view] = self.normalize.from_uint8(images)
            else:
                moved = augment(images.float().div_(255.0), aug, self.augment_generator)
                out[view] = self.normalize(moved)
        return out, labels.to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {"consumed": self.consumed,
                "augment_generator": self.augment_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.consumed, self.iterator = state["consumed"], None
        if "augment_generator" in state:  # checkpoints of earlier versions have none
            self.augment_generator.set_state(state["augment_generator"])

    def reseed(self, seed: int) -> None:
        """New on-device augmentation draws (a resume under another number of processes);
        the workers' follow from the samples."""
        self.augment_generator.manual_seed(seed)


def eval_loader(decoded, transform, batch_size: int, workers: int, device,
                normalize, shard: tuple[int, int] = (0, 1), indices=None) -> Iterator:
    """The split in order, once; with ``shard=(rank, size)``, every size-th batch; with
    ``indices``, only those images."""
    dataset = DecodedDataset(decoded.array, decoded.labels, {"eval": transform}, ("eval",), 0)
    rank, size = shard
    order = range(len(dataset)) if indices is None else indices.tolist()
    batches = list(BatchSampler(order, batch_size, drop_last=False))[rank::size]
    loader = DataLoader(dataset, batch_size=None, sampler=batches, num_workers=workers,
                        pin_memory=device.type == "cuda", worker_init_fn=init_worker,
                        generator=own_generator(0))
    for batch, labels in loader:
        images = normalize.from_uint8(batch["eval"].to(device, non_blocking=True))
        yield images, labels.to(device, non_blocking=True)
