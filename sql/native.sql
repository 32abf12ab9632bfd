-- name: native
-- description: Native DuckDB tables for the macros' fast paths: top_examples with its contexts, reviews without text.
-- Made from the Parquet views in the same build (warehouse.db.create_database runs this
-- file after schema.sql and before the macros, which read the copies).  A Parquet lookup
-- pays for its footer on every query (13 ms for top_examples' 377 row groups, 20 ms to
-- find one review_id among 432K reviews); a native table's blocks stay cached, its zone
-- maps prune on the sort key and review_id has an ART index (1-2 ms each, measured).
-- review_top_features stays Parquet only: 128K-row row groups sorted by review_idx keep
-- its footer small and a lookup reads one row group.
-- The copies are never written to after the build.

-- Not UNIQUE: the NPZ is not required to hold distinct ids.
CREATE OR REPLACE TABLE reviews_native AS
SELECT * EXCLUDE (text) FROM reviews;

CREATE INDEX reviews_native_review_id ON reviews_native (review_id);

-- The top_examples view joins review_id for its ~20 rows through this index: 1 ms, where
-- a hash join scanned all 432K reviews (3 ms at full size).
CREATE INDEX reviews_native_review_idx ON reviews_native (review_idx);

-- top_examples: each feature's 100 strongest activations with what top_k and the
-- default-window top_k_contexts return.  top_examples.parquet holds the numbers and the
-- character offsets of the token and of its window; the texts are cut here, once.
-- ZSTD (storage version >= 1.2, set by warehouse.db.create_database) keeps the contexts
-- at about their Parquet size, 2.3x smaller than DuckDB's default FSST, and a 20-row
-- lookup stays ~1 ms.  review_id is not stored: 2.4M random 22-character ids cost 51 MB
-- in any encoding, and the view joins it from reviews_native (20 rows: ~1 ms).
CREATE OR REPLACE TABLE top_examples_native (
    feature INTEGER,
    rank INTEGER,
    token_pos BIGINT,
    review_idx INTEGER,
    value FLOAT,
    position INTEGER,
    stars INTEGER,
    left_context VARCHAR USING COMPRESSION zstd,
    token VARCHAR,
    right_context VARCHAR USING COMPRESSION zstd
);

INSERT INTO top_examples_native
SELECT t.feature, t.rank, t.token_pos, t.review_idx, t.value, t.position, t.stars,
       substring(r.text, t.context_start + 1, t.char_start - t.context_start),
       substring(r.text, t.char_start + 1, t.char_end - t.char_start),
       substring(r.text, t.char_end + 1, t.context_end - t.char_end)
FROM read_parquet({{root}} || '/top_examples.parquet') t
LEFT JOIN reviews r ON r.review_idx = t.review_idx
ORDER BY t.feature, t.rank;

-- The macros' fast paths read this view: a filter on feature and rank reaches the
-- table's zone maps through it.
CREATE OR REPLACE VIEW top_examples AS
SELECT t.feature, t.rank, t.token_pos, t.review_idx, t.value, t.position, r.review_id, t.stars,
       t.left_context, t.token, t.right_context
FROM top_examples_native t
LEFT JOIN reviews_native r ON r.review_idx = t.review_idx;
