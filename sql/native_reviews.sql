-- name: native_reviews
-- description: The native copy of the reviews, with their texts and two ART indexes.
-- The first statements of warehouse.duckdb (etl.build.database.start_database): they read only
-- reviews.parquet, so the build runs them beside its last Parquet writes.  Why native
-- copies at all: see native.sql.

-- Not UNIQUE: the NPZ is not required to hold distinct ids.  The texts are here for the
-- contexts of top_examples (native.sql) and token_contexts: DuckDB's default string
-- compression (FSST) decodes one text without its neighbours, so fetching ~20 texts
-- through the review_idx index stays ~1 ms.
CREATE OR REPLACE TABLE reviews_native AS
SELECT * FROM read_parquet({{files reviews}});

CREATE INDEX reviews_native_review_id ON reviews_native (review_id);

-- The top_examples view joins review_id and the text for its ~20 rows through this
-- index: 1 ms, where a hash join scanned all 432K reviews (3 ms at full size).
CREATE INDEX reviews_native_review_idx ON reviews_native (review_idx);
