"""The build's file primitives: positioned and vectored writes, windowed reads, the
memory-mapped texts, and the manifest entry of a finished Parquet file.

Reads and writes go through file descriptors rather than memory maps wherever a map
would keep the pages it touched in the process's RSS (numbers beside each function).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from etl.build.kernels import excl_cumsum
from etl.inputs import NpzStrings
from etl.staging import start_writeback


def pwrite_all(fd: int, values: np.ndarray, at: int) -> None:
    """Write a contiguous array's bytes at offset `at` of `fd`, however many calls it takes."""
    data = memoryview(values).cast("B")
    while data:
        done = os.pwrite(fd, data, at)
        if done == 0:
            raise OSError(errno.EIO, f"fd {fd}: write made no progress")
        data, at = data[done:], at + done


class NpyWriter:
    """Writes rows of a .npy file made by `open_memmap_reserved`, at their offsets."""

    def __init__(self, made: np.memmap):
        self._path, self._at, self._dtype = made.filename, made.offset, made.dtype
        self._row_bytes = made.dtype.itemsize * int(np.prod(made.shape[1:], dtype=np.int64))
        del made  # unmapped before a page is written
        self._fd = os.open(self._path, os.O_WRONLY)

    def write(self, row: int, values: np.ndarray) -> None:
        pwrite_all(self._fd, np.ascontiguousarray(values, self._dtype), self._at + row * self._row_bytes)

    def close(self) -> None:
        os.close(self._fd)


def append(fd: int, *parts: np.ndarray) -> None:
    """Append the arrays' bytes to `fd` in order: one writev where two buffered writes
    of a run's slice (each larger than the buffer, so two syscalls) cost ~25% more."""
    views = [memoryview(p).cast("B") for p in parts]
    while views:
        done = os.writev(fd, views)
        if done == 0:
            raise OSError(errno.EIO, "spill write made no progress")
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if done:
            views[0] = views[0][done:]


def raise_open_file_limit(needed: int) -> None:
    """A worker keeps one spill file open per bucket: wide SAEs need more than 1024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


def gather_npy(path: Path, index: np.ndarray, window_bytes: int) -> np.ndarray:
    """`np.load(path)[index]` for an ascending `index`, reading the file once, in order, a
    window at a time.

    A memory map would page-fault the rows in and keep every touched page in the
    process's RSS until unmapped; this holds one window (`window_bytes`, reused) and the
    answer, whatever the file's size.
    """
    header = np.load(path, mmap_mode="r")  # shape, dtype and data offset; no page read
    shape, dtype, start = header.shape, header.dtype, header.offset
    del header
    row_bytes = dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
    window_rows = max(1, window_bytes // row_bytes)
    out = np.empty((len(index),) + tuple(shape[1:]), dtype)
    edges = np.searchsorted(index, np.arange(0, shape[0] + window_rows, window_rows))
    block = np.empty((min(window_rows, shape[0]),) + tuple(shape[1:]), dtype)
    with open(path, "rb", buffering=0) as fh:
        for w in np.flatnonzero(np.diff(edges)).tolist():
            lo = w * window_rows
            rows = min(window_rows, shape[0] - lo)
            view = memoryview(block[:rows]).cast("B")
            got = os.preadv(fh.fileno(), [view], start + lo * row_bytes)
            if got != len(view):
                raise OSError(errno.EIO, f"{path}: short read ({got} of {len(view)} bytes)")
            a, b = edges[w], edges[w + 1]
            np.take(block, index[a:b] - lo, axis=0, out=out[a:b])
    return out


def read_ranges(path: Path, at: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Read the uint32 ranges [at, at + lens) of a spill file into one buffer.

    Returns (buffer, where each range starts in it).  Ranges that touch in the file are
    read as one, so a window covering a whole bucket is a single sequential read.
    """
    order = np.argsort(at, kind="stable")
    s, e = at[order], at[order] + lens[order]
    new = np.ones(len(s), bool)
    new[1:] = s[1:] != e[:-1]
    group = np.cumsum(new) - 1
    g_start, g_end = s[new], np.maximum.reduceat(e, np.flatnonzero(new))
    g_at = excl_cumsum(g_end - g_start)
    buf = np.empty(int((g_end - g_start).sum()), np.uint32)
    with open(path, "rb", buffering=0) as fh:
        for a, b, dest in zip(g_start.tolist(), g_end.tolist(), g_at.tolist()):
            view = memoryview(buf[dest : dest + b - a]).cast("B")
            got = os.preadv(fh.fileno(), [view], a * 4)
            if got != len(view):
                raise OSError(errno.EIO, f"{path}: short read ({got} of {len(view)} bytes)")
    where = np.empty(len(s), np.int64)
    where[order] = g_at[group] + (s - g_start[group])
    return buf, where


# --------------------------------------------------------------------------- the texts


def texts_to_arrow(texts: NpzStrings, path: Path) -> None:
    """Write the NPZ texts to an Arrow IPC file (`open_texts` maps it)."""
    import pyarrow.ipc as ipc

    schema = pa.schema([("text", pa.large_string())])
    step, part = 1 << 16, 1 << 12  # streamed from the NPZ: never all in memory
    # 4K texts at a time as Python str (not 64K: their heap pages were 130 MB of the
    # peak), concatenated into the same 64K-text batches as ever.
    with ipc.new_file(path, schema) as writer:
        parts: list[pa.Array] = []
        rows = 0
        for batch in texts.batches(part):
            parts.append(pa.array(batch, pa.large_string()))
            rows += len(batch)
            if rows % step == 0 or rows == len(texts):
                writer.write_batch(pa.record_batch([pa.concat_arrays(parts)], schema=schema))
                parts = []
    del texts


def texts_at(texts: pa.ChunkedArray, rows: np.ndarray) -> list[str]:
    """`texts.take(rows).to_pylist()` chunk by chunk.  ChunkedArray.take concatenates
    the chunks first: at full size every call copied all 190 MB of texts (and made
    every page of the mapping resident)."""
    order = np.argsort(rows, kind="stable")
    sorted_rows = np.asarray(rows, np.int64)[order]
    ends = np.cumsum([len(c) for c in texts.chunks], dtype=np.int64)
    cuts = np.searchsorted(sorted_rows, ends)
    picked: list[str] = []
    start = lo = 0
    for chunk, end, hi in zip(texts.chunks, ends.tolist(), cuts.tolist()):
        if hi > lo:
            picked += chunk.take(pa.array(sorted_rows[lo:hi] - start)).to_pylist()
        start, lo = end, hi
    out: list[str] = [""] * len(picked)
    for i, text in zip(order.tolist(), picked):
        out[i] = text
    return out


def open_texts(path: Path) -> pa.ChunkedArray:
    """The texts `texts_to_arrow` wrote, memory-mapped afresh (no copy)."""
    import pyarrow.ipc as ipc

    return ipc.open_file(pa.memory_map(str(path))).read_all().column("text")


# --------------------------------------------------------------------------- manifest entries


def finished_file(root: Path, path: Path) -> dict:
    """A worker's file is done: its manifest entry (the checksum reads it while it is in
    the page cache, in parallel with the other worker) and the start of its writeback."""
    entry = file_entry(root, path)
    start_writeback(path)
    return entry


def file_entry(root: Path, path: Path) -> dict:
    """The manifest's entry for the Parquet file `path` of the snapshot `root`."""
    from warehouse.verify import file_sha256

    return {
        "path": str(path.relative_to(root)),
        "bytes": path.stat().st_size,
        "rows": pq.ParquetFile(path).metadata.num_rows,
        "sha256": file_sha256(path),
    }
