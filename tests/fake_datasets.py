"""Tiny datasets in the real on-disk layouts, written for tests and benchmarks."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

from pnl_da.data.office import OFFICE31_CLASSES


def write_jpeg(path: Path, rng: np.random.Generator, size: tuple[int, int], mode="RGB"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    array = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:h, :w]  # blocky, JPEG-friendly
    image = Image.fromarray(array).convert(mode)
    image.save(path, format="PNG" if path.suffix == ".png" else "JPEG", quality=90)


def make_office31(root: Path, domains=("amazon", "webcam"), classes: int = 3,
                  per_class: int = 4, seed: int = 0, lists: bool = True) -> Path:
    """``root/office31`` with real JPEG files of varied sizes and tllib image lists."""
    rng = np.random.default_rng(seed)
    base = root / "office31"
    for domain in domains:
        lines = []
        for label, name in enumerate(OFFICE31_CLASSES[:classes]):
            for i in range(per_class):
                rel = f"{domain}/images/{name}/frame_{i:04d}.jpg"
                size = (int(rng.integers(260, 340)), int(rng.integers(260, 340)))
                write_jpeg(base / rel, rng, size)
                lines.append(f"{rel} {label}")
        if lists:
            (base / "image_list").mkdir(parents=True, exist_ok=True)
            (base / "image_list" / f"{domain}.txt").write_text("\n".join(lines) + "\n")
    return base


def make_visda(root: Path, classes: int = 12, per_class: int = 2, seed: int = 0) -> Path:
    """``root/visda-2017``: PNG renderings (train) and JPEG crops (validation), tllib lists."""
    from pnl_da.data.office import VISDA_CLASSES

    rng = np.random.default_rng(seed)
    base = root / "visda-2017"
    (base / "image_list").mkdir(parents=True, exist_ok=True)
    for split, suffix in (("train", ".png"), ("validation", ".jpg")):
        lines = []
        for label, name in enumerate(VISDA_CLASSES[:classes]):
            for i in range(per_class):
                rel = f"{split}/{name}/{i:05d}{suffix}"
                write_jpeg(base / rel, rng, (int(rng.integers(60, 90)), int(rng.integers(60, 90))))
                lines.append(f"{rel} {label}")
        (base / "image_list" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return base


def write_cifar(root, name="cifar10", n=6, seed=0):
    """CIFAR batches in torchvision's layout, pickled as the originals: protocol 2, bytes keys,
    rows of R plane, G plane, B plane. Returns {file name: (images NCHW, labels)}."""
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for i, (filename, _md5) in enumerate(cls.train_list + cls.test_list):
        images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = [int(v) for v in (np.arange(n) * 7 + i) % (10 if name == "cifar10" else 100)]
        entry = {b"batch_label": b"fake", label_key: labels, b"data": images.reshape(n, 3072)}
        if name == "cifar100":
            entry[b"coarse_labels"] = [v // 5 for v in labels]
        with open(folder / filename, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        written[filename] = (images, labels)
    return folder, written


def write_mnist_idx(root, n_train=30, n_test=20):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = ((np.arange(n) * 3) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + labels.tobytes())
        out[prefix] = (images, labels)
    return out


def write_digits_pngs(root: Path, limit: int | None = None) -> dict[str, Path]:
    """The bundled digits as image files, exactly the digits benchmark's 28x28 grey images:
    ``uci/<digit>/<n>.png`` (class folders), the same in the original order as a tllib list
    ``image_list/uci.txt`` (with ``image_list/classes.txt``), ``mnist-sample/<n>.png`` (one flat
    unlabeled folder, in the sample's order), ``mnist-sample-labeled/<digit>/<n>.png`` and the
    sample's labels in ``mnist-sample-labels.csv``. ``limit``: the first images of each only."""
    from PIL import Image

    from pnl_da.data.digits import load_mnist_sample, load_uci

    written = {}
    lists = root / "image_list"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classes.txt").write_text("".join(f"{d}\n" for d in range(10)))
    for name, data in (("uci", load_uci("", "all")),
                       ("mnist-sample", load_mnist_sample("", "all"))):
        images = data.images[:limit].numpy()[:, 0]
        labels = data.labels[:limit].tolist()
        lines = []
        for i, (image, label) in enumerate(zip(images, labels)):
            labeled = f"{name}/{label}/{i:05d}.png" if name == "uci" else \
                f"{name}-labeled/{label}/{i:05d}.png"
            for rel in ([labeled] if name == "uci" else [labeled, f"{name}/{i:05d}.png"]):
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image, mode="L").save(root / rel)
            lines.append(f"{labeled} {label}")
        if name == "uci":
            (lists / "uci.txt").write_text("\n".join(lines) + "\n")
        else:
            (root / "mnist-sample-labels.csv").write_text(
                "path,label\n" + "".join(f"{i:05d}.png,{y}\n" for i, y in enumerate(labels)))
        written[name] = root / name
    written["uci-list"] = lists / "uci.txt"
    written["mnist-sample-labeled"] = root / "mnist-sample-labeled"
    return written
