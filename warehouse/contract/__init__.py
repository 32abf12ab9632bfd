"""The warehouse's contract, in one place: read by the build (etl) and the query side.

Tables and their contract columns, the bucket width, the materialized sizes, the
default context window and the schema version live here; each table's Parquet schema
and writer settings live in `warehouse.contract.parquet` (which imports pyarrow, so
this module stays light enough for `saewh --help`).  The SQL gets the constants as
macros (`SQL_CONSTANTS`, rendered into sql/contract.sql at build time), so no file in
sql/ repeats a number.
"""

from __future__ import annotations

SCHEMA_VERSION = 7
# 2: review_top_features, top_examples contexts, native copies
# 3: top_examples' contexts only in warehouse.duckdb (the Parquet file holds offsets)
# 4: contexts cut by the top_examples view; reviews_native holds the texts
# 5: immutable snapshots under WH/snapshots/, published through WH/current
# 6: the contract's constants as macros (sql/contract.sql: bucket_of, top_materialized, ...);
#    feature_review_stats: p-values, conditional AUROC, concentration expected by chance;
#    token_feature_stats and vocabulary (token-major questions without a scan)
# 7: review_active_features (review-set questions without a scan); float columns PLAIN
#    (Spark 3.5's default reader rejects BYTE_STREAM_SPLIT)

BUCKET_WIDTH = 64  # features per `activations` partition: bucket = feature // BUCKET_WIDTH
TOP_MATERIALIZED = 100  # strongest activations precomputed per feature (top_examples)
REVIEW_TOP = 100  # strongest features precomputed per review (review_top_features)
DEFAULT_BEFORE, DEFAULT_AFTER = 20, 10  # top_k_contexts' default window, materialized
ALIGNMENTS = ("exact", "truncated", "mismatch", "no_tokens", "no_text")

# The constants sql/contract.sql turns into macros, by the placeholder's name: only
# integers, rendered by `sql_constant` (DuckDB takes no bound parameters in DDL).
SQL_CONSTANTS: dict[str, int] = {
    "BUCKET_WIDTH": BUCKET_WIDTH,
    "TOP_MATERIALIZED": TOP_MATERIALIZED,
    "REVIEW_TOP": REVIEW_TOP,
    "DEFAULT_BEFORE": DEFAULT_BEFORE,
    "DEFAULT_AFTER": DEFAULT_AFTER,
}

TABLES = (
    "activations", "tokens", "reviews", "features", "top_examples", "feature_stars",
    "feature_review_stats", "review_top_features", "review_active_features", "token_feature_stats",
    "vocabulary",
)

# The tables stored as several files, relative to the warehouse (the manifest lists the
# same files); every other table is one `<table>.parquet`.
TABLE_GLOBS = {
    "activations": "activations/bucket=*/part-0.parquet",
    "tokens": "tokens/*.parquet",
    "review_top_features": "review_top_features/*.parquet",
    "review_active_features": "review_active_features/*.parquet",
    "token_feature_stats": "token_feature_stats/*.parquet",
}

# The contract's columns (README): the build may write more, never fewer.
CONTRACT_COLUMNS = {
    "activations": ("token_pos", "review_idx", "feature", "value", "bucket"),
    "tokens": ("token_pos", "review_idx", "position", "token_id", "token", "char_start", "char_end"),
    "reviews": ("review_idx", "review_id", "text", "stars", "useful", "user_id", "business_id",
                "first_token_pos", "n_tokens", "n_text_tokens", "alignment", "in_npz"),
    "features": ("feature", "n_active", "n_reviews", "density", "review_density", "max_value",
                 "mean_value", "sum_value"),
    "top_examples": ("feature", "rank", "token_pos", "review_idx", "value"),
    "feature_stars": ("feature", "stars", "n_active_reviews", "sum_max_value"),
    "feature_review_stats": ("feature", "n_rated", "n_low", "n_high", "n_rated_active", "n_low_active",
                             "n_high_active", "auroc", "auroc_se", "spearman"),
    "review_active_features": ("review_idx", "feature"),
    "token_feature_stats": ("token_id", "feature", "n_active", "sum_value", "max_value"),
    "vocabulary": ("token_id", "token", "n_occurrences"),
}


def bucket_of(feature: int) -> int:
    """The `activations` partition holding `feature` (the SQL macro of the same name)."""
    return feature // BUCKET_WIDTH


def sql_constant(name: str) -> str:
    """The SQL literal of the contract constant `name` (a key of SQL_CONSTANTS)."""
    value = SQL_CONSTANTS[name]
    if type(value) is not int:  # noqa: E721 - bool is an int too, and must not pass
        raise TypeError(f"contract constant {name} is not an int: {value!r}")
    return str(value)
