"""The ETL: H5 + NPZ -> partitioned Parquet + a DuckDB file of views and macros.

Phases (working memory is bounded by chunk, window and group sizes; what still grows
with the input is per-review and per-token state: see README "What is met, and what is only nearly"):
1. map reviews: stream `rev_idx`, give every review a compact `review_idx` and every
   token its position in its review (rank in file order); spill both as .npy.
2. explode: workers stream disjoint token ranges of `z_idx`/`z_val`, drop zero slots,
   sort each chunk by feature and append its (token_pos, value, review_idx) to one
   spill file per feature bucket; they also tokenize the chunk's reviews, write the
   `tokens` table and rank each review's features (`review_top_features`).
   Then `reviews.parquet` is written and the NPZ dropped.
3. merge: workers take buckets; each bucket's rows are gathered feature by feature
   from the spills (each chunk's slice is already in token order, so no sort is
   needed) and written as sorted Parquet, while feature statistics, the top
   examples and per-star-rating counts are accumulated on the way.
4. finish: features/top_examples/feature_stars Parquet (the top examples' positions
   and character offsets read from the token arrays in one pass), `warehouse.duckdb`,
   `manifest.json`, a verification, and an atomic swap into place.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from etl.build.errors import BuildError, OutputError, explain_failure, output_error  # noqa: F401 (re-exported)
from etl.build.files import (
    NpyWriter,
    append,
    file_entry,
    finished_file,
    gather_npy,
    open_texts,
    pwrite_all,
    raise_open_file_limit,
    read_ranges,
    texts_at,
    texts_to_arrow,
)
from etl.build.kernels import (
    combine_pairs,
    empty_review_top,
    excl_cumsum,
    explode_chunk,
    gather_index,
    offsets_in_reviews,
    rank_review_features,
    run_segments,
    screen_chunk,
    sub_blocks,
    top_candidates,
    top_per_feature,
    top_per_group,
)
from etl.build.parallel import Counter, release_free_memory, run_parallel, submit_held, wait_for
from etl.build.schemas import (  # noqa: F401 (re-exported)
    ALIGNMENTS,
    BUCKET_WIDTH,
    DEFAULT_AFTER,
    DEFAULT_BEFORE,
    REVIEW_TOP,
    SCHEMA_VERSION,
    TOP_MATERIALIZED,
    parquet_writer,
    row_group,
    schema,
    write_parquet,
)
from etl.inputs import InputError, decode_ids, load_npz, open_h5, scan_h5, validate_chunk
from etl.progress import Progress
from etl.publish import current_name, new_snapshot, prune, publish
from etl.review_stats import bucket_review_stats, group_codes, pair_stats, review_stats_table
from etl.staging import (
    LockBusy,
    acquire_build_lock,
    fingerprint,
    open_memmap_reserved,
    release_lock,
    signals_held,
)
from etl.tokenizer import load_tokenizer
from warehouse.snapshots import CURRENT, SNAPSHOTS, is_legacy

DEFAULT_LATENTS = 24_576
DEFAULT_CHUNK_TOKENS = 131_072
# A merge worker's memory is set by these caps, not by the bucket: small enough that a
# 5M-token build's buckets reach them too, so its peak is the full size's (a merge
# worker sampled 0.75 GB at 47M tokens against 0.3 at 5M with 4x larger caps).
_MERGE_BLOCK_ROWS = 1 << 20
_MERGE_WINDOW_ROWS = 1 << 21  # spill rows read at once by a merge worker (24 MB)
_PAIR_GROUP = 1 << 19  # (feature, review) pairs per batch of the review statistics
_SPILL_COLUMNS = 3  # token_pos, value, review_idx: 4 bytes each, per run and bucket
_GATHER_WINDOW_BYTES = 1 << 24  # of a token array, read at once for the top examples
_SORT_BLOCK_TOKENS = 1 << 15


@dataclass
class BuildSummary:
    warehouse: str
    n_tokens: int = 0
    n_activations: int = 0
    zero_slots_dropped: int = 0
    n_reviews: int = 0
    n_reviews_with_tokens: int = 0
    h5_reviews_missing_from_npz: int = 0
    npz_reviews_without_tokens: int = 0
    alignment: dict[str, int] = field(default_factory=dict)
    n_latents: int = 0
    n_latents_inferred: bool = False
    k: int = 0
    # Counted, not fatal (README "Validation, warnings and exit codes"): reviews whose
    # tokens cannot be aligned to their text, and H5 reviews the NPZ lacks.
    warnings: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    rows_per_second: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)


# Shared, read-only state for worker processes (inherited through fork).
_STATE: dict = {}


# --------------------------------------------------------------------------- phase 1


def _map_reviews(f, npz_ids: np.ndarray, work: Path, chunk: int, progress: bool):
    """Assign review_idx to every token and its position within its review."""
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
    review_of = NpyWriter(open_memmap_reserved(work / "token_review.npy", np.int32, (n,)))
    position = NpyWriter(open_memmap_reserved(work / "token_position.npy", np.int32, (n,)))
    # Each token's character offsets and those of its default context window, filled by
    # the explode workers (see _write_tokens), read for the top examples.
    open_memmap_reserved(work / "token_bounds.npy", np.int32, (n, 4)).flush()
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
    return np.array(ids, dtype=object), counts[:r], first[:r], last[:r]


# --------------------------------------------------------------------------- phase 2


def _explode_range(worker: int, a: int, b: int) -> dict:
    import h5py

    st = _STATE
    n_latents, chunk, work = st["n_latents"], st["chunk"], st["work"]
    tok = load_tokenizer(st["tokenizer"])
    vocab = pa.array(tok.vocab_strings, pa.string())
    n_tokens_of, n_npz = st["n_tokens_of"], st["n_npz"]
    bucket_edges = np.arange(0, n_latents + BUCKET_WIDTH, BUCKET_WIDTH).clip(max=n_latents)
    n_buckets = len(bucket_edges) - 1

    raise_open_file_limit(n_buckets + 16)
    spills: dict[int, int] = {}  # bucket -> file descriptor
    # Each run's feature counts go to a file as they come, laid out by bucket at the end
    # (`_runs_by_bucket`): in a list they would grow with the input (98 KB a run, 70 MB
    # per worker at 47M tokens).
    runs_path = _runs_path(work, worker, by_bucket=False)
    runs_fd = os.open(runs_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o666)
    n_runs = 0
    feature_rows = np.zeros(n_latents, np.int64)
    text_lens: list[tuple[np.ndarray, np.ndarray]] = []
    partials: list[tuple] = []
    zeros = rows = 0
    writer = parquet_writer("tokens", st["staging"] / "tokens" / f"part-{worker:04d}.parquet")
    top_writer = parquet_writer(
        "review_top_features", st["staging"] / "review_top_features" / f"part-{worker:04d}.parquet"
    )
    bounds_out = NpyWriter(np.load(work / "token_bounds.npy", mmap_mode="r"))
    h5 = st["h5"]
    try:
        with h5py.File(h5, "r") as f:
            z_idx, z_val = f["z_idx"], f["z_val"]
            k = z_idx.shape[1]
            rows_max = max(0, min(chunk, b - a))
            idx_buf = np.empty((rows_max, k), z_idx.dtype)
            val_buf = np.empty((rows_max, k), z_val.dtype)
            for s in range(a, b, chunk):
                e = min(s + chunk, b)
                m = e - s
                idx, val = idx_buf[:m], val_buf[:m]
                if m:
                    z_idx.read_direct(idx, np.s_[s:e], np.s_[0:m])
                    z_val.read_direct(val, np.s_[s:e], np.s_[0:m])
                val = val.astype(np.float32, copy=False)
                if screen_chunk(idx, val, n_latents):
                    validate_chunk(h5, s, idx, val, n_latents)
                # The token arrays are mapped per chunk: pages a mapping has touched
                # count in the worker's RSS until it is dropped (380 MB at 47M tokens).
                reviews = np.array(np.load(work / "token_review.npy", mmap_mode="r")[s:e])
                top_parts = []
                # Sorting is cache-bound: sub-blocks of ~32K tokens sort ~2x faster per
                # slot than 128K-token chunks.  Each sub-block is a run of the spill files;
                # cuts fall on review boundaries so reviews stay whole for the ranking.
                for lo_t, hi_t in sub_blocks(reviews, _SORT_BLOCK_TOKENS):
                    sub_idx, sub_val = idx[lo_t:hi_t], val[lo_t:hi_t]
                    counts, fs, tl, v, dup = explode_chunk(sub_idx, sub_val, n_latents)
                    if dup:
                        validate_chunk(h5, s + lo_t, sub_idx, sub_val, n_latents)
                    n_active = len(v)
                    zeros += sub_idx.size - n_active
                    rows += n_active
                    append(runs_fd, counts.astype(np.int32))
                    n_runs += 1
                    feature_rows += counts
                    tp = np.empty(len(tl), np.uint32)
                    np.add(tl, s + lo_t, out=tp, casting="unsafe")
                    # The merge writes review_idx beside token_pos: taken here from the
                    # sub-block's 32K reviews (cache-resident), it costs the merge a
                    # sequential read instead of a random gather from a token-sized map.
                    rvs = np.take(reviews[lo_t:hi_t], tl)
                    ends = np.cumsum(counts)[bucket_edges[1:] - 1]
                    begins = np.append(0, ends[:-1])
                    for bucket in np.flatnonzero(ends > begins).tolist():
                        fd = spills.get(bucket)
                        if fd is None:
                            path = work / f"spill-{worker}-{bucket:05d}.bin"
                            fd = spills[bucket] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
                        lo, hi = begins[bucket], ends[bucket]
                        append(fd, tp[lo:hi], v[lo:hi], rvs[lo:hi])
                    del tp, rvs
                    block = reviews[lo_t:hi_t]
                    ranked = rank_review_features(counts, fs, tl, v, block, n_tokens_of, partials, REVIEW_TOP)
                    top_parts.append(ranked)
                    del fs, tl, v
                top = [np.concatenate(c) for c in zip(*top_parts)] if top_parts else empty_review_top()
                top_writer.write_table(
                    pa.table(
                        {
                            "review_idx": top[0].astype(np.int32),
                            "rank": top[1].astype(np.int32),
                            "feature": top[2].astype(np.int32),
                            "max_value": top[3],
                            "n_tokens_active": top[4],
                        },
                        schema=schema("review_top_features"),
                    ),
                    row_group_size=row_group("review_top_features"),
                )
                # Mapped per chunk, like the token arrays: the text pages this chunk read
                # leave the worker's RSS with the mapping.
                st["texts_ready"].wait()
                _write_tokens(
                    writer,
                    tok,
                    vocab,
                    open_texts(work / "texts.arrow"),
                    n_npz,
                    n_tokens_of,
                    text_lens,
                    s,
                    reviews,
                    np.array(np.load(work / "token_position.npy", mmap_mode="r")[s:e]),
                    bounds_out,
                )
                st["counter"].value += e - s
    finally:
        writer.close()
        top_writer.close()
        for fd in spills.values():
            os.close(fd)
        os.close(runs_fd)
        bounds_out.close()
    if n_runs:
        _runs_by_bucket(work, worker, n_runs, n_latents)
    files = [finished_file(st["staging"], Path(w.where)) for w in (writer, top_writer)]
    if partials:
        part = [np.concatenate(c) for c in zip(*partials)]
    else:
        part = [np.zeros(0, np.int64)] * 2 + [np.zeros(0, np.float32), np.zeros(0, np.int64)]
    np.savez(
        work / f"review-partials-{worker}.npz", review=part[0], feature=part[1], value=part[2], count=part[3]
    )
    return {
        "worker": worker,
        "zeros": zeros,
        "rows": rows,
        "buckets": n_buckets,
        "text_lens": tuple(np.concatenate(c) for c in zip(*text_lens)) if text_lens else None,
        "files": files,
        "runs": n_runs,
        "feature_rows": feature_rows,
    }


def _write_tokens(writer, tok, vocab, texts, n_npz, n_tokens_of, text_lens, s, reviews, pos, bounds_out):
    """The chunk's `tokens` rows; also, into `token_bounds.npy` at the chunk's rows, each
    token's character offsets and those of its default context window (-1 when not
    trusted), from which `_top_examples_table` takes the top examples' contexts."""
    uniq, inv = np.unique(reviews, return_inverse=True)
    has_text = uniq < n_npz
    enc = tok.encode_flat(texts_at(texts, uniq[has_text]))
    lens = np.zeros(len(uniq), np.int64)
    lens[has_text] = enc.lens
    text_lens.append((uniq[has_text], np.asarray(enc.lens, np.int64)))
    # Offsets are only trusted when the H5 tokens are a prefix of the text's tokens.
    n_h5 = n_tokens_of[uniq]
    aligned = has_text & (n_h5 <= lens)
    base = np.zeros(len(uniq), np.int64)
    base[has_text] = excl_cumsum(enc.lens)
    ids, starts, ends = enc.ids, enc.starts, enc.ends
    valid = aligned[inv] & (pos < lens[inv])
    mask = ~valid
    bounds = np.full((len(pos), 4), -1, np.int32)
    if len(ids):
        row = base[inv]
        gi = np.where(valid, row + pos, 0)
        tid, cs, ce = ids[gi], starts[gi], ends[gi]
        # The window: DEFAULT_BEFORE tokens before, DEFAULT_AFTER after, clipped to the
        # review's H5 tokens (a trusted review's are all within its text's).
        lo = np.where(valid, row + np.maximum(pos - DEFAULT_BEFORE, 0), 0)
        hi = np.where(valid, row + np.minimum(pos + DEFAULT_AFTER, n_h5[inv] - 1), 0)
        for j, col in enumerate((starts[lo], cs, ce, ends[hi])):
            np.copyto(bounds[:, j], col, where=valid)
    else:
        tid = cs = ce = np.zeros(len(pos), np.int32)
    bounds_out.write(s, bounds)
    token_id = pa.array(tid, mask=mask)
    token = vocab.take(token_id)
    writer.write_table(
        pa.table(
            {
                "token_pos": np.arange(s, s + len(pos), dtype=np.int64),
                "review_idx": reviews.astype(np.int32),
                "position": pos.astype(np.int32),
                "token_id": token_id,
                "token": token,
                "char_start": pa.array(cs, mask=mask),
                "char_end": pa.array(ce, mask=mask),
            },
            schema=schema("tokens"),
        )
    )


# --------------------------------------------------------------------------- phase 3

def _activation_writer(path: Path) -> pq.ParquetWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    return parquet_writer("activations", path)


_RUNS_AT_ONCE = 64  # runs (98 KB each at 24,576 latents) `_runs_by_bucket` reads at once


def _runs_path(work: Path, worker: int, by_bucket: bool = True) -> Path:
    """A worker's run counts: row-major as the explode appends them, or bucket-major."""
    return work / (f"runs-{worker}-by-bucket.bin" if by_bucket else f"runs-{worker}.bin")


def _runs_by_bucket(work: Path, worker: int, n_runs: int, n_latents: int) -> None:
    """Rewrite a worker's run counts (one row of `n_latents` int32 per run, as the
    explode appends them) bucket by bucket: bucket b's (n_runs, BUCKET_WIDTH) counts
    become one contiguous block, which the merge reads with one pread.

    The merge used to map the row-major file and slice a bucket's columns out of every
    row: each row's page, and the kernel's fault-around with it, stayed in the worker's
    RSS for the whole bucket (~200 MB per merge worker at 47M tokens, 1,444 runs).
    """
    path = _runs_path(work, worker, by_bucket=False)
    n_buckets = -(-n_latents // BUCKET_WIDTH)
    block_bytes = n_runs * BUCKET_WIDTH * 4
    grid = np.zeros((min(n_runs, _RUNS_AT_ONCE), n_buckets * BUCKET_WIDTH), np.int32)
    with open(path, "rb", buffering=0) as rows, open(_runs_path(work, worker), "wb") as out:
        for lo in range(0, n_runs, _RUNS_AT_ONCE):
            m = min(_RUNS_AT_ONCE, n_runs - lo)
            chunk = np.fromfile(rows, np.int32, m * n_latents)
            if len(chunk) != m * n_latents:
                raise OSError(errno.EIO, f"{path}: short read")
            grid[:m, :n_latents] = chunk.reshape(m, n_latents)
            by_bucket = np.ascontiguousarray(grid[:m].reshape(m, n_buckets, BUCKET_WIDTH).transpose(1, 0, 2))
            for b in range(n_buckets):
                pwrite_all(out.fileno(), by_bucket[b], b * block_bytes + lo * BUCKET_WIDTH * 4)
    path.unlink()


def _bucket_counts(work: Path, worker: int, n_runs: int, bucket: int, width: int) -> np.ndarray:
    """A worker's (n_runs, width) rows per run and feature of one bucket."""
    n = n_runs * BUCKET_WIDTH
    path = _runs_path(work, worker)
    with open(path, "rb", buffering=0) as fh:
        counts = np.fromfile(fh, np.int32, n, offset=bucket * n * 4)
    if len(counts) != n:
        raise OSError(errno.EIO, f"{path}: short read")
    return counts.reshape(n_runs, BUCKET_WIDTH)[:, :width].astype(np.int64)


def _spill_blocks(paths, seg_src, seg_at, seg_step, seg_len, columns: int):
    """Blocks of the bucket's segments (at most `_MERGE_BLOCK_ROWS` rows) with their
    data: yields (lo, hi, buffer, offsets) where offsets[j] is where each segment's
    column j starts in the buffer.  A segment's column j starts at
    seg_at + j * seg_step in its spill file.

    The spill is read one window of `_MERGE_WINDOW_ROWS` rows at a time, so a merge
    worker's memory does not grow with a dense bucket (or with the input).  The sources'
    reads share one buffer, so a block is gathered in one pass for all of them.
    """
    rows = np.cumsum(seg_len)
    n = len(seg_len)
    lo = 0
    while lo < n:
        base = rows[lo] - seg_len[lo]
        hi = max(lo + 1, int(np.searchsorted(rows, base + _MERGE_WINDOW_ROWS, "right")))
        w_src, w_len = seg_src[lo:hi], seg_len[lo:hi]
        offsets = np.empty((columns, hi - lo), np.int64)
        buffers, at = [], 0
        for src, path in enumerate(paths):
            sel = np.flatnonzero(w_src == src)
            if not len(sel):
                continue
            starts = seg_at[lo:hi][sel] + np.arange(columns)[:, None] * seg_step[lo:hi][sel]
            buf, where = read_ranges(path, starts.reshape(-1), np.tile(w_len[sel], columns))
            buffers.append(buf)
            offsets[:, sel] = at + where.reshape(columns, len(sel))
            at += len(buf)
        buffer = buffers[0] if len(buffers) == 1 else np.concatenate(buffers)
        del buffers
        w_rows = rows[lo:hi] - base
        block_of = (w_rows - 1) // _MERGE_BLOCK_ROWS
        cuts = np.flatnonzero(np.diff(block_of)) + 1
        for a, b in zip(np.append(0, cuts).tolist(), np.append(cuts, hi - lo).tolist()):
            yield lo + a, lo + b, buffer, offsets[:, a:b]
        del buffer
        lo = hi


def _merge_bucket(bucket: int) -> dict:
    """Write one bucket's rows in (feature, token_pos) order and compute its statistics."""
    st = _STATE
    work, n_latents, workers = st["work"], st["n_latents"], st["workers"]
    n_star = len(st["star_values"])
    f_lo, f_hi = bucket * BUCKET_WIDTH, min((bucket + 1) * BUCKET_WIDTH, n_latents)
    width = f_hi - f_lo

    # A spill file holds, per run (chunk) that had rows of the bucket, the run's
    # token_pos (uint32), then its values (float32), then its review_idx (int32), each
    # in (feature, token) order.
    # One segment per (feature, source, run): a run's rows of one feature, already in
    # token order.  Ordered feature-major, then by source and run, they are the
    # bucket's rows in (feature, token_pos) order: no sort is needed.
    paths, seg_parts = [], []
    for w in range(workers):
        path = work / f"spill-{w}-{bucket:05d}.bin"
        if not st["runs"][w] or not path.exists():
            continue
        counts = _bucket_counts(work, w, st["runs"][w], bucket, width)
        if counts.sum() == 0:
            continue
        fi, ri, at, step, lens = run_segments(counts, _SPILL_COLUMNS)
        src = len(paths)
        paths.append(path)
        seg_parts.append((fi, np.full(len(fi), src), ri, at, step, lens))
    n_active = np.zeros(width, np.int64)
    sums = np.zeros(width, np.float64)
    maxes = np.zeros(width, np.float32)
    result = {"bucket": bucket}
    if not seg_parts:
        result.update(_feature_rows(f_lo, n_active, np.zeros(width, np.int64), maxes, sums))
        result.update(_empty_stars())
        st["counter"].value += 1
        return result
    seg_f, seg_src, seg_run, seg_at, seg_step, seg_len = (np.concatenate(c) for c in zip(*seg_parts))
    order = np.lexsort((seg_run, seg_src, seg_f))
    seg_f, seg_src, seg_at, seg_step, seg_len = (
        seg_f[order],
        seg_src[order],
        seg_at[order],
        seg_step[order],
        seg_len[order],
    )

    writer = _activation_writer(st["staging"] / "activations" / f"bucket={bucket}" / "part-0.parquet")
    pending: list[pa.Table] = []
    pending_rows = 0
    pairs = _BucketPairs(f_lo, width, st)
    top_parts: list[tuple] = []
    blocks = _spill_blocks(paths, seg_src, seg_at, seg_step, seg_len, _SPILL_COLUMNS)
    for lo, hi, buf, (b_tp, b_v, b_rv) in blocks:
        b_f, b_len = seg_f[lo:hi], seg_len[lo:hi]
        total = int(b_len.sum())
        # The segments are in output order: each column is one gather.
        at = gather_index(b_tp, b_len)
        tp = buf[at].astype(np.int64)
        at += np.repeat(b_v - b_tp, b_len)
        v = buf[at].view(np.float32)
        at += np.repeat(b_rv - b_v, b_len)
        rv = buf[at].view(np.int32)
        del at
        f_local = np.repeat(b_f, b_len).astype(np.int32)
        pending.append(
            pa.table(
                {"token_pos": tp, "review_idx": rv, "feature": f_local + f_lo, "value": v},
                schema=schema("activations"),
            )
        )
        pending_rows += total
        if pending_rows >= row_group("activations"):
            writer.write_table(pa.concat_tables(pending), row_group_size=row_group("activations"))
            pending, pending_rows = [], 0

        heads = np.flatnonzero(np.append(True, f_local[1:] != f_local[:-1]))
        fids = f_local[heads]
        n_active[fids] += np.diff(np.append(heads, total))
        sums[fids] += np.add.reduceat(v.astype(np.float64), heads)
        maxes[fids] = np.maximum(maxes[fids], np.maximum.reduceat(v, heads))

        change = np.ones(total, bool)
        change[1:] = (rv[1:] != rv[:-1]) | (f_local[1:] != f_local[:-1])
        rheads = np.flatnonzero(change)
        # The segments are in feature order: the features before the next block's first
        # one are complete (this block's last one may continue in the next).  The last
        # block's are left to `finish`, once the block is freed.
        pairs.add(
            f_local[rheads],
            rv[rheads],
            np.maximum.reduceat(v, rheads),
            np.diff(np.append(rheads, total)),
            int(seg_f[min(hi, len(seg_f) - 1)]),
        )

        # Candidates for the top examples: per feature, rows at or above its k-th value.
        cand = top_candidates(v, heads, np.diff(np.append(heads, total)), TOP_MATERIALIZED)
        top_parts.append((f_local[cand], tp[cand], rv[cand], v[cand]))
        if len(top_parts) > 8:
            top_parts = [top_per_feature(*map(np.concatenate, zip(*top_parts)), TOP_MATERIALIZED)[:4]]
    if pending:
        writer.write_table(pa.concat_tables(pending), row_group_size=row_group("activations"))
    writer.close()
    result["files"] = [finished_file(st["staging"], Path(writer.where))]
    for w in range(workers):
        (work / f"spill-{w}-{bucket:05d}.bin").unlink(missing_ok=True)

    # The last block's arrays (and the window's buffer): not to be held beside the
    # statistics of the last group.
    del buf, b_tp, b_v, b_rv, tp, v, rv, f_local, change, rheads, cand
    result.update(pairs.finish())
    per, sum_max = pairs.per_star, pairs.sum_max
    nz = np.flatnonzero(per)
    tf, ttp, trv, tv, trank = top_per_feature(*map(np.concatenate, zip(*top_parts)), TOP_MATERIALIZED)
    _write_top_part(st, bucket, tf + f_lo, trank, ttp, trv, tv)
    result.update(_feature_rows(f_lo, n_active, pairs.n_reviews, maxes, sums))
    result.update(
        stars_feature=nz // n_star + f_lo,
        stars_value=st["star_values"][nz % n_star],
        stars_n_active=per[nz],
        stars_sum_max=sum_max[nz],
    )
    st["counter"].value += 1
    return result


# A bucket's (feature offset, review_idx, max value, token count) pairs, no entries.
_NO_PAIRS = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def _concat_pairs(parts: list[tuple]) -> tuple:
    return tuple(np.concatenate(col) for col in zip(_NO_PAIRS, *parts))


class _BucketPairs:
    """A bucket's (feature, review) pairs, finalized as the merge's blocks arrive in
    feature order, and their statistics, computed in groups of whole features of at most
    `_PAIR_GROUP` pairs.

    Held at once: the runs of the feature still open (a block's last feature may continue
    in the next) and the pairs of the complete features not yet in a whole group, about
    one block plus max(one feature's pairs, `_PAIR_GROUP`).  Holding all the bucket's
    pairs until its end grew with the reviews: ~600 MB per merge worker at 432K reviews.
    The statistics get the very arrays the whole bucket's pairs would give them (same
    groups, same order, same dtypes), so their float outputs do not change by a bit.
    """

    def __init__(self, f_lo: int, width: int, st: dict) -> None:
        self.f_lo, self.width, self.st = f_lo, width, st
        self.n_star = len(st["star_values"])
        self.open: list[tuple] = []  # runs of the features from `done` on, in arrival order
        self.ready: list[tuple] = []  # pairs of the features [start, done)
        self.start = 0  # the first feature whose statistics are not computed yet
        self.done = 0  # the features before it have all their pairs
        self.n_reviews = np.zeros(width, np.int64)
        self.per_star = np.zeros(width * self.n_star, np.int64)
        self.sum_max = np.zeros(width * self.n_star, np.float64)
        self.parts: list[dict] = []

    def add(self, f: np.ndarray, r: np.ndarray, m: np.ndarray, c: np.ndarray, limit: int) -> None:
        """One block's runs (feature offset, review_idx, max value, token count), in
        (feature, token_pos) order; the features before `limit` are then complete."""
        cut = int(np.searchsorted(f, limit))
        self.open.append((f[:cut], r[:cut], m[:cut], c[:cut]))
        if limit > self.done:
            self._complete(limit)
        self.open.append((f[cut:], r[cut:], m[cut:], c[cut:]))

    def finish(self) -> dict:
        """The statistics of all the bucket's features (arrays of length `width`)."""
        if self.done < self.width:
            self._complete(self.width)
        return {key: np.concatenate([part[key] for part in self.parts]) for key in self.parts[0]}

    def _complete(self, limit: int) -> None:
        """The open runs are all of features before `limit`: merge them into pairs."""
        rf, rr, rm, rc = _concat_pairs(self.open)
        self.open = []
        same_f = rf[1:] == rf[:-1]
        if np.any(same_f & (rr[1:] <= rr[:-1])):
            # A review's tokens were not contiguous (or a run crossed a block boundary):
            # merge its runs per (feature, review).
            rf, rr, rm, rc = combine_pairs(rf, rr, rm, rc)
        self.n_reviews[self.done : limit] = np.bincount(rf - self.done, minlength=limit - self.done)
        self.ready.append((rf, rr, rm, rc))
        self.done = limit
        self._flush()

    def _group_end(self) -> int | None:
        """The end of the group from `start`: the most features within `_PAIR_GROUP` pairs
        (at least one), or None while the features complete so far may all still fit."""
        cum = np.cumsum(self.n_reviews[self.start : self.done])
        fit = int(np.searchsorted(cum, _PAIR_GROUP, "right"))
        if fit == len(cum) and self.done < self.width:
            return None
        return self.start + max(fit, 1)

    def _flush(self) -> None:
        """Compute the statistics of the groups that are whole, and drop their pairs."""
        if self.start == self.done or self._group_end() is None:
            return
        rf, rr, rm, rc = _concat_pairs(self.ready)
        at = 0
        while self.start < self.done and (b := self._group_end()) is not None:
            a = self.start
            n = int(self.n_reviews[a:b].sum())
            self._statistics(a, b, rf[at : at + n], rr[at : at + n], rm[at : at + n], rc[at : at + n])
            at += n
            self.start = b
        # A copy, so the pairs already done are freed now.
        self.ready = [tuple(x[at:].copy() for x in (rf, rr, rm, rc))]

    def _statistics(self, a: int, b: int, rf, rr, rm, rc) -> None:
        """`bucket_review_stats`, `pair_stats` and the per-star counts of the features
        [a, b) from their pairs (`rf`: feature offsets in the bucket, sorted)."""
        st, n_star = self.st, self.n_star
        f = rf - a
        part = bucket_review_stats(f, rr, rm, self.f_lo + a, b - a, st["star_code"], st["star_values"])
        self.per_star[a * n_star : b * n_star] = part.pop("per_star")
        self.sum_max[a * n_star : b * n_star] = part.pop("sum_max")
        part.update(pair_stats(f, rr, rc, b - a, st["groups"]))
        self.parts.append(part)


def _write_top_part(st: dict, bucket: int, tf, trank, ttp, trv, tv) -> None:
    """One bucket's top rows, as five uint32 rows (feature, rank, token_pos, review_idx
    and the value's bits); `_top_examples_table` adds what they need from the token
    arrays in one pass over them (per bucket, the lookups page-faulted ~25K pages of
    arrays mapped afresh: 1.7 of the merge's CPU-seconds at 5M tokens)."""
    part = np.empty((5, len(tf)), np.uint32)
    part[0], part[1], part[2], part[3] = tf, trank, ttp, trv
    part[4] = tv.astype(np.float32, copy=False).view(np.uint32)
    np.save(st["work"] / f"top-{bucket:05d}.npy", part)


def _feature_rows(f_lo, n_active, n_reviews, maxes, sums) -> dict:
    return {
        "feature": np.arange(f_lo, f_lo + len(n_active)),
        "n_active": n_active,
        "n_reviews": n_reviews,
        "max_value": maxes,
        "sum_value": sums,
    }


def _empty_stars() -> dict:
    z = np.zeros(0, np.int64)
    return {
        "stars_feature": z,
        "stars_value": z,
        "stars_n_active": z,
        "stars_sum_max": z.astype(np.float64),
    }


def _top_examples_table(work: Path, n_buckets: int, star_code, star_values) -> tuple[pa.Table, list[int]]:
    """The rows of `top_examples` from the merge's per-bucket top rows, with each row's
    position, stars and the character offsets of the token and of its default window,
    from which the `top_examples` view cuts the contexts top_k_contexts returns; and the
    rows of each bucket."""
    parts = [work / f"top-{bucket:05d}.npy" for bucket in range(n_buckets)]
    parts = [np.load(p) for p in parts if p.exists()]
    top = np.concatenate(parts, axis=1) if parts else np.zeros((5, 0), np.uint32)
    sizes = [p.shape[1] for p in parts]
    del parts
    feature, rank, rv = (top[j].view(np.int32) for j in (0, 1, 3))
    tp, value = top[2].astype(np.int64), top[4].view(np.float32)
    by_tp = np.argsort(tp)
    tp_sorted = tp[by_tp]
    pos = np.empty(len(tp), np.int32)
    pos[by_tp] = gather_npy(work / "token_position.npy", tp_sorted, _GATHER_WINDOW_BYTES)
    bounds = np.empty((len(tp), 4), np.int32)
    bounds[by_tp] = gather_npy(work / "token_bounds.npy", tp_sorted, _GATHER_WINDOW_BYTES)
    del tp_sorted, by_tp
    lo, cs, ce, hi = bounds.T
    untrusted = cs < 0
    code = star_code[rv]
    stars = np.where(code >= 0, star_values[np.maximum(code, 0)], 0).astype(np.int32)

    def offsets(x: np.ndarray) -> pa.Array:
        return pa.array(x.astype(np.int32), pa.int32(), mask=untrusted)

    table = pa.table(
        {
            "feature": feature,
            "rank": rank,
            "token_pos": tp,
            "review_idx": rv,
            "value": value,
            "position": pos,
            "stars": pa.array(stars, pa.int32(), mask=code < 0),
            "char_start": offsets(cs),
            "char_end": offsets(ce),
            "context_start": offsets(lo),
            "context_end": offsets(hi),
        },
        schema=schema("top_examples"),
    )
    return table, sizes


def _write_top_examples(staging: Path, table: pa.Table, sizes: list[int]) -> None:
    """`top_examples.parquet`: one row group per bucket (`sizes`: its rows)."""
    writer = parquet_writer("top_examples", staging / "top_examples.parquet")
    try:
        at = 0
        for size in sizes:
            writer.write_table(table.slice(at, size), row_group_size=max(size, 1))
            at += size
    finally:
        writer.close()


def _write_review_top_partials(staging: Path, work: Path, workers: int, n_reviews: int) -> None:
    """Reviews split across chunks or workers: merge their per-run feature pairs (max of
    maxima, sum of counts) and rank them like the complete reviews."""
    parts = [np.load(work / f"review-partials-{w}.npz") for w in range(workers)]
    r = np.concatenate([p["review"] for p in parts]).astype(np.int64)
    f = np.concatenate([p["feature"] for p in parts]).astype(np.int64)
    v = np.concatenate([p["value"] for p in parts]).astype(np.float32)
    c = np.concatenate([p["count"] for p in parts]).astype(np.int64)
    if len(r):
        r, f, v, c = combine_pairs(r, f, v, c)
    g, rank, tf, tv, tc = top_per_group(r, f, v, c, max(n_reviews, 1), REVIEW_TOP)
    table = pa.table(
        {
            "review_idx": g.astype(np.int32),
            "rank": rank.astype(np.int32),
            "feature": tf.astype(np.int32),
            "max_value": tv.astype(np.float32),
            "n_tokens_active": tc.astype(np.int64),
        },
        schema=schema("review_top_features/part-split"),
    )
    split = staging / "review_top_features" / "part-split.parquet"
    write_parquet("review_top_features/part-split", table, split)


# --------------------------------------------------------------------------- orchestration


def build_warehouse(
    h5: Path,
    npz: Path,
    warehouse: Path,
    tokenizer: str = "gpt2",
    workers: int = 1,
    replace: bool = False,
    n_latents: int = DEFAULT_LATENTS,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    progress: bool = False,
    infer_latents: bool = False,
) -> BuildSummary:
    """Build a warehouse from an activations H5 and a metadata NPZ, atomically.

    Inputs are checked before anything is written (`etl.inputs`); values are checked
    chunk by chunk as they stream into a new snapshot (`warehouse.snapshots`), which
    is verified and then published with one rename (`etl.publish`); any failure
    removes it, so readers only ever see the previous snapshot or the new, verified
    one, and a reader that opened the previous one keeps it.
    `infer_latents` takes `n_latents` = max feature index + 1 from a first full pass
    over the H5 (which also checks every value before anything is written).
    """
    from warehouse.db import finish_database, load_top_examples, start_database, verify_warehouse

    started = time.perf_counter()
    h5, npz, target = Path(h5), Path(npz), Path(warehouse).absolute()
    _check_target(target, replace)
    if not infer_latents and n_latents <= 0:
        raise BuildError(f"--latents must be positive, got {n_latents}")
    if chunk_tokens <= 0:
        raise BuildError(f"--chunk-tokens must be positive, got {chunk_tokens}")
    workers = max(1, int(workers))

    # Validation before anything is written.
    meta = load_npz(npz)
    load_tokenizer(tokenizer)  # a bad tokenizer fails before any work
    open_h5(h5).close()
    if infer_latents:
        n_latents = scan_h5(h5, None, chunk_tokens)
        if n_latents == 0:
            raise InputError(f"{h5}: z_idx holds no feature index to infer --latents from")

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = acquire_build_lock(target)
    except LockBusy as exc:
        raise BuildError(str(exc)) from None
    except OSError as exc:
        raise output_error(exc, target) from None
    f = None
    staging = None  # the new snapshot, written in place under its final name
    published = False
    summary = BuildSummary(warehouse=str(target), n_latents=n_latents, n_latents_inferred=infer_latents)
    phases: dict[str, float] = {}
    created = not target.exists()
    try:
        _check_target(target, replace)
        f = open_h5(h5)
        previous = current_name(target)
        with signals_held():  # an interrupt must not come between the mkdir and the name
            staging = new_snapshot(target)
        work = staging / "_work"
        for sub in ("_work", "tokens", "activations", "review_top_features"):
            (staging / sub).mkdir(parents=True)
        with f:
            n_tokens, k = f["z_idx"].shape
            t0 = time.perf_counter()
            review_ids, n_tok, first, last = _map_reviews(f, meta["review_ids"], work, chunk_tokens, progress)
            phases["map_reviews"] = time.perf_counter() - t0
        summary.n_tokens, summary.k = int(n_tokens), int(k)
        if n_tokens >= 2**32:
            raise BuildError(f"{h5}: {n_tokens} tokens; spill files hold token_pos as uint32 (< 2**32)")
        n_npz = len(meta["review_ids"])
        n_all = len(review_ids)

        stars = meta["stars"]
        star_values = np.unique(stars)
        star_code = np.full(n_all, -1, np.int64)
        star_code[:n_npz] = np.searchsorted(star_values, stars)
        star_code[n_tok == 0] = -1

        groups = {
            "business": group_codes(meta["business_ids"], n_all, n_tok > 0),
            "user": group_codes(meta["user_ids"], n_all, n_tok > 0),
        }
        # The ids move into Arrow arrays before the workers fork (a forked child's RSS
        # counts every page of its parent: as Python str objects, 130 MB at full size,
        # 35 MB as Arrow strings), the texts into a memory-mapped Arrow file after: this
        # process converts them while the workers explode their first chunk, and each
        # worker waits for `texts_ready` before it reads one (0.3 s of the build's serial
        # start at 5M tokens, ~3 s at 47M).
        for key in ("review_ids", "user_ids", "business_ids"):
            meta[key] = pa.array(meta[key].tolist(), pa.string())
        review_ids = pa.array(review_ids.tolist(), pa.string())
        release_free_memory()  # also the temporaries of group_codes
        counter = Counter(shared=workers > 1)
        _STATE.clear()
        _STATE.update(
            h5=h5.absolute(),
            work=work,
            staging=staging,
            n_latents=n_latents,
            chunk=chunk_tokens,
            tokenizer=tokenizer,
            n_tokens_of=n_tok,
            n_npz=n_npz,
            star_code=star_code,
            star_values=star_values,
            groups=groups,
            workers=workers,
            counter=counter,
            texts_ready=multiprocessing.get_context("fork").Event(),
        )
        npz_texts = [meta.pop("texts")]

        def convert_texts() -> None:
            texts_to_arrow(npz_texts.pop(), work / "texts.arrow")
            _STATE["texts_ready"].set()
            release_free_memory()

        t0 = time.perf_counter()
        bounds = np.linspace(0, n_tokens, workers + 1).astype(np.int64)
        ranges = [(w, int(bounds[w]), int(bounds[w + 1])) for w in range(workers)]
        bar = Progress("explode", n_tokens, progress)
        results = run_parallel(_explode_range, ranges, workers, bar, counter, started=convert_texts)
        bar.close()
        phases["explode"] = time.perf_counter() - t0
        summary.zero_slots_dropped = sum(r["zeros"] for r in results)
        summary.n_activations = sum(r["rows"] for r in results)
        text_lens = np.full(n_all, -1, np.int64)
        for r in results:
            if r["text_lens"] is not None:
                text_lens[r["text_lens"][0]] = r["text_lens"][1]
        _STATE["runs"] = [r["runs"] for r in sorted(results, key=lambda r: r["worker"])]

        t0 = time.perf_counter()
        # Texts of token-less NPZ reviews are tokenized too, so n_text_tokens is complete.
        # (Mapped for this only: a take touches the pages of whole 64K-text chunks, which
        # stay in this process's RSS while the mapping lives: 190 MB at full size.)
        missing_len = np.flatnonzero(text_lens[:n_npz] < 0)
        if len(missing_len):
            texts = texts_at(open_texts(work / "texts.arrow"), missing_len)
            text_lens[missing_len] = load_tokenizer(tokenizer).count_tokens(texts)
        alignment = _alignment(n_tok, text_lens, n_npz)
        _write_reviews(staging, meta, work, review_ids, n_tok, first, last, text_lens, alignment)
        names, counts = np.unique(alignment, return_counts=True)
        summary.alignment = {str(a): int(c) for a, c in zip(names, counts)}
        # The merge needs none of the NPZ, nor these per-review arrays (a forked worker's
        # RSS counts every page of this process).
        del meta, review_ids, first, last, text_lens, alignment
        for r in results:
            r["text_lens"] = None
        release_free_memory()
        phases["reviews"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        n_buckets = -(-n_latents // BUCKET_WIDTH)
        counter.value = 0
        bar = Progress("merge", n_buckets, progress, unit="buckets")
        # Largest buckets first: the pool hands out one bucket at a time, so the last
        # ones to finish are small and neither worker waits long for the other.
        feature_rows = sum(r["feature_rows"] for r in results)
        bucket_rows = np.add.reduceat(feature_rows, np.arange(0, n_latents, BUCKET_WIDTH))
        by_size = np.argsort(-bucket_rows, kind="stable").tolist()
        # DuckDB copies the reviews (its own thread, no GIL), and then the reviews split
        # across chunks get their top features, while the workers merge, in this
        # otherwise idle process: 0.5 s of the build's serial end at 5M tokens, 3 s
        # at 47M, and its memory (~0.15 GB at 47M, warehouse.db._REVIEWS_CONFIG) no
        # longer adds to the top examples' at the end.  Started once the pool has forked its workers: a fork
        # beside a running thread could copy a lock it holds.
        with ThreadPoolExecutor(1) as db_thread:
            database: list = []
            try:
                merged = run_parallel(
                    _merge_bucket,
                    [(b,) for b in by_size],
                    workers,
                    bar,
                    counter,
                    started=lambda: submit_held(
                        db_thread,
                        database,
                        (start_database, staging, staging),
                        # Its memory (the split reviews' pairs: ~100 MB at full size)
                        # then comes and goes while this process is light.
                        (_write_review_top_partials, staging, work, workers, n_all),
                    ),
                )
                bar.close()
                phases["merge"] = time.perf_counter() - t0

                t0 = time.perf_counter()
                top, top_sizes = _top_examples_table(work, n_buckets, star_code, star_values)
                # DuckDB copies the top examples (after the reviews: one thread) while
                # this thread writes the Parquet files the views need.
                submit_held(db_thread, database, (load_top_examples, staging, staging, top))
                _write_top_examples(staging, top, top_sizes)
                _write_feature_tables(staging, merged, n_tokens, int((n_tok > 0).sum()))
                if not any((staging / "activations").glob("*/*.parquet")):
                    # Not one active slot: an empty file keeps the activations view's glob valid.
                    _activation_writer(staging / "activations" / "bucket=0" / "part-0.parquet").close()
            except BaseException:
                # Every job must be over before the staging directory is removed (a
                # DuckDB thread still writing would leave files, or an empty directory
                # once it drops its WAL), including one whose future an interrupt kept
                # from this list.
                wait_for(db_thread)
                raise
        for job in database:
            job.result()
        del top
        finish_database(staging, staging)
        shutil.rmtree(work)
        summary.n_reviews = n_all
        summary.n_reviews_with_tokens = int((n_tok > 0).sum())
        summary.h5_reviews_missing_from_npz = n_all - n_npz
        summary.npz_reviews_without_tokens = int((n_tok[:n_npz] == 0).sum())
        summary.warnings = _warnings(summary)
        phases["finish"] = time.perf_counter() - t0
        summary.phase_seconds = {k: round(v, 3) for k, v in phases.items()}
        # The manifest records the build's time up to here (verify and swap come after).
        summary.seconds = time.perf_counter() - started
        summary.rows_per_second = summary.n_activations / max(summary.seconds, 1e-9)
        finished = {e["path"]: e for r in results + merged for e in r.get("files", [])}
        _write_manifest(staging, summary, h5, npz, tokenizer, finished, previous)
        verify_warehouse(staging)
        with signals_held():
            publish(target, staging)
            published = True
        # The snapshot just replaced stays for readers that resolved `current` a moment
        # ago; older ones go unless a connection has them open (etl.publish).
        try:
            prune(target, keep={staging.name} | ({previous} if previous else set()))
        except OSError:
            pass  # the next build or `saewh vacuum` removes them
    except BaseException as exc:
        with signals_held():
            if staging is not None and not published:
                shutil.rmtree(staging, ignore_errors=True)
                if created:
                    shutil.rmtree(target, ignore_errors=True)
        if f is not None:
            f.close()
        explain_failure(exc, h5, n_latents, chunk_tokens, target)
        raise
    finally:
        _STATE.clear()
        release_lock(lock)
    summary.seconds = time.perf_counter() - started
    summary.rows_per_second = summary.n_activations / max(summary.seconds, 1e-9)
    return summary


def _warnings(summary: BuildSummary) -> dict[str, int]:
    """The counted problems worth a warning: information the warehouse cannot hold."""
    counts = {
        # More H5 tokens than the text tokenizes to: token columns and contexts are NULL.
        "reviews_unaligned": summary.alignment.get("mismatch", 0),
        # The H5 names a review the NPZ lacks: its metadata and text are NULL.
        "reviews_without_metadata": summary.alignment.get("no_text", 0),
    }
    return {k: v for k, v in counts.items() if v}


def _check_target(target: Path, replace: bool) -> None:
    if "?" in str(target):
        # DuckDB reads `path?options` in a database path: the file would be opened elsewhere.
        raise BuildError(f"{target}: DuckDB cannot open a database whose path holds '?'; choose another path")
    if not target.exists() or _unfinished_first_build(target):
        return
    if not replace:
        raise BuildError(f"{target}: already exists; pass --replace to rebuild it")
    if not ((target / CURRENT).is_symlink() or is_legacy(target)):
        raise BuildError(f"{target}: exists and is not a warehouse; refusing to replace it")


def _unfinished_first_build(target: Path) -> bool:
    """What a first build killed before publishing leaves: snapshots, nothing current."""
    entries = list(target.iterdir()) if target.is_dir() else [None]
    return bool(entries) and not (target / CURRENT).is_symlink() and all(
        p is not None and p.name == SNAPSHOTS and p.is_dir() for p in entries
    )


def _alignment(n_tok: np.ndarray, text_lens: np.ndarray, n_npz: int) -> np.ndarray:
    out = np.empty(len(n_tok), dtype=object)
    has_text = np.arange(len(n_tok)) < n_npz
    out[:] = "mismatch"
    out[has_text & (n_tok == text_lens)] = "exact"
    out[has_text & (n_tok < text_lens)] = "truncated"
    out[~has_text] = "no_text"
    out[n_tok == 0] = "no_tokens"
    return out


def _write_reviews(staging, meta, work, review_ids, n_tok, first, last, text_lens, alignment):
    """`reviews.parquet`, a row group at a time: the texts (memory-mapped) are cast to
    `string` and their pages mapped one row group at a time, so neither a second copy
    of them nor all their pages (190 MB at full size) are in the main process at once."""
    n_npz, n_all = len(meta["review_ids"]), len(review_ids)
    extra = n_all - n_npz

    def padded(arr, typ: pa.DataType) -> pa.Array:
        return pa.concat_arrays([pa.array(arr, typ), pa.nulls(extra, typ)])

    has = n_tok > 0
    table = pa.table(
        {
            "review_idx": np.arange(n_all, dtype=np.int32),
            "review_id": review_ids,
            "text": pa.nulls(n_all, pa.string()),  # filled per row group below
            "stars": padded(meta["stars"], pa.int32()),
            "useful": padded(meta["useful"], pa.int32()),
            "user_id": padded(meta["user_ids"], pa.string()),
            "business_id": padded(meta["business_ids"], pa.string()),
            "first_token_pos": pa.array(first, pa.int64(), mask=~has),
            "last_token_pos": pa.array(last, pa.int64(), mask=~has),
            "n_tokens": n_tok.astype(np.int32),
            "n_text_tokens": pa.array(text_lens.astype(np.int32), mask=text_lens < 0),
            "alignment": pa.array(alignment.tolist(), pa.string()),
            "in_npz": np.arange(n_all) < n_npz,
            "contiguous": has & (last - first + 1 == n_tok),
        },
        schema=schema("reviews"),
    )
    text_at = table.schema.get_field_index("text")
    step = row_group("reviews")
    with parquet_writer("reviews", staging / "reviews.parquet") as writer:
        for at in range(0, n_all, step):
            texts = open_texts(work / "texts.arrow")
            part = texts.slice(at, max(0, min(step, n_npz - at)))
            text = pa.chunked_array(
                part.cast(pa.string()).chunks + [pa.nulls(min(step, n_all - at) - len(part), pa.string())],
                pa.string(),
            )
            writer.write_table(table.slice(at, step).set_column(text_at, "text", text), row_group_size=step)
            del texts, part, text


def _write_feature_tables(staging: Path, merged: list[dict], n_tokens: int, n_rev: int) -> None:
    merged = sorted(merged, key=lambda m: m["bucket"])

    def col(name: str) -> np.ndarray:
        return np.concatenate([m[name] for m in merged])

    n_active = col("n_active")
    sums = col("sum_value")
    dead = n_active == 0
    features = pa.table(
        {
            "feature": col("feature").astype(np.int32),
            "n_active": n_active,
            "n_reviews": col("n_reviews").astype(np.int64),
            "density": n_active / max(n_tokens, 1),
            "review_density": col("n_reviews") / max(n_rev, 1),
            "max_value": pa.array(col("max_value"), pa.float32(), mask=dead),
            "mean_value": pa.array(sums / np.maximum(n_active, 1), pa.float64(), mask=dead),
            "sum_value": sums,
        },
        schema=schema("features"),
    )
    write_parquet("features", features, staging / "features.parquet")
    stars = pa.table(
        {
            "feature": col("stars_feature").astype(np.int32),
            "stars": col("stars_value").astype(np.int32),
            "n_active_reviews": col("stars_n_active").astype(np.int64),
            "sum_max_value": col("stars_sum_max").astype(np.float64),
        },
        schema=schema("feature_stars"),
    )
    write_parquet("feature_stars", stars, staging / "feature_stars.parquet")
    # (reads reviews.parquet, written before the merge)
    review_stats = review_stats_table(staging, merged)
    write_parquet("feature_review_stats", review_stats, staging / "feature_review_stats.parquet")


def _write_manifest(
    staging: Path,
    summary: BuildSummary,
    h5: Path,
    npz: Path,
    tokenizer: str,
    finished: dict[str, dict],
    previous: str | None = None,
):
    """`manifest.json`; `finished` holds the entries the workers made for their files."""
    import duckdb
    import h5py

    tables = {}
    for name in ("activations", "tokens", "review_top_features"):
        files = sorted((staging / name).rglob("*.parquet"))
        tables[name] = [finished.get(str(p.relative_to(staging))) or file_entry(staging, p) for p in files]
    for name in ("reviews", "features", "top_examples", "feature_stars", "feature_review_stats"):
        tables[name] = [file_entry(staging, staging / f"{name}.parquet")]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "snapshot": staging.name,
        "previous": previous,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": {"h5": fingerprint(h5), "npz": fingerprint(npz)},
        "sae": {"n_latents": summary.n_latents, "k": summary.k},
        "tokenizer": tokenizer,
        "layout": {"bucket_width": BUCKET_WIDTH, "top_materialized": TOP_MATERIALIZED},
        "versions": {
            "sae_warehouse": _own_version(),
            "duckdb": duckdb.__version__,
            "pyarrow": pa.__version__,
            "h5py": h5py.__version__,
            "numpy": np.__version__,
        },
        "summary": asdict(summary),
        "files": tables,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sae-warehouse")
    except PackageNotFoundError:
        return "source"


