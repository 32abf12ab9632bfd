-- name: star-signal
-- description: Features that separate low (1-2 star) from high (4-5 star) reviews: AUROC, log-odds and Spearman with 95% intervals, p- and q-values.
-- param: direction VARCHAR(low|high) = low -- rank the features pointing to low, or to high, ratings
-- param: by VARCHAR(auroc|log_odds|spearman) = auroc -- statistic to rank by (its 95% bound nearest to no effect)
-- param: min_reviews INTEGER(0..) = 20 -- minimum support: rated reviews the feature is active in; only these are tested (q-values are over them)
-- param: max_q DOUBLE(0..1) = NULL -- keep only features with q <= this (Benjamini-Hochberg; e.g. 0.05)
-- param: k INTEGER(1..100000) = 20 -- number of features
-- param: feature INTEGER = NULL -- show only this feature (with its rank, NULL below the support)
-- From the macro star_signal_all (precomputed at build: answers in well under a second).
-- Over the reviews with tokens and a rating; x = a review's max activation (0: inactive).
-- auroc = P(x_low > x_high) + 1/2 P(tie), 95% interval from DeLong's SE; log_odds of
-- being active in low vs high reviews, Haldane-Anscombe corrected (+0.5 in every cell),
-- 95% Wald interval; spearman of x with the stars, 95% interval via Fisher's z.
-- p, q: the test of the ranked statistic: Mann-Whitney for auroc and log_odds (low vs
-- high), the rank trend for spearman; q = Benjamini-Hochberg over the n_tested features
-- with support >= min_reviews (both stated in every row).
-- Ranking by the conservative bound (auroc_lo, log_odds_lo, -spearman_hi for `low`)
-- puts a well-supported effect above a large but uncertain one.
WITH s AS (
    SELECT *,
           CASE $direction
               WHEN 'low' THEN CASE $by WHEN 'auroc' THEN auroc_lo - 0.5
                                        WHEN 'log_odds' THEN log_odds_lo
                                        ELSE -spearman_hi END
               ELSE CASE $by WHEN 'auroc' THEN 0.5 - auroc_hi
                             WHEN 'log_odds' THEN -log_odds_hi
                             ELSE spearman_lo END
           END AS score,
           CASE $by WHEN 'spearman' THEN spearman_p ELSE auroc_p END AS p,
           CASE $by WHEN 'spearman' THEN spearman_q ELSE auroc_q END AS q,
           CASE $by WHEN 'spearman' THEN n_tested_spearman ELSE n_tested_auroc END AS n_tested
    FROM star_signal_all(min_reviews := $min_reviews)
),
ranked AS (
    SELECT feature,
           row_number() OVER (ORDER BY score DESC, n_rated_active DESC, feature) AS rank
    FROM s
    WHERE n_rated_active >= $min_reviews AND score IS NOT NULL
      AND ($max_q IS NULL OR q <= $max_q)
)
SELECT r.rank, s.feature, s.auroc, s.auroc_lo, s.auroc_hi, s.log_odds, s.log_odds_lo, s.log_odds_hi,
       s.spearman, s.spearman_lo, s.spearman_hi, s.p, s.q, s.auroc_active,
       s.n_rated_active, s.n_low_active, s.n_high_active,
       s.frac_low_active, s.frac_high_active, s.min_reviews, s.n_tested
FROM s
LEFT JOIN ranked r ON r.feature = s.feature
WHERE ($feature IS NULL AND r.rank <= $k) OR s.feature = $feature
ORDER BY r.rank NULLS LAST, s.feature;
