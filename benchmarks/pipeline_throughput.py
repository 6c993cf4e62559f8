"""Images per second of pnl-da's training loader against a tllib-style ImageFolder + PIL
pipeline with the same worker count, both measured in the same run (goal: pnl-da >= 3x).

Data: a generated Office-31-format folder (tests/fake_datasets.py: real JPEG files of 260-340
px, tllib image lists), domain amazon, 31 classes x 20 images by default, in a temporary folder
that is removed at the end. Generating it is not timed.

pnl-da: the one-time decode cache (image_cache.load_or_build, 256x256 uint8; its build time is
reported apart, it is paid once per dataset), then the trainer's LoaderStream on the warm cache
with the albumentations views of transforms.build_views: "weak" (one training view) and
"weak"+"strong" (PNL's two views; images/s counted as source images).

tllib-style: torchvision ImageFolder over <base>/amazon/images with PIL loading, Resize((256,
256)) (tllib's ResizeImage(256)), RandomResizedCrop(224), RandomHorizontalFlip, ToTensor,
Normalize; DataLoader(shuffle, drop_last), its iterator re-created at the end of each pass as
tllib's ForeverDataIterator does (so its workers restart each pass, as in tllib).

Each measurement starts its own loader, takes --warmup batches (worker start-up included, not
timed), then times --batches batches. The pipelines are interleaved for --repeats rounds; the
table shows medians.

    python benchmarks/pipeline_throughput.py [--workers 2] [--batches 60] [--repeats 3]
        [--warmup 5] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import emit, machine

MEAN = (0.485, 0.456, 0.406)  # ImageNet, as configs/benchmark/office31.yaml
STD = (0.229, 0.224, 0.225)
CROP, RESIZE = 224, 256  # tllib: ResizeImage(256), then a 224 crop
DOMAIN = "amazon"
GOAL = 3.0
ROOT = Path(__file__).resolve().parent.parent
PIPELINES = {  # name -> label in the table
    "tllib": "tllib-style ImageFolder + PIL + torchvision",
    "pnl_weak": "pnl-da LoaderStream, views (weak,)",
    "pnl_two": "pnl-da LoaderStream, views (weak, strong)",
}


def make_data(root: Path, classes: int, per_class: int) -> Path:
    """The Office-31-format folder of tests/fake_datasets.py; returns ``root/office31``."""
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from fake_datasets import make_office31
    finally:
        sys.path.remove(str(ROOT / "tests"))
    return make_office31(root, domains=(DOMAIN,), classes=classes, per_class=per_class, seed=0)


def shut_down(iterator) -> None:
    """Stop a DataLoader iterator's worker processes now, so that they do not compete for the
    CPU with the next measurement (deleting the iterator would do it too, but later)."""
    stop = getattr(iterator, "_shutdown_workers", None)
    if stop is not None:
        stop()


def check_batch(images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
    if images.shape != (batch_size, 3, CROP, CROP) or images.dtype != torch.float32:
        raise RuntimeError(f"unexpected batch {tuple(images.shape)} {images.dtype}")
    if len(labels) != batch_size:
        raise RuntimeError(f"unexpected label count {len(labels)}")


def time_pnl(decoded, views: tuple[str, ...], args, seed: int) -> float:
    """Images/s of pnl-da's LoaderStream (the trainer's image-list stream) on the warm cache."""
    from pnl_da.data.loader_stream import LoaderStream
    from pnl_da.data.streams import Normalizer
    from pnl_da.data.transforms import build_views

    stream = LoaderStream(decoded, args.batch_size, seed, torch.device("cpu"),
                          build_views(CROP), views, args.workers, Normalizer(MEAN, STD))
    try:
        for _ in range(args.warmup):
            stream.next(views)
        start = time.perf_counter()
        for _ in range(args.batches):
            batch, labels = stream.next(views)
        elapsed = time.perf_counter() - start
    finally:
        shut_down(stream.iterator)
        stream.iterator = None
    for view in views:
        check_batch(batch[view], labels, args.batch_size)
    return args.batches * args.batch_size / elapsed


class ForeverIterator:
    """tllib's ForeverDataIterator: a new iterator over the loader when a pass ends."""

    def __init__(self, loader):
        self.loader = loader
        self.iterator = iter(loader)

    def next(self):
        try:
            return next(self.iterator)
        except StopIteration:
            shut_down(self.iterator)
            self.iterator = iter(self.loader)
            return next(self.iterator)


def time_tllib(folder: Path, args, seed: int) -> float:
    """Images/s of a tllib-style pipeline: ImageFolder, PIL, torchvision transforms."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    train = transforms.Compose([
        transforms.Resize((RESIZE, RESIZE)),
        transforms.RandomResizedCrop(CROP),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    torch.manual_seed(seed)
    loader = DataLoader(datasets.ImageFolder(str(folder), transform=train),
                        batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.workers)
    forever = ForeverIterator(loader)
    try:
        for _ in range(args.warmup):
            forever.next()
        start = time.perf_counter()
        for _ in range(args.batches):
            images, labels = forever.next()
        elapsed = time.perf_counter() - start
    finally:
        shut_down(forever.iterator)
        forever.iterator = None
    check_batch(images, labels, args.batch_size)
    return args.batches * args.batch_size / elapsed


def run_rounds(args, folder: Path, decoded) -> dict[str, list[float]]:
    """Images/s of each pipeline per round; interleaved, and rotated each round, so that drift
    in the machine's load hits all pipelines alike."""
    measure = {
        "tllib": lambda seed: time_tllib(folder, args, seed),
        "pnl_weak": lambda seed: time_pnl(decoded, ("weak",), args, seed),
        "pnl_two": lambda seed: time_pnl(decoded, ("weak", "strong"), args, seed),
    }
    rates: dict[str, list[float]] = {name: [] for name in PIPELINES}
    names = list(PIPELINES)
    for repeat in range(args.repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            rates[name].append(measure[name](repeat))
            print(f"repeat {repeat + 1}/{args.repeats} {name}: {rates[name][-1]:.0f} images/s",
                  file=sys.stderr)
    return rates


def versions() -> str:
    import albumentations
    import PIL
    import torchvision

    return (f"torchvision {torchvision.__version__}, albumentations {albumentations.__version__}, "
            f"Pillow {PIL.__version__}")


def command() -> str:
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path.cwd())
    except ValueError:
        pass
    return shlex.join([str(python), *sys.argv])


def report(args, rates: dict[str, list[float]], images: int, build_s: float) -> str:
    med = {name: statistics.median(values) for name, values in rates.items()}
    base = med["tllib"]
    ratio = med["pnl_weak"] / base
    lines = [
        f"# Training-loader throughput, Office-31-format {DOMAIN} ({images} generated JPEG "
        "files, 260-340 px), cpu",
        "",
        f"Machine: {machine()}. Date: {datetime.date.today()}. {versions()}.",
        f"Batch {args.batch_size}, {args.workers} DataLoader workers for both pipelines, crop "
        f"{CROP} from {RESIZE}x{RESIZE}. Median of {args.repeats} interleaved repeats of "
        f"{args.batches} batches, each after {args.warmup} warm-up batches (worker start-up "
        "not timed).",
        "",
        "| pipeline | images/s | ms/batch | x tllib-style | per repeat (images/s) |",
        "|---|---|---|---|---|",
    ]
    for name, label in PIPELINES.items():
        rate = med[name]
        each = ", ".join(f"{r:.0f}" for r in rates[name])
        lines.append(f"| {label} | {rate:.0f} | {args.batch_size / rate * 1000:.1f} | "
                     f"{rate / base:.2f} | {each} |")
    lines += [
        "",
        f"pnl-da (weak) / tllib-style: {ratio:.2f}x (goal >= {GOAL:.0f}x: "
        f"{'met' if ratio >= GOAL else 'not met'}).",
        "pnl-da (weak, strong) counts source images: each carries two augmented views.",
        f"One-time decode cache build (load_or_build, {args.workers} threads): {build_s:.2f} s "
        f"for {images} images ({images / build_s:.0f} images/s), paid once per dataset and "
        "not in the rows above; the tllib-style pipeline decodes every JPEG on every pass.",
        "",
        f"Command: `{command()}`",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers, both")
    parser.add_argument("--batches", type=int, default=60, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=31, help="Office-31 classes to generate")
    parser.add_argument("--per-class", type=int, default=20, help="JPEG files per class")
    parser.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    args = parser.parse_args()
    if args.classes * args.per_class < args.batch_size:
        parser.error("fewer generated images than one batch")

    from pnl_da.data.image_cache import load_or_build
    from pnl_da.data.office import OFFICE31

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="pnl-da-pipeline-") as tmp:
        base = make_data(Path(tmp), args.classes, args.per_class)
        data = OFFICE31.domain(DOMAIN).load(str(base.parent), "all")
        cache = Path(tmp) / "cache"
        start = time.perf_counter()
        load_or_build(data.base, data.images, data.name, RESIZE, cache,
                      workers=max(1, args.workers), log=log)
        build_s = time.perf_counter() - start
        decoded = load_or_build(data.base, data.images, data.name, RESIZE, cache,
                                workers=max(1, args.workers), log=log)  # warm: opens the file
        folder = base / DOMAIN / "images"

        rates = run_rounds(args, folder, decoded)
        images = len(decoded.labels)
        del decoded  # close the memory map before the folder goes

    emit(report(args, rates, images, build_s), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
