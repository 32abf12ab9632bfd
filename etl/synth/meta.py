"""Review metadata: ids, stars, useful votes, users and businesses with skewed counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl.synth.spec import _ID_ALPHABET, _SKIP_FRACTION, _STAR_P, ID_LEN


def _random_ids(rng: np.random.Generator, n: int, taken: set[bytes]) -> np.ndarray:
    """`n` distinct 22-char URL-safe ids (S22), none of them in `taken`."""
    out = np.empty(n, dtype=f"S{ID_LEN}")
    filled = 0
    while filled < n:
        need = n - filled
        raw = _ID_ALPHABET[rng.integers(0, 64, size=(need, ID_LEN), dtype=np.uint8)]
        cand = raw.view(f"S{ID_LEN}").ravel()
        # Collisions are astronomically rare, but ids are keys downstream: make them certain.
        for c in cand:
            if c not in taken:
                taken.add(c)
                out[filled] = c
                filled += 1
    return out


def _skewed_choice(rng: np.random.Generator, n_items: int, size: int, power: float) -> np.ndarray:
    """Indices in [0, n_items) with popularity ~ 1/(i+1)^power (a few heavy users/shops)."""
    w = 1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** power
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), n_items - 1)


@dataclass
class _Meta:
    review_ids: np.ndarray  # S22
    user_ids: np.ndarray  # S22
    business_idx: np.ndarray  # int64 into business_pool
    business_pool: np.ndarray  # S22
    stars: np.ndarray
    useful: np.ndarray
    skipped: np.ndarray  # bool: review has no H5 tokens


def make_meta(rng: np.random.Generator, n_reviews: int) -> _Meta:
    taken: set[bytes] = set()
    review_ids = _random_ids(rng, n_reviews, taken)
    n_users = max(1, n_reviews // 3)
    n_biz = max(5, n_reviews // 50)
    user_pool = _random_ids(rng, n_users, taken)
    business_pool = _random_ids(rng, n_biz, taken)
    user_ids = user_pool[_skewed_choice(rng, n_users, n_reviews, 0.6)]
    business_idx = _skewed_choice(rng, n_biz, n_reviews, 0.7)
    # Pinning review 0 to business 0 lets callers find the planted business as business_ids[0].
    business_idx[0] = 0

    # Some restaurants are better than others: tilt each business's star mix by a quality score.
    quality = rng.normal(0.0, 1.0, n_biz)[business_idx]
    logits = np.log(_STAR_P)[None, :] + 0.35 * quality[:, None] * (np.arange(5) - 2.0)[None, :]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    u = rng.random(n_reviews)[:, None] * cdf[:, -1:]
    stars = (u > cdf).sum(axis=1).astype(np.int64) + 1
    useful = rng.geometric(0.45, n_reviews).astype(np.int64) - 1

    skipped = rng.random(n_reviews) < _SKIP_FRACTION
    if skipped.all():
        skipped[0] = False
    return _Meta(review_ids, user_ids, business_idx, business_pool, stars, useful, skipped)
