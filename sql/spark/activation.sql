-- name: activation
-- description: The value of a feature on one token, 0.0 when inactive (the macro `activation`).
-- param: token_pos BIGINT
-- param: feature INTEGER
-- Parameters are Spark SQL named parameter markers, bound by spark.sql(text, args=...)
-- (warehouse.spark.query), never formatted into the text.
SELECT coalesce(max(value), 0.0) AS value
FROM activations
WHERE bucket = :feature div {{contract BUCKET_WIDTH}} AND feature = :feature AND token_pos = :token_pos;
