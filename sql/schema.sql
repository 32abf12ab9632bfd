-- name: schema
-- description: Views over the warehouse's Parquet files.
-- DuckDB resolves relative paths in a view against the process's working directory,
-- so the views name each table's files by absolute path: {{files TABLE}} is rendered
-- (warehouse.ddl.render_ddl) as the exact list of the table's files in the manifest,
-- each quoted by warehouse.sqlfiles.sql_string_literal and glob-escaped, so a warehouse
-- path holding `[`, `*`, `?`, `;` or `'` is read as itself, never as a pattern, and a
-- missing file is an error ("No files found"), never a smaller answer.  DDL cannot take
-- bound parameters: the file lists are the only values rendered into SQL.

-- One file per bucket (part-0), hive-partitioned by its directory name.
CREATE OR REPLACE VIEW activations AS
SELECT token_pos, review_idx, feature, value, bucket
FROM read_parquet({{files activations}},
                  hive_partitioning = true, hive_types = {'bucket': INTEGER});

CREATE OR REPLACE VIEW tokens AS
SELECT token_pos, review_idx, position, token_id, token, char_start, char_end
FROM read_parquet({{files tokens}});

CREATE OR REPLACE VIEW reviews AS
SELECT * FROM read_parquet({{files reviews}});

CREATE OR REPLACE VIEW features AS
SELECT * FROM read_parquet({{files features}});

-- top_examples is a table of warehouse.duckdb, with the contexts cut from the texts
-- (sql/native.sql); top_examples.parquet holds its offsets.

CREATE OR REPLACE VIEW feature_stars AS
SELECT * FROM read_parquet({{files feature_stars}});

CREATE OR REPLACE VIEW feature_review_stats AS
SELECT * FROM read_parquet({{files feature_review_stats}});

-- Each review's review_top() strongest features, ranked like review_features: the macro
-- answers k <= review_top() from here.  One file per explode worker,
-- plus part-split.parquet for reviews split across chunks or workers.
CREATE OR REPLACE VIEW review_top_features AS
SELECT * FROM read_parquet({{files review_top_features}});

-- Every (review, feature active on at least one of its tokens), in (review, feature)
-- order with row-group statistics on review_idx: a set of reviews reads only the row
-- groups that hold them.  Parts as review_top_features'.
CREATE OR REPLACE VIEW review_active_features AS
SELECT review_idx, feature FROM read_parquet({{files review_active_features}});

-- Per (token id, feature): n_active, sum_value, max_value of the feature's activations
-- on that token; one file per feature bucket, each in (token_id, feature) order.
CREATE OR REPLACE VIEW token_feature_stats AS
SELECT token_id, feature, n_active, sum_value, max_value
FROM read_parquet({{files token_feature_stats}});

-- Every token id that occurs: its text (as in tokens.token) and its occurrences.
CREATE OR REPLACE VIEW vocabulary AS
SELECT token_id, token, n_occurrences FROM read_parquet({{files vocabulary}});
