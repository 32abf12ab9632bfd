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

from etl.review_stats.chance import CHANCE_REPLICATES, CHANCE_SEED, chance_concentration
from etl.review_stats.groups import group_codes, group_concentration, pair_stats
from etl.review_stats.stars import (
    HIGH_STARS_MIN,
    LOW_STARS_MAX,
    TOP_GROUPS,
    bucket_review_stats,
    mann_whitney_p,
    normal_two_sided,
    rank_correlation_p,
)
from etl.review_stats.table import review_stats_table

__all__ = [
    "CHANCE_REPLICATES",
    "CHANCE_SEED",
    "HIGH_STARS_MIN",
    "LOW_STARS_MAX",
    "TOP_GROUPS",
    "bucket_review_stats",
    "chance_concentration",
    "group_codes",
    "group_concentration",
    "mann_whitney_p",
    "normal_two_sided",
    "pair_stats",
    "rank_correlation_p",
    "review_stats_table",
]
