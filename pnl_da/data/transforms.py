"""Augmentation of decoded images with albumentations (image-list benchmarks).

Images come from the decoded cache already resized to ``resize`` x ``resize`` (256 for a
224 crop, as tllib's ResizeImage(256)). Train: random resized crop (or centre crop, VisDA's
preset) and horizontal flip; strong: the same plus a RandAugment-style pick of two colour or
geometric operations and a cutout; eval: centre crop. All return uint8 HWC arrays.
"""

from __future__ import annotations

import albumentations as A


def _finish() -> list:
    # uint8 HWC arrays out of the workers (a quarter of float32's bytes between processes);
    # the batch becomes an NCHW tensor in channels_last layout without a copy, and scaling
    # and normalising happen on the training device (LoaderStream).
    return []


def _crop(size: int, train_crop: str) -> list:
    if train_crop == "center":
        return [A.CenterCrop(size, size)]
    return [A.RandomResizedCrop(size=(size, size))]


def build_views(size: int, train_crop: str = "random") -> dict[str, A.Compose]:
    """Transforms by view name. For training, ``none`` and ``weak`` are both tllib's standard
    train transform (crop + flip: a baseline trained with no augmentation at all is not what
    tllib reports); ``strong`` adds the RandAugment-style ops; ``eval`` is the centre crop."""
    strong_ops = A.SomeOf([
        A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=1),
        A.RandomBrightnessContrast(p=1),
        A.Equalize(p=1),
        A.Solarize(threshold_range=(0.5, 0.9), p=1),
        A.Posterize(num_bits=(4, 6), p=1),
        A.Sharpen(p=1),
        A.Rotate(limit=30, p=1),
    ], n=2)
    cutout = A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(0.2, 0.4),
                             hole_width_range=(0.2, 0.4), p=1.0)
    standard = A.Compose([*_crop(size, train_crop), A.HorizontalFlip(), *_finish()])
    return {
        "eval": A.Compose([A.CenterCrop(size, size), *_finish()]),
        "none": standard,
        "weak": standard,
        "strong": A.Compose([*_crop(size, train_crop), A.HorizontalFlip(), strong_ops, cutout,
                             *_finish()]),
    }
