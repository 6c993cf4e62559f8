"""Fetch, check and unpack the image benchmarks (Office-31, Office-Home, VisDA-2017).

Every URL lives in ``archives.json`` beside this file, because links have moved before.
Per archive: mirrors are tried in order with a bounded socket timeout; a partial ``.part``
file is resumed with an HTTP ``Range`` request; the sha256 of the first download is recorded
(no checksums are published) and checked whenever the archive is used again; members that
would land outside the benchmark folder are refused. After unpacking, the image lists are
checked (documented count, every listed file present) before the archives are marked done.

Files under ``<root>/<folder>/downloads/``: ``<archive>`` (kept, so a re-extraction needs no
network), ``<archive>.part`` and ``<archive>.part.url`` (an unfinished download and the mirror
it came from), ``sha256.json`` and ``<archive>.extracted`` (marker: unpacked and verified).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import lzma
import os
import re
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pnl_da.data.image_list import check_files, read_image_list
from pnl_da.errors import DataError, UsageError

CHUNK = 1 << 20
USER_AGENT = "pnl-da (python urllib)"
HASHES_FILE = "sha256.json"
# Python >= 3.10.12 / 3.11.4 can apply tarfile's "data" filter as a second guard.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
# What damaged archive data raises; gzip and bz2 use OSError without an errno for it.
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError)


class _MirrorFailed(Exception):
    """One mirror did not deliver; the message is a short reason."""


class _UnsafeMember(Exception):
    """An archive member that could be written outside the destination."""


@dataclass
class _Job:
    name: str
    root: Path
    base: Path  # <root>/<folder>: where archives unpack and image lists point
    timeout: float
    say: Callable[[str], None]

    @property
    def downloads(self) -> Path:
        return self.base / "downloads"

    def rerun(self) -> str:
        return f"`pnl-da download {self.name} --data-root {self.root}`"


def load_archives() -> dict:
    """The benchmarks in archives.json (keys starting with '_' are notes)."""
    text = resources.files(__package__).joinpath("archives.json").read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def download_benchmark(name: str, root: str | Path, *, timeout: float = 30.0, log=print,
                       archives: dict | None = None) -> list[str]:
    """Download, verify and unpack benchmark ``name`` under ``root``; return the messages.

    ``archives`` replaces the contents of archives.json (tests point it at a local server).
    """
    table = load_archives() if archives is None else archives
    key = name.lower()
    if key not in table:
        raise UsageError(f"no download for benchmark '{name}'; choose one of: "
                         f"{', '.join(k for k in table if not k.startswith('_'))}")
    entry = table[key]
    messages: list[str] = []

    def say(message: str) -> None:
        messages.append(message)
        log(message)

    root = Path(root).expanduser()
    job = _Job(key, root, root / entry["folder"], float(timeout), say)
    job.downloads.mkdir(parents=True, exist_ok=True)
    names = [a["name"] for a in entry["archives"]]
    pending = []
    for archive in entry["archives"]:
        if _marker(job, archive["name"]).is_file():
            say(f"{key}: {archive['name']}: already extracted and verified, skipped")
        else:
            pending.append(archive)
    for archive in pending:
        _extract(job, _obtain(job, archive))
    try:
        _verify_lists(job, entry["image_lists"])
    except DataError:
        # Unmark everything so the next run unpacks again instead of skipping.
        for archive_name in names:
            _marker(job, archive_name).unlink(missing_ok=True)
        raise
    hashes = _read_hashes(job)
    for archive in pending:
        _marker(job, archive["name"]).write_text(hashes.get(archive["name"], "") + "\n")
    say(f"{key}: ready in {job.base}")
    return messages


def _marker(job: _Job, archive_name: str) -> Path:
    return job.downloads / f"{archive_name}.extracted"


# --- getting one archive ---------------------------------------------------------------

def _obtain(job: _Job, archive: dict) -> Path:
    """The archive file, re-used (or placed by hand) when present, else downloaded."""
    path = job.downloads / archive["name"]
    if path.is_file():
        how = "re-using"
    else:
        url = _fetch(job, archive["urls"], path)
        how = f"downloaded from {url},"
    job.say(f"{job.name}: {path.name}: {how} {_check_or_record(job, path)}")
    return path


def _fetch(job: _Job, urls: list[str], path: Path) -> str:
    """Try each mirror in order; return the URL that delivered."""
    failures = []
    for url in urls:
        job.say(f"{job.name}: downloading {path.name} from {url}")
        try:
            _download(url, path, job.timeout)
            return url
        except _MirrorFailed as exc:
            job.say(f"{job.name}: {path.name}: mirror failed: {url} ({exc})")
            failures.append(f"{url} ({exc})")
    raise DataError(f"could not download {job.name} archive {path.name}: every mirror failed: "
                    f"{'; '.join(failures) or 'no mirror listed'}; download it by hand to "
                    f"{path} and run {job.rerun()} again")


def _download(url: str, path: Path, timeout: float) -> None:
    part = path.with_name(path.name + ".part")
    source = path.with_name(path.name + ".part.url")
    # Only resume bytes that came from this very URL: the organisers' train.tar and tllib's
    # train.tgz are different files under one archive name.
    same = part.is_file() and source.is_file() and source.read_text().strip() == url
    offset = part.stat().st_size if same else 0
    try:
        if not _request(url, part, source, offset, timeout):
            # 416: the partial file no longer fits what the server has; start again.
            part.unlink(missing_ok=True)
            _request(url, part, source, 0, timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _MirrorFailed(f"HTTP {exc.code}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _MirrorFailed(_reason(exc, timeout)) from None
    os.replace(part, path)
    source.unlink(missing_ok=True)


def _request(url: str, part: Path, source: Path, offset: int, timeout: float) -> bool:
    """One GET (ranged when resuming); False when the server refuses the range (416).

    The timeout bounds the connect and every read, so a silent mirror fails in time.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            exc.close()
            return False
        raise
    with response:
        if response.status == 206:
            start = _range_start(response.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _MirrorFailed(f"asked for bytes from {offset}, got a range from {start}")
        else:
            offset = 0  # 200: the server sent the whole file, so start from zero
        source.write_text(url + "\n")
        _save_body(response, part, offset)
    return True


def _range_start(content_range: str) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", content_range)
    return int(match.group(1)) if match else None


def _save_body(response, part: Path, offset: int) -> None:
    length = response.headers.get("Content-Length")
    received = 0
    with part.open("ab" if offset else "wb") as out:
        while chunk := response.read(CHUNK):
            out.write(chunk)
            received += len(chunk)
    # http.client returns short bodies silently; keep the .part so the next run resumes.
    if length is not None and length.isdigit() and received < int(length):
        raise _MirrorFailed(f"connection dropped after {offset + received} of "
                            f"{offset + int(length)} bytes, rerun to resume")


def _reason(exc: BaseException, timeout: float) -> str:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, http.client.RemoteDisconnected):
        return "server closed the connection"
    return _one_line(reason)


# --- sha256 records ----------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _read_hashes(job: _Job) -> dict[str, str]:
    path = job.downloads / HASHES_FILE
    if not path.is_file():
        return {}
    try:
        hashes = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({exc}); delete it and run {job.rerun()} "
                        "again") from None
    if not isinstance(hashes, dict):
        raise DataError(f"{path} is not a JSON object; delete it and run {job.rerun()} again")
    return hashes


def _write_hashes(job: _Job, hashes: dict[str, str]) -> None:
    path = job.downloads / HASHES_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(hashes, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # never leave a half-written record behind


def _check_or_record(job: _Job, path: Path) -> str:
    """Record the first sha256 of an archive; later, a different one means corruption."""
    hashes = _read_hashes(job)
    digest = _sha256(path)
    recorded = hashes.get(path.name)
    if recorded is None:
        hashes[path.name] = digest
        _write_hashes(job, hashes)
        return f"sha256 {digest[:16]}... recorded"
    if recorded != digest:
        path.unlink(missing_ok=True)
        raise DataError(f"{path} does not match the sha256 recorded when it was first "
                        f"downloaded (corrupt or changed), so it was removed; run {job.rerun()} "
                        f"again to fetch it again (if the mirror's file really changed, delete "
                        f"its entry in {job.downloads / HASHES_FILE})")
    return "sha256 verified"


def _discard(job: _Job, path: Path) -> None:
    """Remove a bad archive and its record, so the next run downloads it afresh."""
    path.unlink(missing_ok=True)
    hashes = _read_hashes(job)
    if hashes.pop(path.name, None) is not None:
        _write_hashes(job, hashes)


# --- unpacking ---------------------------------------------------------------------------

def _extract(job: _Job, path: Path) -> None:
    try:
        if path.name.lower().endswith(".zip"):
            _extract_zip(path, job.base)
        else:
            _extract_tar(path, job.base)
    except _UnsafeMember as exc:
        _discard(job, path)
        raise DataError(f"refused {path}: member '{exc}' would be written outside {job.base} "
                        "(absolute path, '..' or a link), so the archive was removed; get it "
                        f"from a trusted source, put it at {path} and run {job.rerun()} "
                        "again") from None
    except _CORRUPT as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            # A local problem (disk full, permissions): the archive itself may be fine.
            raise DataError(f"cannot extract {path} into {job.base} ({_one_line(exc)}); free "
                            f"disk space or fix permissions and run {job.rerun()} "
                            "again") from None
        _discard(job, path)
        raise DataError(f"{path} is truncated or corrupt ({_one_line(exc)}), so it was "
                        f"removed; run {job.rerun()} again to download it again") from None
    job.say(f"{job.name}: {path.name}: extracted into {job.base}")


def _one_line(problem: object) -> str:
    """The final error must stay on one line, whatever a library put in its message."""
    return " ".join(str(problem).split()) or type(problem).__name__


def _check_name(name: str) -> None:
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or re.match(r"[A-Za-z]:", name):
        raise _UnsafeMember(name)


def _extract_zip(path: Path, dest: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        # Check every name first: the central directory is read up front anyway.
        for info in archive.infolist():
            _check_name(info.filename)
        archive.extractall(dest)


def _extract_tar(path: Path, dest: Path) -> None:
    # One pass, member by member: a second pass over a multi-GB .tgz would double the time.
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            _check_name(member.name)
            if not (member.isfile() or member.isdir()):
                raise _UnsafeMember(member.name)  # links and devices have no place here
            archive.extract(member, dest, **_TAR_FILTER)


# --- checking the result -----------------------------------------------------------------

def _verify_lists(job: _Job, image_lists: dict[str, int]) -> None:
    """Each image list has its documented count and every file it names exists."""
    for relative, expected in image_lists.items():
        list_path = job.base / relative
        image_list = _hinted(job, read_image_list, list_path)
        if len(image_list) != expected:
            raise DataError(f"image list {list_path} names {len(image_list)} images, expected "
                            f"{expected}; the archives are incomplete or a mirror changed: "
                            f"delete {job.downloads} and run {job.rerun()} again")
        _hinted(job, check_files, job.base, image_list)
        job.say(f"{job.name}: {relative}: {expected} images, all present")


def _hinted(job: _Job, check, *args):
    """Run a check from image_list.py, adding how a rerun repairs what it found."""
    try:
        return check(*args)
    except DataError as exc:
        raise DataError(f"{exc}; run {job.rerun()} again to re-extract the archives") from None


# --- torchvision's own downloads (MNIST, USPS, SVHN, CIFAR) --------------------------------

def torchvision_failure(exc: BaseException) -> str:
    """Why a torchvision download failed, in words. Torchvision folds each mirror's error into
    its message text (MNIST: "Tried <mirror>, got: <urlopen error ...>"), so the text is read."""
    text = " ".join(str(exc).split())
    offline = re.search(r"urlopen error (?:\[Errno -?\d+\] )?([^>]+)>", text)
    if offline:
        return f"no connection: {offline.group(1).strip()}"
    http = re.search(r"HTTP Error (\d+): ([^.]+)", text)
    if http:
        return f"the server answered HTTP {http.group(1)} {http.group(2).strip()}"
    if "timed out" in text:
        return "the connection timed out"
    if "corrupted" in text or "MD5" in text or "checksum" in text.lower():
        return "a downloaded file failed its checksum"
    return text[:100] or type(exc).__name__


def remove_empty_folders(created: Iterable[Path]) -> None:
    """Remove the folders a failed download made and left empty, deepest first, so that a
    failed attempt leaves the data root as it was."""
    for folder in sorted(created, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()  # only succeeds when empty
        except OSError:
            pass


def folders_near(root: Path) -> set[Path]:
    """``root`` and the folders up to two levels under it (torchvision makes ``MNIST/raw``),
    to tell after a download which ones it made; not a walk of a whole data root."""
    if not root.is_dir():
        return set()
    found = {root}
    for child in root.iterdir():
        if child.is_dir():
            found.add(child)
            found.update(p for p in child.iterdir() if p.is_dir())
    return found


def torchvision_download(root: str, fetch: Callable[[], object]) -> str | None:
    """Run torchvision's download ``fetch`` into ``root``. None when it worked; else why not,
    in words, after removing the folders it made under ``root`` and left empty."""
    before = folders_near(Path(root))
    try:
        fetch()
    except Exception as exc:  # network refused, checksum mismatch, ...
        remove_empty_folders(folders_near(Path(root)) - before)
        return torchvision_failure(exc)
    return None
