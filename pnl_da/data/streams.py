"""Endless batches from a domain held as tensors on the training device.

For domains that fit in memory (all of digits) this replaces a DataLoader: indexing, views and
augmentation happen on the device for the whole batch at once, so a step costs what a plain
tensor-indexing training loop costs.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from pnl_da.data.augment import augment
from pnl_da.data.base import DomainData


class InfiniteSampler:
    """Batches of indices without end; a fresh permutation every pass over the data.

    As tllib's ForeverDataIterator with drop_last: the incomplete tail of a pass is dropped,
    unless the domain is smaller than a batch, when passes are chained.
    """

    def __init__(self, size: int, batch_size: int, seed: int, device: torch.device):
        if size <= 0:
            raise ValueError("cannot sample from an empty domain")
        self.size, self.batch_size, self.device = size, batch_size, device
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.long, device=device)
        self.position = 0
        self.passes = 0

    def _new_pass(self) -> torch.Tensor:
        self.passes += 1
        return torch.randperm(self.size, generator=self.generator).to(self.device)

    def next(self) -> torch.Tensor:
        if self.position + self.batch_size > self.order.numel():
            if self.size >= self.batch_size:
                self.order, self.position = self._new_pass(), 0
            else:
                rest = self.order[self.position:]
                while rest.numel() < self.batch_size:
                    rest = torch.cat([rest, self._new_pass()])
                self.order, self.position = rest, 0
        batch = self.order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        return batch

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "order": self.order.cpu(),
                "position": self.position, "passes": self.passes}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"].to(self.device)
        self.position, self.passes = state["position"], state["passes"]


class Normalizer:
    """Float images in [0, 1] -> normalised model input."""

    def __init__(self, mean, std):
        def channels(v):  # a list per channel, or one number (older run configs)
            return [float(x) for x in v] if hasattr(v, "__iter__") else [float(v)]

        self.mean = torch.tensor(channels(mean)).view(1, -1, 1, 1)
        self.std = torch.tensor(channels(std)).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean.device != x.device:
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return (x - self.mean) / self.std

    def from_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> normalised float, in two passes over the batch."""
        if self.mean.device != x.device:
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return x.float().sub_(self.mean * 255).div_(self.std * 255)


class DomainStream:
    """One domain in memory, served as endless batches of the requested views.

    With ``on_device`` (the default) the uint8 images live on the training device and a batch
    never crosses the bus; without it they stay in (pinned) host memory and each batch is
    copied over before it is augmented on the device.

    ``shard=(rank, size)``: one of ``size`` processes (torchrun). Every process draws the same
    global batches and keeps its slice of each, so the data a step sees does not depend on the
    number of processes; the augmentation draws are the process's own. ``last_index`` holds
    the indices (in the split) of the images of the last batch served.
    """

    def __init__(self, data: DomainData, batch_size: int, seed: int, device: torch.device,
                 normalize: Normalizer, augmentations: dict, on_device: bool = True,
                 shard: tuple[int, int] = (0, 1)):
        from pnl_da.engine.distributed import rank_seed

        home = device if on_device else torch.device("cpu")
        self.device = device
        self.images = data.images.to(home)
        self.labels = data.labels.to(home)
        if home.type == "cpu" and device.type == "cuda":
            self.images, self.labels = self.images.pin_memory(), self.labels.pin_memory()
        self.sampler = InfiniteSampler(len(data), batch_size, seed, home)
        rank, size = shard
        self.part = slice(rank * batch_size // size, (rank + 1) * batch_size // size)
        self.augment_generator = torch.Generator(device=device).manual_seed(
            rank_seed(seed + 7919, rank))
        self.normalize = normalize
        self.augmentations = augmentations  # view name -> AugmentConfig
        self.last_index = None  # the indices in the split of the last batch's images

    def next(self, views: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        index = self.sampler.next()[self.part]
        self.last_index = index
        batch = self.images.index_select(0, index).to(self.device, non_blocking=True)
        raw = batch.float().div_(255.0)
        out = {}
        for view in views:
            # "weak2": a second, independent draw of the weak view (two-view methods)
            aug = self.augmentations["weak" if view == "weak2" else view] if view != "none" \
                else None
            x = raw if aug is None else augment(raw, aug, self.augment_generator)
            out[view] = self.normalize(x)
        return out, self.labels.index_select(0, index).to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(),
                "augment_generator": self.augment_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])
        self.augment_generator.set_state(state["augment_generator"])

    def reseed(self, seed: int) -> None:
        """New augmentation draws (a resume under another number of processes)."""
        self.augment_generator.manual_seed(seed)


def eval_batches(data: DomainData, batch_size: int, device: torch.device,
                 normalize: Normalizer, shard: tuple[int, int] = (0, 1)
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The whole split in order, once, normalised (no augmentation); with ``shard=(rank,
    size)``, every size-th batch from the rank-th."""
    rank, size = shard
    for start in range(rank * batch_size, len(data), batch_size * size):
        x = data.images[start:start + batch_size].to(device, non_blocking=True)
        y = data.labels[start:start + batch_size].to(device, non_blocking=True)
        yield normalize(x.float().div_(255.0)), y
