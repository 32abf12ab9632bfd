-- name: review
-- description: A review's text and metadata with its strongest features.
-- param: review_id VARCHAR -- the review id (reviews.review_id)
-- param: k INTEGER(1..10000) = 20 -- number of features
-- Two result sets (sections): review, features.  Features are ranked as
-- review_features (max value desc, ties by feature); peak_token is the token of the
-- review where the feature is strongest (first such token on ties); density is the
-- feature's density over the whole warehouse (low: a specific feature).

-- statement: review -- the review
-- display: vertical
SELECT review_id, stars, useful, business_id, user_id, n_tokens, alignment, text
FROM reviews
WHERE review_id = $review_id;

-- statement: features -- the review's strongest features
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
