-- name: spread
-- description: Review-level versus token-level activity of a feature: once per review, or throughout a few.
-- param: feature INTEGER -- feature id, in [0, n_latents)
-- Two sections: summary (the macro feature_spread) and per-review (how many reviews
-- have 1, 2, ... active tokens).  clumping = frac_reviews_active / the share expected
-- if the feature fired on tokens independently at its density: ~1 scattered, << 1 it
-- fires throughout a few reviews.

-- statement: summary -- token-level and review-level activity
-- display: vertical
SELECT * FROM feature_spread($feature);

-- statement: per-review -- active reviews by their number of active tokens
-- display: bars n_reviews n_active_tokens
WITH per_review AS (
    SELECT review_idx, count(*) AS n_active_tokens
    FROM activations
    WHERE bucket = bucket_of($feature) AND feature = $feature
    GROUP BY review_idx
)
SELECT n_active_tokens, count(*) AS n_reviews, count(*) / sum(count(*)) OVER () AS frac_reviews
FROM per_review
GROUP BY n_active_tokens
ORDER BY n_active_tokens;
