"""Listing a folder domain against reading its files once, measured in the same run (goal:
listing takes no longer than one read of the files).

Data: --files small real PNG files (the bundled MNIST sample's, 28x28, about 300 bytes each,
repeated under new names) in 10 class folders, written to a temporary folder that is removed at
the end; writing them is not timed. The page cache is warm for both: each is timed after one
untimed pass, so the comparison is of the work itself, not of the disk.

* listing: what a run does before anything is decoded: ``folders.source_classes`` (the class
  folders) and ``folders.load_folder`` (every image, sorted, hidden and other files counted),
  then ``image_cache.file_digests`` (a stat per file: what tells the cache and the checkpoint
  that a file changed).
* reading once: open and read every file's bytes (no decoding), in the listing's order.

    python benchmarks/folder_listing.py [--files 100000] [--repeats 3] [--out FILE.md]
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

from _common import emit, machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_files(root: Path, count: int) -> Path:
    import io

    from PIL import Image

    from pnl_da.data.digits import load_mnist_sample

    data = load_mnist_sample("", "all")
    payloads = []
    for image in data.images[:500].numpy()[:, 0]:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        payloads.append(buffer.getvalue())
    domain = root / "source"
    for c in range(10):
        (domain / f"class {c}").mkdir(parents=True)
    for i in range(count):
        (domain / f"class {i % 10}" / f"{i:07d}.png").write_bytes(payloads[i % len(payloads)])
    return domain


def listing(domain: Path) -> int:
    from pnl_da.data.folders import load_folder, source_classes
    from pnl_da.data.image_cache import file_digests

    classes = source_classes(str(domain.parent), domain.name)
    images = load_folder(domain, classes, required=True)
    file_digests(domain, images)
    return len(images)


def reading(domain: Path, paths: list[str]) -> int:
    total = 0
    for path in paths:
        with open(domain / path, "rb") as handle:
            total += len(handle.read())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from pnl_da.data.folders import load_folder

    with tempfile.TemporaryDirectory() as tmp:
        domain = write_files(Path(tmp), args.files)
        paths = load_folder(domain, tuple(f"class {c}" for c in range(10)), required=True).paths
        size = reading(domain, paths)  # the untimed passes: a warm page cache for both
        listing(domain)
        times = {"listing": [], "reading": []}
        for _ in range(args.repeats):  # interleaved
            start = time.perf_counter()
            assert listing(domain) == args.files
            times["listing"].append(time.perf_counter() - start)
            start = time.perf_counter()
            assert reading(domain, paths) == size
            times["reading"].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in times.items()}
    ratio = median["listing"] / median["reading"]
    lines = [
        f"# Listing a folder domain of {args.files:,} files against reading them once",
        "",
        f"Machine: {machine()}. Date: {datetime.date.today()}.",
        f"{args.files:,} PNG files ({size / args.files:.0f} bytes on average) in 10 class "
        f"folders; warm page cache; median of {args.repeats} interleaved repeats.",
        "",
        "| work | seconds | files/s | per repeat (s) |",
        "|---|---|---|---|",
    ]
    for name, label in (("listing", "listing (class folders, every image sorted, a stat each)"),
                        ("reading", "reading every file's bytes once")):
        lines.append(f"| {label} | {median[name]:.3f} | {args.files / median[name]:,.0f} | "
                     f"{', '.join(f'{t:.3f}' for t in times[name])} |")
    lines += ["", f"listing / reading: {ratio:.2f}x (goal <= 1: "
              f"{'met' if ratio <= 1 else 'not met'}).", "",
              f"Command: `python benchmarks/folder_listing.py "
              f"{shlex.join(sys.argv[1:])}`"]
    emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
