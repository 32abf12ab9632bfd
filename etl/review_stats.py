"""Build-time review-level statistics per feature: the table `feature_review_stats`.

Everything is computed inside the merge of each bucket (`etl.build.merge.merge_bucket`),
vectorized (no per-review Python loop), on the arrays the merge already holds: one row
per (feature, review) pair with the review's max activation and its number of active
tokens; `review_stats_table` only assembles the table at the end of the build.

1. `bucket_review_stats`: per feature, how the per-review max activation x separates
   star ratings over the reviews that have tokens and a star rating (x = 0 for a review
   the feature never fires in):
   - AUROC of x for low (stars <= 2) against high (stars >= 4) reviews: the probability
     that a random low review has a larger x than a random high one, ties counted 1/2
     (all inactive reviews are one tied group at 0); > 0.5 means "fires in low reviews".
     Its standard error is DeLong's (placement values, exact with ties).
   - Spearman's correlation of x with the star rating, average ranks for ties.
   - The support: active reviews among low, high and all rated reviews.
   Ranks of the active reviews come from one sort of the bucket's pairs by
   (feature, value); the inactive reviews of a feature are one tied group whose rank is
   known in closed form, and there are only a handful of star values, so every sum
   the statistics need is a bincount over the bucket's pairs.

2. `pair_stats`, with business and user codes per review (`group_codes`, computed
   before the workers fork):
   - the shape of a feature's activity inside reviews (single-token reviews, the most
     active tokens in one review);
   - concentration across businesses and users: the share of the feature's active
     reviews that come from its 10 most frequent businesses (users), and the Gini
     index of active-review counts over all businesses (users) that have reviews with
     tokens (zeros included, so a feature living in one business scores ~1).

The log-odds ratio and the confidence intervals are computed in SQL from these columns
(sql/macros_analysis.sql), so their formulas stay next to the queries that use them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

LOW_STARS_MAX = 2  # "low" reviews: stars <= 2
HIGH_STARS_MIN = 4  # "high" reviews: stars >= 4
TOP_GROUPS = 10  # top_10_*_share

_RATED_FIELDS = (
    "n_rated_active",
    "n_low_active",
    "n_high_active",
    "auroc",
    "auroc_se",
    "spearman",
    "auroc_p",
    "auroc_active",
    "spearman_p",
)


# --------------------------------------------------------------------------- helpers


def _heads(*keys: np.ndarray) -> np.ndarray:
    """Start indices of the runs of equal keys (arrays already sorted by those keys)."""
    n = len(keys[0])
    change = np.zeros(n, bool)
    if n:
        change[0] = True
    for k in keys:
        change[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(change)


def _star_groups(star_code: np.ndarray, star_values: np.ndarray) -> dict:
    """Review-level constants: which star codes are low/high, counts, average star ranks."""
    rated = star_code >= 0
    counts = np.bincount(star_code[rated], minlength=len(star_values)).astype(np.float64)
    n = counts.sum()
    # Average rank of each star value among all rated reviews (ties: the whole group).
    before = np.concatenate(([0.0], np.cumsum(counts)[:-1]))
    star_rank = before + (counts + 1) / 2.0
    values = np.asarray(star_values)
    low = values <= LOW_STARS_MAX
    high = values >= HIGH_STARS_MIN
    c_bits = max(1, (len(values) - 1).bit_length())
    # The low bits of a pair's sort key (`_sorted_keys`): the star code, or all ones for a
    # review without tokens or rating, which sorts such pairs last, to be cut off.
    code_key = np.where(rated, star_code, -1).astype(np.int64).view(np.uint64)
    return {
        "counts": counts,
        "n": n,
        "n_low": counts[low].sum(),
        "n_high": counts[high].sum(),
        "low": low,
        "high": high,
        "centered_star_rank": star_rank - (n + 1) / 2.0,
        "c_bits": c_bits,
        "code_key": code_key,
    }


_GROUPS_CACHE: dict[int, dict] = {}


def _cached_star_groups(star_code: np.ndarray, star_values: np.ndarray) -> dict:
    # One computation per process: every bucket of a build shares the same star_code.
    key = id(star_code)
    got = _GROUPS_CACHE.get(key)
    if got is None or got["_ref"] is not star_code:
        got = _star_groups(star_code, star_values)
        got["_ref"] = star_code
        _GROUPS_CACHE.clear()
        _GROUPS_CACHE[key] = got
    return got


def _sorted_keys(f: np.ndarray, v: np.ndarray, code_key: np.ndarray, c_bits: int) -> np.ndarray:
    """The rated pairs' keys (feature | value bits | star code), sorted.

    Values are positive finite float32 (the build rejects anything else), whose bit
    patterns order like the numbers, so one `np.sort` of the packed keys (SIMD, ~10x
    faster than an argsort and three gathers) orders the pairs by (feature, value, star
    code).  `code_key` is all ones for unrated pairs: their keys sort last and are cut.
    The caller checks that feature, value and code bits fit in 64.
    """
    key = f.astype(np.uint64)
    key <<= np.uint64(32)
    key |= v.astype(np.float32, copy=False).view(np.uint32)
    key <<= np.uint64(c_bits)
    key |= code_key
    key.sort()
    return key[: np.searchsorted(key, np.uint64(np.iinfo(np.uint64).max))]


def _tie_runs(key: np.ndarray, c_bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The elements in runs of equal (feature, value) of length > 1 (rare: float32
    values seldom tie), with the start and (exclusive) end of their runs."""
    tie_next = np.flatnonzero((key[1:] ^ key[:-1]) < np.uint64(1 << c_bits))
    at = np.union1d(tie_next, tie_next + 1)
    # Distinct runs never share a (feature, value), so runs of `at` are its equal keys.
    heads = _heads(key[at] >> np.uint64(c_bits))
    lens = np.diff(np.append(heads, len(at)))
    start = np.repeat(at[heads], lens)
    return at, start, start + np.repeat(lens, lens)


def _fix_ties(twice: np.ndarray, at: np.ndarray, other: np.ndarray, ties: tuple) -> None:
    """`twice[j]` counts the `other` elements before element at[j] twice; for the tied
    elements make it the count before their run plus the count before its end (twice
    the midrank count: ties count 1/2)."""
    tied, start, end = ties
    if len(tied) and len(at):
        j = np.minimum(np.searchsorted(at, tied), len(at) - 1)
        hit = at[j] == tied
        twice[j[hit]] = np.searchsorted(other, start[hit]) + np.searchsorted(other, end[hit])


# --------------------------------------------------------------------------- p-values

_erfc = np.frompyfunc(math.erfc, 1, 1)


def normal_two_sided(z: np.ndarray) -> np.ndarray:
    """2 * P(Z > z) for a standard normal Z, elementwise (NaN stays NaN), capped at 1.

    erfc keeps full relative precision far in the tail (a p of 1e-300 is not 0), so
    very strong features still order by p; scipy is a test-only dependency."""
    z = np.asarray(z, np.float64)
    out = np.full(z.shape, np.nan)
    ok = ~np.isnan(z)
    out[ok] = _erfc(z[ok] / math.sqrt(2.0)).astype(np.float64)
    return np.minimum(out, 1.0)


def mann_whitney_p(u: np.ndarray, m: float, n: float, tie_term: np.ndarray) -> np.ndarray:
    """Two-sided p of Mann-Whitney's U (u = U of the first sample, sizes m and n), normal
    approximation with the tie-corrected variance and a continuity correction, exactly
    as scipy.stats.mannwhitneyu(method="asymptotic").  `tie_term` is sum(t^3 - t) over
    the tie groups of the pooled sample.  NaN where undefined: an empty sample, or every
    value tied (zero variance: there is nothing to test)."""
    u = np.asarray(u, np.float64)
    big = np.maximum(u, m * n - u)
    total = m + n
    with np.errstate(divide="ignore", invalid="ignore"):
        var = m * n / 12.0 * ((total + 1.0) - tie_term / (total * (total - 1.0)))
        z = (big - m * n / 2.0 - 0.5) / np.sqrt(var)
    # Rounding can leave a hair of variance where all values tie: treat as none.
    z[~(var > 1e-9 * m * n) | np.isnan(u)] = np.nan
    return normal_two_sided(z)


def rank_correlation_p(rho: np.ndarray, n: float) -> np.ndarray:
    """Two-sided p of a rank correlation rho over n pairs under independence.

    Under the permutation null the Pearson correlation of two fixed score vectors
    (here the midranks, ties included) has mean 0 and variance exactly 1 / (n - 1),
    whatever the ties; z = rho * sqrt(n - 1) is asymptotically normal (the
    permutation central limit theorem).  For a feature active in a handful of reviews
    the approximation is poor (the statistic is nearly two-valued): see the README on
    minimum support."""
    rho = np.asarray(rho, np.float64)
    if n < 3:
        return np.full(rho.shape, np.nan)
    return normal_two_sided(np.abs(rho) * math.sqrt(n - 1.0))


# --------------------------------------------------------------------------- pass 1


def bucket_review_stats(
    rf: np.ndarray,
    rr: np.ndarray,
    rm: np.ndarray,
    f_lo: int,
    width: int,
    star_code: np.ndarray,
    star_values: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-feature star statistics of one bucket from its (feature, review) pairs.

    `rf` is the feature offset within the bucket, `rr` the review_idx and `rm` the
    review's max activation, one entry per (feature, review) pair; `star_code[rr]` is
    the index of the review's rating in `star_values`, or -1 for a review without
    tokens or rating.  Returns arrays of length `width`, keys prefixed `rs_`, and
    `per_star` / `sum_max`: rated active reviews and the sum of their `rm` per
    (feature, star code), feature-major (width * number of star values).
    """
    g = _cached_star_groups(star_code, star_values)
    c_bits = g["c_bits"]
    if max(1, int(width - 1).bit_length()) + 32 + c_bits > 64:
        # More features than the sort key holds (a build's groups never have): halve,
        # as a feature's statistics depend on its own pairs only.
        half, low = width // 2, rf < width // 2
        parts = [
            bucket_review_stats(rf[sel] - off, rr[sel], rm[sel], f_lo + off, w, star_code, star_values)
            for sel, off, w in ((low, 0, half), (~low, half, width - half))
        ]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n, m_low, n_high = g["n"], g["n_low"], g["n_high"]
    counts, ry = g["counts"], g["centered_star_rank"]
    n_star = len(counts)
    key = _sorted_keys(rf, rm, g["code_key"][rr.astype(np.intp, copy=False)], c_bits)
    total = len(key)
    code = (key & np.uint64((1 << c_bits) - 1)).view(np.int64)
    # Each feature's pairs are one slice of the sorted keys, [first, first + a_all).
    f_bounds = np.searchsorted(key, np.arange(width + 1, dtype=np.uint64) << np.uint64(32 + c_bits))
    first, a_all = f_bounds[:-1], np.diff(f_bounds)
    fid = np.flatnonzero(a_all)
    feature_star = np.repeat(np.arange(0, width * n_star, n_star), a_all)
    feature_star += code
    per_star = np.bincount(feature_star, minlength=width * n_star).reshape(width, n_star)
    a_low = per_star[:, g["low"]].sum(axis=1)
    a_high = per_star[:, g["high"]].sum(axis=1)
    ties = _tie_runs(key, c_bits)

    def per_feature(at: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per feature: the sum of `values` (of the pairs `at`) with zeros for its other
        pairs, by reduceat over its whole slice: the summation order the build always
        had, so the rounded sums stay bit for bit what they were."""
        out = np.zeros(width, np.float64)
        if total:
            spread = np.zeros(total, np.float64)
            spread[at] = values
            out[fid] = np.add.reduceat(spread, first[fid])
        return out

    # ---- AUROC (Mann-Whitney U with ties) and DeLong's variance.
    # For an active low review with value x, its placement among high reviews is
    # (#high below x + 1/2 #high tied with x) / n_high, and every inactive high review is
    # below it; symmetrically for an active high review and the low reviews above it.
    # Counts are half-integers, exact in float64: only the squared placements round.
    is_low = g["low"][code]
    # q_low[j] - j high pairs precede the j-th low pair (q: position among the pairs
    # that are low or high), and vice versa: no prefix sums over all pairs needed.
    low_high = np.flatnonzero(is_low | g["high"][code])
    low_in = is_low[low_high]
    q_low, q_high = np.flatnonzero(low_in), np.flatnonzero(~low_in)
    at_low, at_high = low_high[q_low], low_high[q_high]
    twice_high_below = 2 * (q_low - np.arange(len(q_low)))
    twice_low_below = 2 * (q_high - np.arange(len(q_high)))
    _fix_ties(twice_high_below, at_low, at_high, ties)
    _fix_ties(twice_low_below, at_high, at_low, ties)
    # The counts so far run over the whole bucket: subtract the features before.
    high_before = np.cumsum(a_high) - a_high
    low_before = np.cumsum(a_low) - a_low
    inactive_high = n_high - a_high
    inactive_low = m_low - a_low
    sum_below = np.zeros(width, np.int64)
    has_low = np.flatnonzero(a_low)
    if len(has_low):
        sum_below[has_low] = np.add.reduceat(twice_high_below, (np.cumsum(a_low) - a_low)[has_low])
    with np.errstate(divide="ignore", invalid="ignore"):
        # Per active low review: high reviews it beats (ties 1/2); per active high review:
        # low reviews that beat it (ties 1/2).
        beats = 0.5 * twice_high_below
        beats += np.repeat(inactive_high - high_before, a_low)
        beaten = -0.5 * twice_low_below
        beaten += np.repeat(a_low + low_before, a_high)
        u = (inactive_high - high_before) * a_low + 0.5 * sum_below + 0.5 * inactive_low * inactive_high
        auroc = u / (m_low * n_high)
        v10_inactive = 0.5 * inactive_high / n_high
        v01_inactive = (a_low + 0.5 * inactive_low) / m_low
        beats /= n_high
        beats -= np.repeat(auroc, a_low)
        s10 = per_feature(at_low, np.square(beats, out=beats))
        s10 += inactive_low * (v10_inactive - auroc) ** 2
        beaten /= m_low
        beaten -= np.repeat(auroc, a_high)
        s01 = per_feature(at_high, np.square(beaten, out=beaten))
        s01 += inactive_high * (v01_inactive - auroc) ** 2
        var = s10 / (m_low - 1) / m_low + s01 / (n_high - 1) / n_high
        auroc_se = np.sqrt(var)
    if m_low == 0 or n_high == 0:
        auroc = np.full(width, np.nan)
    if m_low < 2 or n_high < 2:
        auroc_se = np.full(width, np.nan)
    # The conditional effect: AUROC among the reviews where the feature fires (the
    # active-vs-active part of U), free of the cap the tied inactive reviews put on auroc.
    with np.errstate(divide="ignore", invalid="ignore"):
        auroc_active = (0.5 * sum_below - high_before * a_low) / (a_low * a_high)
    # Mann-Whitney's two-sided p for low vs high (scipy.stats.mannwhitneyu's asymptotic
    # method: tie-corrected variance, continuity correction).  The pooled low + high
    # sample's ties: the inactive reviews are one group; active ties are rare runs.
    lh_key = key[low_high] >> np.uint64(c_bits)
    lh_heads = _heads(lh_key)
    lh_len = np.diff(np.append(lh_heads, len(lh_key))).astype(np.float64)
    lh_feature = (lh_key[lh_heads] >> np.uint64(32)).astype(np.int64)
    tie_lh = np.bincount(lh_feature, weights=lh_len**3 - lh_len, minlength=width).astype(np.float64)
    t0 = (inactive_low + inactive_high).astype(np.float64)
    tie_lh += t0**3 - t0
    auroc_p = mann_whitney_p(u, float(m_low), float(n_high), tie_lh)

    # ---- Spearman: Pearson correlation of average ranks, computed on centered ranks.
    # x ranks: the n - a inactive reviews tie at the bottom, (n - a + 1) / 2; an active
    # review ranks n - a + r, r its midrank among the feature's active rated reviews.
    # Centered, an active review's rx is c + d with c = (n - a) / 2 (their mean) and
    # d = r - (a + 1) / 2, so a feature's sums over its active reviews are closed forms
    # in a, its tie runs (sum d^2 = (a^3 - a - sum (t^3 - t)) / 12) and the per-star
    # sums of d, without cancelling terms.  All are quarter-integers: exact, as the
    # former per-pair sums were, while n^3 < 2^53; past that they round a few times
    # per feature, where those rounded at every pair.
    mid = (n + 1) / 2.0
    inactive = n - a_all
    a = a_all.astype(np.float64)
    c = (n - a) / 2.0
    tied, start, end = ties
    twice_rank = np.arange(2.0, 2.0 * total + 1.0, 2.0)  # midranks over the bucket, x2
    twice_rank[tied] = start + end + 1
    twice_sum = np.bincount(feature_star, weights=twice_rank, minlength=width * n_star).reshape(width, n_star)
    d_per_star = (twice_sum - (2 * first + a + 1)[:, None] * per_star) / 2
    tie_cubes = np.zeros(width)
    heads = np.unique(start)
    if len(heads):
        t = (end[np.searchsorted(start, heads)] - heads).astype(np.float64)
        tie_cubes = np.bincount(np.searchsorted(first, heads, "right") - 1, weights=t**3 - t, minlength=width)
    rx_inactive = (inactive + 1) / 2.0 - mid  # centered, per feature
    inactive_ry = ((counts[None, :] - per_star) * ry[None, :]).sum(axis=1)
    sxy_active = c * (per_star * ry[None, :]).sum(axis=1) + (d_per_star * ry[None, :]).sum(axis=1)
    sxy = rx_inactive * inactive_ry + sxy_active
    sxx = inactive * rx_inactive**2 + (a * c**2 + (a**3 - a - tie_cubes) / 12)
    syy = float((counts * ry**2).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        spearman = sxy / np.sqrt(sxx * syy)
    # A constant x (dead, or equal everywhere) has no rank correlation: NULL, not 0/0 noise.
    spearman[~(sxx > 1e-12 * max(n, 1.0) ** 3)] = np.nan
    if not syy > 0:
        spearman[:] = np.nan
    spearman_p = rank_correlation_p(spearman, n)

    # Per (feature, star): rated active reviews and the sum of their max values, for
    # feature_stars (the values are the keys' middle 32 bits).
    max_value = (key >> np.uint64(c_bits)).astype(np.uint32).view(np.float32)
    sum_max = np.bincount(feature_star, weights=max_value, minlength=width * n_star)
    return {
        "per_star": per_star.reshape(-1),
        "sum_max": sum_max,
        "rs_feature": np.arange(f_lo, f_lo + width, dtype=np.int64),
        "rs_n_rated_active": a_all.astype(np.int64),
        "rs_n_low_active": a_low.astype(np.int64),
        "rs_n_high_active": a_high.astype(np.int64),
        "rs_auroc": auroc,
        "rs_auroc_se": auroc_se,
        "rs_spearman": spearman,
        "rs_auroc_p": auroc_p,
        "rs_auroc_active": auroc_active,
        "rs_spearman_p": spearman_p,
    }


# --------------------------------------------------------------------------- groups


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


# --------------------------------------------------------------------------- chance

CHANCE_SEED = 17  # the simulation's seed: a build is a pure function of its inputs
CHANCE_REPLICATES = 200  # random placements per support: the mean's SE is sd / 14
_CHANCE_EXACT = 256  # supports up to this are simulated each; above, a log grid
_CHANCE_EXACT_TOP = 16  # ... and supports within this of all reviews
_CHANCE_GRID_RATIO = 1.1  # ... the rest interpolated on a geometric grid (see coord)
_CHANCE_GRID_REPLICATES = 50  # per grid point: sd and SE are small there, reviews many


def _placement_stats(counts: np.ndarray, n_groups: int, top: int) -> tuple[float, float]:
    """Top-`top` share and Gini (zeros included, over n_groups) of one placement's
    nonzero group counts: the formulas of `group_concentration`."""
    x = np.sort(counts).astype(np.float64)
    total = x.sum()
    k = len(x)
    i = np.arange(n_groups - k + 1, n_groups + 1, dtype=np.float64)
    gini = 2.0 * (i * x).sum() / (n_groups * total) - (n_groups + 1.0) / n_groups
    return x[-top:].sum() / total, gini


def chance_concentration(
    group_of_review: np.ndarray, supports: np.ndarray, top: int = TOP_GROUPS,
    replicates: int = CHANCE_REPLICATES, seed: int = CHANCE_SEED,
) -> dict[str, np.ndarray]:
    """Concentration expected by chance: for each support k (a feature's active reviews
    with a group id), the mean and standard deviation of the top-`top` share and of the
    Gini index when k reviews are drawn at random, without replacement, from the
    reviews `group_of_review` names (one group code per review; so a group is hit in
    proportion to its review count, and never more often than it has reviews).

    Seeded simulation, `replicates` placements for each support up to _CHANCE_EXACT
    and within _CHANCE_EXACT_TOP of all reviews; in between, _CHANCE_GRID_REPLICATES on
    a grid geometric in k and in n - k, interpolated.  Memory is bounded by the reviews
    (one code each), never by the activations.
    Returns arrays aligned with `supports`; NaN for k = 0 and for no groups.
    """
    supports = np.asarray(supports, np.int64)
    names = ("share_mean", "share_sd", "gini_mean", "gini_sd")
    out = {name: np.full(len(supports), np.nan) for name in names}
    group_of_review = np.asarray(group_of_review, np.int64)
    n = len(group_of_review)
    if n == 0:
        return out
    n_groups = int(group_of_review.max()) + 1
    ks = np.unique(supports[(supports > 0) & (supports <= n)])
    if not len(ks):
        return out
    sizes = np.bincount(group_of_review, minlength=n_groups)
    half = n / 2.0

    def coord(k: np.ndarray) -> np.ndarray:
        # log k up to n/2, then mirrored on n - k: both ends (a few reviews; all but a
        # few) are where mean and sd bend, so the grid is geometric towards both.
        k = np.asarray(k, np.float64)
        return np.where(k <= half, np.log(np.maximum(k, 1.0)), 2 * np.log(half + 1) - np.log(n - k + 1))

    # Each support up to _CHANCE_EXACT (and within _CHANCE_EXACT_TOP of n) simulated;
    # in between a geometric grid in k, then in n - k.  The number of simulated
    # supports is bounded by ~2 log(n) / log(ratio) + _CHANCE_EXACT, whatever the data.
    grid = set(ks[(ks <= _CHANCE_EXACT) | (ks >= n - _CHANCE_EXACT_TOP)].tolist())
    if ((ks > _CHANCE_EXACT) & (ks < n - _CHANCE_EXACT_TOP)).any():
        g = float(_CHANCE_EXACT)
        while g < half:
            grid.add(int(round(g)))
            g *= _CHANCE_GRID_RATIO
        g = float(_CHANCE_EXACT_TOP)
        while g < half:
            grid.add(n - int(round(g)))
            g *= _CHANCE_GRID_RATIO
        grid.update((int(half), int(np.ceil(half))))
    grid = np.array(sorted(k for k in grid if 0 < k <= n), np.int64)
    rng = np.random.default_rng(seed)
    sims = np.empty((len(grid), 4))
    for j, k in enumerate(grid):
        k = int(k)
        exact = k <= _CHANCE_EXACT or k >= n - _CHANCE_EXACT_TOP
        reps = replicates if exact else _CHANCE_GRID_REPLICATES
        vals = np.empty((max(reps, 2), 2))
        for r in range(len(vals)):
            if k <= half:
                picked = group_of_review[rng.choice(n, size=k, replace=False)]
                counts = np.unique(picked, return_counts=True)[1]
            else:  # the complement is the smaller draw
                dropped = group_of_review[rng.choice(n, size=n - k, replace=False)]
                counts = sizes - np.bincount(dropped, minlength=n_groups)
                counts = counts[counts > 0]
            vals[r] = _placement_stats(counts, n_groups, top)
        sims[j] = vals[:, 0].mean(), vals[:, 0].std(ddof=1), vals[:, 1].mean(), vals[:, 1].std(ddof=1)
    # Every placement equal (k = all reviews) leaves rounding noise, not spread: 0.
    for col in (1, 3):
        sims[np.abs(sims[:, col]) < 1e-12, col] = 0.0
    ok = (supports > 0) & (supports <= n)
    at = coord(supports[ok])
    for col, name in enumerate(names):
        out[name][ok] = np.interp(at, coord(grid), sims[:, col])
    return out


def _group_codes_of(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """One dense code per review that `keep` holds and has an id (the others dropped)."""
    sel = keep & np.array([v is not None for v in values.tolist()], bool)
    return np.unique(values[sel].astype(str), return_inverse=True)[1].astype(np.int64)


def review_stats_table(staging: Path, merged: list):
    """The table `feature_review_stats`, one row per feature (dead ones included), from
    the buckets' merge results (`etl.build.merge.MergeResult`) and the snapshot's
    `reviews.parquet`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    staging = Path(staging)
    merged = sorted(merged, key=lambda m: m.bucket)
    columns = ["stars", "n_tokens", "business_id", "user_id"]
    reviews = pq.read_table(staging / "reviews.parquet", columns=columns)
    stars = reviews.column("stars").to_numpy(zero_copy_only=False)
    n_tokens = reviews.column("n_tokens").to_numpy()
    has_tokens = n_tokens > 0
    rated = has_tokens & ~np.isnan(stars.astype(np.float64))
    star_f = stars.astype(np.float64)
    n_rated = int(rated.sum())
    n_low = int((rated & (star_f <= LOW_STARS_MAX)).sum())
    n_high = int((rated & (star_f >= HIGH_STARS_MIN)).sum())

    features = np.concatenate([m.feature for m in merged]).astype(np.int64)
    n_features = len(features)
    cols: dict[str, np.ndarray] = {}
    for name in _RATED_FIELDS:
        full = np.zeros(n_features, np.int64) if name.startswith("n_") else np.full(n_features, np.nan)
        for m in merged:
            if "rs_feature" in m.review_stats:  # buckets without any activation have no pairs
                full[m.review_stats["rs_feature"]] = m.review_stats["rs_" + name]
        cols[name] = full
    out = {
        name: (np.zeros(n_features, np.int64) if name.startswith("n_") else np.full(n_features, np.nan))
        for name in _PAIR_FIELDS
    }
    for m in merged:
        if "rs_feature" in m.review_stats:  # buckets without any activation have no pairs
            f_lo = int(m.feature[0])
            for name in _PAIR_FIELDS:
                out[name][f_lo : f_lo + len(m.feature)] = m.review_stats["rp_" + name]
    most = np.nan_to_num(out["max_tokens_per_review"], nan=0.0).astype(np.int64)
    chance = {}
    for prefix, column in (("business", "business_id"), ("user", "user_id")):
        support = np.zeros(n_features, np.int64)
        for m in merged:
            if "rs_feature" in m.review_stats:
                f_lo = int(m.feature[0])
                support[f_lo : f_lo + len(m.feature)] = m.review_stats[f"rp_n_{prefix}_reviews"]
        codes = _group_codes_of(reviews.column(column).to_numpy(zero_copy_only=False), has_tokens)
        chance[prefix] = chance_concentration(codes, support)

    n_rev = np.concatenate([m.n_reviews for m in merged]).astype(np.int64)
    dead = n_rev == 0

    def nullable(x: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
        bad = np.isnan(x) if mask is None else (np.isnan(x) | mask)
        return pa.array(np.where(bad, 0.0, x), pa.float64(), mask=bad)

    return pa.table(
        {
            "feature": features.astype(np.int32),
            "n_rated": np.full(n_features, n_rated, np.int64),
            "n_low": np.full(n_features, n_low, np.int64),
            "n_high": np.full(n_features, n_high, np.int64),
            "n_rated_active": cols["n_rated_active"],
            "n_low_active": cols["n_low_active"],
            "n_high_active": cols["n_high_active"],
            "auroc": nullable(cols["auroc"], cols["n_rated_active"] == 0),
            "auroc_se": nullable(cols["auroc_se"], cols["n_rated_active"] == 0),
            "spearman": nullable(cols["spearman"]),
            "n_single_token_reviews": out["n_single_token_reviews"],
            "max_tokens_per_review": pa.array(most, pa.int64(), mask=dead),
            "n_businesses": out["n_businesses"],
            "top10_business_share": nullable(out["top10_business_share"]),
            "business_gini": nullable(out["business_gini"]),
            "n_users": out["n_users"],
            "top10_user_share": nullable(out["top10_user_share"]),
            "user_gini": nullable(out["user_gini"]),
            "auroc_p": nullable(cols["auroc_p"]),
            "auroc_active": nullable(cols["auroc_active"]),
            "spearman_p": nullable(cols["spearman_p"]),
            **{
                f"{stat}_{prefix}_{kind}": nullable(chance[prefix][f"{key}_{kind}"])
                for prefix in ("business", "user")
                for stat, key in (("chance_top10", "share"), ("chance_gini", "gini"))
                for kind in ("mean", "sd")
            },
        }
    )


def _recode(codes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Renumber the codes that occur where `keep` holds as 0..n-1; all others -1."""
    out = np.full(len(codes), -1, np.int64)
    sel = keep & (codes >= 0)
    if sel.any():
        _, inv = np.unique(codes[sel], return_inverse=True)
        out[sel] = inv
    return out
