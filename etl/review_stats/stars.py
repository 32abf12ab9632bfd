"""Per feature, how its per-review max activation separates star ratings: AUROC (its
DeLong SE, Mann-Whitney p), Spearman (its p), per-star counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class _Sorted:
    """One bucket's (feature, review) pairs as sorted keys, with per-feature counts."""

    g: dict  # _star_groups
    width: int
    key: np.ndarray  # (feature, value bits, star code), sorted
    code: np.ndarray  # each pair's star code
    first: np.ndarray  # per feature, its first pair
    a_all: np.ndarray  # per feature, its pairs (rated active reviews)
    fid: np.ndarray  # the features with a pair
    feature_star: np.ndarray  # per pair, feature * n_star + star code
    per_star: np.ndarray  # (width, n_star) rated active reviews
    a_low: np.ndarray
    a_high: np.ndarray
    ties: tuple  # _tie_runs

    @property
    def total(self) -> int:
        return len(self.key)

    def per_feature(self, at: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Per feature: the sum of `values` (of the pairs `at`) with zeros for its other
        pairs, by reduceat over its whole slice: the summation order the build always
        had, so the rounded sums stay bit for bit what they were."""
        out = np.zeros(self.width, np.float64)
        if self.total:
            spread = np.zeros(self.total, np.float64)
            spread[at] = values
            out[self.fid] = np.add.reduceat(spread, self.first[self.fid])
        return out


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
    s = _sort_pairs(rf, rr, rm, width, g)
    auroc, auroc_se, auroc_p, auroc_active = _auroc_stats(s)
    spearman, spearman_p = _spearman_stats(s)
    key, c_bits, n_star = s.key, c_bits, len(g["counts"])
    feature_star, per_star, a_all, a_low, a_high = s.feature_star, s.per_star, s.a_all, s.a_low, s.a_high
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


def _sort_pairs(rf: np.ndarray, rr: np.ndarray, rm: np.ndarray, width: int, g: dict) -> _Sorted:
    """The bucket's pairs sorted by (feature, value, star code), and per feature its
    slice of them and its rated active reviews per star value."""
    c_bits = g["c_bits"]
    n_star = len(g["counts"])
    key = _sorted_keys(rf, rm, g["code_key"][rr.astype(np.intp, copy=False)], c_bits)
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

    return _Sorted(g, width, key, code, first, a_all, fid, feature_star, per_star, a_low, a_high, ties)


def _auroc_stats(s: _Sorted) -> tuple[np.ndarray, ...]:
    """Per feature: AUROC of low against high reviews, DeLong's SE, Mann-Whitney's p, and
    the AUROC among the active reviews only."""
    g, width, key, code, ties = s.g, s.width, s.key, s.code, s.ties
    a_low, a_high, c_bits = s.a_low, s.a_high, g["c_bits"]
    m_low, n_high = g["n_low"], g["n_high"]
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
        s10 = s.per_feature(at_low, np.square(beats, out=beats))
        s10 += inactive_low * (v10_inactive - auroc) ** 2
        beaten /= m_low
        beaten -= np.repeat(auroc, a_high)
        s01 = s.per_feature(at_high, np.square(beaten, out=beaten))
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

    return auroc, auroc_se, auroc_p, auroc_active


def _spearman_stats(s: _Sorted) -> tuple[np.ndarray, np.ndarray]:
    """Per feature: Spearman's correlation of the per-review max with the stars, its p."""
    g, width, ties, first, a_all = s.g, s.width, s.ties, s.first, s.a_all
    per_star, feature_star, total = s.per_star, s.feature_star, s.total
    n, counts, ry = g["n"], g["counts"], g["centered_star_rank"]
    n_star = len(counts)
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

    return spearman, spearman_p
