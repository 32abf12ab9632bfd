-- name: native
-- description: Native DuckDB copies of the small lookup tables, for the macros' fast paths.
-- Made from the Parquet views in the same build (warehouse.db.create_database runs this
-- file after schema.sql and before the macros, which read the copies).  A Parquet lookup
-- pays for its footer on every query (13 ms for top_examples' 377 row groups, 20 ms to
-- find one review_id among 432K reviews); a native table's blocks stay cached, its zone
-- maps prune on the sort key and review_id has an ART index (1-2 ms each, measured).
-- review_top_features stays Parquet only: 128K-row row groups sorted by review_idx keep
-- its footer small and a lookup reads one row group.
-- The Parquet files stay the contract's tables; the copies are never written to after.

-- The Parquet files are written in (feature, rank) and review_idx order and DuckDB keeps
-- insertion order (preserve_insertion_order): an ORDER BY would re-sort sorted rows.
CREATE OR REPLACE TABLE top_examples_native AS
SELECT * FROM top_examples;

-- Without the text (the bulk of the table): only the general top_k_contexts path needs
-- it, and reads it from the Parquet view.
CREATE OR REPLACE TABLE reviews_native AS
SELECT * EXCLUDE (text) FROM reviews;

-- Not UNIQUE: the NPZ is not required to hold distinct ids.
CREATE INDEX reviews_native_review_id ON reviews_native (review_id);
