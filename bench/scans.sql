-- name: scans
-- description: The full-scan SQL the token-major access paths replaced (issue 13), kept to measure against.
-- param: token VARCHAR -- an exact token text
-- param: pattern VARCHAR -- a token regex (token_search) or a text regex (text_search)
-- param: k INTEGER = 10 -- reviews listed by text_search, features by review
-- param: n_features INTEGER = 5 -- features per review listed by text_search
-- param: business_id VARCHAR = NULL -- the business of review_set_features
-- param: review_id VARCHAR = NULL -- the review of `report review`
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

-- statement: review_set_features
-- review_set_features (business_features) of 44036ce: every activation's review_idx
-- probed against the set.
WITH s AS (SELECT review_idx FROM reviews WHERE n_tokens > 0 AND business_id = $business_id)
SELECT feature, count(DISTINCT review_idx) AS n_active_reviews
FROM activations
WHERE review_idx IN (SELECT review_idx FROM s)
GROUP BY feature
ORDER BY n_active_reviews DESC, feature;

-- statement: review
-- `report review`'s features section of 44036ce: every activation of the review ranked.
WITH r AS (
    SELECT review_idx, first_token_pos, last_token_pos FROM reviews WHERE review_id = $review_id
),
acts AS (
    SELECT a.feature, a.value, a.token_pos,
           row_number() OVER (PARTITION BY a.feature ORDER BY a.value DESC, a.token_pos) AS nth,
           count(*) OVER (PARTITION BY a.feature) AS n_tokens_active
    FROM activations a
    JOIN r ON a.review_idx = r.review_idx
          AND a.token_pos BETWEEN r.first_token_pos AND r.last_token_pos
)
SELECT row_number() OVER (ORDER BY a.value DESC, a.feature) AS rank,
       a.feature, a.value AS max_value, a.n_tokens_active,
       t.position AS peak_position, t.token AS peak_token, f.density
FROM acts a
JOIN tokens t ON t.token_pos = a.token_pos
JOIN features f ON f.feature = a.feature
WHERE a.nth = 1
ORDER BY rank
LIMIT $k;
