-- name: scans
-- description: The full-scan SQL the token-major access paths replaced (issue 13), kept to measure against.
-- param: token VARCHAR -- an exact token text
-- param: pattern VARCHAR -- a token regex (token_search) or a text regex (text_search)
-- param: k INTEGER = 10 -- reviews listed by text_search
-- param: n_features INTEGER = 5 -- features per review listed by text_search
-- The queries of f7a08f5: `report token`, `token_search(pattern, regex := true)` and
-- text_search's features section, each reading `activations` in full.

-- statement: token
WITH occurrences AS (SELECT token_pos FROM tokens WHERE token = $token),
n AS (SELECT count(*) AS n_occurrences FROM occurrences),
hits AS (
    SELECT a.feature, count(*) AS n_active, fsum(a.value) / count(*) AS mean_value, max(a.value) AS max_value
    FROM activations a SEMI JOIN occurrences o ON o.token_pos = a.token_pos
    GROUP BY a.feature
)
SELECT row_number() OVER (ORDER BY h.n_active DESC, h.mean_value DESC, h.feature) AS rank,
       h.feature, h.n_active, n.n_occurrences, h.n_active / n.n_occurrences AS frac_active,
       h.mean_value, h.max_value, h.n_active / f.n_active AS frac_of_feature, f.density
FROM hits h CROSS JOIN n JOIN features f ON f.feature = h.feature
ORDER BY rank LIMIT 20;

-- statement: token_search
WITH occ AS (SELECT token_pos FROM token_matches($pattern, true)),
n AS (SELECT count(*) AS n_occurrences FROM occ),
hits AS (
    SELECT a.feature, count(*) AS n_hits FROM activations a
    WHERE a.token_pos IN (SELECT token_pos FROM occ) GROUP BY a.feature
)
SELECT h.feature, h.n_hits, n.n_occurrences FROM hits h CROSS JOIN n
ORDER BY h.n_hits DESC, h.feature;

-- statement: text_search
WITH m AS (
    SELECT review_idx, first_token_pos, last_token_pos FROM reviews
    WHERE n_tokens > 0 AND regexp_matches(text, $pattern)
    ORDER BY review_idx LIMIT $k
),
acts AS (
    SELECT a.review_idx, a.feature, max(a.value) AS max_value, count(*) AS n_tokens_active
    FROM activations a JOIN m ON m.review_idx = a.review_idx
     AND a.token_pos BETWEEN m.first_token_pos AND m.last_token_pos
    GROUP BY a.review_idx, a.feature
)
SELECT *, row_number() OVER (PARTITION BY review_idx ORDER BY max_value DESC, feature) AS feature_rank
FROM acts QUALIFY feature_rank <= $n_features
ORDER BY review_idx, feature_rank;
