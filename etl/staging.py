"""The build lock, syncing a finished snapshot to disk, and the build's signal handling.

A build writes its snapshot inside the warehouse (`WH/snapshots/<id>`) and publishes it
with one rename (`etl.publish`; the layout is in `warehouse.snapshots`).  Builds of one
target are serialized by an exclusive `flock` on `.NAME.lock` beside it, held by the
build and its forked workers; the kernel drops it when they die, however they die.  So
whoever holds the lock knows every unpublished snapshot is a leftover of a dead build
and can remove it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import functools
import hashlib
import os
import signal
from contextlib import contextmanager
from pathlib import Path

from warehouse.errors import WarehouseError


class LockBusy(WarehouseError):
    """Another build of the same target holds its lock."""


def fingerprint(path: Path) -> dict:
    """Size, mtime and a hash of the first and last MiB: cheap enough for 14 GB inputs."""
    stat = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if stat.st_size > 2 << 20:
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return {
        "path": str(path.resolve()),
        "bytes": stat.st_size,
        "mtime": stat.st_mtime,
        "sha256_head_tail": h.hexdigest(),
    }


def _lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


# --------------------------------------------------------------------------- the lock


def try_lock(target: Path) -> int | None:
    """Take the target's build lock without waiting: its fd, or None when it is held."""
    fd = os.open(_lock_path(target), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def release_lock(fd: int) -> None:
    os.close(fd)  # closing our copy; forked workers' copies die with them


def acquire_build_lock(target: Path) -> int:
    """Take the target's build lock (LockBusy if another build has it); returns its fd."""
    fd = try_lock(target)
    if fd is None:
        try:
            holder = _lock_path(target).read_text().strip() or "?"
        except OSError:
            holder = "?"
        raise LockBusy(f"{target}: another build of it is running (pid {holder}); wait for it to finish")
    return fd


# --------------------------------------------------------------------------- syncing


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def start_writeback(path: Path) -> None:
    """Ask the kernel to start writing a finished file to disk, without waiting for it.

    The build's last step fsyncs every file before the swap (`fsync_tree`); a file whose
    writeback started when it was written has little left to flush then, so the wait
    overlaps the rest of the build.  Linux only (sync_file_range); elsewhere a no-op.
    """
    try:
        sync_file_range = libc().sync_file_range
    except (OSError, AttributeError):
        return
    sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fd = os.open(path, os.O_RDONLY)
    try:
        sync_file_range(fd, 0, 0, 2)  # SYNC_FILE_RANGE_WRITE: start, do not wait
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file, then every directory, under `root` to disk (before publishing).

    fsync waits on the device and releases the GIL, so a few threads overlap the
    waits: hundreds of bucket files cost about one fsync's latency, not hundreds.
    """
    from concurrent.futures import ThreadPoolExecutor

    dirs, files = [], []
    for dirpath, _dirs, names in os.walk(root):
        dirs.append(Path(dirpath))
        files += [os.path.join(dirpath, n) for n in names]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(_fsync_file, files))
        list(pool.map(fsync_dir, dirs))


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library, for the calls Python does not wrap (raises OSError if it cannot be
    loaded; a missing function is an AttributeError at the call site)."""
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


# --------------------------------------------------------------------------- disk space


def open_memmap_reserved(path: Path, dtype, shape):
    """`np.lib.format.open_memmap(path, "w+", ...)` with its disk space allocated up front.

    A new memmap file is sparse: when the disk fills up, the first write to an
    unallocated page kills the process with SIGBUS, with no cleanup and no message.
    Allocating the blocks first turns that into an ordinary OSError(ENOSPC) here.
    """
    import numpy as np

    arr = np.lib.format.open_memmap(path, "w+", dtype, shape)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno != errno.ENOSPC and exc.errno != errno.EDQUOT:
            return arr  # no fallocate on this filesystem: carry on as before
        del arr
        raise
    finally:
        os.close(fd)
    return arr


# --------------------------------------------------------------------------- signals
# Delivering SIGINT/SIGTERM as exceptions is shared with the reports: warehouse.signals.


@contextmanager
def signals_for_forked_workers():
    """Around forking pool workers: children start with SIGTERM fatal and SIGINT ignored.

    `worker_init` sets the same, but only once the child runs Python; a child stuck
    before that (a lock inherited across fork) would otherwise keep the parent's
    SIGTERM handler, survive `Pool.terminate()` and hang the parent joining it.
    """
    try:
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, signal.SIG_DFL),
                    signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


_PR_SET_PDEATHSIG = 1


def worker_init(parent_pid: int) -> None:
    """Pool worker setup: die with the parent, leave SIGINT/SIGTERM handling to it.

    The parent handles Ctrl-C and SIGTERM and then terminates the pool (SIGTERM, default
    action), so workers print no tracebacks; if the parent is SIGKILLed the kernel kills
    the workers too (PR_SET_PDEATHSIG) instead of leaving them writing into a dead
    build's staging directory.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    try:
        libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
