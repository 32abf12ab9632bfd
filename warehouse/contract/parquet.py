"""Each table's Parquet schema and writer settings (one table of them, `LAYOUTS`; every
writer the build makes comes from `parquet_writer`).  Part of the contract
(warehouse.contract): the build writes these, `saewh verify` checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Settings every writer below shares: an option meant for every table goes here, once
# (any option added changes the files' bytes).  Page checksums: DuckDB reads without
# checking them, but `saewh verify` and pyarrow readers that ask do (README "verify").
COMMON_SETTINGS: dict = {"write_page_checksum": True}


def _encodings(**columns: str) -> dict[str, str]:
    """`column_encoding` from the columns of each encoding, space-separated:
    `_encodings(DELTA_BINARY_PACKED="a b", PLAIN="c")`."""
    return {column: encoding for encoding, names in columns.items() for column in names.split()}


@dataclass(frozen=True)
class TableLayout:
    """A table's Parquet schema, its writer's settings (`pq.ParquetWriter` keywords, on
    top of COMMON_SETTINGS) and the rows per row group it is written with (None:
    pyarrow's default; some tables cut their row groups themselves)."""

    schema: pa.Schema
    settings: dict = field(default_factory=dict)
    row_group: int | None = None


_TOKENS = TableLayout(
    pa.schema(
        [
            pa.field("token_pos", pa.int64(), nullable=False),
            pa.field("review_idx", pa.int32(), nullable=False),
            pa.field("position", pa.int32(), nullable=False),
            ("token_id", pa.int32()), ("token", pa.string()),
            ("char_start", pa.int32()), ("char_end", pa.int32()),
        ]
    ),
    dict(
        compression="zstd",
        use_dictionary=["token"],
        column_encoding=_encodings(DELTA_BINARY_PACKED="token_pos review_idx position char_start char_end"),
    ),
)

_REVIEW_TOP_SCHEMA = pa.schema(
    [
        pa.field("review_idx", pa.int32(), nullable=False),
        pa.field("rank", pa.int32(), nullable=False),
        pa.field("feature", pa.int32(), nullable=False),
        pa.field("max_value", pa.float32(), nullable=False),
        pa.field("n_tokens_active", pa.int64(), nullable=False),
    ]
)
# The explode workers' parts of `review_top_features`.
_REVIEW_TOP = TableLayout(
    _REVIEW_TOP_SCHEMA,
    dict(
        compression="zstd",
        use_dictionary=False,
        column_encoding=_encodings(
            DELTA_BINARY_PACKED="review_idx rank feature n_tokens_active", PLAIN="max_value"
        ),
    ),
    row_group=1 << 17,
)
# Its part of the reviews split across chunks, written at the end with pyarrow's default
# encodings (dictionaries, plain values), unlike the workers' parts: kept so, since
# making it like them changes its bytes.
_REVIEW_TOP_SPLIT = TableLayout(_REVIEW_TOP_SCHEMA, dict(compression="zstd"), row_group=1 << 17)

# Every (review, feature active on at least one of its tokens), in (review, feature) order:
# the explode workers' parts and the split reviews' part alike.  Both columns delta-packed
# (review_idx repeats, features ascend within a review: ~0.8 bytes a pair with zstd);
# 16K-row row groups (~9 reviews) with statistics on review_idx, so a set of reviews
# reads only the row groups that hold them.
_REVIEW_ACTIVE = TableLayout(
    pa.schema(
        [
            pa.field("review_idx", pa.int32(), nullable=False),
            pa.field("feature", pa.int32(), nullable=False),
        ]
    ),
    dict(
        compression="zstd",
        use_dictionary=False,
        write_statistics=["review_idx"],
        column_encoding=_encodings(DELTA_BINARY_PACKED="review_idx feature"),
    ),
    row_group=1 << 14,
)

# Columns that never hold a null are REQUIRED in the Parquet files: no definition
# levels to encode (13-14 against 17-18 ns a row for an activations bucket).
_ACTIVATIONS = TableLayout(
    pa.schema(
        [
            pa.field("token_pos", pa.int64(), nullable=False),
            pa.field("review_idx", pa.int32(), nullable=False),
            pa.field("feature", pa.int32(), nullable=False),
            pa.field("value", pa.float32(), nullable=False),
        ]
    ),
    # Compression only where it pays: delta-packed positions and review indices shrink by
    # 5% and 20% more under zstd, which cost half of the encoding time; a bucket's
    # `feature` is a few runs of one value (plain + lz4: as small as a dictionary, no
    # hashing); lz4 on the values is 24% faster than zstd for 4% more bytes.  One
    # 620K-row bucket: 18.7 ns and 5.29 bytes a row, against 24.7 / 5.08 with zstd there
    # and 55.3 / 4.94 with zstd and a dictionary everywhere (README "Layout choices").
    dict(
        compression={"token_pos": "none", "review_idx": "none", "feature": "lz4", "value": "zstd"},
        use_dictionary=False,
        write_statistics=["token_pos", "feature"],
        column_encoding=_encodings(
            DELTA_BINARY_PACKED="token_pos review_idx", PLAIN="feature value"
        ),
    ),
    row_group=1 << 17,
)

# One row group per bucket (64 features), so a feature's lookup decodes 6,400 rows.
# lz4, not zstd: 0.23 against 0.34 s at 5M tokens (in the build's serial end), for 37
# against 36 MB.
_TOP_EXAMPLES = TableLayout(
    pa.schema(
        [
            ("feature", pa.int32()), ("rank", pa.int32()),
            ("token_pos", pa.int64()), ("review_idx", pa.int32()), ("value", pa.float32()),
            ("position", pa.int32()), ("stars", pa.int32()),
            # Character offsets into the review's text of the token and of its default
            # context window: sql/native.sql cuts left_context, token and right_context.
            ("char_start", pa.int32()), ("char_end", pa.int32()),
            ("context_start", pa.int32()), ("context_end", pa.int32()),
        ]
    ),
    dict(
        compression={
            **{name: "lz4" for name in ("feature", "rank", "token_pos", "review_idx", "position", "stars",
                                        "char_start", "char_end", "context_start", "context_end")},
            "value": "zstd",
        },
        use_dictionary=["stars"],
        write_statistics=["feature", "rank"],
        column_encoding=_encodings(
            DELTA_BINARY_PACKED="feature rank token_pos review_idx position char_start char_end "
            "context_start context_end",
            PLAIN="value",
        ),
    ),
)

# Row groups of 16K reviews: the texts are cast and paged in one row group at a time.
_REVIEWS = TableLayout(
    pa.schema(
        [
            ("review_idx", pa.int32()), ("review_id", pa.string()), ("text", pa.string()),
            ("stars", pa.int32()), ("useful", pa.int32()),
            ("user_id", pa.string()), ("business_id", pa.string()),
            ("first_token_pos", pa.int64()), ("last_token_pos", pa.int64()),
            ("n_tokens", pa.int32()), ("n_text_tokens", pa.int32()),
            ("alignment", pa.string()), ("in_npz", pa.bool_()), ("contiguous", pa.bool_()),
        ]
    ),
    dict(compression="zstd"),
    row_group=16384,
)

_FEATURES = TableLayout(
    pa.schema(
        [
            ("feature", pa.int32()), ("n_active", pa.int64()), ("n_reviews", pa.int64()),
            ("density", pa.float64()), ("review_density", pa.float64()),
            ("max_value", pa.float32()), ("mean_value", pa.float64()), ("sum_value", pa.float64()),
        ]
    ),
    dict(compression="zstd"),
)

_FEATURE_STARS = TableLayout(
    pa.schema(
        [
            ("feature", pa.int32()), ("stars", pa.int32()),
            ("n_active_reviews", pa.int64()), ("sum_max_value", pa.float64()),
        ]
    ),
    dict(compression="zstd"),
)

# The columns etl.review_stats computes (its module docstring says what they mean).
_FEATURE_REVIEW_STATS = TableLayout(
    pa.schema(
        [("feature", pa.int32())]
        + [(name, pa.int64()) for name in ("n_rated", "n_low", "n_high")]
        + [(name, pa.int64()) for name in ("n_rated_active", "n_low_active", "n_high_active")]
        + [(name, pa.float64()) for name in ("auroc", "auroc_se", "spearman")]
        + [(name, pa.int64()) for name in ("n_single_token_reviews", "max_tokens_per_review")]
        + [
            column
            for group, plural in (("business", "businesses"), ("user", "users"))
            for column in (
                (f"n_{plural}", pa.int64()),
                (f"top10_{group}_share", pa.float64()),
                (f"{group}_gini", pa.float64()),
            )
        ]
        # Issue 17: p-values, the conditional AUROC, concentration expected by chance.
        + [(name, pa.float64()) for name in ("auroc_p", "auroc_active", "spearman_p")]
        + [
            (f"{stat}_{group}_{kind}", pa.float64())
            for group in ("business", "user")
            for stat in ("chance_top10", "chance_gini")
            for kind in ("mean", "sd")
        ]
    ),
    dict(compression="zstd"),
)


# Per (token id, feature): the feature's activations on that token, summed over the
# corpus.  One file per feature bucket (its merge writes it), rows in (token_id, feature)
# order with statistics on token_id, so one token's rows are a row group or two of each
# file.  sum_value is exact enough to rank by (float64, summed from float32 values).
_TOKEN_FEATURE_STATS = TableLayout(
    pa.schema(
        [
            pa.field("token_id", pa.int32(), nullable=False),
            pa.field("feature", pa.int32(), nullable=False),
            pa.field("n_active", pa.int64(), nullable=False),
            pa.field("sum_value", pa.float64(), nullable=False),
            pa.field("max_value", pa.float32(), nullable=False),
        ]
    ),
    dict(
        compression="zstd",
        use_dictionary=False,
        write_statistics=["token_id", "feature"],
        column_encoding=_encodings(
            DELTA_BINARY_PACKED="token_id feature n_active", PLAIN="sum_value max_value"
        ),
    ),
    row_group=1 << 14,
)

# Every token id that occurs, with its text and its occurrences (tokens with a token_id).
_VOCABULARY = TableLayout(
    pa.schema(
        [
            pa.field("token_id", pa.int32(), nullable=False),
            ("token", pa.string()),
            pa.field("n_occurrences", pa.int64(), nullable=False),
        ]
    ),
    dict(compression="zstd"),
)


# Every table the build writes, by name: a writer is made from its entry and nothing else.
LAYOUTS: dict[str, TableLayout] = {
    "tokens": _TOKENS,
    "review_top_features": _REVIEW_TOP,
    "review_top_features/part-split": _REVIEW_TOP_SPLIT,
    "review_active_features": _REVIEW_ACTIVE,
    "activations": _ACTIVATIONS,
    "top_examples": _TOP_EXAMPLES,
    "reviews": _REVIEWS,
    "features": _FEATURES,
    "feature_stars": _FEATURE_STARS,
    "feature_review_stats": _FEATURE_REVIEW_STATS,
    "token_feature_stats": _TOKEN_FEATURE_STATS,
    "vocabulary": _VOCABULARY,
}


def schema(table: str) -> pa.Schema:
    """The Parquet (and Arrow) schema of `table` (a key of LAYOUTS)."""
    return LAYOUTS[table].schema


def row_group(table: str) -> int | None:
    """The rows per row group `table` is written with (None: pyarrow's default)."""
    return LAYOUTS[table].row_group


def parquet_writer(table: str, path: Path) -> pq.ParquetWriter:
    """A writer of `path` with the schema and settings of `table` (a key of LAYOUTS)."""
    layout = LAYOUTS[table]
    return pq.ParquetWriter(path, layout.schema, **COMMON_SETTINGS, **layout.settings)


def write_parquet(table: str, data: pa.Table, path: Path) -> None:
    """Write `data` (whose schema must be the table's) as `path`, in the table's row groups."""
    with parquet_writer(table, path) as writer:
        writer.write_table(data, row_group_size=LAYOUTS[table].row_group)
