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
-- review_features ranks them (k <= review_top(): the review's rows of
-- review_top_features); each one's peak is then looked up in its bucket, inside the
-- review's token range, rather than by ranking every activation of the review (a scan
-- of all of `activations` and `tokens`).
WITH r AS (
    SELECT review_idx, first_token_pos, last_token_pos FROM reviews WHERE review_id = $review_id
),
top AS (
    SELECT row_number() OVER (ORDER BY max_value DESC, feature) AS rank, feature, max_value, n_tokens_active
    FROM review_features($review_id, $k)
),
peaks AS (
    SELECT a.feature, min(a.token_pos) AS token_pos
    FROM activations a
    JOIN top ON a.feature = top.feature AND a.value = top.max_value
    JOIN r ON a.review_idx = r.review_idx AND a.token_pos BETWEEN r.first_token_pos AND r.last_token_pos
    GROUP BY a.feature
)
SELECT top.rank, top.feature, top.max_value, top.n_tokens_active,
       t.position AS peak_position, t.token AS peak_token, f.density
FROM top
JOIN peaks p ON p.feature = top.feature
JOIN tokens t ON t.token_pos = p.token_pos
JOIN r ON t.token_pos BETWEEN r.first_token_pos AND r.last_token_pos
JOIN features f ON f.feature = top.feature
ORDER BY top.rank;
