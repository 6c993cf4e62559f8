"""Tiny datasets in the real on-disk layouts, written for tests and benchmarks."""

from __future__ import annotations

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
