-- name: review_features
-- description: A review's k strongest features, max_value desc, ties by feature (the macro `review_features`).
-- param: review_id VARCHAR
-- param: k INTEGER
-- k <= review top reads review_top_features (each review's strongest features, ranked
-- the same way); a larger k aggregates the review's activations (a scan of every bucket).
SELECT feature, max_value, n_tokens_active FROM (
    SELECT t.feature, t.max_value, t.n_tokens_active
    FROM review_top_features t
    JOIN (SELECT review_idx FROM reviews WHERE review_id = :review_id) r ON r.review_idx = t.review_idx
    WHERE t.rank <= :k AND :k <= {{contract REVIEW_TOP}}
    UNION ALL
    SELECT feature, max_value, n_tokens_active FROM (
        SELECT a.feature, max(a.value) AS max_value, count(*) AS n_tokens_active,
               row_number() OVER (ORDER BY max(a.value) DESC, a.feature) AS n
        FROM activations a
        JOIN reviews r ON r.review_idx = a.review_idx
        WHERE r.review_id = :review_id AND :k > {{contract REVIEW_TOP}}
          AND a.token_pos BETWEEN r.first_token_pos AND r.last_token_pos
        GROUP BY a.feature
    ) WHERE n <= :k
)
ORDER BY max_value DESC, feature;
