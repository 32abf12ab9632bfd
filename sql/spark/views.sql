-- name: spark-views
-- description: The Spark views over a warehouse's tables beyond the Parquet files themselves.
-- warehouse.spark.register makes a temporary view of each Parquet table first (its
-- `top_examples` file as `top_examples_offsets`), then runs this file.  `{{contract NAME}}`
-- is the contract's integer constant NAME (warehouse.ddl.render_contract), as in sql/.

-- top_examples as the DuckDB view of sql/native.sql gives it: the contexts of the default
-- window cut from the review's text at the stored character offsets (Spark's substring
-- counts code points, as DuckDB's does), review_id joined from reviews.
CREATE OR REPLACE TEMPORARY VIEW top_examples AS
SELECT t.feature, t.rank, t.token_pos, t.review_idx, t.value, t.position, r.review_id, t.stars,
       substring(r.text, t.context_start + 1, t.char_start - t.context_start) AS left_context,
       substring(r.text, t.char_start + 1, t.char_end - t.char_start) AS token,
       substring(r.text, t.char_end + 1, t.context_end - t.char_end) AS right_context
FROM top_examples_offsets t
LEFT JOIN reviews r ON r.review_idx = t.review_idx;
