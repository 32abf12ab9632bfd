"""Phase 4, in the build process: the tables made from what the workers left (the
reviews, the top examples, the per-feature tables, the split reviews' top features)
and the manifest."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa

from etl.build.context import SnapshotDir, WorkDir
from etl.build.files import file_entry, gather_npy, open_texts
from etl.build.kernels import combine_pairs, top_per_group
from etl.build.map_reviews import ReviewMap
from etl.build.merge import MergeResult
from etl.review_stats import review_stats_table
from etl.staging import fingerprint
from warehouse.contract import BUCKET_WIDTH, REVIEW_TOP, SCHEMA_VERSION, TOP_MATERIALIZED
from warehouse.contract.parquet import parquet_writer, row_group, schema, write_parquet


@dataclass
class BuildSummary:
    warehouse: str
    n_tokens: int = 0
    n_activations: int = 0
    zero_slots_dropped: int = 0
    n_reviews: int = 0
    n_reviews_with_tokens: int = 0
    h5_reviews_missing_from_npz: int = 0
    npz_reviews_without_tokens: int = 0
    alignment: dict[str, int] = field(default_factory=dict)
    n_latents: int = 0
    n_latents_inferred: bool = False
    k: int = 0
    # Counted, not fatal (README "Validation, warnings and exit codes"): reviews whose
    # tokens cannot be aligned to their text, and H5 reviews the NPZ lacks.
    warnings: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    rows_per_second: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- reviews


def alignment(n_tok: np.ndarray, text_lens: np.ndarray, n_npz: int) -> np.ndarray:
    """Per review, how its H5 tokens line up with its text's (one of ALIGNMENTS)."""
    out = np.empty(len(n_tok), dtype=object)
    has_text = np.arange(len(n_tok)) < n_npz
    out[:] = "mismatch"
    out[has_text & (n_tok == text_lens)] = "exact"
    out[has_text & (n_tok < text_lens)] = "truncated"
    out[~has_text] = "no_text"
    out[n_tok == 0] = "no_tokens"
    return out


def write_reviews(
    out: SnapshotDir, meta: dict, reviews: ReviewMap, text_lens: np.ndarray, aligned: np.ndarray
) -> None:
    """`reviews.parquet`, a row group at a time: the texts (memory-mapped) are cast to
    `string` and their pages mapped one row group at a time, so neither a second copy
    of them nor all their pages (190 MB at full size) are in the main process at once."""
    n_tok, first, last = reviews.n_tokens, reviews.first, reviews.last
    n_npz, n_all = len(meta["review_ids"]), len(reviews.review_ids)
    extra = n_all - n_npz

    def padded(arr, typ: pa.DataType) -> pa.Array:
        return pa.concat_arrays([pa.array(arr, typ), pa.nulls(extra, typ)])

    has = n_tok > 0
    table = pa.table(
        {
            "review_idx": np.arange(n_all, dtype=np.int32),
            "review_id": reviews.review_ids,
            "text": pa.nulls(n_all, pa.string()),  # filled per row group below
            "stars": padded(meta["stars"], pa.int32()),
            "useful": padded(meta["useful"], pa.int32()),
            "user_id": padded(meta["user_ids"], pa.string()),
            "business_id": padded(meta["business_ids"], pa.string()),
            "first_token_pos": pa.array(first, pa.int64(), mask=~has),
            "last_token_pos": pa.array(last, pa.int64(), mask=~has),
            "n_tokens": n_tok.astype(np.int32),
            "n_text_tokens": pa.array(text_lens.astype(np.int32), mask=text_lens < 0),
            "alignment": pa.array(aligned.tolist(), pa.string()),
            "in_npz": np.arange(n_all) < n_npz,
            "contiguous": has & (last - first + 1 == n_tok),
        },
        schema=schema("reviews"),
    )
    text_at = table.schema.get_field_index("text")
    step = row_group("reviews")
    with parquet_writer("reviews", out.table("reviews")) as writer:
        for at in range(0, n_all, step):
            texts = open_texts(out.work.texts)
            part = texts.slice(at, max(0, min(step, n_npz - at)))
            text = pa.chunked_array(
                part.cast(pa.string()).chunks + [pa.nulls(min(step, n_all - at) - len(part), pa.string())],
                pa.string(),
            )
            writer.write_table(table.slice(at, step).set_column(text_at, "text", text), row_group_size=step)
            del texts, part, text


def write_review_top_partials(out: SnapshotDir, workers: int, n_reviews: int) -> None:
    """Reviews split across chunks or workers: merge their per-run feature pairs (max of
    maxima, sum of counts), rank them like the complete reviews, and write every pair
    (`review_active_features`' split part)."""
    parts = [np.load(out.work.review_partials(w)) for w in range(workers)]
    r = np.concatenate([p["review"] for p in parts]).astype(np.int64)
    f = np.concatenate([p["feature"] for p in parts]).astype(np.int64)
    v = np.concatenate([p["value"] for p in parts]).astype(np.float32)
    c = np.concatenate([p["count"] for p in parts]).astype(np.int64)
    if len(r):
        r, f, v, c = combine_pairs(r, f, v, c)
    active = pa.table({"review_idx": r.astype(np.int32), "feature": f.astype(np.int32)},
                      schema=schema("review_active_features"))
    write_parquet("review_active_features", active, out.review_active_split)
    g, rank, tf, tv, tc = top_per_group(r, f, v, c, max(n_reviews, 1), REVIEW_TOP)
    table = pa.table(
        {
            "review_idx": g.astype(np.int32),
            "rank": rank.astype(np.int32),
            "feature": tf.astype(np.int32),
            "max_value": tv.astype(np.float32),
            "n_tokens_active": tc.astype(np.int64),
        },
        schema=schema("review_top_features/part-split"),
    )
    write_parquet("review_top_features/part-split", table, out.review_top_split)


# --------------------------------------------------------------------------- features


def top_examples_table(
    work: WorkDir, n_buckets: int, star_code: np.ndarray, star_values: np.ndarray, window_bytes: int
) -> tuple[pa.Table, list[int]]:
    """The rows of `top_examples` from the merge's per-bucket top rows, with each row's
    position, stars and the character offsets of the token and of its default window,
    from which the `top_examples` view cuts the contexts top_k_contexts returns; and the
    rows of each bucket.  The token arrays are read `window_bytes` at a time."""
    parts = [work.top(bucket) for bucket in range(n_buckets)]
    parts = [np.load(p) for p in parts if p.exists()]
    top = np.concatenate(parts, axis=1) if parts else np.zeros((5, 0), np.uint32)
    sizes = [p.shape[1] for p in parts]
    del parts
    feature, rank, rv = (top[j].view(np.int32) for j in (0, 1, 3))
    tp, value = top[2].astype(np.int64), top[4].view(np.float32)
    by_tp = np.argsort(tp)
    tp_sorted = tp[by_tp]
    pos = np.empty(len(tp), np.int32)
    pos[by_tp] = gather_npy(work.token_position, tp_sorted, window_bytes)
    bounds = np.empty((len(tp), 4), np.int32)
    bounds[by_tp] = gather_npy(work.token_bounds, tp_sorted, window_bytes)
    del tp_sorted, by_tp
    lo, cs, ce, hi = bounds.T
    untrusted = cs < 0
    code = star_code[rv]
    stars = np.where(code >= 0, star_values[np.maximum(code, 0)], 0).astype(np.int32)

    def offsets(x: np.ndarray) -> pa.Array:
        return pa.array(x.astype(np.int32), pa.int32(), mask=untrusted)

    table = pa.table(
        {
            "feature": feature,
            "rank": rank,
            "token_pos": tp,
            "review_idx": rv,
            "value": value,
            "position": pos,
            "stars": pa.array(stars, pa.int32(), mask=code < 0),
            "char_start": offsets(cs),
            "char_end": offsets(ce),
            "context_start": offsets(lo),
            "context_end": offsets(hi),
        },
        schema=schema("top_examples"),
    )
    return table, sizes


def write_top_examples(out: SnapshotDir, table: pa.Table, sizes: list[int]) -> None:
    """`top_examples.parquet`: one row group per bucket (`sizes`: its rows)."""
    writer = parquet_writer("top_examples", out.table("top_examples"))
    try:
        at = 0
        for size in sizes:
            writer.write_table(table.slice(at, size), row_group_size=max(size, 1))
            at += size
    finally:
        writer.close()


def write_feature_tables(out: SnapshotDir, merged: list[MergeResult], n_tokens: int, n_rev: int) -> None:
    """`features.parquet`, `feature_stars.parquet` and `feature_review_stats.parquet`
    from the buckets' merge results."""
    merged = sorted(merged, key=lambda m: m.bucket)

    def col(name: str) -> np.ndarray:
        return np.concatenate([getattr(m, name) for m in merged])

    n_active = col("n_active")
    sums = col("sum_value")
    dead = n_active == 0
    features = pa.table(
        {
            "feature": col("feature").astype(np.int32),
            "n_active": n_active,
            "n_reviews": col("n_reviews").astype(np.int64),
            "density": n_active / max(n_tokens, 1),
            "review_density": col("n_reviews") / max(n_rev, 1),
            "max_value": pa.array(col("max_value"), pa.float32(), mask=dead),
            "mean_value": pa.array(sums / np.maximum(n_active, 1), pa.float64(), mask=dead),
            "sum_value": sums,
        },
        schema=schema("features"),
    )
    write_parquet("features", features, out.table("features"))
    stars = pa.table(
        {
            "feature": col("stars_feature").astype(np.int32),
            "stars": col("stars_value").astype(np.int32),
            "n_active_reviews": col("stars_n_active").astype(np.int64),
            "sum_max_value": col("stars_sum_max").astype(np.float64),
        },
        schema=schema("feature_stars"),
    )
    write_parquet("feature_stars", stars, out.table("feature_stars"))
    # (reads reviews.parquet, written before the merge)
    review_stats = review_stats_table(out.root, merged)
    write_parquet("feature_review_stats", review_stats, out.table("feature_review_stats"))


def write_vocabulary(out: SnapshotDir, work: WorkDir, vocab_strings: list[str], window_bytes: int) -> None:
    """`vocabulary.parquet`: every token id that occurs, its text and its occurrences,
    counted from `token_ids.npy` a window at a time."""
    counts = np.zeros(len(vocab_strings), np.int64)
    ids = np.load(work.token_ids, mmap_mode="r")
    step = max(window_bytes // 4, 1)
    for lo in range(0, len(ids), step):
        chunk = np.array(ids[lo : lo + step])
        counts += np.bincount(chunk[chunk >= 0], minlength=len(counts))
    del ids
    seen = np.flatnonzero(counts)
    table = pa.table(
        {
            "token_id": seen.astype(np.int32),
            "token": pa.array(vocab_strings, pa.string()).take(pa.array(seen)),
            "n_occurrences": counts[seen],
        },
        schema=schema("vocabulary"),
    )
    write_parquet("vocabulary", table, out.table("vocabulary"))


# --------------------------------------------------------------------------- manifest


def warnings(summary: BuildSummary) -> dict[str, int]:
    """The counted problems worth a warning: information the warehouse cannot hold."""
    counts = {
        # More H5 tokens than the text tokenizes to: token columns and contexts are NULL.
        "reviews_unaligned": summary.alignment.get("mismatch", 0),
        # The H5 names a review the NPZ lacks: its metadata and text are NULL.
        "reviews_without_metadata": summary.alignment.get("no_text", 0),
    }
    return {k: v for k, v in counts.items() if v}


def write_manifest(
    out: SnapshotDir,
    summary: BuildSummary,
    h5,
    npz,
    tokenizer: str,
    finished: dict[str, dict],
    previous: str | None = None,
) -> None:
    """`manifest.json`; `finished` holds the entries the workers made for their files.
    `database` records `warehouse.duckdb` (size, SHA-256, stored root), so this runs once
    the database is final (see warehouse.verify.database_entry)."""
    import duckdb
    import h5py

    from warehouse.verify import database_entry

    staging = out.root
    tables = {}
    for name in SnapshotDir.PARTITIONED:
        files = out.parts(name)
        tables[name] = [finished.get(str(p.relative_to(staging))) or file_entry(staging, p) for p in files]
    for name in ("reviews", "features", "top_examples", "feature_stars", "feature_review_stats",
                 "vocabulary"):
        tables[name] = [file_entry(staging, out.table(name))]
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "snapshot": staging.name,
        "previous": previous,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "inputs": {"h5": fingerprint(h5), "npz": fingerprint(npz)},
        "sae": {"n_latents": summary.n_latents, "k": summary.k},
        "tokenizer": tokenizer,
        "layout": {"bucket_width": BUCKET_WIDTH, "top_materialized": TOP_MATERIALIZED},
        "versions": {
            "sae_warehouse": _own_version(),
            "duckdb": duckdb.__version__,
            "pyarrow": pa.__version__,
            "h5py": h5py.__version__,
            "numpy": np.__version__,
        },
        "summary": asdict(summary),
        "files": tables,
        "database": database_entry(staging),
    }
    out.manifest.write_text(json.dumps(manifest, indent=2) + "\n")


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sae-warehouse")
    except PackageNotFoundError:
        return "source"
