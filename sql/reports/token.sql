-- name: token
-- description: The features that fire most on a token string (e.g. " salsa"), with how often.
-- param: token VARCHAR -- the token's exact text, leading space included: " salsa"
-- param: k INTEGER(1..10000) = 20 -- number of features
-- n_active: occurrences of the token the feature is active on (of n_occurrences);
-- frac_of_feature: the share of all the feature's activations that fall on this token
-- (1.0: the feature fires on nothing else).  Ranked by n_active, then mean value.
-- Read from vocabulary and token_feature_stats (per token id and feature), summed over
-- the token ids whose text is the token: no scan of activations or tokens.
WITH ids AS (SELECT token_id, n_occurrences FROM vocabulary WHERE token = $token),
n AS (SELECT coalesce(sum(n_occurrences), 0)::BIGINT AS n_occurrences FROM ids),
hits AS (
    SELECT s.feature, sum(s.n_active)::BIGINT AS n_active, sum(s.sum_value) / sum(s.n_active) AS mean_value,
           max(s.max_value) AS max_value
    FROM token_feature_stats s
    WHERE s.token_id IN (SELECT token_id FROM ids)
    GROUP BY s.feature
)
SELECT row_number() OVER (ORDER BY h.n_active DESC, h.mean_value DESC, h.feature) AS rank,
       h.feature, h.n_active, n.n_occurrences, h.n_active / n.n_occurrences AS frac_active,
       h.mean_value, h.max_value, h.n_active / f.n_active AS frac_of_feature, f.density
FROM hits h
CROSS JOIN n
JOIN features f ON f.feature = h.feature
ORDER BY rank
LIMIT $k;
