"""Feature activations: heavy-tailed random features per token, written in H5 chunks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import h5py
import numpy as np

from etl.synth.spec import _TABLE_BITS, _VAL_MU, _VAL_SIGMA, _ZIPF_OFFSET


class FeatureSampler:
    """Vectorized draw of k distinct, heavy-tailed, non-planted features per token."""

    def __init__(self, rng: np.random.Generator, n_latents: int, k: int, excluded: np.ndarray):
        live = np.setdiff1d(np.arange(n_latents), excluded)
        # Zipf over a random permutation: frequency is unrelated to the feature id.
        rank_to_feature = rng.permutation(live)
        n_live = len(live)
        w = 1.0 / (np.arange(n_live) + _ZIPF_OFFSET)
        p = w / w.sum()
        cdf = np.cumsum(p)
        m = 1 << _TABLE_BITS
        # Inverse-CDF table: a uniform index into it is a Zipf draw, with no binary search.
        # It holds feature ids, not ranks, so a draw needs one gather; int16 halves its cache
        # footprint (and the sort's work) whenever ids fit.
        ranks = np.minimum(np.searchsorted(cdf, (np.arange(m) + 0.5) / m), n_live - 1)
        self.table = rank_to_feature[ranks].astype(np.int16 if n_latents <= 2**15 else np.int32)
        self.k = k
        self.live = live
        # Enough candidates that, after removing repeats, a row almost always has >= k left.
        n_cand = k
        while n_cand < 8 * k and np.sum(-np.expm1(n_cand * np.log1p(-p))) < k + max(6, k // 4):
            n_cand += 1
        self.n_cand = n_cand

    def features(self, rng: np.random.Generator, n: int) -> np.ndarray:
        out = np.empty((n, self.k), dtype=np.int32)
        rows = np.arange(n)
        n_cand = self.n_cand
        for _ in range(4):
            feats, ok = self._draw(rng, len(rows), n_cand)
            if ok.all() and len(rows) == n:
                out[:] = feats
            else:
                out[rows[ok]] = feats
            rows = rows[~ok]
            if not len(rows):
                return out
            n_cand *= 2
        # Pathological widths only (k close to the number of live features).
        for r in rows:
            out[r] = rng.choice(self.live, self.k, replace=False)
        return out

    def _draw(self, rng: np.random.Generator, n: int, n_cand: int) -> tuple[np.ndarray, np.ndarray]:
        """Features (ok rows only, k per row) and the mask of rows that had >= k distinct."""
        k = self.k
        # Raw 64-bit draws split in two are ~2x cheaper than Generator.integers.
        bits = rng.bit_generator.random_raw((n * n_cand + 1) // 2).view(np.uint32)[: n * n_cand]
        bits >>= np.uint32(32 - _TABLE_BITS)
        cand = self.table[bits.reshape(n, n_cand)]
        cand.sort(axis=1)
        new = np.empty(cand.shape, dtype=bool)
        new[:, 0] = True
        np.not_equal(cand[:, 1:], cand[:, :-1], out=new[:, 1:])
        # int8 keeps the mask arithmetic cheap; the window end (start + k) must not overflow.
        cdt = np.int8 if n_cand + k < 127 else np.int16
        rank = np.cumsum(new, axis=1, dtype=cdt)  # 1-based rank among the row's distinct
        n_distinct = rank[:, -1]
        ok = n_distinct >= k
        # Keep a random circular window of k distinct ids: every distinct candidate is
        # kept with probability k/n_distinct, so the Zipf shape survives the truncation.
        start = (rng.random(n, dtype=np.float32) * n_distinct).astype(cdt)
        start = np.minimum(start, n_distinct - 1)[:, None]
        end = start + k
        wrap = end - n_distinct[:, None]
        keep = (rank > start) & (rank <= end)
        keep |= rank <= wrap
        keep &= new
        # Short rows would break the reshape; they are redrawn by the caller instead.
        keep &= ok[:, None]
        return cand[keep].reshape(-1, k), ok

    def values(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Lognormal(_VAL_MU, _VAL_SIGMA) float32 values."""
        # Box-Muller on float32 uniforms is ~2x faster than Generator.standard_normal,
        # which is a third of the sampling time otherwise.
        size = math.prod(shape)
        m = (size + 1) // 2
        u = rng.random(2 * m, dtype=np.float32)
        r, theta = u[:m], u[m:]
        np.subtract(np.float32(1.0), r, out=r)  # (0, 1]: log stays finite
        np.log(r, out=r)
        r *= np.float32(-2.0 * _VAL_SIGMA**2)
        np.sqrt(r, out=r)
        theta *= np.float32(2.0 * np.pi)
        out = np.empty(2 * m, dtype=np.float32)
        np.cos(theta, out=out[:m])
        np.sin(theta, out=out[m:])
        out[:m] *= r
        out[m:] *= r
        out += np.float32(_VAL_MU)
        np.exp(out, out=out)
        return out[:size].reshape(shape)


class ChunkedAppender:
    """Appends rows to resizable chunked datasets, writing whole chunks only.

    A batch that ends mid-chunk would otherwise make HDF5 write that chunk, then read it
    back and rewrite it when the next batch completes it.
    """

    def __init__(self, f: h5py.File, specs: dict[str, tuple[object, int]], chunk: int):
        self.chunk = chunk
        self.ds = {}
        for name, (dtype, width) in specs.items():
            tail = (width,) if width else ()
            self.ds[name] = f.create_dataset(
                name, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype, chunks=(chunk, *tail)
            )
        self.carry: dict[str, np.ndarray] = {}
        self.n = 0

    def append(self, **cols: np.ndarray) -> None:
        if self.carry:
            cols = {name: np.concatenate([self.carry[name], a]) for name, a in cols.items()}
        rows = len(next(iter(cols.values())))
        whole = rows // self.chunk * self.chunk
        self.carry = {name: a[whole:].copy() for name, a in cols.items()}
        if whole:
            self._write({name: a[:whole] for name, a in cols.items()})

    def close(self) -> None:
        if self.carry and len(next(iter(self.carry.values()))):
            self._write(self.carry)
        self.carry = {}

    def _write(self, cols: dict[str, np.ndarray]) -> None:
        rows = len(next(iter(cols.values())))
        for name, a in cols.items():
            ds = self.ds[name]
            ds.resize(self.n + rows, axis=0)
            ds[self.n :] = a
        self.n += rows


def batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    for a in range(0, n, size):
        yield a, min(n, a + size)
