"""The concentration a feature would show by chance: seeded placements of its active reviews.
"""

from __future__ import annotations

import numpy as np

from etl.review_stats.stars import TOP_GROUPS

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


_PERMUTE_CELLS = 1 << 22  # up to reps x n this many: permute rows, else draw and reject


def _draws(rng: np.random.Generator, n: int, k: int, reps: int) -> np.ndarray:
    """`reps` uniform draws of k of n items without replacement, as a (reps, k) array.

    In one batch, not `reps` calls of rng.choice (51,200 calls cost a small build 4 s):
    k draws with replacement per row, and the rows that drew an item twice (rare when
    k * k << n) drawn again one by one: each row is a uniform k-subset.  (A small corpus
    takes the first k of each row of one batch of permutations instead: `chance_concentration`.)
    """
    rows = rng.integers(0, n, (reps, k))
    ordered = np.sort(rows, axis=1)
    repeated = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
    for r in repeated.tolist():
        rows[r] = rng.choice(n, size=k, replace=False)
    return rows


def _placements_stats(picked: np.ndarray, n_groups: int, top: int) -> np.ndarray:
    """`_placement_stats` of every row of `picked` (reps x k group codes) at once:
    a (reps, 2) array of top-`top` share and Gini."""
    reps, k = picked.shape
    cells, counts = np.unique(np.arange(reps)[:, None] * n_groups + picked, return_counts=True)
    row = cells // n_groups
    order = np.lexsort((counts, row))  # each row's nonzero counts, ascending
    row, x = row[order], counts[order].astype(np.float64)
    groups_in = np.bincount(row, minlength=reps)
    first = np.cumsum(groups_in) - groups_in
    rank = np.arange(len(x)) - np.repeat(first, groups_in) + 1  # 1.. within the row
    weight = (n_groups - np.repeat(groups_in, groups_in) + rank) * x
    gini = 2.0 * np.bincount(row, weights=weight, minlength=reps) / (n_groups * k)
    gini -= (n_groups + 1.0) / n_groups
    in_top = rank > np.repeat(groups_in, groups_in) - top
    top_share = np.bincount(row, weights=np.where(in_top, x, 0.0), minlength=reps) / k
    return np.column_stack((top_share, gini))


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
    # A small corpus: one batch of random permutations serves every support (the first
    # k items of each row are a uniform k-subset; supports share the draws).
    perm = None
    if max(replicates, 2) * n <= _PERMUTE_CELLS:
        perm = rng.permuted(np.broadcast_to(np.arange(n), (max(replicates, 2), n)), axis=1)
    sims = np.empty((len(grid), 4))
    for j, k in enumerate(grid):
        k = int(k)
        exact = k <= _CHANCE_EXACT or k >= n - _CHANCE_EXACT_TOP
        reps = replicates if exact else _CHANCE_GRID_REPLICATES
        reps = max(reps, 2)
        if k <= half:
            drawn = perm[:reps, :k] if perm is not None and reps <= len(perm) else _draws(rng, n, k, reps)
            picked = group_of_review[drawn]
            vals = _placements_stats(picked, n_groups, top)
        else:  # the complement is the smaller draw
            vals = np.empty((reps, 2))
            for r in range(reps):
                dropped = group_of_review[rng.choice(n, size=n - k, replace=False)]
                counts = sizes - np.bincount(dropped, minlength=n_groups)
                vals[r] = _placement_stats(counts[counts > 0], n_groups, top)
        sims[j] = vals[:, 0].mean(), vals[:, 0].std(ddof=1), vals[:, 1].mean(), vals[:, 1].std(ddof=1)
    # Every placement equal (k = all reviews) leaves rounding noise, not spread: 0.
    for col in (1, 3):
        sims[np.abs(sims[:, col]) < 1e-12, col] = 0.0
    ok = (supports > 0) & (supports <= n)
    at = coord(supports[ok])
    for col, name in enumerate(names):
        out[name][ok] = np.interp(at, coord(grid), sims[:, col])
    return out
