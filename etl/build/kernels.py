"""The build's numpy kernels: pure functions of arrays, no files, no state.

Each phase module calls these on the chunks and blocks it reads; another runner (a
Spark build is planned) can call the same functions on its own partitions.  Inputs
are not modified unless a docstring says so (`rank_review_features` appends to
`partials`).
"""

from __future__ import annotations

import sys

import numpy as np


def excl_cumsum(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Exclusive cumulative sum along `axis` (the first element 0), as int64."""
    c = np.cumsum(a, axis=axis, dtype=np.int64)
    return c - a


def gather_index(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each segment, vectorized."""
    total = int(lens.sum())
    return np.repeat(starts - excl_cumsum(lens), lens) + np.arange(total, dtype=np.int64)


# --------------------------------------------------------------------------- phase 1


def offsets_in_reviews(run_idx: np.ndarray, lens: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Where each run of a chunk starts in its review: `seen[review]` tokens of the same
    review came in earlier chunks, plus those of its earlier runs in this chunk.

    `run_idx` is each run's review, `lens` its tokens.  A review can appear in several
    runs of one chunk: each run is offset by the tokens of the same review before it.
    """
    order = np.argsort(run_idx, kind="stable")
    sorted_runs, sorted_lens = run_idx[order], lens[order]
    csum = excl_cumsum(sorted_lens)
    group_start = np.ones(len(order), bool)
    group_start[1:] = sorted_runs[1:] != sorted_runs[:-1]
    head = np.maximum.accumulate(np.where(group_start, np.arange(len(order)), 0))
    run_offset = np.empty(len(order), np.int64)
    run_offset[order] = seen[sorted_runs] + (csum - csum[head])
    return run_offset


# --------------------------------------------------------------------------- phase 2


def screen_chunk(idx: np.ndarray, val: np.ndarray, n_latents: int) -> bool:
    """False when the chunk is certainly valid; True sends it to `validate_chunk`.

    Four reductions instead of validate_chunk's per-row sort.  NaN fails `min >= 0`,
    +inf fails `isfinite(max)`.  A feature twice in a token is caught after the feature
    sort (`explode_chunk`), a zero slot sends the chunk to `validate_chunk` too.
    """
    if idx.size == 0:
        return False
    vmin = val.min()
    return bool(idx.min() < 0 or idx.max() >= n_latents or not vmin > 0 or not np.isfinite(val.max()))


def explode_chunk(idx: np.ndarray, val: np.ndarray, n_latents: int) -> tuple:
    """A chunk's active slots sorted by feature, stably (token order inside a feature).

    `idx`, `val`: the chunk's (tokens, k) feature indices and float32 values.  Returns
    (counts per feature, sorted features, token offset in the chunk, values, duplicate
    flag).  Zero slots are dropped.  The duplicate flag is exact only when the chunk has
    no zero slot (`validate_chunk` checks those chunks anyway).
    """
    m, k = idx.shape
    feat_dtype = np.uint16 if n_latents <= 1 << 16 else np.int64
    f_bits = max(1, (n_latents - 1).bit_length())
    t_bits = max(1, (m - 1).bit_length())
    if f_bits + t_bits + 32 > 64:
        return explode_chunk_argsort(idx, val, n_latents)
    # One SIMD sort of (feature, token, value bits) replaces a stable argsort and the
    # value gather: the token in the key keeps token order inside a feature, and a
    # token's features are distinct (else the chunk is rejected), so the value bits
    # never decide the order.  Positive float32 values are carried bit for bit.
    key = idx.astype(np.uint64)
    key <<= np.uint64(t_bits + 32)
    key |= (np.arange(m, dtype=np.uint64) << np.uint64(32))[:, None]
    key |= val.view(np.uint32)
    key = key.reshape(-1)
    active = val.reshape(-1) > 0
    if not active.all():
        key = key[active]
    key.sort()
    # The key's 32-bit halves as strided views: (feature, token) high, value low.
    halves = key.view(np.uint32)
    hi = halves[1::2] if sys.byteorder == "little" else halves[0::2]
    v = key.astype(np.uint32).view(np.float32)
    tl = hi & np.uint32((1 << t_bits) - 1)
    fs = (hi >> np.uint32(t_bits)).astype(feat_dtype)
    # Sorted features: counts from the first row of each (searchsorted, not bincount).
    counts = np.diff(np.searchsorted(fs, np.arange(n_latents, dtype=feat_dtype)), append=len(fs))
    # A feature twice in a token is an equal (feature, token) neighbour.
    dup = bool(len(hi)) and bool(np.any(hi[1:] == hi[:-1]))
    return counts, fs, tl, v, dup


def explode_chunk_argsort(idx: np.ndarray, val: np.ndarray, n_latents: int) -> tuple:
    """`explode_chunk` for SAEs too wide to pack (feature, token, value) into 64 bits."""
    m, k = idx.shape
    flat_val = val.reshape(-1)
    feat_dtype = np.uint16 if n_latents <= 1 << 16 else np.int64
    feat = idx.reshape(-1).astype(feat_dtype)
    active = flat_val > 0
    if active.all():
        src = np.argsort(feat, kind="stable")
    else:
        sel = np.flatnonzero(active)
        src = sel[np.argsort(feat[sel], kind="stable")]
        feat = feat[sel]
    counts = np.bincount(feat, minlength=n_latents)
    fs = np.repeat(np.arange(n_latents, dtype=feat_dtype), counts)
    tl = src >> (k.bit_length() - 1) if k & (k - 1) == 0 else src // k
    v = flat_val[src]
    # Inside a feature the tokens ascend: an equal neighbour inside a feature (not across
    # a feature boundary) is a feature twice in a token.
    eq = np.flatnonzero(tl[1:] == tl[:-1]) + 1
    dup = bool(len(eq)) and bool(np.any(fs[eq] == fs[eq - 1]))
    return counts, fs, tl, v, dup


def review_pairs(counts, fs, tl, v, lr_tok, n_runs: int) -> tuple:
    """(feature, review run) pairs of a feature-sorted chunk: max value and slot count.

    `lr_tok` numbers the chunk's runs of one review in token order; inside a feature the
    rows ascend by token, so a pair's rows are contiguous: a pair starts where the run
    changes or a feature starts (known from `counts`, no comparison needed).  Features
    and runs come back in the dtypes of `fs` and `lr_tok` (callers widen what they keep).
    """
    n = len(fs)
    if n == 0:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0, np.float32), z
    # np.take: indexing with a uint32 index array takes a slow path (~3x).
    lr = np.take(lr_tok, tl)
    change = np.empty(n, bool)
    change[0] = True
    np.not_equal(lr[1:], lr[:-1], out=change[1:])
    starts = np.cumsum(counts)[:-1]
    change[starts[starts < n]] = True
    heads = np.flatnonzero(change)
    pm = np.maximum.reduceat(v, heads)
    pc = np.empty(len(heads), np.int64)
    np.subtract(heads[1:], heads[:-1], out=pc[:-1])
    pc[-1] = n - heads[-1]
    return fs[heads], lr[heads], pm, pc


def top_per_group(g, f, v, c, n_groups: int, k: int, prefilter: bool = True, packed: bool = True) -> tuple:
    """Each group's k largest `v` (ties: smaller `f` first) as (g, rank, f, v, c).

    Rows come out by (g, rank), ranks from 1.  With `prefilter`, rows below a sampled
    value threshold are dropped first, except in groups the threshold would leave with
    fewer than k rows: the result is the same, the sort much smaller.
    """
    if len(g) == 0:
        z = np.zeros(0, np.int64)
        return z, z, z, np.zeros(0, np.float32), z
    per = np.bincount(g, minlength=n_groups)
    if prefilter and per.max() > k:
        keep_frac = 2.0 * k * np.count_nonzero(per) / len(g)
        if keep_frac < 0.5:
            sample = v[:: max(1, len(v) // 65536)]
            cut = int((1.0 - keep_frac) * (len(sample) - 1))
            tau = np.partition(sample, cut)[cut]
            cand = v >= tau
            # Candidates are few: gather them by index, not by four full-length masks.
            sel = np.flatnonzero(cand)
            short = np.bincount(g[sel], minlength=n_groups) < np.minimum(per, k)
            if short.any():
                cand |= np.take(short, g)
                sel = np.flatnonzero(cand)
            g, f, v, c = g[sel], f[sel], v[sel], c[sel]
    g_bits = max(1, int(n_groups - 1).bit_length())
    f_bits = max(1, int(f.max()).bit_length()) if len(f) else 1
    if packed and g_bits + 32 + f_bits <= 64:
        # One sort of a packed key: group, then value descending (the bits of a
        # non-negative float32 order like the float), then feature.
        vbits = (~v.view(np.uint32)).astype(np.uint64)
        key = (
            (g.astype(np.uint64) << np.uint64(32 + f_bits))
            | (vbits << np.uint64(f_bits))
            | f.astype(np.uint64)
        )
        order = np.argsort(key)
    else:
        order = np.lexsort((f, -v, g))
    g, f, v, c = g[order], f[order], v[order], c[order]
    head = np.empty(len(g), bool)
    head[0] = True
    np.not_equal(g[1:], g[:-1], out=head[1:])
    starts = np.flatnonzero(head)
    rank = np.arange(len(g)) - np.repeat(starts, np.diff(starts, append=len(g))) + 1
    keep = rank <= k
    return g[keep], rank[keep], f[keep], v[keep], c[keep]


def sub_blocks(reviews: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Cut [0, len(reviews)) into blocks of at most ~`size` tokens at review boundaries
    (a review longer than `size` is cut: its ranking then goes through the partials)."""
    m = len(reviews)
    if m <= size:
        return [(0, m)] if m else []
    starts = np.flatnonzero(np.append(True, reviews[1:] != reviews[:-1]))
    cuts = [0]
    while cuts[-1] + size < m:
        target = cuts[-1] + size
        c = int(starts[np.searchsorted(starts, target, "right") - 1])
        cuts.append(c if c > cuts[-1] else target)
    cuts.append(m)
    return list(zip(cuts[:-1], cuts[1:]))


def empty_review_top() -> list[np.ndarray]:
    """`rank_review_features`' top for no rows."""
    z = np.zeros(0, np.int64)
    return [z, z, z, np.zeros(0, np.float32), z]


def empty_review_active() -> list[np.ndarray]:
    """`rank_review_features`' active pairs for no rows."""
    return [np.zeros(0, np.int64), np.zeros(0, np.int64)]


def rank_review_features(counts, fs, tl, v, reviews, n_tokens_of, partials: list, k: int) -> tuple:
    """Rank the features of the block's whole reviews (the `k` strongest of each); keep
    the other reviews' pairs (cut by a block or chunk boundary, or not contiguous in the
    file) in `partials`, as (review_idx, feature, max value, slot count).

    `counts, fs, tl, v` are `explode_chunk`'s answer for the block, `reviews` its tokens'
    review_idx and `n_tokens_of` every review's token count.
    Returns the top, (review_idx, rank, feature, max_value, n_tokens_active) by review
    and rank, and every feature active in each whole review, (review_idx, feature) by
    review and feature (`review_active_features`).
    """
    m = len(reviews)
    change = np.empty(m, bool)
    if m:
        change[0] = True
        np.not_equal(reviews[1:], reviews[:-1], out=change[1:])
    run_start = np.flatnonzero(change)
    run_review = reviews[run_start].astype(np.int64)
    run_len = np.diff(run_start, append=m)
    complete = run_len == n_tokens_of[run_review]
    lr_tok = (np.cumsum(change) - 1).astype(np.int32)
    pf, plr, pm, pc = review_pairs(counts, fs, tl, v, lr_tok, len(run_start))
    part = np.flatnonzero(~complete[plr]) if not complete.all() else []
    if len(part):
        partials.append((run_review[plr[part]], pf[part].astype(np.int64), pm[part], pc[part]))
    # Groups are ranked independently, so the cut runs are ranked along and dropped
    # afterwards: cheaper than taking them out of every pair array first.
    g, rank, tf, tv, tc = top_per_group(plr, pf, pm, pc, len(run_start), k)
    keep = complete[g]
    if not keep.all():
        g, rank, tf, tv, tc = g[keep], rank[keep], tf[keep], tv[keep], tc[keep]
    return (run_review[g], rank, tf, tv, tc), review_major(plr, pf, complete, run_review)


def review_major(plr: np.ndarray, pf: np.ndarray, complete: np.ndarray, run_review: np.ndarray) -> tuple:
    """The pairs of the complete runs, (review_idx, feature) in (review, feature) order.

    The pairs come feature-major (features ascending, runs ascending within each), so
    a stable sort by run alone orders them: on 16-bit keys numpy's stable sort is a
    radix sort (a block holds far fewer than 65,536 runs): 16 ns a pair on a block of
    520K pairs in 300 runs, against 136 for the same sort of 32-bit keys (timsort) and
    414 for a lexsort of both keys.
    """
    keys = plr.astype(np.uint16) if len(run_review) <= 1 << 16 else plr
    order = np.argsort(keys, kind="stable")
    if not complete.all():
        order = order[complete[plr[order]]]
    return run_review[plr[order]], pf[order]


def combine_pairs(a: np.ndarray, b: np.ndarray, m: np.ndarray, c: np.ndarray) -> tuple:
    """Pairs (a, b) that occur more than once made one: sorted by (a, b), the max of
    their `m` and the sum of their `c` (a review's pairs from several runs)."""
    order = np.lexsort((b, a))
    a, b, m, c = a[order], b[order], m[order], c[order]
    heads = np.flatnonzero(np.append(True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])))
    return a[heads], b[heads], np.maximum.reduceat(m, heads), np.add.reduceat(c, heads)


# --------------------------------------------------------------------------- phase 3


def run_segments(counts: np.ndarray, columns: int) -> tuple:
    """A spill file's segments, one per (feature, run) with rows, from its (runs,
    features) `counts`: (feature, run, where its first column starts, the distance to
    its next column, rows), in (feature, run) order.

    A run's rows are appended as `columns` columns one after the other, each in
    (feature, token) order; positions count 4-byte values.
    """
    n_run = counts.sum(axis=1)
    tp_start = (columns * excl_cumsum(n_run))[:, None] + excl_cumsum(counts, axis=1)
    fi, ri = np.nonzero(counts.T)
    return fi, ri, tp_start[ri, fi], n_run[ri], counts[ri, fi]


def top_candidates(v: np.ndarray, heads: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Indices of the rows at or above their feature's k-th largest value (ties kept),
    for rows sorted by feature whose features start at `heads` with `counts` rows.

    Found feature by feature, as indices: the candidates are few, and a full-length
    mask (and the gather of each row's cut) cost more than the partitions.
    """
    keep = []
    for h, n in zip(heads.tolist(), counts.tolist()):
        if n > k:
            seg = v[h : h + n]
            kth = np.partition(seg, n - k)[n - k]
            keep.append(np.flatnonzero(seg >= kth) + h)
        else:
            keep.append(np.arange(h, h + n))
    return np.concatenate(keep)


def top_per_feature(f, tp, rv, v, k: int) -> tuple:
    """Keep each feature's k strongest rows (value desc, token_pos asc), ranked:
    (feature, token_pos, review_idx, value, rank)."""
    order = np.lexsort((tp, -v, f))
    f, tp, rv, v = f[order], tp[order], rv[order], v[order]
    head = np.ones(len(f), bool)
    head[1:] = f[1:] != f[:-1]
    starts = np.flatnonzero(head)
    rank = np.arange(len(f)) - np.repeat(starts, np.diff(np.append(starts, len(f)))) + 1
    keep = rank <= k
    return f[keep], tp[keep], rv[keep], v[keep], rank[keep]
