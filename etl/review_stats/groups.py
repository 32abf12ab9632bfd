"""Per feature, its concentration across businesses and users, and the shape of its activity inside reviews.
"""

from __future__ import annotations

import numpy as np

from etl.review_stats.stars import TOP_GROUPS, _heads


def _codes(values: list) -> np.ndarray:
    """Dense integer codes of string ids; None (a review the NPZ lacks) is -1."""
    present = np.array([x is not None for x in values], bool)
    out = np.full(len(values), -1, np.int64)
    if present.any():
        ids = np.array([x for x in values if x is not None], dtype=str)
        out[present] = np.unique(ids, return_inverse=True)[1]
    return out


def _sorted_pairs(high: np.ndarray, low: np.ndarray, low_bits: int, n_high: int) -> np.ndarray:
    """The keys (high << low_bits) | low, sorted, for 0 <= high < n_high: uint32 when
    they fit, which sorts about twice as fast as uint64 (SIMD either way)."""
    dtype = np.uint32 if int(n_high).bit_length() + low_bits <= 32 else np.uint64
    key = high.astype(dtype)
    key <<= dtype(low_bits)
    key |= low.astype(dtype, copy=False)
    key.sort()
    return key


def group_concentration(
    feature: np.ndarray, group: np.ndarray, n_features: int, n_groups: int, top: int = TOP_GROUPS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per feature: distinct groups, share of the `top` largest groups, Gini over n_groups.

    `feature` (0-based, < n_features) and `group` (>= 0) name one active review each.
    The Gini index is over all `n_groups` groups, zeros included:
    G = 2 * sum_i i * x_(i) / (n * sum x) - (n + 1) / n with x sorted ascending, i from 1.
    """
    n_distinct = np.zeros(n_features, np.int64)
    share = np.full(n_features, np.nan)
    gini = np.full(n_features, np.nan)
    if len(feature) == 0 or n_groups == 0:
        return n_distinct, share, gini
    # Reviews per (feature, group), in (feature, group) order.
    bins = n_features * n_groups
    if bins <= 2 * len(feature):
        # Few groups (businesses, say): counting beats sorting.
        per_bin = np.bincount(feature.astype(np.int64) * n_groups + group, minlength=bins)
        distinct = np.flatnonzero(per_bin)
        cnt = per_bin[distinct]
        pair_feature = distinct // n_groups
    else:
        g_bits = int(n_groups - 1).bit_length()
        key = _sorted_pairs(feature, group, g_bits, n_features)
        heads = _heads(key)
        cnt = np.diff(np.append(heads, len(key)))
        pair_feature = key[heads] >> key.dtype.type(g_bits)
    # By feature, then count ascending: one sort of packed (feature, count) keys.
    c_bits = int(cnt.max()).bit_length()
    packed = _sorted_pairs(pair_feature, cnt, c_bits, n_features)
    cnt = (packed & packed.dtype.type((1 << c_bits) - 1)).astype(np.int64)
    feature_keys = np.arange(n_features + 1, dtype=packed.dtype) << packed.dtype.type(c_bits)
    bounds = np.searchsorted(packed, feature_keys)
    n_distinct[:] = np.diff(bounds)
    fid = np.flatnonzero(n_distinct)
    start, end, k = bounds[:-1][fid], bounds[1:][fid], n_distinct[fid]
    # Integer sums (exact, so the floats below are what the float sums were): the
    # total, sum j * x_(j) with j = position - start + 1, and the `top` largest.
    totals = np.add.reduceat(cnt, start)
    weighted = np.add.reduceat(np.arange(len(cnt)) * cnt, start) - (start - 1) * totals
    # With n_groups - k zeros before the feature's k counts, x_(j) has i = n_groups - k + j.
    weighted += (n_groups - k) * totals
    top_start = np.clip(end - top, start, end)
    top_sum = np.add.reduceat(np.append(cnt, 0), np.stack([top_start, end], 1).ravel())[::2]
    top_sum[top_start == end] = 0  # top <= 0
    totals = totals.astype(np.float64)
    gini[fid] = 2.0 * weighted.astype(np.float64) / (n_groups * totals) - (n_groups + 1.0) / n_groups
    share[fid] = top_sum / totals
    return n_distinct, share, gini


_PAIR_FIELDS = (
    "n_single_token_reviews",
    "max_tokens_per_review",
    "n_businesses",
    "top10_business_share",
    "business_gini",
    "n_users",
    "top10_user_share",
    "user_gini",
)


def group_codes(ids: np.ndarray, n_reviews: int, has_tokens: np.ndarray) -> tuple[np.ndarray, int]:
    """Per review_idx, a dense code of its business (or user) id among reviews with tokens.

    `ids` covers the NPZ reviews (the first len(ids) review_idx); reviews only the H5
    names, and reviews without tokens, get -1.  Returns (codes, number of groups).
    """
    values = list(ids.tolist()) + [None] * (n_reviews - len(ids))
    codes = _recode(_codes(values), has_tokens)
    return codes, int(codes.max()) + 1 if len(codes) else 0


def pair_stats(
    rf: np.ndarray, rr: np.ndarray, rc: np.ndarray, width: int, groups: dict
) -> dict[str, np.ndarray]:
    """The per-review columns of one bucket's features (see _PAIR_FIELDS), prefixed `rp_`.

    `rf`, `rr`, `rc`: one entry per (feature offset, review) pair with the number of the
    review's tokens on which the feature is active, sorted by feature; computed by the
    merge, so no second pass over the written activations is needed.  `groups` holds
    `business`/`user` codes per review_idx and their counts (`group_codes`).
    """
    bounds = np.searchsorted(rf, np.arange(width + 1))
    out = {"rp_n_single_token_reviews": np.diff(np.searchsorted(np.flatnonzero(rc == 1), bounds))}
    most = np.zeros(width, np.int64)
    fid = np.flatnonzero(np.diff(bounds))
    if len(fid):
        most[fid] = np.maximum.reduceat(rc, bounds[fid])
    out["rp_max_tokens_per_review"] = most
    rr = rr.astype(np.intp, copy=False)
    for prefix, plural in (("business", "businesses"), ("user", "users")):
        codes, n_groups = groups[prefix]
        f, c = rf, codes[rr]
        ok = c >= 0
        if not ok.all():
            f, c = f[ok], c[ok]
        n_distinct, share, gini = group_concentration(f, c, width, n_groups)
        out[f"rp_n_{plural}"] = n_distinct
        # Active reviews with a group id: the support the chance expectation needs.
        out[f"rp_n_{prefix}_reviews"] = np.bincount(f, minlength=width).astype(np.int64)
        out[f"rp_top10_{prefix}_share"] = share
        out[f"rp_{prefix}_gini"] = gini
    return out


def _recode(codes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Renumber the codes that occur where `keep` holds as 0..n-1; all others -1."""
    out = np.full(len(codes), -1, np.int64)
    sel = keep & (codes >= 0)
    if sel.any():
        _, inv = np.unique(codes[sel], return_inverse=True)
        out[sel] = inv
    return out
