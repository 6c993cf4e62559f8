"""The digits benchmark: uci and mnist-sample (bundled, offline), four domains built from them
with a documented shift (offline too), and mnist, usps, svhn (torchvision's file formats under
the data root)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pnl_da.data.base import Benchmark, Domain, DomainData
from pnl_da.errors import DataError
from pnl_da.resources import packaged_dir

MNIST_SAMPLE_FILE = "mnist-sample-4998.npz"


def _from_numpy(images: np.ndarray, labels: np.ndarray, name: str, split: str) -> DomainData:
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    return DomainData(x.to(torch.uint8), torch.from_numpy(np.asarray(labels)).long(), name, split)


@lru_cache(maxsize=1)
def _uci_raw() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's UCI optdigits as float 8x8 images on MNIST's 0..255 scale, and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images).float().unsqueeze(1) * (255.0 / 16.0)
    return x, torch.from_numpy(digits.target).long()


@lru_cache(maxsize=1)
def _uci_images() -> tuple[torch.Tensor, torch.Tensor]:
    x, labels = _uci_raw()
    # MNIST digits fill a 20x20 box centred in 28x28; put the 8x8 UCI digits in the same box.
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4)).round().clamp(0, 255).to(torch.uint8)
    return x, labels


def load_uci(root: str, split: str) -> DomainData:
    images, labels = _uci_images()
    return DomainData(images.clone(), labels.clone(), "uci", split)


def mnist_sample_path(root: str) -> Path:
    """A copy under the data root wins; otherwise the file installed with the package."""
    local = Path(root) / "mnist-sample" / MNIST_SAMPLE_FILE
    return local if local.is_file() else packaged_dir("datasets") / MNIST_SAMPLE_FILE


def load_mnist_sample(root: str, split: str) -> DomainData:
    path = mnist_sample_path(root)
    try:
        with np.load(path) as data:
            images, labels = data["images"], data["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read the MNIST sample {path} ({exc}); reinstall pnl-da or "
                        f"copy {MNIST_SAMPLE_FILE} to {Path(root) / 'mnist-sample'}") from exc
    return _from_numpy(images, labels, "mnist-sample", split)


# ---------------------------------------------------------------- shifted bundled domains
# Each is a fixed function of a bundled domain (and, for mnist-m-sample, of the two photographs
# that ship with scikit-learn), so every machine builds the same images: new tasks with real
# shifts, offline. docs/data.md shows what each shift is.

MNIST_M_SEED = 20150709  # the photograph patches behind mnist-m-sample (fixed, never the run's)


def load_mnist_sample_inverted(root: str, split: str) -> DomainData:
    """Black digits on white: every pixel ``255 - x`` (a polarity shift)."""
    data = load_mnist_sample(root, split)
    return DomainData(255 - data.images, data.labels, "mnist-sample-inverted", split)


def load_mnist_sample_thick(root: str, split: str) -> DomainData:
    """Strokes thickened by one pixel on every side: a 3x3 grey-level dilation (max filter)."""
    data = load_mnist_sample(root, split)
    thick = F.max_pool2d(data.images.float(), kernel_size=3, stride=1, padding=1)
    return DomainData(thick.to(torch.uint8), data.labels, "mnist-sample-thick", split)


@lru_cache(maxsize=1)
def _photographs() -> tuple[torch.Tensor, ...]:
    """scikit-learn's two sample photographs (china.jpg, flower.jpg), uint8 (3, 427, 640)."""
    from sklearn.datasets import load_sample_images

    return tuple(torch.from_numpy(np.array(img)).permute(2, 0, 1)
                 for img in load_sample_images().images)


def load_mnist_m_sample(root: str, split: str) -> DomainData:
    """MNIST-M's construction (Ganin & Lempitsky, ICML 2015) on the MNIST sample: each digit
    blended with a random colour patch of a photograph as ``|patch - digit|``, so the digit
    shows as the patch's inverse over the patch itself. Ganin cut patches from BSDS500; here
    they come from scikit-learn's photographs, with a fixed seed."""
    data = load_mnist_sample(root, split)
    gen = torch.Generator().manual_seed(MNIST_M_SEED)
    n, size = len(data), data.images.shape[-1]
    out = torch.empty((n, 3, size, size), dtype=torch.uint8)
    which = torch.randint(len(_photographs()), (n,), generator=gen)
    for index, photo in enumerate(_photographs()):
        rows = (which == index).nonzero().flatten()
        top = torch.randint(photo.shape[1] - size + 1, (len(rows), 1), generator=gen)
        left = torch.randint(photo.shape[2] - size + 1, (len(rows), 1), generator=gen)
        offsets = torch.arange(size)
        ys, xs = (top + offsets)[:, :, None], (left + offsets)[:, None, :]
        patches = photo[:, ys, xs].transpose(0, 1).short()  # (rows, 3, size, size)
        out[rows] = (patches - data.images[rows].short()).abs().to(torch.uint8)
    return DomainData(out, data.labels, "mnist-m-sample", split)


def load_uci_lowres(root: str, split: str) -> DomainData:
    """The UCI digits at their own resolution: each 8x8 pixel a 2x2 block (nearest), 16x16
    centred in 28x28. ``uci`` is smoothed (bilinear) into MNIST's 20x20 box instead, so this
    domain differs from it in scale and in its blocky edges."""
    x, labels = _uci_raw()
    x = F.interpolate(x, scale_factor=2, mode="nearest")
    x = F.pad(x, (6, 6, 6, 6)).round().clamp(0, 255).to(torch.uint8)
    return DomainData(x, labels.clone(), "uci-lowres", split)


def _extract_mnist(root: str) -> None:
    """torchvision's MNIST reads the raw idx files; unpack ``*.gz`` copies where only those
    exist (as the original distribution ships them), as its own download step would."""
    import gzip
    import shutil

    raw = Path(root) / "MNIST" / "raw"
    for prefix in ("train", "t10k"):
        for part in ("images-idx3", "labels-idx1"):
            plain = raw / f"{prefix}-{part}-ubyte"
            packed = plain.with_name(plain.name + ".gz")
            if not plain.exists() and packed.is_file():
                with gzip.open(packed, "rb") as src, open(plain, "wb") as dst:
                    shutil.copyfileobj(src, dst)


def _missing_mnist_files(root: str) -> list[str]:
    raw = Path(root) / "MNIST" / "raw"
    names = [f"{prefix}-{part}-ubyte" for prefix in ("train", "t10k")
             for part in ("images-idx3", "labels-idx1")]
    return [f"MNIST/raw/{n}" for n in names if not (raw / n).is_file()]


def _torchvision(kind: str, root: str, split: str, hint: str | None = None) -> DomainData:
    """Load a torchvision-format digits split; ``hint`` is the command the error suggests
    (default: ``pnl-da download digits --data-root ROOT``)."""
    from torchvision import datasets

    train = split == "train"
    try:
        if kind == "mnist":
            _extract_mnist(root)
            ds = datasets.MNIST(root, train=train, download=False)
            return DomainData(ds.data.unsqueeze(1).clone(), ds.targets.long().clone(), kind, split)
        if kind == "usps":
            ds = datasets.USPS(root, train=train, download=False)
            return _from_numpy(ds.data, np.asarray(ds.targets), kind, split)
        ds = datasets.SVHN(root, split="train" if train else "test", download=False)
        return _from_numpy(ds.data, ds.labels, kind, split)
    except (RuntimeError, OSError, EOFError, ValueError, AssertionError) as exc:
        # torchvision asserts on an idx file's header: a corrupt or truncated file
        command = hint or f"pnl-da download digits --data-root {root}"
        missing = _missing_mnist_files(root) if kind == "mnist" else []
        if kind == "mnist" and not missing:
            raise DataError(f"the MNIST files under {Path(root) / 'MNIST' / 'raw'} are corrupt "
                            f"or truncated; delete them and run `{command}`, or place intact "
                            "copies there") from exc
        if missing:
            raise DataError(f"mnist not found under {root}: missing {', '.join(missing)}; run "
                            f"`{command}` or place the files there") from exc
        raise DataError(f"{kind} ({split}) not found or unreadable under {root}: expected "
                        f"{EXPECTED_FILES[kind]}; run `{command}` or place the files there"
                        ) from exc


EXPECTED_FILES = {
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]",
    "usps": "usps.bz2 and usps.t.bz2",
    "svhn": "train_32x32.mat and test_32x32.mat",
}


def download_digits(root: str) -> list[str]:
    """Fetch MNIST, USPS and SVHN with torchvision into ``root``; report what happened."""
    from torchvision import datasets

    from pnl_da.data.download import torchvision_download

    Path(root).mkdir(parents=True, exist_ok=True)
    messages, failures = [], []
    for kind, make in (
        ("mnist", lambda train: datasets.MNIST(root, train=train, download=True)),
        ("usps", lambda train: datasets.USPS(root, train=train, download=True)),
        ("svhn", lambda train: datasets.SVHN(root, split="train" if train else "test",
                                              download=True)),
    ):
        failure = torchvision_download(root, lambda make=make: [make(t) for t in (True, False)])
        if failure:
            failures.append(f"{kind} ({failure})")
        else:
            messages.append(f"{kind}: ready under {root}")
    if failures:
        raise DataError(f"could not download {'; '.join(failures)}; without network, place "
                        + ", ".join(f"{k}: {v}" for k, v in EXPECTED_FILES.items())
                        + f" under {root}")
    messages.append("uci and mnist-sample are bundled: nothing to download")
    return messages


DIGITS = Benchmark(
    name="digits",
    num_classes=10,
    domains=(
        Domain("uci", ("optdigits",), ("all",), load_uci,
               "UCI optdigits from scikit-learn, 1,797 images (bundled)"),
        Domain("mnist-sample", ("ms",), ("all",), load_mnist_sample,
               "4,998 real MNIST digits (bundled)"),
        Domain("mnist-sample-inverted", ("msi",), ("all",), load_mnist_sample_inverted,
               "the MNIST sample, black on white (built from the bundled file)"),
        Domain("mnist-sample-thick", ("mst",), ("all",), load_mnist_sample_thick,
               "the MNIST sample, strokes dilated by 1 pixel (built from the bundled file)"),
        Domain("mnist-m-sample", ("mms",), ("all",), load_mnist_m_sample,
               "the MNIST sample blended with photograph patches, MNIST-M style (built)"),
        Domain("uci-lowres", ("ul",), ("all",), load_uci_lowres,
               "UCI optdigits at 8x8 scaled 2x by nearest, 16x16 in 28x28 (built)"),
        Domain("mnist", ("m",), ("train", "test"), lambda r, s: _torchvision("mnist", r, s),
               "MNIST 60,000 + 10,000 (torchvision format)"),
        Domain("usps", ("u",), ("train", "test"), lambda r, s: _torchvision("usps", r, s),
               "USPS 7,291 + 2,007 (torchvision format)"),
        Domain("svhn", ("s",), ("train", "test"), lambda r, s: _torchvision("svhn", r, s),
               "SVHN 73,257 + 26,032 (torchvision format)"),
    ),
    standard_tasks=("uci->mnist-sample", "mnist-sample->uci", "mnist-sample->mnist-m-sample",
                    "mnist-sample->mnist-sample-inverted", "mnist-sample->mnist-sample-thick",
                    "uci-lowres->mnist-sample", "mnist->usps", "usps->mnist", "svhn->mnist"),
    description="handwritten digits, 10 classes",
    partial_protocol=("0", "1", "2", "3", "4"),  # partial-set tasks: the target keeps 0-4
    download=download_digits,
)
