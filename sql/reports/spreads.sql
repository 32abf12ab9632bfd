-- name: spreads
-- description: Every feature's review-level versus token-level activity, ranked: scattered or clumped features.
-- param: sort VARCHAR(clumping|tokens_per_review|single_token|feature) = clumping -- clumping: most clumped first; tokens_per_review: most active tokens per active review first; single_token: most single-token reviews first
-- param: min_reviews INTEGER(1..) = 20 -- only features active in at least this many reviews
-- param: limit INTEGER(0..) = 20 -- at most this many rows (0: all)
-- From the macro feature_spreads (precomputed tables, no scan of activations).
SELECT row_number() OVER (
           ORDER BY CASE $sort WHEN 'clumping' THEN clumping
                               WHEN 'tokens_per_review' THEN -mean_tokens_per_active_review
                               WHEN 'single_token' THEN -frac_single_token_reviews
                               ELSE feature END,
                    feature) AS rank,
       feature, n_active, n_reviews, frac_tokens_active, frac_reviews_active,
       mean_tokens_per_active_review, max_tokens_per_review, frac_single_token_reviews, clumping
FROM feature_spreads(min_reviews := $min_reviews)
ORDER BY rank
LIMIT CASE WHEN $limit = 0 THEN NULL ELSE $limit END;
