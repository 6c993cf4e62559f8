"""Decode each image once: a memory-mapped file of resized uint8 images per domain.

The cache is keyed by the image list's content and the size, so it is rebuilt when the list
changes, and it records each file's size and modification time, so it is also rebuilt when an
image is replaced under the same name. Augmentation workers then read arrays, never JPEG.
Grey, CMYK, palette, RGBA and 16-bit images are converted to 8-bit RGB on the way in.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pnl_da.data.base import is_labeled
from pnl_da.data.image_list import ImageList
from pnl_da.errors import DataError, PnlError, first_line


@dataclass
class DecodedImages:
    array: np.ndarray  # (N, size, size, 3) uint8, memory-mapped
    labels: list[int]
    skipped: list[str]  # unreadable files left out (only with skip_bad_images)
    path: Path
    # the list (paths, labels) and each file's size: what a checkpoint is checked against
    content: str = ""


@dataclass
class CachedDomain:
    """A domain split of an image-list benchmark, decoded: what the trainer streams from."""

    decoded: DecodedImages
    name: str
    split: str

    @property
    def labels(self):
        import torch

        return torch.tensor(self.decoded.labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.decoded.labels)

    @property
    def labeled(self) -> bool:
        return is_labeled(self.decoded.labels)

    @property
    def skipped(self) -> list[str]:
        return self.decoded.skipped

    def fingerprint(self) -> str:
        return self.decoded.content


def to_rgb8(image) -> np.ndarray:
    """Any PIL image as an (H, W, 3) uint8 array."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray((array * (255.0 / peak)).clip(0, 255).astype(np.uint8))
    if image.mode == "RGBA" or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decode(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # a truncated file fails here, not later in a worker
        rgb = Image.fromarray(to_rgb8(image))
    return np.asarray(rgb.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def cache_key(base: Path, images: ImageList, size: int) -> str:
    """The list (its folder, paths and labels) and the size: one shared cache folder serves
    every dataset, so two folders with the same file names never share a cache file."""
    digest = hashlib.sha256(f"{size}\n{Path(base).resolve()}\n".encode())
    for path, label in zip(images.paths, images.labels):
        digest.update(f"{path}\t{label}\n".encode())
    return digest.hexdigest()[:16]


def file_digests(base: Path, images: ImageList) -> tuple[str, str]:
    """(files, content): digests of every listed file's size and modification time, and of
    the list with each file's size. A stat per file, no read (0.46 s per 100,000 files on this
    project's 2-core test machine, so VisDA-2017's 280,000 images add about 1.3 s to a run's
    start). ``files`` tells the cache that an image was replaced; ``content`` leaves the time
    out, so that a copy of the dataset on another node (a cluster job resumed elsewhere)
    matches the checkpoint. A missing file counts as a change; the rebuild then names it."""
    files, content = hashlib.sha256(), hashlib.sha256()
    prefix = f"{base}{os.sep}"  # string joins: pathlib's doubled the time
    for path, label in zip(images.paths, images.labels):
        try:
            stat = os.stat(prefix + path)
            files.update(f"{stat.st_size} {stat.st_mtime_ns}\n".encode())
            size = stat.st_size
        except OSError:
            files.update(b"missing\n")
            size = -1
        content.update(f"{path}\t{label}\t{size}\n".encode())
    return files.hexdigest()[:16], content.hexdigest()[:16]


def load_or_build(base: Path, images: ImageList, name: str, size: int, cache_dir: Path,
                  skip_bad: bool = False, workers: int = 4, log=print) -> DecodedImages:
    """The decoded domain from ``cache_dir``, building it first if the list, the size or a
    file changed. Runs that share a cache take turns: the build happens under a lock of its
    file, into a temporary file of a unique name, so a second run waits and then reads it."""
    from pnl_da.files import lock_cache, remove_stale_temporaries

    key = cache_key(base, images, size)
    # a domain's name may be a path (folders): its last part, safe as a file name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).strip("._") or "domain"
    data_file = cache_dir / f"{stem}-{size}-{key}.u8"
    files, content = file_digests(base, images)
    # a whole, current cache is read without the lock (a read-only cache folder serves)
    found = _cached(data_file, size, name, files, skip_bad, log, quiet=True)
    if found is not None:
        found.content = content
        return found
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the image cache folder {cache_dir} ({exc.strerror}); "
                        "set data.cache_dir to a writable folder") from None
    with lock_cache(data_file, log):
        found = _cached(data_file, size, name, files, skip_bad, log)  # built while we waited?
        if found is not None:
            found.content = content
            return found
        # what a build killed before its end left (its lock died with it)
        remove_stale_temporaries(cache_dir, (data_file.name, data_file.with_suffix(".json").name))
        decoded = _build(base, images, name, size, data_file, files, skip_bad, workers, log)
        decoded.content = content
        return decoded


def _cached(data_file: Path, size: int, name: str, files: str, skip_bad: bool,
            log, quiet: bool = False) -> DecodedImages | None:
    """The cache if it is whole and up to date for this run, else None (saying why, unless
    ``quiet``)."""
    meta_file = data_file.with_suffix(".json")
    if not (data_file.is_file() and meta_file.is_file()):
        return None
    try:
        meta = json.loads(meta_file.read_text())
        whole = data_file.stat().st_size == meta["count"] * size * size * 3
    except (OSError, ValueError, KeyError, TypeError):
        whole = False
    if not whole:
        if not quiet:
            log(f"the image cache {data_file} is incomplete; decoding again")
        return None
    if meta.get("files") != files:
        if "files" in meta and not quiet:  # (caches of older versions have no record: rebuilt once)
            log(f"images of {name} changed since its cache was built (a file's size or "
                "modification time); decoding again")
        return None
    # A cache that left images out serves only a run that allows it (a mended file changes
    # the record): otherwise decode again, and fail on a bad file.
    if meta["skipped"] and not skip_bad:
        return None
    array = np.memmap(data_file, dtype=np.uint8, mode="r", shape=(meta["count"], size, size, 3))
    if meta["skipped"]:
        log(f"skipped {len(meta['skipped'])} unreadable images of {name} (as when its "
            f"cache was built), e.g. {meta['skipped'][0]}")
    return DecodedImages(array, meta["labels"], meta["skipped"], data_file)


def _cache_write_failed(path: Path, exc: OSError) -> PnlError:
    """A failed cache write: exit 3, as data errors, naming where else the cache can go."""
    from pnl_da.files import WriteFailed

    failure = WriteFailed(path, exc, exit_code=3)
    return failure.with_hint("or set data.cache_dir to a folder with room for the decoded "
                             "images; nothing of the run was written yet")


def _build(base: Path, images: ImageList, name: str, size: int, data_file: Path, files: str,
           skip_bad: bool, workers: int, log) -> DecodedImages:
    from pnl_da.files import WriteFailed, atomic_write, fsync_dir, temporary_beside

    log(f"decoding {len(images)} images of {name} once into {data_file}")
    row_bytes = size * size * 3
    try:
        tmp = temporary_beside(data_file)
    except OSError as exc:
        raise _cache_write_failed(data_file, exc) from None
    try:
        # The whole file is allocated first: writing into a sparse memory map on a full disk
        # kills the process with SIGBUS, where posix_fallocate fails with ENOSPC.
        with open(tmp, "r+b") as handle:
            try:
                os.posix_fallocate(handle.fileno(), 0, max(1, len(images) * row_bytes))
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                handle.truncate(len(images) * row_bytes)  # no fallocate here: as before
        array = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=(len(images), size, size, 3))
        labels, skipped, row = _decode_into(array, base, images, name, size, skip_bad,
                                            workers)
        array.flush()
        del array
        if row < len(images):  # keep only the decoded rows
            with open(tmp, "r+b") as handle:
                handle.truncate(row * row_bytes)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, data_file)
        fsync_dir(data_file.parent)
    except OSError as exc:
        raise _cache_write_failed(data_file, exc) from None
    finally:
        tmp.unlink(missing_ok=True)
    meta = {"count": row, "labels": labels, "skipped": skipped, "list": images.source,
            "files": files}
    try:
        atomic_write(data_file.with_suffix(".json"),
                     lambda handle: handle.write(json.dumps(meta).encode()))
    except WriteFailed as exc:  # cache messages say where the cache can go instead
        data_file.unlink(missing_ok=True)  # images without their record serve no run
        raise _cache_write_failed(exc.path, exc.error) from None
    if skipped:
        log(f"skipped {len(skipped)} unreadable images of {name}, e.g. {skipped[0]}")
    array = np.memmap(data_file, dtype=np.uint8, mode="r", shape=(row, size, size, 3))
    return DecodedImages(array, labels, skipped, data_file)


def _decode_into(array, base: Path, images: ImageList, name: str, size: int, skip_bad: bool,
                 workers: int) -> tuple[list[int], list[str], int]:
    """Decode every listed image into the rows of ``array``; (labels, skipped, rows used)."""
    def one(i: int):
        try:
            return i, decode(base / images.paths[i], size)
        except Exception as exc:  # PIL raises many types for bad files
            return i, exc

    labels, skipped, row = [], [], 0
    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL decodes without the GIL
        for i, result in pool.map(one, range(len(images))):
            if isinstance(result, Exception):
                if not skip_bad:
                    raise DataError(f"cannot read image {base / images.paths[i]} "
                                    f"({type(result).__name__}: {first_line(result, 60)}); fix or "
                                    "remove it, or set data.skip_bad_images=true to skip it")
                skipped.append(images.paths[i])
                continue
            array[row] = result
            labels.append(images.labels[i])
            row += 1
    if row == 0:
        raise DataError(f"no readable image in {name}")
    return labels, skipped, row
