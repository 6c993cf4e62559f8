"""Augmentation of decoded images with albumentations (image-list benchmarks).

Images come from the decoded cache already resized to ``resize`` x ``resize`` (256 for a
224 crop, as tllib's ResizeImage(256)). Train: random resized crop (or centre crop, VisDA's
preset) and horizontal flip; strong: the same plus a RandAugment-style pick of two colour or
geometric operations and a cutout; eval: centre crop. All return uint8 HWC arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import numpy as np


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


@dataclass(frozen=True)
class InputFormat:
    """How a file becomes a model input, as a run's evaluation sees it: decoded to 8-bit RGB,
    resized to ``resize`` x ``resize`` (bilinear), centre-cropped to ``crop`` x ``crop``, made
    grey where the backbone takes one channel (ITU-R 601 luma, rounded), scaled to [0, 1] and
    normalised with ``mean`` and ``std``. Training decodes with the same steps (the image cache),
    ``pnl-da predict`` reads files with it and ``pnl-da export`` writes it beside the model."""

    resize: int
    crop: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def read(self, path) -> np.ndarray:
        """One file as a uint8 (3, crop, crop) RGB array, before ``channels``; a file PIL
        cannot read raises."""
        from pnl_da.data.image_cache import decode

        image = decode(path, self.resize)  # (resize, resize, 3) uint8
        top = (self.resize - self.crop) // 2  # as albumentations' CenterCrop
        image = image[top:top + self.crop, top:top + self.crop]
        return np.ascontiguousarray(image.transpose(2, 0, 1))

    def channels_of(self, batch):
        """A uint8 (N, 3, crop, crop) batch of ``read`` with the backbone's channel count (the
        conversion training uses: pnl_da/data/base.py's format_images), as a tensor."""
        import torch

        from pnl_da.data.base import format_images

        return format_images(torch.as_tensor(batch), self.crop, self.channels)

    def describe(self) -> dict:
        """The steps as data, for a program that has no pnl-da (the export's JSON)."""
        return {"decode": "8-bit RGB (alpha composited over white, 16-bit scaled to 8-bit)",
                "resize": [self.resize, self.resize], "interpolation": "bilinear",
                "crop": [self.crop, self.crop], "crop_position": "center",
                "channels": self.channels,
                "grey": "round(0.299 R + 0.587 G + 0.114 B)" if self.channels == 1 else None,
                "scale": "1/255", "mean": list(self.mean), "std": list(self.std),
                "layout": "NCHW float32"}

