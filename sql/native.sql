-- name: native
-- description: Native DuckDB tables for the macros' fast paths: top_examples (reviews: native_reviews.sql).
-- Made in the build (etl.build.database.load_top_examples runs this file after
-- native_reviews.sql and before schema.sql and the macros, which read the copies).  A Parquet lookup pays for its footer on every query (13 ms for
-- top_examples' 377 row groups, 20 ms to find one review_id among 432K reviews); a
-- native table's blocks stay cached, its zone maps prune on the sort key and review_id
-- has an ART index (1-2 ms each, measured).
-- review_top_features stays Parquet only: 128K-row row groups sorted by review_idx keep
-- its footer small and a lookup reads one row group.
-- The copies are never written to after the build.

-- top_examples: each feature's top_materialized() strongest activations with what top_k and the
-- default-window top_k_contexts return.  top_examples.parquet holds the numbers and the
-- character offsets of the token and of its default window; the view below cuts the
-- contexts from the text when a query reads them.  Cutting them all at build time cost
-- 3.5 s of a 5M-token build (DuckDB's substring walks each text from its start, 7.2M
-- times) and 110 MB of ZSTD strings; the texts cost 15 MB (5M tokens) to 150 MB (47M).
-- review_id is not stored: the view joins it from reviews_native (20 rows: ~1 ms).
-- top_examples_rows is the build's Arrow table of the rows top_examples.parquet holds
-- (registered by etl.build.database.load_top_examples, which runs while that file is written).
-- It is in (feature, rank) order and one scan keeps its row order (DuckDB's
-- insertion-order guarantee), so the zone maps prune on feature.
CREATE OR REPLACE TABLE top_examples_native AS
SELECT feature, rank, token_pos, review_idx, value, position, stars,
       context_start, char_start, char_end, context_end
FROM top_examples_rows;

-- The macros' fast paths read this view: a filter on feature and rank reaches the
-- table's zone maps through it.  Contexts are NULL where the offsets are (tokens not
-- aligned with the text, or no text).
CREATE OR REPLACE VIEW top_examples AS
SELECT t.feature, t.rank, t.token_pos, t.review_idx, t.value, t.position, r.review_id, t.stars,
       substring(r.text, t.context_start + 1, t.char_start - t.context_start) AS left_context,
       substring(r.text, t.char_start + 1, t.char_end - t.char_start) AS token,
       substring(r.text, t.char_end + 1, t.context_end - t.char_end) AS right_context
FROM top_examples_native t
LEFT JOIN reviews_native r ON r.review_idx = t.review_idx;
