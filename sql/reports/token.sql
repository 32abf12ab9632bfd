-- name: token
-- description: The features that fire most on a token string (e.g. " salsa"), with how often.
-- param: token VARCHAR -- the token's exact text, leading space included: " salsa"
-- param: k INTEGER(1..10000) = 20 -- number of features
-- n_active: occurrences of the token the feature is active on (of n_occurrences);
-- frac_of_feature: the share of all the feature's activations that fall on this token
-- (1.0: the feature fires on nothing else).  Ranked by n_active, then mean value.
WITH occurrences AS (
    SELECT token_pos FROM tokens WHERE token = $token
),
n AS (SELECT count(*) AS n_occurrences FROM occurrences),
hits AS (
    SELECT a.feature, count(*) AS n_active, fsum(a.value) / count(*) AS mean_value,
           max(a.value) AS max_value
    FROM activations a
    SEMI JOIN occurrences o ON o.token_pos = a.token_pos
    GROUP BY a.feature
)
SELECT row_number() OVER (ORDER BY h.n_active DESC, h.mean_value DESC, h.feature) AS rank,
       h.feature, h.n_active, n.n_occurrences, h.n_active / n.n_occurrences AS frac_active,
       h.mean_value, h.max_value, h.n_active / f.n_active AS frac_of_feature, f.density
FROM hits h
CROSS JOIN n
JOIN features f ON f.feature = h.feature
ORDER BY rank
LIMIT $k;
