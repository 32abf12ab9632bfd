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
import hashlib
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path


class LockBusy(Exception):
    """Another build of the same target holds its lock."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so the build cleans up like on Ctrl-C."""


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


# The interrupt being delivered, if any (KeyboardInterrupt or Terminated).
_pending: list = [None]


# Inside `signals_held`: how deep, and whether an interrupt came meanwhile.
_held = [0]
_deferred = [False]


def _on_signal(signum, frame):
    _pending[0] = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    if _held[0]:
        _deferred[0] = True
        return
    raise _pending[0]()


def _raise_pending(signum, frame):
    if _pending[0] is not None:
        if _held[0]:
            _deferred[0] = True
            return
        raise _pending[0]()


def _unraisable_hook(previous):
    def hook(unraisable):
        # Raised while Python ran a __del__ or weakref callback, the exception was
        # swallowed ("Exception ignored in ...") and the build would carry on: deliver
        # it again a moment later, from ordinary code.
        if _pending[0] is not None and isinstance(unraisable.exc_value, _pending[0]):
            signal.setitimer(signal.ITIMER_REAL, 0.001)
            return
        previous(unraisable)

    return hook


@contextmanager
def interrupts_as_exceptions():
    """In the main thread: SIGINT -> KeyboardInterrupt, SIGTERM -> Terminated, reliably.

    Python's own SIGINT handling can lose the KeyboardInterrupt when the signal lands
    inside a garbage-collection callback; a lost interrupt would let a killed build run
    to completion.  Here a swallowed interrupt is re-delivered (SIGALRM) until the
    code being interrupted really sees it, so its cleanup (removing the staging
    directory) runs.
    """
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)
    try:
        previous = {s: signal.signal(s, _on_signal if s != signal.SIGALRM else _raise_pending) for s in sigs}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable_hook(previous_hook)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _pending[0] = None
        _deferred[0] = False
        sys.unraisablehook = previous_hook
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def signals_held():
    """SIGINT, SIGTERM and SIGALRM held (blocked) in this thread, delivered at the end.

    For the steps an interrupt must not cut in two: starting a thread the cleanup must
    wait for, waiting for it, and removing the unpublished snapshot (an interrupt
    re-delivered by `interrupts_as_exceptions` inside that rmtree left a directory).
    """
    # Python runs a handler between bytecodes, possibly after the signal itself came:
    # blocking the signal is not enough, the handlers defer too (`_on_signal`).
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGALRM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    _held[0] += 1
    try:
        yield
    finally:
        _held[0] -= 1
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        if not _held[0] and _deferred[0]:
            _deferred[0] = False
            raise _pending[0]()


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
