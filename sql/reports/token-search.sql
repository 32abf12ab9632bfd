-- name: token-search
-- description: Features that fire on a token string or regex, with precision and recall; or one (feature, token) pair.
-- param: pattern VARCHAR -- the token text (leading space included: " salsa"), or a regular expression with --regex
-- param: regex BOOLEAN = false -- treat --pattern as a regular expression (RE2, unanchored; ^...$ for whole tokens)
-- param: feature INTEGER = NULL -- only this feature's precision and recall (with its rank)
-- param: k INTEGER(1..10000) = 20 -- number of features
-- Treating the feature as a detector of the matching tokens: recall = n_hits /
-- n_occurrences (of the matching tokens, the share it fires on), precision = n_hits /
-- n_active (of all its activations, the share on matching tokens), f1 their harmonic
-- mean.  Ranked by f1, then n_hits.  Macros token_search and feature_token_pr.
WITH ranked AS (
    SELECT row_number() OVER (ORDER BY f1 DESC, n_hits DESC, feature) AS rank, *
    FROM token_search($pattern, regex := $regex)
),
one AS (SELECT * FROM feature_token_pr($feature, $pattern, regex := $regex))
SELECT rank, feature, n_hits, n_occurrences, n_active, recall, precision, f1, mean_value, max_value
FROM ranked
WHERE $feature IS NULL AND rank <= $k
UNION ALL
SELECT r.rank, o.feature, o.n_hits, o.n_occurrences, o.n_active, o.recall, o.precision, o.f1,
       r.mean_value, r.max_value
FROM one o LEFT JOIN ranked r ON r.feature = o.feature
ORDER BY rank NULLS LAST;
