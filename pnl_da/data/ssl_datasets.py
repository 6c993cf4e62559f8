"""Semi-supervised datasets: what ``pnl-da ssl DATASET --labels N`` can train on (found by name
through pnl_da/data/registry.py), their loaders, and the balanced labeled split.

CIFAR-10/100, SVHN and MNIST are read from torchvision's on-disk layout under the data root;
mnist-sample and uci are bundled (offline) and get a fixed held-out test split (see
:func:`load_mnist_sample_ssl`).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pnl_da.data.base import DomainData
from pnl_da.data.digits import EXPECTED_FILES, _torchvision, load_mnist_sample, load_uci
from pnl_da.errors import DataError, UsageError, first_line

SPLITS = ("train", "test")
HOLDOUT_SEED = 12345  # fixes the bundled datasets' test split; independent of the run's seed
HOLDOUT_FRACTION = 0.2


@dataclass(frozen=True)
class SSLDataset:
    name: str
    num_classes: int
    channels: int  # 3 or 1
    image_size: int  # 32 or 28
    normalize_mean: tuple[float, ...]
    normalize_std: tuple[float, ...]
    flip: bool  # horizontal flip is a sensible augmentation (CIFAR yes; digits/SVHN no)
    loader: Callable[[str, str], DomainData]  # (data root, "train"|"test") -> DomainData
    description: str
    download: Callable[[str], list[str]] | None  # root -> messages; None for bundled data
    # What the labels mean: datasets with the same value (the digits 0-9) share classes, so a
    # run trained on one can be scored on another of the same input format (pnl-da evaluate)
    classes: str = ""
    class_names: tuple[str, ...] = ()  # by label; empty: the label numbers (digits)

    @property
    def label_set(self) -> str:
        return self.classes or f"{self.name} classes"

    def same_task(self, other: SSLDataset) -> bool:
        """Same classes and the same input format (channels and image size)."""
        return (self.label_set, self.num_classes, self.channels, self.image_size) == (
            other.label_set, other.num_classes, other.channels, other.image_size)

    def load(self, root: str, split: str) -> DomainData:
        if split not in SPLITS:
            raise UsageError(f"dataset '{self.name}' has no split '{split}'; "
                             f"choose one of: {', '.join(SPLITS)}")
        return self.loader(root, split)


# ----------------------------------------------------------------------------- CIFAR


def _cifar_class(name: str):
    from torchvision import datasets

    return datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100


def _cifar_expected(name: str, root: str) -> str:
    cls = _cifar_class(name)
    files = ", ".join(f for f, _ in cls.train_list + cls.test_list)
    return f"{Path(root) / cls.base_folder}/{{{files}}} (from {cls.filename})"


def _read_cifar_batch(path: Path, name: str, root: str, label_key: str,
                      num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    fix = f"delete it and run `pnl-da download {name} --data-root {root}` again"
    try:
        with open(path, "rb") as f:
            # The originals were pickled by Python 2: byte-string keys; accept str keys too.
            entry = pickle.load(f, encoding="bytes")
        entry = {(k.decode("latin1") if isinstance(k, bytes) else k): v
                 for k, v in entry.items()}
        data, labels = np.asarray(entry["data"]), np.asarray(entry[label_key])
    except Exception as exc:  # truncated, not a pickle, not a dict, missing keys, ...
        line = first_line(exc)
        reason = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
        raise DataError(f"{path} is truncated or not a {name} batch ({reason}); {fix}") from exc
    if (data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.dtype != np.uint8
            or labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer)):
        raise DataError(f"{path} holds data of shape {data.shape} ({data.dtype}) and "
                        f"{labels.shape[0] if labels.ndim else 0} labels, not N x 3072 uint8 "
                        f"with N labels; {fix}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path} has labels outside 0..{num_classes - 1}; {fix}")
    return data, labels


def load_cifar(name: str, root: str, split: str) -> DomainData:
    """CIFAR-10 (``name="cifar10"``) or CIFAR-100 (fine labels) from torchvision's layout.

    torchvision's classes verify every file's md5 when constructed, so the pickled batches are
    read here directly; folder and file names come from torchvision's class attributes. Each
    row of ``data`` holds the red, then green, then blue 32x32 plane: exactly NCHW."""
    cls = _cifar_class(name)
    num_classes = 10 if name == "cifar10" else 100
    label_key = "labels" if name == "cifar10" else "fine_labels"
    folder = Path(root) / cls.base_folder
    files = cls.train_list if split == "train" else cls.test_list
    images, labels = [], []
    for filename, _md5 in files:
        path = folder / filename
        if not path.is_file():
            raise DataError(f"{name} ({split}) not found: expected {path}; run "
                            f"`pnl-da download {name} --data-root {root}` or extract "
                            f"{cls.filename} into {root}")
        data, target = _read_cifar_batch(path, name, root, label_key, num_classes)
        images.append(data)
        labels.append(target)
    x = torch.from_numpy(np.concatenate(images).reshape(-1, 3, 32, 32).copy())
    y = torch.from_numpy(np.concatenate(labels).astype(np.int64))
    return DomainData(x, y, name, split)


# ----------------------------------------------------------------------------- digits


def _torchvision_ssl(kind: str) -> Callable[[str, str], DomainData]:
    def load(root: str, split: str) -> DomainData:
        return _torchvision(kind, root, split, hint=f"pnl-da download {kind} --data-root {root}")

    return load


def _stable_permutation(bitgen: np.random.BitGenerator, n: int) -> np.ndarray:
    """A permutation of ``range(n)`` from the bit generator's raw 64-bit output alone, so it is
    the same on every machine and numpy version (``Generator`` methods may change)."""
    return np.argsort(bitgen.random_raw(n), kind="stable")


def holdout_split(labels: np.ndarray | torch.Tensor, split: str) -> np.ndarray:
    """Sorted indices of ``split`` in a fixed per-class 80/20 train/test division.

    Each class's indices are permuted with ``Generator(PCG64([HOLDOUT_SEED, class]))``; the last
    20% (rounded) are the test split, the rest train. No run seed is involved, so the test
    images are the same for every run and never used for training."""
    labels = _as_numpy(labels)
    chosen = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        bitgen = np.random.Generator(np.random.PCG64([HOLDOUT_SEED, int(c)])).bit_generator
        perm = idx[_stable_permutation(bitgen, idx.size)]
        n_test = int(round(idx.size * HOLDOUT_FRACTION))
        chosen.append(perm[idx.size - n_test:] if split == "test" else perm[:idx.size - n_test])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _with_holdout(load: Callable[[str, str], DomainData]) -> Callable[[str, str], DomainData]:
    def split_loader(root: str, split: str) -> DomainData:
        data = load(root, "all")
        keep = torch.from_numpy(holdout_split(data.labels, split))
        return DomainData(data.images[keep].clone(), data.labels[keep].clone(), data.name, split)

    split_loader.__doc__ = holdout_split.__doc__
    return split_loader


def load_mnist_sample_ssl(root: str, split: str) -> DomainData:
    """The bundled 4,998 MNIST digits. ``test`` is a fixed, seed-independent 20% holdout of each
    class (per class, a ``PCG64([12345, class])`` permutation; its last 20% are test), and
    ``train`` is the other 80%: the two never overlap, whatever the run's seed."""
    return _with_holdout(load_mnist_sample)(root, split)


def load_uci_ssl(root: str, split: str) -> DomainData:
    """UCI optdigits (1,797 images, bundled) with the same fixed 20%-per-class test holdout as
    :func:`load_mnist_sample_ssl`."""
    return _with_holdout(load_uci)(root, split)


# ----------------------------------------------------------------------------- downloads


def _downloader(name: str, make: Callable[[str, bool], object], expected: Callable[[str], str],
                loader: Callable[[str, str], DomainData]) -> Callable[[str], list[str]]:
    def download(root: str) -> list[str]:
        from pnl_da.data.download import torchvision_download

        Path(root).mkdir(parents=True, exist_ok=True)
        # torchvision downloads and verifies its md5 checksums
        failure = torchvision_download(root, lambda: [make(root, train) for train in (True, False)])
        if failure:
            raise DataError(f"could not download {name} ({failure}); without network, place "
                            f"{expected(root)} under {root}")
        sizes = [len(loader(root, split)) for split in SPLITS]
        return [f"{name}: ready under {root} ({sizes[0]:,} train, {sizes[1]:,} test images)"]

    return download


def _make_cifar(name: str) -> Callable[[str, bool], object]:
    return lambda root, train: _cifar_class(name)(root, train=train, download=True)


def _make_mnist(root: str, train: bool) -> object:
    from torchvision import datasets

    return datasets.MNIST(root, train=train, download=True)


def _make_svhn(root: str, train: bool) -> object:
    from torchvision import datasets

    return datasets.SVHN(root, split="train" if train else "test", download=True)


def _cifar_loader(name: str) -> Callable[[str, str], DomainData]:
    return lambda root, split: load_cifar(name, root, split)


def _cifar_download_hint(name: str) -> Callable[[str], str]:
    def hint(root: str) -> str:
        cls = _cifar_class(name)
        return f"{cls.filename} ({cls.url}) or its extracted {cls.base_folder}/ folder"

    return hint


# ----------------------------------------------------------------------------- registry

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
# CIFAR-100's fine labels in label order (alphabetical, as its meta file lists them)
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm")

_DIGITS_NORM = dict(normalize_mean=(0.5,), normalize_std=(0.5,))

SSL_DATASETS: dict[str, SSLDataset] = {d.name: d for d in (
    SSLDataset("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True,
               _cifar_loader("cifar10"),
               "CIFAR-10, 50,000 + 10,000 32x32 colour images, 10 classes (torchvision format)",
               _downloader("cifar10", _make_cifar("cifar10"), _cifar_download_hint("cifar10"),
                           _cifar_loader("cifar10")), class_names=CIFAR10_CLASSES),
    SSLDataset("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True,
               _cifar_loader("cifar100"),
               "CIFAR-100, 50,000 + 10,000 32x32 colour images, 100 classes (torchvision format)",
               _downloader("cifar100", _make_cifar("cifar100"), _cifar_download_hint("cifar100"),
                           _cifar_loader("cifar100")), class_names=CIFAR100_CLASSES),
    SSLDataset("svhn", 10, 3, 32, (0.4377, 0.4438, 0.4728), (0.198, 0.201, 0.197), False,
               _torchvision_ssl("svhn"),
               "SVHN, 73,257 + 26,032 32x32 house-number digits (torchvision format)",
               _downloader("svhn", _make_svhn, lambda root: EXPECTED_FILES["svhn"],
                           _torchvision_ssl("svhn")), classes="digits 0-9"),
    SSLDataset("mnist", 10, 1, 28, **_DIGITS_NORM, flip=False, loader=_torchvision_ssl("mnist"),
               description="MNIST, 60,000 + 10,000 28x28 digits (torchvision format)",
               download=_downloader("mnist", _make_mnist, lambda root: EXPECTED_FILES["mnist"],
                                    _torchvision_ssl("mnist")), classes="digits 0-9"),
    SSLDataset("mnist-sample", 10, 1, 28, **_DIGITS_NORM, flip=False,
               loader=load_mnist_sample_ssl,
               description="4,998 real MNIST digits (bundled); fixed 20% per-class test holdout",
               download=None, classes="digits 0-9"),
    SSLDataset("uci", 10, 1, 28, **_DIGITS_NORM, flip=False, loader=load_uci_ssl,
               description="UCI optdigits, 1,797 digits (bundled); fixed 20% per-class test "
                           "holdout",
               download=None, classes="digits 0-9"),
)}


# ----------------------------------------------------------------------------- labeled split


def _as_numpy(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    return np.asarray(labels).astype(np.int64).reshape(-1)


def _nearest_valid(n: int, k: int, most: int) -> str:
    """The multiples of ``k`` next to ``n`` that a split can take (at most ``most``)."""
    if 0 < most < n:
        return f"at most --labels {most}"
    lower = n // k * k
    upper = lower + k if most <= 0 or lower + k <= most else None
    if lower <= 0:
        return f"--labels {k}"
    return f"--labels {lower} or {upper}" if upper else f"--labels {lower}"


def largest_balanced_split(labels: np.ndarray | torch.Tensor, num_classes: int) -> int:
    """The most labels a class-balanced split of ``labels`` can take: the rarest class's count
    times the number of classes."""
    return int(np.bincount(_as_numpy(labels), minlength=num_classes).min()) * num_classes


def balanced_labeled_split(labels: np.ndarray | torch.Tensor, n_labels: int, num_classes: int,
                           seed: int) -> np.ndarray:
    """Sorted int64 indices of ``n_labels`` labeled images, ``n_labels / num_classes`` of each
    class, drawn with ``Generator(PCG64(seed))``: class by class, the first images of a
    permutation made from the bit generator's raw output (the same on every machine and
    numpy version, and independent of numpy's and torch's global random state)."""
    labels = _as_numpy(labels)
    k = num_classes
    if n_labels <= 0:
        raise UsageError(f"--labels must be a positive multiple of the {k} classes "
                         f"(got {n_labels}); use e.g. --labels {4 * k}")
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise DataError(f"training labels lie outside 0..{k - 1}; the dataset files do not "
                        f"match its {k} classes: delete them and download again")
    most = largest_balanced_split(labels, k)
    if n_labels % k:
        raise UsageError(f"--labels {n_labels} is not divisible by the {k} classes; "
                         f"use {_nearest_valid(n_labels, k, most)}")
    if n_labels > labels.size:
        raise UsageError(f"--labels {n_labels} exceeds the {labels.size:,} training images; "
                         f"use at most --labels {most}")
    per_class = n_labels // k
    if most < n_labels:  # the rarest class has fewer than per_class images
        counts = np.bincount(labels, minlength=k)
        c = int(counts.argmin())
        fix = f"use at most --labels {most}" if most > 0 else "choose another dataset"
        raise UsageError(f"--labels {n_labels} needs {per_class} images of each class but "
                         f"class {c} has only {int(counts[c])} training images; {fix}")
    bitgen = np.random.Generator(np.random.PCG64(seed)).bit_generator
    chosen = []
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        chosen.append(idx[_stable_permutation(bitgen, idx.size)[:per_class]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def unlabeled_pool(size: int, labeled: np.ndarray) -> np.ndarray:
    """Sorted int64 indices of ``range(size)`` that are not in ``labeled``."""
    keep = np.ones(size, dtype=bool)
    keep[np.asarray(labeled, dtype=np.int64)] = False
    return np.flatnonzero(keep).astype(np.int64)
