"""Benchmarks, domains and tasks: the names a user types and what they resolve to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from pnl_da.errors import UsageError


@dataclass
class DomainData:
    """A whole domain split held as tensors: uint8 images (N, C, H, W) and int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor  # -1 for every image of an unlabeled domain
    name: str
    split: str
    skipped: tuple[str, ...] = ()  # unreadable files left out (data.skip_bad_images)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def labeled(self) -> bool:
        return is_labeled(self.labels)

    def keep_classes(self, kept: set[int]) -> DomainData:
        """Only the images whose label is in ``kept`` (the target of a partial-set run)."""
        import dataclasses

        chosen = torch.isin(self.labels, torch.tensor(sorted(kept), dtype=self.labels.dtype))
        return dataclasses.replace(self, images=self.images[chosen], labels=self.labels[chosen])

    def fingerprint(self) -> str:
        """A digest of the images and labels (about 0.1 s for MNIST's 47 MB): a checkpoint
        records it, so a run never resumes on data other than the data it started with."""
        import hashlib

        digest = hashlib.sha256(f"{tuple(self.images.shape)}\n".encode())
        for tensor in (self.images, self.labels):
            digest.update(tensor.detach().cpu().contiguous().numpy().data)
        return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Domain:
    name: str
    aliases: tuple[str, ...]
    splits: tuple[str, ...]  # ("train", "test") or ("all",) for domains without a test split
    loader: Callable[[str, str], DomainData]  # (data root, split) -> DomainData
    description: str = ""

    def resolve_split(self, split: str) -> str:
        """The split to use: as asked, or the whole domain where it has no such split."""
        if split == "all" or split in self.splits:
            return split
        if self.splits == ("all",):
            return "all"
        raise UsageError(f"domain '{self.name}' has no split '{split}'; "
                         f"choose one of: {', '.join(self.splits + ('all',))}")

    def load(self, root: str, split: str) -> DomainData:
        split = self.resolve_split(split)
        if split == "all" and self.splits != ("all",):
            parts = [self.loader(root, s) for s in self.splits]
            return DomainData(torch.cat([p.images for p in parts]),
                              torch.cat([p.labels for p in parts]), self.name, "all")
        return self.loader(root, split)


@dataclass(frozen=True)
class Benchmark:
    name: str
    num_classes: int
    domains: tuple[Domain, ...]
    standard_tasks: tuple[str, ...] = ()
    description: str = ""
    download: Callable[[str], list[str]] | None = None  # root -> messages
    class_names: tuple[str, ...] = field(default=())
    # a labeled target may hold only some of the classes (folders); otherwise source and
    # target lists must name the same classes
    partial_targets: bool = False
    # the classes a partial-set target keeps under ``benchmark.partial=true`` (tllib's
    # default_partial protocols)
    partial_protocol: tuple[str, ...] = ()

    def domain(self, name: str, source: bool = False) -> Domain:
        """The domain called ``name`` (or one of its aliases); ``source``: it is a run's
        labeled source (folders read a source's class folders only)."""
        key = name.strip().lower()
        for domain in self.domains:
            if key == domain.name.lower() or key in (a.lower() for a in domain.aliases):
                return domain
        known = ", ".join(f"{d.name} ({'/'.join(d.aliases)})" if d.aliases else d.name
                          for d in self.domains)
        raise UsageError(f"unknown domain '{name}' in benchmark '{self.name}'; "
                         f"choose one of: {known}")

    def bind(self, classes) -> Benchmark:
        """The benchmark of a run whose configuration names ``classes`` (``folders``' come
        from its data; a preset's are its own)."""
        return self

    def partial_classes(self, root: str, target: str) -> tuple[str, ...]:
        """The classes a partial-set target keeps (``benchmark.partial=true``): the
        benchmark's protocol; empty where the data decide and hold no classes to keep."""
        if not self.partial_protocol:
            raise UsageError(f"benchmark '{self.name}' has no partial-set protocol; list the "
                             "classes the target keeps: benchmark.target_classes=[...]")
        return self.partial_protocol

    def facts(self, root: str, source: str, target: str) -> dict:
        """Configuration values the data decide, read when a run is composed (none here)."""
        return {}

    def task_dirname(self, source: str, target: str) -> str:
        """``uci2mnist-sample``: tllib's A2W style; '->' would be a redirection in shells."""
        return f"{source}2{target}"

    def parse_task(self, task: str) -> tuple[Domain, Domain]:
        """``SOURCE->TARGET`` with domain names or their short letters."""
        if "->" not in task:
            raise UsageError(f"task '{task}' is not SOURCE->TARGET; write e.g. "
                             f"'{self.standard_tasks[0] if self.standard_tasks else 'A->B'}' "
                             "(quoted in the shell)")
        source_name, target_name = (part.strip() for part in task.split("->", 1))
        source, target = self.domain(source_name, source=True), self.domain(target_name)
        if source.name == target.name:
            raise UsageError(f"task '{task}' adapts '{source.name}' to itself; "
                             "choose a target domain different from the source")
        return source, target


def is_labeled(labels) -> bool:
    """A domain is labeled where no image has the unlabeled mark (-1)."""
    labels = torch.as_tensor(labels)
    return bool(labels.numel()) and int(labels.min()) >= 0


def format_images(images: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Bring uint8 images (N, C, H, W) to the backbone's size and channel count."""
    if images.shape[1] != channels:
        if images.shape[1] == 1 and channels == 3:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] == 3 and channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R 601 luma
            images = (images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
        else:
            raise UsageError(f"cannot turn {images.shape[1]}-channel images into {channels} "
                             "channels; set backbone.channels to 1 or 3")
    if images.shape[-2:] != (size, size):
        resized = F.interpolate(images.float(), size=(size, size), mode="bilinear",
                                align_corners=False, antialias=True)
        images = resized.round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()
