"""What the Spark engine's tasks run on the executors (no pyspark here: numpy, pyarrow
and the local build's phases).  Each function takes and yields Arrow record batches,
for `DataFrame.mapInArrow`."""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Callable, Iterator
from itertools import groupby
from operator import itemgetter
from pathlib import Path

import numpy as np
import pyarrow as pa

from etl.build.context import BuildContext, WorkDir
from etl.build.explode import explode_steps
from etl.build.merge import merge_sorted
from etl.build.parallel import Counter
from warehouse.contract import BUCKET_WIDTH

# The shuffled rows: key = feature << 32 | token_pos (token_pos < 2**32, checked by the
# build), so one sort by key is the order of the activations files, and the bucket is
# (key >> 32) // BUCKET_WIDTH.  Three fields instead of four or five: Spark's rows carry
# 8 bytes per field, so this is 32 bytes a row in the shuffle's sort instead of 48.
ROWS = pa.schema([("key", pa.int64()), ("value", pa.float32()), ("review_idx", pa.int32())])
ROWS_DDL = "key BIGINT, value FLOAT, review_idx INT"
RESULTS = pa.schema([("bucket", pa.int32()), ("result", pa.binary())])
RESULTS_DDL = "bucket INT, result BINARY"
_TOKEN_MASK = np.int64(0xFFFFFFFF)


class Ready:
    """Stands for the build's `texts_ready` event in a task: the driver wrote the texts
    before the job started (a multiprocessing Event cannot travel to an executor)."""

    def set(self) -> None:
        pass

    def is_set(self) -> bool:
        return True

    def wait(self, timeout: float | None = None) -> bool:
        return True


def for_tasks(ctx: BuildContext) -> BuildContext:
    """The build's context as it travels to the executors: its progress counter and its
    event are this process's (neither pickles); the rest is the very context."""
    return dataclasses.replace(ctx, counter=Counter(shared=False), texts_ready=Ready())


def explode_result_path(work: WorkDir, task: int) -> Path:
    """Where an explode task leaves its `ExplodeResult` for the driver (small: counts,
    the text lengths of its reviews, its files' manifest entries)."""
    return work.root / f"explode-{task:05d}.pkl"


class ShuffleRuns:
    """The explode's spill sink for Spark: each run's rows, in (feature, token) order,
    kept as keyed arrays until the task hands them to Spark after the chunk."""

    n_runs = 0  # no run counts to lay out: Spark's shuffle orders the rows

    def __init__(self, n_latents: int):
        self.shifted = np.arange(n_latents, dtype=np.int64) << 32
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def append_run(self, counts: np.ndarray, tp: np.ndarray, v: np.ndarray, rvs: np.ndarray) -> None:
        key = np.repeat(self.shifted, counts)
        key |= tp.astype(np.int64)
        self.parts.append((key, v, rvs))

    def batches(self, rows: int) -> Iterator[pa.RecordBatch]:
        """The rows appended since the last call, as batches of at most `rows` rows."""
        parts, self.parts = self.parts, []
        for key, v, rvs in parts:
            for at in range(0, len(key), rows):
                cut = slice(at, at + rows)
                yield pa.record_batch([pa.array(key[cut]), pa.array(v[cut]), pa.array(rvs[cut])], schema=ROWS)

    def close(self) -> None:
        pass


def explode_partition(ctx: BuildContext, bounds: list[int], batch_rows: int) -> Callable:
    """mapInArrow's function over the task numbers: explode task t's tokens
    [bounds[t], bounds[t + 1]) with `etl.build.explode.explode_steps`, yielding its rows
    after each chunk (an executor holds one chunk's rows, not its range's)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for task in batch.column(0).to_pylist():
                sink = ShuffleRuns(ctx.settings.n_latents)
                steps = explode_steps(ctx, task, bounds[task], bounds[task + 1], sink)
                while True:
                    try:
                        next(steps)
                    except StopIteration as done:
                        result = done.value
                        break
                    yield from sink.batches(batch_rows)
                # Written whole, then renamed: a retried task's result replaces it whole.
                path = explode_result_path(ctx.work, task)
                tmp = path.with_name(f".{path.name}.{os.getpid()}")
                tmp.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
                os.replace(tmp, path)

    return run


def merge_partition(ctx: BuildContext, block_rows: int, bucket_rows: int) -> Callable:
    """mapInArrow's function over a shuffled partition (rows sorted by key: its buckets
    one after another, each in (feature, token_pos) order): each bucket, in blocks of
    about `block_rows` rows, through `etl.build.merge.merge_sorted`, which writes its
    activations file; yields one row per bucket, its pickled `MergeResult`.
    `bucket_rows`: the mean bucket's rows, the estimate `merge_sorted` takes for each
    bucket (a task cannot know a bucket's rows before it has streamed them all; the
    estimate only chooses how the token statistics are counted, not what they are)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for bucket, pieces in groupby(_pieces(batches), key=itemgetter(0)):
            f_lo = bucket * BUCKET_WIDTH
            result = merge_sorted(ctx, bucket, _blocks(pieces, f_lo, block_rows), bucket_rows)
            payload = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            yield pa.record_batch([pa.array([bucket], pa.int32()), pa.array([payload], pa.binary())],
                                  schema=RESULTS)

    return run


def _pieces(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """(bucket, key, value, review_idx) slices of the batches, each of one bucket."""
    for batch in batches:
        if not batch.num_rows:
            continue
        key = batch.column("key").to_numpy()
        value = batch.column("value").to_numpy()
        review = batch.column("review_idx").to_numpy()
        bucket = (key >> 32) // BUCKET_WIDTH
        cuts = np.flatnonzero(bucket[1:] != bucket[:-1]) + 1
        for lo, hi in zip(np.append(0, cuts).tolist(), np.append(cuts, len(key)).tolist()):
            yield int(bucket[lo]), key[lo:hi], value[lo:hi], review[lo:hi]


def _blocks(pieces, f_lo: int, block_rows: int) -> Iterator[tuple]:
    """One bucket's slices gathered into blocks of `merge_sorted`'s arguments."""
    held: list[tuple] = []
    rows = 0
    for _, key, value, review in pieces:
        held.append((key, value, review))
        rows += len(key)
        if rows >= block_rows:
            yield _block(held, f_lo)
            held, rows = [], 0
    if held:
        yield _block(held, f_lo)


def _block(held: list[tuple], f_lo: int) -> tuple:
    """(feature offset int32, token_pos int64, review_idx int32, value float32, limit):
    the dtypes the local merge gathers.  `limit` is the block's last feature: those
    before it are complete (the last may go on in the next block)."""
    key = np.concatenate([h[0] for h in held])
    value = np.concatenate([h[1] for h in held]).astype(np.float32, copy=False)
    review = np.concatenate([h[2] for h in held]).astype(np.int32, copy=False)
    f_local = ((key >> 32) - f_lo).astype(np.int32)
    return f_local, key & _TOKEN_MASK, review, value, int(f_local[-1])
