-- name: macros_analysis
-- description: Analysis macros: stars with uncertainty, honest samples, diverse top-k, spread, co-occurrence, corpus search, concentration.
-- Loaded after macros.sql (warehouse.ddl.macro_statements), so these may use its macros.
-- As there, a single feature is read with `bucket = bucket_of(feat) AND feature = feat`
-- (partition pruning, then row-group statistics).  Parameter names never equal a
-- column name (`star_rating`, not `stars`), so a reader never has to wonder which wins.
-- Statistics ranked over all features read the precomputed `feature_review_stats`
-- (etl/review_stats/), one row per feature, so a ranking never scans activations.

-- ---------------------------------------------------------------- stars with uncertainty

-- Every feature's star signal, from feature_review_stats.  Over the reviews with tokens
-- and a rating; x = the review's max activation, 0 where the feature never fires.
-- 3-star reviews: counted in spearman (an ordinal trend over 1..5), left out of auroc,
-- auroc_active and log_odds (low = 1-2 stars against high = 4-5).
-- - auroc: P(x_low > x_high) + 1/2 P(tie) for a random low (<= 2 stars) and high
--   (>= 4 stars) review (> 0.5: the feature points to low ratings); 95% interval from
--   DeLong's standard error (normal approximation), clipped to [0, 1].  All inactive
--   reviews tie at 0, so a feature that rarely fires cannot reach far from 0.5.
-- - auroc_active: the same among the reviews where the feature fires (the conditional
--   effect: "when it fires, is it stronger in low reviews?"); NULL unless it fires in
--   both a low and a high review.
-- - log_odds: log odds ratio of being active in low vs high reviews with the
--   Haldane-Anscombe correction (0.5 added to every cell of the 2x2 table, always,
--   so a feature never active in high reviews still has a finite estimate); 95%
--   Wald interval, SE = sqrt(sum of 1 / (cell + 0.5)).
-- - spearman: rank correlation of x with the star rating (average ranks for ties);
--   95% interval from Fisher's z with variance 1.06 / (n - 3) (Fieller et al., 1957).
-- - auroc_p: two-sided Mann-Whitney p (tie-corrected normal approximation) for low vs
--   high; spearman_p: two-sided p of the rank trend, z = spearman * sqrt(n - 1) (the
--   exact permutation variance with ties).  auroc_q, spearman_q: Benjamini-Hochberg
--   q-values over the features tested, i.e. those with support >= min_reviews and a
--   defined p (n_tested); NULL for the others.
-- Degenerate cases are undefined, not zero-width: the intervals of auroc and spearman
-- are NULL when the feature fires in fewer than 2 rated reviews (deleting one review
-- leaves it constant) or when the standard error is 0.
-- Support: n_rated_active (active rated reviews), n_low_active, n_high_active.
-- Dead features have NULL statistics.
CREATE OR REPLACE MACRO star_signal_all(min_reviews := 20) AS TABLE
WITH s AS (
    SELECT *,
           n_low_active + 0.5 AS a, n_low - n_low_active + 0.5 AS b,
           n_high_active + 0.5 AS c, n_high - n_high_active + 0.5 AS d,
           CASE WHEN abs(spearman) < 1 AND n_rated > 3 AND n_rated_active >= 2 THEN atanh(spearman) END AS z,
           sqrt(1.06 / nullif(n_rated - 3, 0)) AS z_se,
           -- (1e-12: a DeLong variance that is 0 in exact arithmetic rounds to ~1e-17;
           -- a real one is >= ~1e-8 even at 432K reviews)
           auroc_se > 1e-12 AND n_rated_active >= 2 AS auroc_interval
    FROM feature_review_stats
),
est AS (
    SELECT *,
           CASE WHEN n_rated_active > 0 AND n_low > 0 AND n_high > 0
                THEN ln(a * d / (b * c)) END AS log_odds,
           sqrt(1 / a + 1 / b + 1 / c + 1 / d) AS log_odds_se,
           n_rated_active >= min_reviews AS tested
    FROM s
),
-- Benjamini-Hochberg: q(i) = min over j >= i of p(j) * m / j, p ascending, capped at 1.
ranked AS (
    SELECT feature, auroc_p, spearman_p,
           count(auroc_p) OVER () AS m_auroc,
           row_number() OVER (ORDER BY auroc_p NULLS LAST, feature) AS i_auroc,
           count(spearman_p) OVER () AS m_spearman,
           row_number() OVER (ORDER BY spearman_p NULLS LAST, feature) AS i_spearman
    FROM est WHERE tested
),
q AS (
    SELECT feature,
           CASE WHEN auroc_p IS NOT NULL THEN least(1.0, min(auroc_p * m_auroc / i_auroc) OVER (
               ORDER BY i_auroc DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) END AS auroc_q,
           CASE WHEN spearman_p IS NOT NULL THEN least(1.0, min(spearman_p * m_spearman / i_spearman) OVER (
               ORDER BY i_spearman DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) END AS spearman_q,
           m_auroc, m_spearman
    FROM ranked
)
SELECT e.feature, n_rated, n_low, n_high, n_rated_active, n_low_active, n_high_active,
       n_low_active / nullif(n_low, 0) AS frac_low_active,
       n_high_active / nullif(n_high, 0) AS frac_high_active,
       auroc,
       CASE WHEN auroc_interval THEN greatest(auroc - 1.959963984540054 * auroc_se, 0.0) END AS auroc_lo,
       CASE WHEN auroc_interval THEN least(auroc + 1.959963984540054 * auroc_se, 1.0) END AS auroc_hi,
       auroc_active,
       log_odds,
       log_odds - 1.959963984540054 * log_odds_se AS log_odds_lo,
       log_odds + 1.959963984540054 * log_odds_se AS log_odds_hi,
       spearman,
       tanh(z - 1.959963984540054 * z_se) AS spearman_lo,
       tanh(z + 1.959963984540054 * z_se) AS spearman_hi,
       e.auroc_p, q.auroc_q, e.spearman_p, q.spearman_q,
       min_reviews AS min_reviews,
       (SELECT any_value(m_auroc) FROM q) AS n_tested_auroc,
       (SELECT any_value(m_spearman) FROM q) AS n_tested_spearman
FROM est e
LEFT JOIN q ON q.feature = e.feature
ORDER BY e.feature;

-- The features with support >= min_reviews (q-values among exactly them).
CREATE OR REPLACE MACRO star_signal(min_reviews := 20) AS TABLE
SELECT * FROM star_signal_all(min_reviews) WHERE n_rated_active >= min_reviews;

-- One feature, whatever its support; its q-values are among the features with support
-- >= min_reviews (NULL when it has less).
CREATE OR REPLACE MACRO feature_star_signal(feat, min_reviews := 20) AS TABLE
SELECT * FROM star_signal_all(min_reviews) WHERE feature = feat;

-- ---------------------------------------------------------------- honest samples

-- A feature's activations with their interval (1 = lowest values):
-- scheme 'width': equal-width bins of value from 0 to the feature's max (sae_vis /
-- SAEDashboard), the max itself in the last bin; scheme 'quantile': equal-count rank
-- quantiles (delphi), by value then token_pos, sizes differing by at most one.
CREATE OR REPLACE MACRO feature_interval_members(feat, intervals := 10, scheme := 'width') AS TABLE
WITH acts AS (
    SELECT token_pos, review_idx, value FROM activations WHERE bucket = bucket_of(feat) AND feature = feat
),
top AS (SELECT max(value)::DOUBLE AS hi FROM acts)
SELECT a.token_pos, a.review_idx, a.value,
       least(floor(a.value / (t.hi / intervals))::BIGINT + 1, intervals) AS interval
FROM acts a CROSS JOIN top t
WHERE scheme = 'width'
UNION ALL
SELECT token_pos, review_idx, value,
       ntile(intervals) OVER (ORDER BY value, token_pos) AS interval
FROM acts
WHERE scheme = 'quantile';

-- One row per interval: its bounds, how many activations fall in it and their share.
-- 'width' bounds are the bin edges (every bin listed, empty ones too); 'quantile'
-- bounds are the smallest and largest value inside the quantile.
CREATE OR REPLACE MACRO feature_intervals(feat, intervals := 10, scheme := 'width') AS TABLE
WITH m AS (SELECT * FROM feature_interval_members(feat, intervals, scheme)),
tot AS (SELECT count(*) AS n, max(value)::DOUBLE AS hi FROM m),
per AS (
    SELECT interval, count(*) AS n_activations, min(value)::DOUBLE AS lo_value, max(value)::DOUBLE AS hi_value
    FROM m GROUP BY interval
)
SELECT b.range + 1 AS interval,
       CASE WHEN scheme = 'width' THEN b.range * t.hi / intervals ELSE p.lo_value END AS lo,
       CASE WHEN scheme = 'width' THEN (b.range + 1) * t.hi / intervals ELSE p.hi_value END AS hi,
       coalesce(p.n_activations, 0) AS n_activations,
       coalesce(p.n_activations, 0) / t.n AS frac_activations
FROM range(intervals) b
CROSS JOIN tot t
LEFT JOIN per p ON p.interval = b.range + 1
WHERE t.n > 0 AND (scheme = 'width' OR p.n_activations IS NOT NULL)
ORDER BY interval;

-- The sampling order of a token for a seed: a pseudo-random key, so "the n smallest keys"
-- is a uniform sample of any set of tokens, reproducible for a seed and DuckDB version.
-- Not hash(tp, seed): DuckDB combines the two hashes so weakly that the samples of
-- different seeds overlap far more than chance (tests/test_analysis.py measures it).
-- Instead the seed's hash, xor a constant (so no seed maps to 0), is xor-ed into the
-- token's hash and the result hashed again: a fresh mix per seed.
CREATE OR REPLACE MACRO sample_key(tp, seed) AS
    hash(xor(hash(tp::BIGINT), xor(hash(seed::BIGINT), 11400714819323198485::UBIGINT)));

-- Up to n random activations per interval, with contexts: the n members with the
-- smallest sample_key(token_pos, seed), uniform over the whole interval (not a prefix,
-- not the top).
CREATE OR REPLACE MACRO interval_samples(feat, n := 5, intervals := 10, scheme := 'width', seed := 0,
                                         before := default_before(), after := default_after()) AS TABLE
WITH iv AS (SELECT * FROM feature_intervals(feat, intervals, scheme)),
picked AS (
    SELECT token_pos, value, interval,
           row_number() OVER (PARTITION BY interval ORDER BY sample_key(token_pos, seed), token_pos) AS sample
    FROM feature_interval_members(feat, intervals, scheme)
    QUALIFY sample <= n
)
SELECT p.interval, iv.lo, iv.hi, iv.n_activations, iv.frac_activations, p.sample,
       p.token_pos, c.review_id, c.position, p.value, c.stars,
       c.left_context, c.token, c.right_context
FROM picked p
JOIN iv ON iv.interval = p.interval
JOIN token_contexts((SELECT list(token_pos) FROM picked), before := before, after := after) c
  ON c.token_pos = p.token_pos
ORDER BY p.interval, p.sample;

-- n random tokens the feature is not active on (uniform over all such tokens), with
-- contexts; `review_active` says whether the feature fires elsewhere in the review.
CREATE OR REPLACE MACRO non_activating_samples(feat, n := 5, seed := 0, before := default_before(), after := default_after()) AS TABLE
WITH act AS (
    SELECT token_pos, review_idx FROM activations WHERE bucket = bucket_of(feat) AND feature = feat
),
picked AS (
    SELECT t.token_pos, t.review_idx,
           row_number() OVER (ORDER BY sample_key(t.token_pos, seed), t.token_pos) AS sample
    FROM tokens t
    WHERE t.token_pos NOT IN (SELECT token_pos FROM act)
    QUALIFY sample <= n
)
SELECT p.sample, p.token_pos, c.review_id, c.position, 0.0::FLOAT AS value, c.stars,
       p.review_idx IN (SELECT review_idx FROM act) AS review_active,
       c.left_context, c.token, c.right_context
FROM picked p
JOIN token_contexts((SELECT list(token_pos) FROM picked), before := before, after := after) c
  ON c.token_pos = p.token_pos
ORDER BY p.sample;

-- ---------------------------------------------------------------- diverse top-k

-- top_k keeping at most per_review activations per review, per_business per business
-- and per_user per user (NULL: no limit).  The limits apply in that order, each to the
-- survivors of the previous one, by value desc then token_pos: with one of
-- per_business/per_user this is exactly a greedy pass down the ranking; with both, a
-- user's cap counts activations its business cap already let through.  A review
-- without a business (user) id is not capped by that limit.
CREATE OR REPLACE MACRO top_k_diverse(feat, k, per_review := 1, per_business := NULL, per_user := NULL) AS TABLE
WITH acts AS (
    SELECT a.token_pos, a.review_idx, a.value, r.business_id, r.user_id
    FROM activations a JOIN reviews r ON r.review_idx = a.review_idx
    WHERE a.bucket = bucket_of(feat) AND a.feature = feat
),
r1 AS (
    SELECT * FROM acts
    QUALIFY per_review IS NULL
         OR row_number() OVER (PARTITION BY review_idx ORDER BY value DESC, token_pos) <= per_review
),
r2 AS (
    SELECT * FROM r1
    QUALIFY per_business IS NULL OR business_id IS NULL
         OR row_number() OVER (PARTITION BY business_id ORDER BY value DESC, token_pos) <= per_business
),
r3 AS (
    SELECT * FROM r2
    QUALIFY per_user IS NULL OR user_id IS NULL
         OR row_number() OVER (PARTITION BY user_id ORDER BY value DESC, token_pos) <= per_user
),
top AS (
    SELECT *, row_number() OVER (ORDER BY value DESC, token_pos) AS rank
    FROM r3
    QUALIFY rank <= k
)
SELECT top.rank, top.token_pos, r.review_id, t.position, top.value, r.stars, top.review_idx,
       top.business_id, top.user_id
FROM top
JOIN reviews r ON r.review_idx = top.review_idx
JOIN tokens t ON t.token_pos = top.token_pos
ORDER BY top.rank;

-- ---------------------------------------------------------------- review- vs token-level

-- Expected fraction of reviews a feature of token density p would be active in if it
-- fired on tokens independently: mean over reviews with tokens of 1 - (1 - p)^n_tokens,
-- computed once per distinct review length.
CREATE OR REPLACE MACRO independent_review_density(p) AS (
    SELECT sum(n * (1 - pow(1 - p, len))) / sum(n)
    FROM (SELECT n_tokens AS len, count(*) AS n FROM reviews WHERE n_tokens > 0 GROUP BY n_tokens)
);

-- One feature: token-level vs review-level activity.  clumping = frac_reviews_active /
-- the fraction expected if its tokens fired independently: near 1 the feature is
-- scattered (once here, once there), well below 1 it fires throughout few reviews.
CREATE OR REPLACE MACRO feature_spread(feat) AS TABLE
WITH per_review AS (
    SELECT a.review_idx, count(*) AS n_active_tokens
    FROM activations a
    WHERE a.bucket = bucket_of(feat) AND a.feature = feat
    GROUP BY a.review_idx
),
j AS (SELECT p.n_active_tokens, r.n_tokens FROM per_review p JOIN reviews r ON r.review_idx = p.review_idx),
agg AS (
    SELECT avg(n_active_tokens) AS mean_tokens_per_active_review,
           median(n_active_tokens) AS median_tokens_per_active_review,
           quantile_disc(n_active_tokens, 0.9) AS p90_tokens_per_active_review,
           max(n_active_tokens) AS max_tokens_per_review,
           count(*) FILTER (WHERE n_active_tokens = 1) / nullif(count(*), 0) AS frac_single_token_reviews,
           avg(n_active_tokens / n_tokens) AS mean_frac_of_review_tokens
    FROM j
)
SELECT f.feature, f.n_active, f.n_reviews,
       f.density AS frac_tokens_active, f.review_density AS frac_reviews_active,
       agg.*,
       f.review_density / nullif(independent_review_density(f.density), 0) AS clumping
FROM features f CROSS JOIN agg
WHERE f.feature = feat;

-- Every feature with at least min_reviews active reviews: the same measures from the
-- precomputed tables (median/p90 need the activations: see feature_spread).
CREATE OR REPLACE MACRO feature_spreads(min_reviews := 20) AS TABLE
WITH lens AS (SELECT n_tokens AS len, count(*) AS n FROM reviews WHERE n_tokens > 0 GROUP BY n_tokens),
expected AS (
    SELECT f.feature, sum(l.n * (1 - pow(1 - f.density, l.len))) / sum(l.n) AS independent
    FROM features f CROSS JOIN lens l
    WHERE f.n_reviews >= min_reviews AND f.n_reviews > 0
    GROUP BY f.feature
)
SELECT f.feature, f.n_active, f.n_reviews,
       f.density AS frac_tokens_active, f.review_density AS frac_reviews_active,
       f.n_active / f.n_reviews AS mean_tokens_per_active_review,
       s.max_tokens_per_review,
       s.n_single_token_reviews / f.n_reviews AS frac_single_token_reviews,
       f.review_density / nullif(e.independent, 0) AS clumping
FROM features f
JOIN feature_review_stats s ON s.feature = f.feature
JOIN expected e ON e.feature = f.feature
ORDER BY f.feature;

-- ---------------------------------------------------------------- co-occurrence

-- The features active on the same tokens as feature feat, optionally only in reviews
-- with star_rating stars.  A sparse self-join: feat's token positions (one bucket) are
-- probed against every bucket, so the cost is one scan of activations; no
-- latents x latents matrix exists.  Over the universe U of tokens in scope:
-- n_both = tokens where both fire, jaccard = n_both / (n_feature + n_other - n_both),
-- lift = n_both * |U| / (n_feature * n_other) (1 = independent),
-- p_other_given_feature = n_both / n_feature.
CREATE OR REPLACE MACRO cooccurrence(feat, star_rating := NULL) AS TABLE
WITH scope AS (
    SELECT review_idx, n_tokens FROM reviews WHERE star_rating IS NOT NULL AND stars = star_rating
),
mine AS (
    SELECT token_pos FROM activations
    WHERE bucket = bucket_of(feat) AND feature = feat
      AND (star_rating IS NULL OR review_idx IN (SELECT review_idx FROM scope))
),
n_mine AS (SELECT count(*) AS n FROM mine),
universe AS (
    SELECT CASE WHEN star_rating IS NULL THEN (SELECT count(*) FROM tokens)
                ELSE (SELECT sum(n_tokens) FROM scope) END AS n
),
pairs AS (
    SELECT a.feature, count(*) AS n_both
    FROM activations a
    WHERE a.token_pos IN (SELECT token_pos FROM mine) AND a.feature <> feat
    GROUP BY a.feature
),
other AS (
    SELECT feature, n_active FROM features WHERE star_rating IS NULL
    UNION ALL
    SELECT a.feature, count(*) AS n_active
    FROM activations a
    WHERE star_rating IS NOT NULL
      AND a.review_idx IN (SELECT review_idx FROM scope)
      AND a.feature IN (SELECT feature FROM pairs)
    GROUP BY a.feature
)
SELECT p.feature, p.n_both, m.n AS n_feature, o.n_active AS n_other, u.n AS n_tokens,
       p.n_both / (m.n + o.n_active - p.n_both) AS jaccard,
       p.n_both * u.n / (m.n * o.n_active) AS lift,
       p.n_both / m.n AS p_other_given_feature,
       p.n_both / o.n_active AS p_feature_given_other
FROM pairs p
JOIN other o ON o.feature = p.feature
CROSS JOIN n_mine m
CROSS JOIN universe u
ORDER BY p.n_both DESC, p.feature;

-- ---------------------------------------------------------------- corpus search

-- Token positions whose token text equals pat, or matches the regular expression pat
-- (RE2, unanchored: use ^...$ for a whole token) when regex is true.
CREATE OR REPLACE MACRO token_matches(pat, regex := false) AS TABLE
SELECT token_pos, review_idx, token
FROM tokens
WHERE (NOT regex AND token = pat)
   OR (regex AND regexp_matches(token, CASE WHEN regex THEN pat ELSE '' END));

-- The token ids whose text matches pat (exactly, or as a regex): from `vocabulary`,
-- one row per token id that occurs, so matching costs nothing at any corpus size.
CREATE OR REPLACE MACRO vocabulary_matches(pat, regex := false) AS TABLE
SELECT token_id, token, n_occurrences
FROM vocabulary
WHERE (NOT regex AND token = pat)
   OR (regex AND regexp_matches(token, CASE WHEN regex THEN pat ELSE '' END));

-- Features firing on the tokens matching pat, treating each feature as a detector of
-- those tokens: recall = n_hits / n_occurrences (of the matching tokens, the share it
-- fires on), precision = n_hits / n_active (of its activations, the share on matching
-- tokens), f1 = their harmonic mean.  Ordered by f1, then n_hits.  Read from
-- token_feature_stats (per token id and feature), not from a scan of activations.
CREATE OR REPLACE MACRO token_search(pat, regex := false) AS TABLE
WITH ids AS (SELECT * FROM vocabulary_matches(pat, regex)),
n AS (SELECT coalesce(sum(n_occurrences), 0)::BIGINT AS n_occurrences,
             count(DISTINCT token) AS n_distinct_tokens FROM ids),
hits AS (
    SELECT s.feature, sum(s.n_active)::BIGINT AS n_hits, sum(s.sum_value) / sum(s.n_active) AS mean_value,
           max(s.max_value) AS max_value
    FROM token_feature_stats s
    WHERE s.token_id IN (SELECT token_id FROM ids)
    GROUP BY s.feature
)
SELECT h.feature, h.n_hits, n.n_occurrences, f.n_active,
       h.n_hits / n.n_occurrences AS recall,
       h.n_hits / f.n_active AS precision,
       2 * h.n_hits / (n.n_occurrences + f.n_active) AS f1,
       h.mean_value, h.max_value, n.n_distinct_tokens
FROM hits h
CROSS JOIN n
JOIN features f ON f.feature = h.feature
ORDER BY f1 DESC, h.n_hits DESC, h.feature;

-- Precision and recall of one (feature, token pattern) pair, also when it never fires
-- there (one row; NULL ratios for an empty side).
CREATE OR REPLACE MACRO feature_token_pr(feat, pat, regex := false) AS TABLE
WITH ids AS (SELECT * FROM vocabulary_matches(pat, regex)),
n AS (SELECT coalesce(sum(n_occurrences), 0)::BIGINT AS n_occurrences FROM ids),
hits AS (
    SELECT coalesce(sum(n_active), 0)::BIGINT AS n_hits FROM token_feature_stats
    WHERE feature = feat AND token_id IN (SELECT token_id FROM ids)
)
SELECT f.feature, h.n_hits, n.n_occurrences, f.n_active,
       h.n_hits / nullif(n.n_occurrences, 0) AS recall,
       h.n_hits / nullif(f.n_active, 0) AS precision,
       2 * h.n_hits / nullif(n.n_occurrences + f.n_active, 0) AS f1
FROM features f CROSS JOIN n CROSS JOIN hits h
WHERE f.feature = feat;

-- Reviews (with tokens) whose text matches the regular expression pat (RE2; prefix
-- (?i) for case-insensitive), the first k by review_idx, each with its n_features
-- strongest features (ranked as review_features).  `snippet` is the text around the
-- first match; n_matching counts every matching review.
CREATE OR REPLACE MACRO text_search(pat, k := 20, n_features := 5) AS TABLE
WITH all_m AS (
    SELECT review_idx, review_id, stars, text, first_token_pos, last_token_pos
    FROM reviews WHERE n_tokens > 0 AND regexp_matches(text, pat)
),
m AS (
    SELECT *, row_number() OVER (ORDER BY review_idx) AS review_rank
    FROM all_m QUALIFY review_rank <= k
),
n AS (SELECT count(*) AS n_matching FROM all_m),
-- n_features <= review_top() reads the listed reviews' rows of review_top_features
-- (ranked the same way); more takes the general path, under the LIMIT that removes its
-- plan when not taken (as top_k and review_features do).
ranked AS (
    SELECT t.review_idx, t.feature, t.max_value, t.n_tokens_active, t.rank::BIGINT AS feature_rank
    FROM review_top_features t JOIN m ON m.review_idx = t.review_idx
    WHERE t.rank <= n_features AND n_features <= review_top()
    UNION ALL
    (SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY review_idx ORDER BY max_value DESC, feature) AS feature_rank
        FROM (
            SELECT a.review_idx, a.feature, max(a.value) AS max_value, count(*) AS n_tokens_active
            FROM activations a JOIN m ON m.review_idx = a.review_idx
             AND a.token_pos BETWEEN m.first_token_pos AND m.last_token_pos
            GROUP BY a.review_idx, a.feature
        ) QUALIFY feature_rank <= n_features
    ) LIMIT CASE WHEN n_features > review_top() THEN greatest(k, 0) * greatest(n_features, 0) ELSE 0 END)
)
SELECT m.review_rank, m.review_id, m.stars, n.n_matching,
       substring(m.text, greatest(strpos(m.text, regexp_extract(m.text, pat)) - 40, 1),
                 length(regexp_extract(m.text, pat)) + 80) AS snippet,
       r.feature_rank, r.feature, r.max_value, r.n_tokens_active, f.density
FROM m
CROSS JOIN n
LEFT JOIN ranked r ON r.review_idx = m.review_idx
LEFT JOIN features f ON f.feature = r.feature
ORDER BY m.review_rank, r.feature_rank;

-- ---------------------------------------------------------------- review sets, businesses, users

-- Features over-represented in a set of reviews (a LIST of review_idx; reviews without
-- tokens are ignored): n_active_reviews in the set (support), frac_active in the set,
-- frac_active_corpus (= features.review_density) and lift = their ratio.
CREATE OR REPLACE MACRO review_set_features(review_ids, min_reviews := 3) AS TABLE
WITH s AS (
    SELECT review_idx FROM reviews
    WHERE n_tokens > 0 AND review_idx IN (SELECT unnest(review_ids))
),
n AS (SELECT count(*) AS n_reviews FROM s),
-- review_active_features is in review order with row-group statistics: a set of
-- reviews reads the row groups holding them, one row per (review, active feature).
hits AS (
    SELECT feature, count(*) AS n_active_reviews
    FROM review_active_features
    WHERE review_idx IN (SELECT review_idx FROM s)
    GROUP BY feature
)
SELECT h.feature, h.n_active_reviews, n.n_reviews,
       h.n_active_reviews / n.n_reviews AS frac_active,
       f.review_density AS frac_active_corpus,
       (h.n_active_reviews / n.n_reviews) / f.review_density AS lift
FROM hits h
CROSS JOIN n
JOIN features f ON f.feature = h.feature
WHERE h.n_active_reviews >= min_reviews
ORDER BY lift DESC, h.n_active_reviews DESC, h.feature;

CREATE OR REPLACE MACRO business_features(bid, min_reviews := 3) AS TABLE
SELECT * FROM review_set_features((SELECT list(review_idx) FROM reviews WHERE business_id = bid),
                                  min_reviews := min_reviews);

CREATE OR REPLACE MACRO user_features(uid, min_reviews := 2) AS TABLE
SELECT * FROM review_set_features((SELECT list(review_idx) FROM reviews WHERE user_id = uid),
                                  min_reviews := min_reviews);

-- Where one feature is active, by business (by_ = 'business') or user (by_ = 'user'):
-- per group its reviews with tokens, the active ones, frac_active, share (of the
-- feature's active reviews with a group id) and lift (frac_active / the feature's
-- review_density).  Ordered by active reviews.
CREATE OR REPLACE MACRO feature_groups(feat, by_ := 'business') AS TABLE
WITH g AS (
    SELECT review_idx, CASE WHEN by_ = 'user' THEN user_id ELSE business_id END AS group_id
    FROM reviews WHERE n_tokens > 0
),
sizes AS (SELECT group_id, count(*) AS n_reviews FROM g WHERE group_id IS NOT NULL GROUP BY group_id),
active AS (
    SELECT g.group_id, count(*) AS n_active_reviews
    FROM (SELECT DISTINCT review_idx FROM activations WHERE bucket = bucket_of(feat) AND feature = feat) a
    JOIN g ON g.review_idx = a.review_idx
    WHERE g.group_id IS NOT NULL
    GROUP BY g.group_id
),
tot AS (SELECT sum(n_active_reviews) AS n FROM active)
SELECT a.group_id, a.n_active_reviews, s.n_reviews,
       a.n_active_reviews / s.n_reviews AS frac_active,
       a.n_active_reviews / t.n AS share,
       (a.n_active_reviews / s.n_reviews) / f.review_density AS lift
FROM active a
JOIN sizes s ON s.group_id = a.group_id
CROSS JOIN tot t
JOIN features f ON f.feature = feat
ORDER BY a.n_active_reviews DESC, a.group_id;

-- The corpus's own concentration: share of the reviews with tokens from the 10 largest
-- businesses (users) and the Gini index of review counts: what a feature active in
-- every review would score, the baseline for `concentration`.
CREATE OR REPLACE MACRO corpus_concentration() AS TABLE
WITH g AS (
    SELECT 'business' AS by_, business_id AS group_id FROM reviews WHERE n_tokens > 0 AND business_id IS NOT NULL
    UNION ALL
    SELECT 'user', user_id FROM reviews WHERE n_tokens > 0 AND user_id IS NOT NULL
),
c AS (SELECT by_, group_id, count(*) AS n FROM g GROUP BY ALL),
r AS (
    SELECT by_, n,
           row_number() OVER (PARTITION BY by_ ORDER BY n) AS i,
           row_number() OVER (PARTITION BY by_ ORDER BY n DESC) AS from_top,
           count(*) OVER (PARTITION BY by_) AS n_groups
    FROM c
)
SELECT by_, any_value(n_groups) AS n_groups,
       sum(n) FILTER (WHERE from_top <= 10) / sum(n) AS top10_share,
       2 * sum(i * n) / (any_value(n_groups) * sum(n)) - (any_value(n_groups) + 1) / any_value(n_groups) AS gini
FROM r GROUP BY by_ ORDER BY by_;

-- Every feature's concentration across businesses and users (feature_review_stats):
-- share of its active reviews from its 10 most frequent businesses (users) and the Gini
-- index of its active-review counts over all businesses (users) with reviews, zeros
-- included (1: one business; the corpus itself scores corpus_*).
-- Against chance: *_expected is the mean, *_sd the standard deviation, of the same
-- statistic when the feature's active reviews (those with a business / user id) are a
-- random subset of the reviews (businesses hit in proportion to their review counts;
-- seeded simulation at build, etl/review_stats.chance_concentration).  *_excess =
-- observed - expected, *_z = excess / sd: a rare feature's high Gini is expected, so it
-- no longer tops the list by construction.  NULL z where sd = 0 (e.g. active in every
-- review: nothing could have been placed differently).
CREATE OR REPLACE MACRO concentration(min_reviews := 20) AS TABLE
WITH cb AS (SELECT * FROM corpus_concentration() WHERE by_ = 'business'),
cu AS (SELECT * FROM corpus_concentration() WHERE by_ = 'user')
SELECT s.feature, f.n_reviews,
       s.n_businesses, s.top10_business_share, s.business_gini,
       s.n_users, s.top10_user_share, s.user_gini,
       cb.top10_share AS corpus_top10_business_share, cb.gini AS corpus_business_gini,
       cu.top10_share AS corpus_top10_user_share, cu.gini AS corpus_user_gini,
       s.chance_top10_business_mean AS top10_business_share_expected,
       s.chance_top10_business_sd AS top10_business_share_sd,
       s.top10_business_share - s.chance_top10_business_mean AS top10_business_share_excess,
       (s.top10_business_share - s.chance_top10_business_mean) / nullif(s.chance_top10_business_sd, 0)
           AS top10_business_share_z,
       s.chance_gini_business_mean AS business_gini_expected,
       s.chance_gini_business_sd AS business_gini_sd,
       s.business_gini - s.chance_gini_business_mean AS business_gini_excess,
       (s.business_gini - s.chance_gini_business_mean) / nullif(s.chance_gini_business_sd, 0) AS business_gini_z,
       s.chance_top10_user_mean AS top10_user_share_expected,
       s.chance_top10_user_sd AS top10_user_share_sd,
       s.top10_user_share - s.chance_top10_user_mean AS top10_user_share_excess,
       (s.top10_user_share - s.chance_top10_user_mean) / nullif(s.chance_top10_user_sd, 0) AS top10_user_share_z,
       s.chance_gini_user_mean AS user_gini_expected,
       s.chance_gini_user_sd AS user_gini_sd,
       s.user_gini - s.chance_gini_user_mean AS user_gini_excess,
       (s.user_gini - s.chance_gini_user_mean) / nullif(s.chance_gini_user_sd, 0) AS user_gini_z
FROM feature_review_stats s
JOIN features f ON f.feature = s.feature
CROSS JOIN cb CROSS JOIN cu
WHERE f.n_reviews >= min_reviews
ORDER BY s.feature;

-- ---------------------------------------------------------------- exports

-- Activation records (Neuronpedia's shape) for token positions of feature feat: per
-- position, the window of its review's tokens (the top_k_contexts window), the
-- feature's value on every window token (0 where inactive), the max and min of those
-- values, the index of the first max and of the position itself (qualifying token).
-- Token text is '' where the review's tokens could not be aligned to its text.
CREATE OR REPLACE MACRO activation_records(feat, positions, before := default_before(), after := default_after()) AS TABLE
WITH p AS (
    SELECT token_pos, review_idx, position FROM tokens WHERE token_pos IN (SELECT unnest(positions))
),
w AS (
    SELECT p.token_pos AS center, p.position AS center_position, t.position, t.token_pos,
           coalesce(t.token, '') AS token
    FROM p JOIN tokens t
      ON t.review_idx = p.review_idx
     AND t.position BETWEEN p.position - greatest(before, 0) AND p.position + greatest(after, 0)
),
v AS (
    SELECT token_pos, value FROM activations
    WHERE bucket = bucket_of(feat) AND feature = feat AND token_pos IN (SELECT token_pos FROM w)
),
wv AS (
    SELECT w.*, coalesce(v.value, 0.0::FLOAT) AS value,
           row_number() OVER (PARTITION BY w.center ORDER BY w.position) - 1 AS idx
    FROM w LEFT JOIN v ON v.token_pos = w.token_pos
)
SELECT center AS token_pos,
       list(token ORDER BY position) AS tokens,
       list(value ORDER BY position) AS "values",
       max(value) AS max_value,
       min(value) AS min_value,
       arg_min(idx, (-value, idx)) AS max_value_token_index,
       min(idx) FILTER (WHERE position = center_position) AS qualifying_token_index
FROM wv
GROUP BY center;

-- The whole warehouse's per-feature statistics, one row per feature (dead ones
-- included): the features table, the star signal with its intervals, p-values and
-- q-values (among the features with >= 20 active rated reviews: q_min_reviews),
-- review-level activity and concentration against chance.  `saewh export stats` writes
-- it as Parquet or CSV.
CREATE OR REPLACE MACRO feature_stats() AS TABLE
WITH lens AS (SELECT n_tokens AS len, count(*) AS n FROM reviews WHERE n_tokens > 0 GROUP BY n_tokens),
expected AS (
    SELECT f.feature, sum(l.n * (1 - pow(1 - f.density, l.len))) / sum(l.n) AS independent
    FROM features f CROSS JOIN lens l
    WHERE f.n_active > 0
    GROUP BY f.feature
)
SELECT f.feature, f.n_active, f.n_reviews, f.density, f.review_density, f.max_value, f.mean_value,
       s.n_rated_active, s.n_low_active, s.n_high_active, s.frac_low_active, s.frac_high_active,
       s.auroc, s.auroc_lo, s.auroc_hi, s.log_odds, s.log_odds_lo, s.log_odds_hi,
       s.spearman, s.spearman_lo, s.spearman_hi,
       s.auroc_active, s.auroc_p, s.auroc_q, s.spearman_p, s.spearman_q, s.min_reviews AS q_min_reviews,
       f.n_active / nullif(f.n_reviews, 0) AS mean_tokens_per_active_review,
       r.max_tokens_per_review,
       r.n_single_token_reviews / nullif(f.n_reviews, 0) AS frac_single_token_reviews,
       f.review_density / nullif(e.independent, 0) AS clumping,
       r.n_businesses, r.top10_business_share, r.business_gini,
       r.n_users, r.top10_user_share, r.user_gini,
       c.business_gini_expected, c.business_gini_z, c.user_gini_expected, c.user_gini_z
FROM features f
JOIN feature_review_stats r ON r.feature = f.feature
JOIN star_signal_all(min_reviews := 20) s ON s.feature = f.feature
JOIN concentration(min_reviews := 0) c ON c.feature = f.feature
LEFT JOIN expected e ON e.feature = f.feature
ORDER BY f.feature;
