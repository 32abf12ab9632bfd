"""Assembling feature_review_stats at the end of the build from the buckets' columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etl.review_stats.chance import chance_concentration
from etl.review_stats.groups import _PAIR_FIELDS
from etl.review_stats.stars import _RATED_FIELDS, HIGH_STARS_MIN, LOW_STARS_MAX


def _group_codes_of(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """One dense code per review that `keep` holds and has an id (the others dropped)."""
    sel = keep & np.array([v is not None for v in values.tolist()], bool)
    return np.unique(values[sel].astype(str), return_inverse=True)[1].astype(np.int64)


def _per_feature(merged: list, n_features: int, key: str, integer: bool, by_feature_id: bool) -> np.ndarray:
    """The buckets' column `key` as one array over all features (0 or NaN where a bucket
    has no pairs); placed by the bucket's `rs_feature` ids, or as its contiguous slice."""
    full = np.zeros(n_features, np.int64) if integer else np.full(n_features, np.nan)
    for m in merged:
        if "rs_feature" not in m.review_stats:  # buckets without any activation have no pairs
            continue
        f_lo = int(m.feature[0])
        at = m.review_stats["rs_feature"] if by_feature_id else slice(f_lo, f_lo + len(m.feature))
        full[at] = m.review_stats[key]
    return full


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
    cols = {name: _per_feature(merged, n_features, "rs_" + name, name.startswith("n_"), True)
            for name in _RATED_FIELDS}
    out = {name: _per_feature(merged, n_features, "rp_" + name, name.startswith("n_"), False)
           for name in _PAIR_FIELDS}
    most = np.nan_to_num(out["max_tokens_per_review"], nan=0.0).astype(np.int64)
    chance = {}
    for prefix, column in (("business", "business_id"), ("user", "user_id")):
        support = _per_feature(merged, n_features, f"rp_n_{prefix}_reviews", True, False)
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
