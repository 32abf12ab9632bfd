-- name: feature_tokens
-- description: Every activation of a feature, by token_pos (the macro `feature_tokens`).
-- param: feature INTEGER
-- `bucket = feature div bucket width` prunes the hive partitions to one directory.
SELECT a.token_pos, a.review_idx, r.review_id, t.position, a.value
FROM activations a
JOIN reviews r ON r.review_idx = a.review_idx
JOIN tokens t ON t.token_pos = a.token_pos
WHERE a.bucket = :feature div {{contract BUCKET_WIDTH}} AND a.feature = :feature
ORDER BY a.token_pos;
