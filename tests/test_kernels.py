"""The build's numpy kernels (etl/build/kernels.py), each against a plain-Python version of
what it computes, on random inputs with the awkward cases the build meets: empty inputs,
ties, a review in several runs, features with more and fewer rows than k.

(top_per_group and explode_chunk are checked in test_contract_paths.py.)
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from etl.build import kernels

RNG_SEEDS = range(5)


def test_excl_cumsum_and_gather_index():
    a = np.array([[3, 0, 2], [1, 1, 0]])
    assert kernels.excl_cumsum(a).tolist() == [[0, 3, 3], [0, 1, 2]]
    assert kernels.excl_cumsum(a, axis=0).tolist() == [[0, 0, 0], [3, 0, 2]]
    starts, lens = np.array([10, 0, 5]), np.array([2, 0, 3])
    assert kernels.gather_index(starts, lens).tolist() == [10, 11, 5, 6, 7]
    assert kernels.gather_index(np.zeros(0, np.int64), np.zeros(0, np.int64)).tolist() == []


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_offsets_in_reviews(seed):
    rng = np.random.default_rng(seed)
    run_idx = rng.integers(0, 6, 20)
    lens = rng.integers(1, 5, 20)
    seen = rng.integers(0, 9, 6)
    got = kernels.offsets_in_reviews(run_idx, lens, seen)
    so_far = seen.copy()
    for i, (r, n) in enumerate(zip(run_idx.tolist(), lens.tolist())):
        assert got[i] == so_far[r]
        so_far[r] += n


def test_screen_chunk():
    idx = np.array([[0, 5], [3, 4]])
    val = np.array([[1, 2], [3, 4]], np.float32)
    assert not kernels.screen_chunk(idx, val, 6)
    assert kernels.screen_chunk(idx, val, 5)  # a feature out of range
    for bad in (0.0, -1.0, np.nan, np.inf):
        v = val.copy()
        v[1, 0] = bad
        assert kernels.screen_chunk(idx, v, 6), bad
    assert not kernels.screen_chunk(np.zeros((0, 2), np.int64), np.zeros((0, 2), np.float32), 6)


@pytest.mark.parametrize("size", [1, 3, 7, 50])
def test_sub_blocks_cut_at_review_boundaries(size):
    reviews = np.repeat(np.arange(8), [1, 5, 2, 9, 1, 1, 3, 4])
    blocks = kernels.sub_blocks(reviews, size)
    assert blocks[0][0] == 0 and blocks[-1][1] == len(reviews)
    assert all(a < b for a, b in blocks)
    assert all(b1 == a2 for (_, b1), (a2, _) in zip(blocks, blocks[1:]))
    for a, b in blocks:
        # A block is at most `size` tokens unless it holds one review longer than that;
        # a cut inside a review only where that review alone is longer than `size`.
        assert b - a <= size or len(set(reviews[a:b].tolist())) == 1
        if 0 < a < len(reviews) and reviews[a] == reviews[a - 1]:
            assert np.count_nonzero(reviews == reviews[a]) > size
    assert kernels.sub_blocks(reviews[:0], size) == []


def _chunk(rng, m=40, k=4, n_latents=12):
    """A chunk as explode_chunk returns it, with zero slots."""
    idx = np.stack([rng.choice(n_latents, k, replace=False) for _ in range(m)])
    val = (rng.integers(0, 6, (m, k)) / 2).astype(np.float32)  # ties and zeros
    return kernels.explode_chunk(idx, val, n_latents)


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_review_pairs(seed):
    rng = np.random.default_rng(seed)
    counts, fs, tl, v, _ = _chunk(rng)
    lr_tok = np.cumsum(rng.random(40) < 0.3).astype(np.int32)  # runs in token order
    f, r, m, c = kernels.review_pairs(counts, fs, tl, v, lr_tok, int(lr_tok.max()) + 1)
    want = defaultdict(lambda: [0.0, 0])
    for ff, t, vv in zip(fs.tolist(), tl.tolist(), v.tolist()):
        pair = want[(ff, int(lr_tok[t]))]
        pair[0], pair[1] = max(pair[0], vv), pair[1] + 1
    assert sorted(zip(f.tolist(), r.tolist(), m.tolist(), c.tolist())) == sorted(
        (ff, rr, mm, cc) for (ff, rr), (mm, cc) in want.items()
    )


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_rank_review_features(seed):
    """Whole reviews are ranked (k strongest, ties by feature) and all their active
    features listed by (review, feature); the pairs of reviews cut by the block go to
    `partials`, unranked."""
    rng = np.random.default_rng(seed)
    counts, fs, tl, v, _ = _chunk(rng)
    reviews = np.repeat(np.array([3, 1, 4, 0, 2]), [6, 10, 4, 12, 8])
    n_tokens_of = np.array([12, 10, 20, 6, 4])  # review 2 continues past the block
    partials: list = []
    k = 3
    (g, rank, f, m, c), (ar, af) = kernels.rank_review_features(
        counts, fs, tl, v, reviews, n_tokens_of, partials, k)
    pairs = defaultdict(lambda: [0.0, 0])
    for ff, t, vv in zip(fs.tolist(), tl.tolist(), v.tolist()):
        pair = pairs[(int(reviews[t]), ff)]
        pair[0], pair[1] = max(pair[0], vv), pair[1] + 1
    want = []
    for review in (3, 1, 4, 0):
        mine = sorted(((-mm, ff, cc) for (rr, ff), (mm, cc) in pairs.items() if rr == review))[:k]
        want += [(review, i + 1, ff, -mm, cc) for i, (mm, ff, cc) in enumerate(mine)]
    got = list(zip(g.tolist(), rank.tolist(), f.tolist(), m.tolist(), c.tolist()))
    assert sorted(got) == sorted(want)
    # In the block's review order (3, 1, 4, 0), features ascending within each; not 2.
    order = {review: i for i, review in enumerate((3, 1, 4, 0))}
    active = sorted(((rr, ff) for rr, ff in pairs if rr != 2), key=lambda p: (order[p[0]], p[1]))
    assert list(zip(ar.tolist(), af.tolist())) == active
    cut = {(rr, ff): (mm, cc) for (rr, ff), (mm, cc) in pairs.items() if rr == 2}
    held = [x for p in partials for x in zip(*(a.tolist() for a in p))]
    assert {(rr, ff): (mm, cc) for rr, ff, mm, cc in held} == cut


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_combine_pairs(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 4, 50), rng.integers(0, 5, 50)
    m, c = rng.random(50).astype(np.float32), rng.integers(1, 9, 50)
    ga, gb, gm, gc = kernels.combine_pairs(a, b, m, c)
    want = defaultdict(lambda: [0.0, 0])
    for x in zip(a.tolist(), b.tolist(), m.tolist(), c.tolist()):
        pair = want[x[:2]]
        pair[0], pair[1] = max(pair[0], x[2]), pair[1] + x[3]
    assert list(zip(ga.tolist(), gb.tolist())) == sorted(want)
    assert gm.tolist() == [want[key][0] for key in sorted(want)]
    assert gc.tolist() == [want[key][1] for key in sorted(want)]
    assert gm.dtype == np.float32


def test_run_segments():
    counts = np.array([[2, 0, 1], [0, 3, 0]])  # 2 runs x 3 features
    fi, ri, at, step, lens = kernels.run_segments(counts, columns=3)
    # Run 0 holds 3 rows (3 columns of 3 values), run 1 starts at value 9.
    assert list(zip(fi.tolist(), ri.tolist(), at.tolist(), step.tolist(), lens.tolist())) == [
        (0, 0, 0, 3, 2),
        (1, 1, 9, 3, 3),
        (2, 0, 2, 3, 1),
    ]


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_top_candidates_and_top_per_feature(seed):
    rng = np.random.default_rng(seed)
    k = 4
    sizes = rng.integers(1, 12, 6)
    f = np.repeat(np.arange(6), sizes)
    v = (rng.integers(1, 6, len(f)) / 2).astype(np.float32)  # ties at the k-th value
    tp = rng.permutation(len(f))
    heads = np.flatnonzero(np.append(True, f[1:] != f[:-1]))
    cand = kernels.top_candidates(v, heads, sizes, k)
    for feature in range(6):
        rows = np.flatnonzero(f == feature)
        kth = np.sort(v[rows])[::-1][min(k, len(rows)) - 1]
        assert set(cand[f[cand] == feature].tolist()) == set(rows[v[rows] >= kth].tolist())
    got = kernels.top_per_feature(f[cand], tp[cand], tp[cand] * 10, v[cand], k)
    want = []
    for feature in range(6):
        rows = sorted((-v[i], tp[i]) for i in np.flatnonzero(f == feature))[:k]
        want += [(feature, int(t), int(t) * 10, float(-mv), rank + 1) for rank, (mv, t) in enumerate(rows)]
    assert list(zip(*(x.tolist() for x in got))) == want
