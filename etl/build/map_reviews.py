"""Phase 1: every token's review and position in it, and every review's review_idx."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from etl.build.context import WorkDir
from etl.build.files import NpyWriter
from etl.build.kernels import offsets_in_reviews
from etl.inputs import decode_ids
from etl.progress import Progress
from etl.staging import open_memmap_reserved


@dataclass(frozen=True, eq=False)
class ReviewMap:
    """Per review_idx (the NPZ's reviews first, then those only the H5 names): its id,
    its tokens in the H5, and the positions of its first and last token."""

    # As Arrow strings, not Python str objects: a forked worker's RSS counts every page
    # of its parent (130 MB of str objects at full size, 35 MB as Arrow strings).
    review_ids: pa.Array
    n_tokens: np.ndarray
    first: np.ndarray
    last: np.ndarray


def map_reviews(f, npz_ids: np.ndarray, work: WorkDir, chunk: int, progress: bool) -> ReviewMap:
    """Assign review_idx to every token and its position within its review.

    `f` is the open H5 file; `work.token_review` and `work.token_position` get one int32
    per token, and `work.token_bounds` is made for the explode to fill.
    """
    index: dict[str, int] = {rid: i for i, rid in enumerate(npz_ids.tolist())}
    ids: list[str] = list(npz_ids.tolist())

    def idx_of(rid: str) -> int:
        got = index.get(rid)
        if got is None:
            got = index[rid] = len(ids)
            ids.append(rid)
        return got

    if "review_ids_unique" in f:
        uniq = f["review_ids_unique"]
        for s in range(0, uniq.shape[0], chunk):
            for rid in decode_ids(uniq[s : s + chunk]).tolist():
                idx_of(rid)

    rev = f["rev_idx"]
    n = rev.shape[0]
    # (space reserved up front: a full disk is an error, not a SIGBUS; see etl.staging)
    # Written with pwrite, not through the maps: a written page of a map stays in the
    # process's RSS until unmapped (380 MB for the two at 47M tokens).
    review_of = NpyWriter(open_memmap_reserved(work.token_review, np.int32, (n,)))
    position = NpyWriter(open_memmap_reserved(work.token_position, np.int32, (n,)))
    # Each token's character offsets and those of its default context window, filled by
    # the explode workers (see explode.write_tokens), read for the top examples.
    open_memmap_reserved(work.token_bounds, np.int32, (n, 4)).flush()
    open_memmap_reserved(work.token_ids, np.int32, (n,)).flush()  # likewise (explode.write_tokens)
    counts = np.zeros(max(len(ids), 1024), np.int64)
    first = np.full(len(counts), np.iinfo(np.int64).max, np.int64)
    last = np.full(len(counts), -1, np.int64)
    bar = Progress("map reviews", n, progress)
    for s in range(0, n, chunk):
        raw = rev[s : s + chunk]
        m = len(raw)
        change = np.ones(m, bool)
        change[1:] = raw[1:] != raw[:-1]
        starts = np.flatnonzero(change)
        lens = np.diff(np.append(starts, m))
        run_idx = np.fromiter((idx_of(r) for r in decode_ids(raw[starts]).tolist()), np.int64)
        if len(ids) > len(counts):
            grow = max(len(ids), 2 * len(counts)) - len(counts)
            counts = np.append(counts, np.zeros(grow, np.int64))
            first = np.append(first, np.full(grow, np.iinfo(np.int64).max, np.int64))
            last = np.append(last, np.full(grow, -1, np.int64))
        run_offset = offsets_in_reviews(run_idx, lens, counts)
        np.add.at(counts, run_idx, lens)
        np.minimum.at(first, run_idx, s + starts)
        np.maximum.at(last, run_idx, s + starts + lens - 1)
        review_of.write(s, np.repeat(run_idx, lens))
        position.write(s, np.repeat(run_offset - starts, lens) + np.arange(m))
        bar.update(s + m)
    bar.close()
    review_of.close()
    position.close()
    r = len(ids)
    return ReviewMap(pa.array(ids, pa.string()), counts[:r], first[:r], last[:r])
