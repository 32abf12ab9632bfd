"""Per (token id, feature) statistics of one bucket, counted in its merge: the table
`token_feature_stats`, which answers "which features fire on this token?" without a
scan of `activations`.

The merge hands each block of the bucket's rows (feature offset, token_pos, value) to
`TokenStats.add`; the token ids come from `WorkDir.token_ids` (the explode wrote them).
Counts and sums are bincounts over the key (feature offset, token id), maxima one
`np.maximum.at`: ~15 ns a row, where sorting the keys cost ~60.  A bucket with many
rows counts into dense arrays of width x n_vocab (64 x 50,257 for GPT-2: 64 MB, ~70 ms
to fill and read back); one with few rows (a small build's, or a rare bucket's) keeps
its keys and counts over their unique values instead, so small builds do not pay the
dense arrays' fixed cost 384 times.  Both add each key's values in row order: the same
sums either way.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from etl.build.context import BuildContext
from etl.build.files import finished_file
from warehouse.contract.parquet import schema, write_parquet

# Dense arrays when the bucket has at least 1/DENSE_AT rows per (feature, token id) cell.
DENSE_AT = 8


class TokenStats:
    """One bucket's (token id, feature) counts, sums and maxima, block by block."""

    def __init__(self, ctx: BuildContext, f_lo: int, width: int, n_rows: int) -> None:
        self.ctx, self.f_lo, self.width, self.n_vocab = ctx, f_lo, width, ctx.n_vocab
        self.size = width * self.n_vocab
        self.dense = n_rows * DENSE_AT >= self.size
        if self.dense:
            self.count = np.zeros(self.size, np.int64)
            self.sums = np.zeros(self.size, np.float64)
            self.maxes = np.zeros(self.size, np.float32)
        else:
            self.keys: list[np.ndarray] = []
            self.values: list[np.ndarray] = []
        # Mapped for the bucket and dropped with it: the pages a mapping touched count
        # in the worker's RSS until it is unmapped.
        self.token_ids = np.load(ctx.work.token_ids, mmap_mode="r")

    def add(self, f_local: np.ndarray, tp: np.ndarray, v: np.ndarray) -> None:
        """A block's rows: feature offsets in the bucket, token positions, values."""
        tid = self.token_ids[tp]
        known = tid >= 0
        if not known.all():
            f_local, tid, v = f_local[known], tid[known], v[known]
        key = f_local.astype(np.int64) * self.n_vocab + tid
        if not self.dense:
            self.keys.append(key)
            self.values.append(v)
            return
        self.count += np.bincount(key, minlength=self.size)
        self.sums += np.bincount(key, weights=v, minlength=self.size)
        np.maximum.at(self.maxes, key, v)

    def _cells(self) -> tuple[np.ndarray, ...]:
        """(key, n_active, sum_value, max_value) of every cell with a row."""
        if self.dense:
            key = np.flatnonzero(self.count)
            return key, self.count[key], self.sums[key], self.maxes[key]
        keys = np.concatenate(self.keys) if self.keys else np.zeros(0, np.int64)
        values = np.concatenate(self.values) if self.values else np.zeros(0, np.float32)
        key, inverse = np.unique(keys, return_inverse=True)
        maxes = np.zeros(len(key), np.float32)
        np.maximum.at(maxes, inverse, values)
        return key, np.bincount(inverse, minlength=len(key)), np.bincount(inverse, values, len(key)), maxes

    def write(self, bucket: int) -> dict:
        """The bucket's part of `token_feature_stats`, in (token_id, feature) order; its
        manifest entry."""
        self.token_ids = None
        key, count, sums, maxes = self._cells()
        f, tid = np.divmod(key, self.n_vocab)
        order = np.argsort(tid * self.width + f, kind="stable")
        table = pa.table(
            {
                "token_id": tid[order].astype(np.int32),
                "feature": (f[order] + self.f_lo).astype(np.int32),
                "n_active": count[order].astype(np.int64),
                "sum_value": sums[order].astype(np.float64),
                "max_value": maxes[order],
            },
            schema=schema("token_feature_stats"),
        )
        path = self.ctx.out.token_stats_part(bucket)
        write_parquet("token_feature_stats", table, path)
        return finished_file(self.ctx.out.root, path)
