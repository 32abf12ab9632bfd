"""Running a phase's tasks in forked worker processes, and the memory habits that go with it.

Workers are forked, so they inherit the build's context (`etl.build.context`) and every
array the parent holds: what the parent frees before forking is what keeps their RSS low.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from etl.progress import Progress
from etl.staging import libc, signals_for_forked_workers, worker_init
from warehouse.signals import signals_held


def run_parallel(
    fn: Callable, args: list[tuple], workers: int, bar: Progress, counter: Counter, started=None
) -> list:
    """`fn(*a)` for each of `args`, in `workers` forked processes; `started()` is called
    once they exist and have their tasks (the caller may start threads then, or work
    beside them), before anything is run with one worker."""
    if workers <= 1 or len(args) <= 1:
        if started is not None:
            started()
        out = []
        for a in args:
            out.append(fn(*a))
            bar.update(counter.value)
        return out
    ctx = multiprocessing.get_context("fork")
    with signals_for_forked_workers():
        pool = ctx.Pool(workers, initializer=_worker_start, initargs=(os.getpid(),))
    with pool:
        pending = pool.starmap_async(fn, args, chunksize=1)
        if started is not None:
            started()
        while not pending.ready():
            pending.wait(0.25)
            bar.update(counter.value)
        return pending.get()


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def _worker_start(parent_pid: int) -> None:
    worker_init(parent_pid)
    _keep_freed_memory()


def _keep_freed_memory() -> None:
    """Let this (worker) process's malloc keep the memory numpy frees for its next arrays.

    By default glibc maps large blocks afresh and hands the free top of its heap back to
    the OS, so the workers' temporaries (tens of MB, allocated and freed thousands of
    times) were page-faulted in again and again: 1.1M minor faults and 6.4 s of system
    time in a 5M-token build, against 285K and 4.9 s with these settings.  A worker then
    holds its peak working set until it exits, which is what its RSS peaked at anyway.
    """
    try:
        c = libc()
        c.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest dynamic threshold
        c.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):  # not glibc: its defaults stay
        pass


class Counter:
    """A progress counter that is shared with forked workers when there are any."""

    def __init__(self, shared: bool):
        self._v = multiprocessing.get_context("fork").Value("q", 0) if shared else None
        self._local = 0

    @property
    def value(self) -> int:
        return self._v.value if self._v is not None else self._local

    @value.setter
    def value(self, x: int) -> None:
        if self._v is not None:
            with self._v.get_lock():
                self._v.value = x
        else:
            self._local = x


def submit_held(pool: ThreadPoolExecutor, jobs: list, *calls: tuple) -> None:
    """Submit `calls` to `pool` and append their futures to `jobs`, with interrupts held
    until all are in the list: one landing inside the `Thread.start()` of the first
    submit would leave a thread running that neither the list nor the pool knew of."""
    with signals_held():
        for fn, *args in calls:
            jobs.append(pool.submit(fn, *args))


def wait_for(pool: ThreadPoolExecutor) -> None:
    """Shut `pool` down once all its jobs are done; the caller is handling an interrupt
    (or an error) and re-raises it, so another one meanwhile is held, not raised."""
    with signals_held():
        pool.shutdown(wait=True)


def release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc and Arrow's
    allocator keep them: forked workers would count them in their RSS)."""
    import gc

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: the memory is still reusable by this process
