"""Writing files so that nothing already written is lost: atomic replacement, durable
renames, one writer per folder, and write failures (full disk, read-only folder) as one line.

Every file pnl-da writes goes through here. A temporary file is written and fsynced beside
its destination, renamed over it, and the folder is fsynced so that the rename survives a
crash of the machine, not only of the process. Temporary files are named
``.<destination>.<random>.tmp``: a writer killed with SIGKILL leaves one behind, and the next
holder of the folder's lock removes it (``remove_stale_temporaries``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from pnl_da.errors import DataError, PnlError, UsageError

TEMPORARY_SUFFIX = ".tmp"
LOCK_NAME = ".pnl-da.lock"


class WriteFailed(PnlError):
    """A file could not be written: the disk is full, the folder read-only, and so on. The
    message names the file and the cause; ``hint`` says what was kept and how to go on."""

    exit_code = 1

    def __init__(self, path: Path, error: OSError, hint: str = "", exit_code: int = 1):
        self.path, self.error, self.exit_code = Path(path), error, exit_code
        reason = error.strerror or str(error) or type(error).__name__
        fix = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space (disk quota)",
               errno.EROFS: "the file system is read-only: make it writable",
               errno.EACCES: "make the folder writable", errno.EPERM: "make the folder writable"}
        self.fix = fix.get(error.errno, "check the disk")
        message = f"cannot write {path} ({reason})"
        super().__init__(f"{message}; {hint}" if hint else f"{message}; {self.fix}")
        self.reason = message

    def with_hint(self, hint: str) -> WriteFailed:
        """The same failure, saying what was kept and how to go on."""
        return WriteFailed(self.path, self.error, f"{self.fix}, {hint}", self.exit_code)


def _umask() -> int:
    mask = os.umask(0)  # reading it means setting it; put it straight back
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in ``folder`` durable (a no-op where folders cannot be
    opened, as on some network file systems)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_beside(path: Path) -> Path:
    """A new, empty, uniquely named temporary file beside ``path``, with the mode open() would
    give (mkstemp makes it private: results on a shared machine must stay readable)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    return Path(tmp)


def atomic_write(path: Path, write, before_replace=None, exit_code: int = 1) -> None:
    """Write ``path`` through a temporary file: ``write(handle)`` fills it, it is fsynced,
    ``before_replace()`` runs (the checkpoint rotation), then it replaces ``path``. An error
    or a signal at any point leaves the old file whole; an OSError becomes WriteFailed."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_beside(path)
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except OSError as exc:
        raise WriteFailed(path, exc, exit_code=exit_code) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def write_json(path: Path, data) -> None:
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode()))


def append_line(path: Path, line: str) -> None:
    """Append one line and fsync it. A line cut short (a kill, a full disk) is skipped by the
    readers of the log; a failed append is truncated away so that the next one starts clean."""
    path = Path(path)
    try:
        with open(path, "ab") as handle:
            start = handle.tell()
            try:
                handle.write(line.encode() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            except OSError:
                handle.truncate(start)
                raise
    except OSError as exc:
        raise WriteFailed(path, exc) from None


def remove_stale_temporaries(folder: Path, names: tuple[str, ...] | None = None) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder`` (only ``names``' when
    given). Call it only while holding the lock that every writer of the folder holds."""
    removed = []
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(f".*{TEMPORARY_SUFFIX}"):
        destination = tmp.name[1:].rsplit(".", 2)[0]  # ".<name>.<random>.tmp" -> "<name>"
        if names is not None and destination not in names:
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


class FolderLock:
    """One writer per folder: a POSIX advisory lock (``fcntl.lockf``) on ``<folder>/.pnl-da.lock``.

    The operating system releases it when its process ends, however it ends, so a lock left by
    a killed process never blocks. POSIX locks rather than flock: they belong to the process,
    so DataLoader workers forked from it do not keep holding the lock after a SIGKILL, and they
    work on NFS. The file records who holds it, for the message of the process refused; it is
    removed on release.
    """

    def __init__(self, folder: Path, name: str = LOCK_NAME):
        self.folder, self.path = Path(folder), Path(folder) / name
        self.fd: int | None = None

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def describe_holder(self) -> str:
        who = self.holder()
        if not who.get("pid"):
            return "another process"
        command = f" ({who['command']})" if who.get("command") else ""
        return f"process {who['pid']} on {who.get('host', 'this machine')}{command}"

    def _try(self) -> bool:
        """Take the lock if it is free; True when taken."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~_umask())
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EACCES, errno.EAGAIN):
                    return False
                raise
            try:  # the holder may have removed the file between our open and our lock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "command": " ".join(["pnl-da", *sys.argv[1:]])[:200],
                                     "since": time.strftime("%Y-%m-%d %H:%M:%S")})
                os.ftruncate(fd, 0)
                os.write(fd, record.encode())
                return True
            os.close(fd)

    def held(self) -> bool:
        """Whether a live process holds the lock, found without taking it or writing (a
        shared lock on the file fails while another process holds it exclusively)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            return exc.errno in (errno.EACCES, errno.EAGAIN)
        finally:
            os.close(fd)
        return False

    def acquire(self, wait_s: float = 0.0, on_wait=None) -> bool:
        """Take the lock, waiting up to ``wait_s`` seconds for its holder (``on_wait`` is
        called once if it has to wait); False when it stays held. A holder recorded on this
        machine that no longer runs gets a few seconds more: its lock is on its way out."""
        self.folder.mkdir(parents=True, exist_ok=True)
        deadline, told = time.monotonic() + wait_s, False
        while not self._try():
            who = self.holder()
            dying = (who.get("host") == socket.gethostname() and who.get("pid")
                     and not _alive(int(who["pid"])))
            if time.monotonic() >= deadline + (10.0 if dying else 0.0):
                return False
            if on_wait is not None and not told:
                on_wait(self.describe_holder())
                told = True
            time.sleep(0.2)
        return True

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: see _try
        except OSError:
            pass
        os.close(self.fd)  # closing releases the lock
        self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def lock_folder(folder: Path, what: str = "output folder") -> FolderLock:
    """The folder's lock, or a usage error naming the folder and the process that holds it."""
    lock = FolderLock(folder)
    try:
        taken = lock.acquire()
    except OSError as exc:
        raise UsageError(f"cannot write to {what} {folder} ({exc.strerror or exc}); pass --out "
                         "with a writable folder") from None
    if not taken:
        raise UsageError(f"{what} {folder} is in use by {lock.describe_holder()}; wait for it "
                         "to finish, or choose another --out")
    return lock


def lock_cache(path: Path, log=print) -> FolderLock:
    """The lock of one cache file (``<file>.lock``), waiting for a process that builds it."""
    lock = FolderLock(path.parent, f"{path.name}.lock")
    try:
        lock.acquire(wait_s=24 * 3600.0,
                     on_wait=lambda who: log(f"waiting for {who}, which is building {path}"))
    except OSError as exc:
        raise DataError(f"cannot lock the image cache {path} ({exc.strerror or exc}); set "
                        "data.cache_dir to a writable folder") from None
    return lock
