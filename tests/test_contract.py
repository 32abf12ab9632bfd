"""The warehouse contract (README) checked table by table and macro by macro against a
brute-force numpy scan of the same H5 (tests/bruteforce.py), on a plain and an awkward
generated input (tests/inputs.py).

Comparisons are exact: same rows in the same order, values (FLOAT) equal as float32,
integers and strings equal, NULL where the contract says NULL.  Only derived doubles
(density, frac_active, lift, means and sums) get a relative tolerance of 1e-9.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from bruteforce import BruteForce
from inputs import (
    DENSE,
    NEVER,
    ONLY_MISMATCH,
    ONLY_NO_TEXT,
    RARE_ONCE,
    RARE_TWICE,
    SALSA,
    STARRY,
    TIE_A,
    TIE_B,
    ZERO_ONLY,
    write_inputs,
)

N_LATENTS = 256

COLUMNS = {
    "activations": ["token_pos", "review_idx", "feature", "value", "bucket"],
    "reviews": ["review_idx", "review_id", "text", "stars", "useful", "user_id", "business_id",
                "first_token_pos", "n_tokens", "n_text_tokens", "alignment", "in_npz"],
    "tokens": ["token_pos", "review_idx", "position", "token_id", "token", "char_start",
               "char_end"],
    "features": ["feature", "n_active", "n_reviews", "density", "review_density", "max_value",
                 "mean_value", "sum_value"],
    "top_examples": ["feature", "rank", "token_pos", "review_idx", "value"],
    "feature_stars": ["feature", "stars", "n_active_reviews", "sum_max_value"],
    "token_feature_stats": ["token_id", "feature", "n_active", "sum_value", "max_value"],
    "vocabulary": ["token_id", "token", "n_occurrences"],
}
MACRO_COLUMNS = {
    "feature_tokens": ["token_pos", "review_idx", "review_id", "position", "value"],
    "top_k": ["rank", "token_pos", "review_id", "position", "value", "stars", "review_idx"],
    "top_k_contexts": ["rank", "token_pos", "review_id", "position", "value", "stars",
                       "review_idx", "left_context", "token", "right_context"],
    "review_tokens": ["position", "token_pos", "token_id", "token", "char_start", "char_end"],
    "feature_by_stars": ["stars", "n_reviews", "n_active_reviews", "frac_active",
                         "mean_max_value", "lift"],
    "review_features": ["feature", "max_value", "n_tokens_active"],
}
# Per column: "=" exact, "f32" float32 equality, "dbl" relative 1e-9, "tok" token text.
KINDS = {
    "activations": "===f32=",
    "reviews": "=" * 12,
    "tokens": "====tok==",
    "features": ["=", "=", "=", "dbl", "dbl", "f32", "dbl", "dbl"],
    "top_examples": "====f32",
    "feature_stars": ["=", "=", "=", "dbl"],
    "feature_tokens": "====f32",
    "top_k": "====f32==",
    "top_k_contexts": ["=", "=", "=", "=", "f32", "=", "=", "=", "=", "="],
    "review_tokens": "===tok==",
    "feature_by_stars": ["=", "=", "=", "dbl", "dbl", "dbl"],
    "review_features": ["=", "f32", "="],
}


def cols(table: str) -> str:
    """The contract's columns of `table`, for a SELECT list."""
    return ", ".join(COLUMNS[table])


def _kinds(name: str) -> list[str]:
    k = KINDS[name]
    if isinstance(k, list):
        return k
    out, i = [], 0
    while i < len(k):  # "====f32" -> ["=", "=", "=", "=", "f32"]
        for token in ("f32", "dbl", "tok", "="):
            if k.startswith(token, i):
                out.append(token)
                i += len(token)
                break
    return out


@dataclass
class Warehouse:
    variant: str
    path: Path
    bf: BruteForce
    con: object  # duckdb.DuckDBPyConnection
    summary: object

    def q(self, sql: str, params=None) -> tuple[list[str], list[tuple]]:
        cur = self.con.execute(sql, params or {})
        cols = [d[0] for d in cur.description]
        return cols, cur.fetchall()


# "awkward-parallel": two workers and, where the build takes them, small chunks (so
# reviews, the split one included, straddle chunk boundaries) and n_latents given.
BUILDS = {
    "plain": ("plain", {"workers": 1}),
    "awkward": ("awkward", {"workers": 1}),
    "awkward-parallel": ("awkward", {"workers": 2, "chunk_tokens": 97, "n_latents": N_LATENTS}),
}


@pytest.fixture(scope="module", params=list(BUILDS))
def wh(request, tmp_path_factory):
    import inspect

    from etl.build import build_warehouse
    from warehouse.db import connect

    variant, options = BUILDS[request.param]
    accepted = inspect.signature(build_warehouse).parameters
    options = {k: v for k, v in options.items() if k in accepted}
    root = tmp_path_factory.mktemp(f"contract-{request.param}")
    h5, npz = write_inputs(root / "inputs", variant=variant, n_latents=N_LATENTS, seed=11)
    bf = BruteForce(h5, npz)
    summary = build_warehouse(h5, npz, root / "warehouse", tokenizer="gpt2", replace=False,
                              progress=False, **options)
    con = connect(root / "warehouse")
    yield Warehouse(variant, root / "warehouse", bf, con, summary)
    con.close()


# ---- comparison helpers ---------------------------------------------------------------


def _same(kind: str, got, exp, *, ctx=None) -> bool:
    if exp is None or got is None:
        return got is None and exp is None
    if kind == "f32":
        return isinstance(got, float) and np.float32(got) == np.float32(exp) and \
            float(np.float32(exp)) == got
    if kind == "dbl":
        return math.isclose(got, exp, rel_tol=1e-9, abs_tol=1e-12)
    if kind == "tok":
        # README: `token` is "the token's own text (' salsa', not 'Ġsalsa')".  For a
        # byte-level fragment of a multi-byte character (the emoji) the vocab string is
        # not valid text ('\ufffd'); accept the character slice there too.
        return got == exp or (ctx is not None and "\ufffd" in exp and got == ctx)
    return type(got) is type(exp) and got == exp  # no 1 == True, no 2 == 2.0


def assert_rows(name: str, got: list[tuple], exp: list[tuple], *, what: str = "",
                alt_tokens: list | None = None) -> None:
    kinds = _kinds(name)
    label = f"{name}{what}"
    assert len(got) == len(exp), f"{label}: {len(got)} rows, expected {len(exp)}\n" \
        f"got[:5]={got[:5]}\nexp[:5]={exp[:5]}"
    for i, (g, e) in enumerate(zip(got, exp, strict=True)):
        assert len(g) == len(kinds), f"{label}: row has {len(g)} columns"
        for j, kind in enumerate(kinds):
            ctx = alt_tokens[i] if (alt_tokens is not None and kind == "tok") else None
            assert _same(kind, g[j], e[j], ctx=ctx), (
                f"{label} row {i} column {j} ({kind}): got {g[j]!r}, expected {e[j]!r}\n"
                f"got row {g}\nexpected row {e}")


def _alt_token(bf: BruteForce, token_pos: int):
    r = bf.token_review[token_pos]
    return bf.token_slice(r, bf.token_position[token_pos]) if r.offsets_ok else None


def pick_features(bf: BruteForce, n_latents: int) -> list[int]:
    rows = {f: bf.feature_row(f) for f in range(n_latents)}
    active = sorted((f for f in rows if rows[f][1]), key=lambda f: (-rows[f][1], f))
    rare = [f for f in active if rows[f][1] <= 3][:4]
    mid = active[len(active) // 3: len(active) // 3 + 2]
    dead = [f for f in rows if rows[f][1] == 0]
    chosen = [active[0], active[1], *mid, *rare, *dead[:2], dead[-1], ZERO_ONLY, *NEVER,
              DENSE, TIE_A, TIE_B, SALSA, STARRY, RARE_ONCE, RARE_TWICE, ONLY_NO_TEXT,
              ONLY_MISMATCH]
    return list(dict.fromkeys(chosen))


@pytest.fixture(scope="module")
def features(wh):
    return pick_features(wh.bf, N_LATENTS)


# ---- tables ---------------------------------------------------------------------------


@pytest.mark.parametrize("table", list(COLUMNS))
def test_table_columns(wh, table):
    # The contract's columns, in the contract's order; extra columns are tolerated.
    cols, _ = wh.q(f"SELECT * FROM {table} LIMIT 0")
    assert [c for c in cols if c in COLUMNS[table]] == COLUMNS[table], cols


def test_activations_types(wh):
    _, rows = wh.q("DESCRIBE activations")
    types = {r[0]: r[1] for r in rows}
    assert types == {"token_pos": "BIGINT", "review_idx": "INTEGER", "feature": "INTEGER",
                     "value": "FLOAT", "bucket": "INTEGER"}


def test_activations_table(wh):
    bf = wh.bf
    exp = sorted(bf.activations(range(N_LATENTS)), key=lambda r: (r[2], r[0]))
    _, got = wh.q(f"SELECT {cols('activations')} FROM activations ORDER BY feature, token_pos")
    assert_rows("activations", got, exp)
    # Zero-valued slots are dropped: every stored value is > 0.
    _, (n_bad,) = wh.q("SELECT count(*) FROM activations WHERE NOT value > 0")
    assert n_bad == (0,)


def test_review_active_features_table(wh):
    """One row per (review, feature active on one of its tokens) of the H5 scan, no
    duplicates; each file in review runs with features ascending, so a review's rows
    sit in one row group or a few (split reviews: all in part-split)."""
    import pyarrow.parquet as pq

    exp = sorted({(ri, f) for _, ri, f, _, _ in wh.bf.activations(range(N_LATENTS))})
    _, got = wh.q("SELECT review_idx, feature FROM review_active_features ORDER BY ALL")
    assert got == exp
    _, (n_rows,) = wh.q("SELECT count(*) FROM review_active_features")
    assert n_rows == (len(exp),)
    seen: set[int] = set()
    for path in sorted(wh.path.rglob("review_active_features/*.parquet")):
        t = pq.read_table(path)
        r, f = t.column("review_idx").to_numpy(), t.column("feature").to_numpy()
        if not len(r):
            continue
        heads = np.flatnonzero(np.append(True, r[1:] != r[:-1]))
        runs = r[heads].tolist()
        assert len(set(runs)) == len(runs), f"{path}: a review in two runs"
        assert not seen & set(runs), f"{path}: a review in two files"
        seen |= set(runs)
        for a, b in zip(heads.tolist(), [*heads[1:].tolist(), len(r)], strict=True):
            assert (np.diff(f[a:b]) > 0).all(), f"{path}: features not ascending in review {r[a]}"


def test_reviews_table(wh):
    _, got = wh.q(f"SELECT {cols('reviews')} FROM reviews ORDER BY review_idx")
    assert_rows("reviews", got, wh.bf.reviews_table())


def test_tokens_table(wh):
    bf = wh.bf
    _, got = wh.q(f"SELECT {cols('tokens')} FROM tokens ORDER BY token_pos")
    exp = bf.tokens_table()
    assert_rows("tokens", got, exp, alt_tokens=[_alt_token(bf, t) for t in range(bf.n_tokens)])


def test_token_feature_stats_table(wh):
    """Per (token id, feature): the feature's activations on that token id, counted, summed
    and maxed from a scan of the H5 (tokens without a token id are not counted)."""
    bf = wh.bf
    token_id = [row[3] for row in bf.tokens_table()]
    agg: dict[tuple[int, int], tuple[int, float, float]] = {}
    for t, _, f, v, _ in bf.activations(range(N_LATENTS)):
        if token_id[t] is None:
            continue
        n, total, top = agg.get((token_id[t], f), (0, 0.0, 0.0))
        agg[(token_id[t], f)] = (n + 1, total + float(v), max(top, float(v)))
    _, got = wh.q("SELECT token_id, feature, n_active, sum_value, max_value FROM token_feature_stats "
                  "ORDER BY token_id, feature")
    assert [r[:3] for r in got] == [(i, f, agg[(i, f)][0]) for i, f in sorted(agg)]
    for i, f, _, total, top in got:
        assert total == pytest.approx(agg[(i, f)][1], rel=1e-9)
        assert np.float32(top) == np.float32(agg[(i, f)][2])
    # Each file in (token_id, feature) order: one token's rows are a slice of each.
    import pyarrow.parquet as pq

    for path in sorted(wh.path.rglob("token_feature_stats/*.parquet")):
        t = pq.read_table(path, columns=["token_id", "feature"])
        key = list(zip(t.column("token_id").to_pylist(), t.column("feature").to_pylist(), strict=True))
        assert key == sorted(key), path


def test_vocabulary_table(wh):
    """Every token id that occurs, with its occurrences (H5 scan) and the text `tokens` shows."""
    from collections import Counter

    counts = Counter(row[3] for row in wh.bf.tokens_table() if row[3] is not None)
    _, got = wh.q("SELECT token_id, token, n_occurrences FROM vocabulary ORDER BY token_id")
    assert [(r[0], r[2]) for r in got] == sorted(counts.items())
    _, texts = wh.q("SELECT DISTINCT token_id, token FROM tokens WHERE token_id IS NOT NULL")
    assert {r[0]: r[1] for r in got} == dict(texts)


def test_features_table(wh):
    """Every latent, dead ones included, with the brute-force statistics."""
    bf = wh.bf
    _, got = wh.q(f"SELECT {cols('features')} FROM features ORDER BY feature")
    n_seen = bf.n_latents_seen()
    assert n_seen == N_LATENTS
    # The H5 cannot name latents beyond its largest index; rows past it may exist (dead).
    assert [r[0] for r in got] == list(range(len(got))) and len(got) >= n_seen
    # Past the largest index in the file no slot names the feature: dead without a scan.
    exp = [bf.feature_row(f) if f < n_seen else (f, 0, 0, 0.0, 0.0, None, None, None)
           for f in range(len(got))]
    dead = [i for i, e in enumerate(exp) if e[1] == 0]
    assert dead, "the inputs have dead features"
    for i in dead:
        g = got[i]
        assert g[1:5] == (0, 0, 0.0, 0.0), f"dead feature {i}: {g}"
        # max/mean/sum of nothing: NULL (SQL aggregate) or 0.0 are both read as "none".
        assert all(v in (None, 0.0) for v in g[5:]), f"dead feature {i}: {g}"
    dead_set = set(dead)
    live = [i for i in range(len(got)) if i not in dead_set]
    assert_rows("features", [got[i] for i in live], [exp[i] for i in live])


def test_top_examples_table(wh):
    bf = wh.bf
    exp = [row for f in range(N_LATENTS) for row in bf.top_examples(f)]
    _, got = wh.q(f"SELECT {cols('top_examples')} FROM top_examples ORDER BY feature, rank")
    assert_rows("top_examples", got, exp)
    assert max(r[1] for r in got) == 100  # some feature has more than 100 activations


def test_feature_stars_table(wh):
    bf = wh.bf
    exp = [row for f in range(N_LATENTS) for row in bf.feature_stars(f)]
    _, got = wh.q(f"SELECT {cols('feature_stars')} FROM feature_stars ORDER BY feature, stars")
    assert_rows("feature_stars", got, exp)


def test_activations_parquet_layout(wh):
    """Hive-partitioned by bucket = feature // 64, sorted by (feature, token_pos)."""
    import pyarrow.parquet as pq

    files = sorted(p for p in wh.path.rglob("*.parquet")
                   if any(part.startswith("bucket=") for part in p.parts))
    assert files, "no hive-partitioned activations files under the warehouse"
    buckets_seen = set()
    n_rows = 0
    for p in files:
        bucket = int(next(part for part in p.parts if part.startswith("bucket="))[7:])
        buckets_seen.add(bucket)
        t = pq.read_table(p, columns=["feature", "token_pos"], partitioning=None)
        feats = t.column("feature").to_numpy()
        pos = t.column("token_pos").to_numpy()
        n_rows += len(feats)
        assert (feats // 64 == bucket).all(), p
        key = list(zip(feats.tolist(), pos.tolist(), strict=True))
        assert key == sorted(key), f"{p} not sorted by (feature, token_pos)"
    exp = wh.bf.activations(range(N_LATENTS))
    assert n_rows == len(exp)
    assert buckets_seen == {f // 64 for _, _, f, _, _ in exp}
    _, rows = wh.q("SELECT count(*) FROM activations WHERE bucket <> feature // 64")
    assert rows == [(0,)]


@pytest.mark.parametrize("table", list(COLUMNS))
def test_tables_are_parquet(wh, table):
    """Every table is Parquet under the warehouse directory, readable without DuckDB."""
    import pyarrow.parquet as pq

    files = [p for p in wh.path.rglob("*.parquet")
             if table in {part.removesuffix(".parquet") for part in p.relative_to(wh.path).parts}]
    assert files, f"no Parquet files for {table} under {wh.path}"
    n = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    _, rows = wh.q(f"SELECT count(*) FROM {table}")
    assert n == rows[0][0]


# Encodings Spark 3.5's vectorized Parquet reader (the default of most managed clusters)
# decodes; it rejects BYTE_STREAM_SPLIT ("Unsupported encoding"), which Spark 4 added.
SPARK_35_ENCODINGS = {"PLAIN", "RLE", "BIT_PACKED", "PLAIN_DICTIONARY", "RLE_DICTIONARY",
                      "DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "DELTA_BYTE_ARRAY"}


def test_every_column_is_readable_by_spark_35(wh):
    """No column chunk of any table uses an encoding Spark 3.5's default reader rejects."""
    import pyarrow.parquet as pq

    files = sorted(wh.path.rglob("*.parquet"))
    assert files
    for p in files:
        meta = pq.ParquetFile(p).metadata
        for g in range(meta.num_row_groups):
            for c in range(meta.num_columns):
                column = meta.row_group(g).column(c)
                unreadable = set(column.encodings) - SPARK_35_ENCODINGS
                assert not unreadable, f"{p.relative_to(wh.path)} {column.path_in_schema}: {unreadable}"


# ---- macros ---------------------------------------------------------------------------


@pytest.mark.parametrize("macro,args", [
    ("feature_tokens", "0"), ("top_k", "0, 1"), ("top_k_contexts", "0, 1"),
    ("review_tokens", "'x'"), ("feature_by_stars", "0"), ("review_features", "'x', 1"),
])
def test_macro_columns(wh, macro, args):
    cols, _ = wh.q(f"SELECT * FROM {macro}({args}) LIMIT 0")
    assert cols == MACRO_COLUMNS[macro]


def test_activation_scalar(wh):
    bf = wh.bf
    rng = np.random.default_rng(5)
    with h5py.File(bf.h5_path) as f:
        z_idx = f["z_idx"][:]
    pairs = set()
    for t in range(0, bf.n_tokens, 5):  # every slot of every 5th token, zero slots too
        pairs.update((t, int(f)) for f in z_idx[t])
    zero_rows, zero_cols = np.nonzero(bf_values_zero(bf))
    pairs.update((int(t), int(z_idx[t, c])) for t, c in zip(zero_rows, zero_cols, strict=True))
    for f in pick_features(bf, N_LATENTS):
        pairs.update((int(t), f) for t in rng.choice(bf.n_tokens, size=20, replace=False))
        pairs.update((int(t), f) for t in bf.active_positions(f)[:20])
    pairs.update((t, N_LATENTS + 3) for t in (0, bf.n_tokens - 1))
    pairs = sorted(pairs)
    ts = [t for t, _ in pairs]
    fs = [f for _, f in pairs]
    _, got = wh.q(
        "SELECT t, f, activation(t, f) FROM (SELECT unnest($ts) AS t, unnest($fs) AS f) "
        "ORDER BY t, f", {"ts": ts, "fs": fs})
    exp = [(t, f, bf.activation(t, f)) for t, f in pairs]
    assert [(g[0], g[1]) for g in got] == [(e[0], e[1]) for e in exp]
    for g, e in zip(got, exp, strict=True):
        assert np.float32(g[2]) == np.float32(e[2]) and float(np.float32(e[2])) == g[2], (g, e)
    # And called directly with bound parameters.
    for t, f in pairs[:: max(1, len(pairs) // 25)]:
        _, rows = wh.q("SELECT activation($t, $f)", {"t": t, "f": f})
        assert rows[0][0] == bf.activation(t, f), (t, f)


def bf_values_zero(bf: BruteForce) -> np.ndarray:
    with h5py.File(bf.h5_path) as f:
        return f["z_val"][:] == 0


def test_feature_tokens(wh, features):
    bf = wh.bf
    for f in features:
        _, got = wh.q("SELECT * FROM feature_tokens($f)", {"f": f})
        assert_rows("feature_tokens", got, bf.feature_tokens(f), what=f"({f})")
    _, got = wh.q("SELECT * FROM feature_tokens($f)", {"f": N_LATENTS + 3})
    assert got == []


def test_top_k(wh, features):
    bf = wh.bf
    for f in features:
        n = len(bf.active_positions(f))
        for k in sorted({0, 1, 3, 10, 99, 100, 101, 150, n, n + 5, 10_000}):
            _, got = wh.q("SELECT * FROM top_k($f, $k)", {"f": f, "k": k})
            assert_rows("top_k", got, bf.top_k(f, k), what=f"({f}, {k})")
    _, got = wh.q("SELECT * FROM top_k($f, $k)", {"f": N_LATENTS + 3, "k": 5})
    assert got == []


def test_top_k_ties_broken_by_token_pos(wh):
    bf = wh.bf
    exp = bf.top_k(TIE_A, 10_000)
    assert len({r[4] for r in exp}) == 1 and len(exp) > 5  # all tied
    _, got = wh.q("SELECT * FROM top_k($f, $k)", {"f": TIE_A, "k": len(exp) // 2})
    assert [r[1] for r in got] == sorted(r[1] for r in exp)[: len(exp) // 2]


def test_top_k_beyond_materialized_100(wh):
    bf = wh.bf
    dense = max(range(N_LATENTS), key=lambda f: len(bf.active_positions(f)))
    n = len(bf.active_positions(dense))
    assert n > 150
    for k in (100, 101, 150, n - 1, n, n + 1):
        _, got = wh.q("SELECT * FROM top_k($f, $k)", {"f": dense, "k": k})
        assert_rows("top_k", got, bf.top_k(dense, k), what=f"({dense}, {k})")


WINDOWS = [None, (0, 0), (0, 3), (3, 0), (1, 1), (5, 2), (10**6, 10**6)]


def _check_contexts(wh, f, k, window):
    bf = wh.bf
    if window is None:
        _, got = wh.q("SELECT * FROM top_k_contexts($f, $k)", {"f": f, "k": k})
        exp = bf.top_k_contexts(f, k)
    else:
        b, a = window
        _, got = wh.q("SELECT * FROM top_k_contexts($f, $k, before := $b, after := $a)",
                      {"f": f, "k": k, "b": b, "a": a})
        exp = bf.top_k_contexts(f, k, before=b, after=a)
    assert_rows("top_k_contexts", got, exp, what=f"({f}, {k}, {window})")
    for row in got:
        left, token, right = row[-3:]
        r = bf.token_review[row[1]]
        if left is None:
            assert r.alignment in ("mismatch", "no_text")
            assert token is None and right is None
            continue
        whole = left + token + right
        assert whole in r.text
        p = bf.token_position[row[1]]
        before, after = window or (20, 10)
        first, last = max(0, p - before), min(r.n_tokens - 1, p + after)
        assert whole == r.text[r.starts[first]:r.ends[last]]


def test_top_k_contexts(wh, features):
    for f in features:
        for window in WINDOWS:
            _check_contexts(wh, f, 7, window)
        _check_contexts(wh, f, 0, None)
        _check_contexts(wh, f, 10_000, (2, 2))


def test_top_k_contexts_awkward_spots(wh):
    """Clipping at a truncated review's last H5 token, windows across a split review,
    NULL contexts for mismatch / no_text reviews."""
    bf = wh.bf
    for f in (RARE_ONCE, RARE_TWICE, SALSA, ONLY_NO_TEXT, ONLY_MISMATCH):
        for window in WINDOWS:
            _check_contexts(wh, f, 50, window)
    if wh.variant == "awkward":
        _, got = wh.q("SELECT * FROM top_k_contexts($f, 1, before := 2, after := 10)",
                      {"f": RARE_ONCE})
        r = bf.token_review[got[0][1]]
        assert r.alignment == "truncated" and got[0][-1] == ""
        assert not r.text.endswith(got[0][-3] + got[0][-2])  # the text goes on
        for f in (ONLY_NO_TEXT, ONLY_MISMATCH):
            _, got = wh.q("SELECT * FROM top_k_contexts($f, 1000)", {"f": f})
            assert got and all(row[-3:] == (None, None, None) for row in got)
        # The split review's pair: each window reaches across the gap in the file.
        _, got = wh.q("SELECT * FROM top_k_contexts($f, 2, before := 1, after := 1)",
                      {"f": RARE_TWICE})
        assert len(got) == 2
        for row in got:
            assert row[-3] and row[-1]  # a neighbour on both sides, across the split


def test_review_tokens(wh):
    bf = wh.bf
    for r in bf.reviews:
        _, got = wh.q("SELECT * FROM review_tokens($r)", {"r": r.review_id})
        exp = bf.review_tokens(r.review_id)
        alt = [_alt_token(bf, t) for _, t, *_ in exp]
        assert_rows("review_tokens", got, exp, what=f"({r.review_id!r}, {r.alignment})",
                    alt_tokens=alt)
    _, got = wh.q("SELECT * FROM review_tokens($r)", {"r": "no-such-review"})
    assert got == []


def test_review_features(wh):
    bf = wh.bf
    for r in bf.reviews:
        for k in (0, 1, 3, 1000):
            _, got = wh.q("SELECT * FROM review_features($r, $k)", {"r": r.review_id, "k": k})
            assert_rows("review_features", got, bf.review_features(r.review_id, k),
                        what=f"({r.review_id!r}, {k})")
    _, got = wh.q("SELECT * FROM review_features($r, 5)", {"r": "no-such-review"})
    assert got == []


def test_review_features_ties_by_feature(wh):
    """TIE_A and TIE_B share max_value 1.5 in some review: feature ascending."""
    bf = wh.bf
    found = 0
    for r in bf.reviews:
        exp = bf.review_features(r.review_id, 1000)
        vals = [e[1] for e in exp]
        if len(vals) != len(set(vals)):
            found += 1
            _, got = wh.q("SELECT feature FROM review_features($r, 1000)", {"r": r.review_id})
            assert [g[0] for g in got] == [e[0] for e in exp]
    assert found


def test_feature_by_stars(wh, features):
    bf = wh.bf
    for f in features:
        _, got = wh.q("SELECT * FROM feature_by_stars($f)", {"f": f})
        exp = bf.feature_by_stars(f)
        assert_rows("feature_by_stars", got, exp, what=f"({f})")
        if not bf.active_positions(f).size:
            assert all(row[2] == 0 and row[4] is None and row[5] is None for row in got)


def test_dead_feature_macros(wh):
    bf = wh.bf
    dead = [f for f in (ZERO_ONLY, *NEVER, N_LATENTS - 1) if not bf.active_positions(f).size]
    assert dead
    for f in dead:
        for sql in ("SELECT * FROM feature_tokens($f)", "SELECT * FROM top_k($f, 10)",
                    "SELECT * FROM top_k_contexts($f, 10)",
                    "SELECT * FROM top_examples WHERE feature = $f",
                    "SELECT * FROM feature_stars WHERE feature = $f",
                    "SELECT * FROM activations WHERE feature = $f"):
            assert wh.q(sql, {"f": f})[1] == [], (sql, f)
        _, rows = wh.q("SELECT activation($t, $f)", {"t": 0, "f": f})
        assert rows == [(0.0,)]
        _, rows = wh.q("SELECT n_active, n_reviews, density FROM features WHERE feature = $f",
                       {"f": f})
        assert rows == [(0, 0, 0.0)]


def _walk(obj, key=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, str(k))
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk(v, key)
    else:
        yield key, obj


def test_zero_slots_counted_in_manifest(wh):
    """README: a zero-valued slot is dropped "and counted in the manifest".  The key's name
    is not part of the contract: some key mentioning "zero" must carry the count."""
    manifests = sorted(wh.path.glob("manifest*.json"))
    assert manifests, f"no manifest*.json in {wh.path}"
    n_zero = int(bf_values_zero(wh.bf).sum())
    assert (n_zero > 0) == (wh.variant == "awkward")
    counts = [v for p in manifests for k, v in _walk(json.loads(p.read_text()))
              if "zero" in k.lower() and isinstance(v, int) and not isinstance(v, bool)]
    assert n_zero in counts, (n_zero, counts)


def test_negative_values_are_not_activations(tmp_path):
    """The reference's rule is `acts > 0`: a negative slot is as inactive as a zero one.
    The README does not say; refusing such an input with a message naming the problem is
    the other acceptable reading (a top-k SAE after ReLU never writes one)."""
    from etl.build import build_warehouse
    from warehouse.db import connect

    h5, npz = write_inputs(tmp_path / "inputs", n_reviews=10, variant="plain", seed=2)
    with h5py.File(h5, "r+") as f:
        z_val = f["z_val"][:]
        slots = [(3, 0), (4, 2), (7, 5)]
        for t, s in slots:
            z_val[t, s] = -0.5
        f["z_val"][...] = z_val
        z_idx = f["z_idx"][:]
    bf = BruteForce(h5, npz)
    try:
        build_warehouse(h5, npz, tmp_path / "warehouse", tokenizer="gpt2", workers=1,
                        replace=False, progress=False)
    except Exception as exc:  # any error class will do, if it says what is wrong
        assert "negative" in str(exc) or "-0.5" in str(exc), f"unclear refusal: {exc!r}"
        return
    con = connect(tmp_path / "warehouse")
    try:
        for t, s in slots:
            f = int(z_idx[t, s])
            assert bf.activation(t, f) == 0.0
            got = con.execute("SELECT activation($t, $f)", {"t": t, "f": f}).fetchone()[0]
            assert got == 0.0, (t, f, got)
        rows = con.execute(
            f"SELECT {cols('activations')} FROM activations ORDER BY feature, token_pos"
        ).fetchall()
    finally:
        con.close()
    exp = sorted(bf.activations(range(N_LATENTS)), key=lambda r: (r[2], r[0]))
    assert_rows("activations", rows, exp)


def test_contract_constants_reach_the_sql(wh):
    """sql/contract.sql's macros are warehouse.contract's constants, rendered at build."""
    from warehouse import contract

    _, rows = wh.q("SELECT bucket_width(), top_materialized(), review_top(), default_before(), "
                   "default_after(), bucket_of(16751), bucket_of(0)")
    assert rows == [(contract.BUCKET_WIDTH, contract.TOP_MATERIALIZED, contract.REVIEW_TOP,
                     contract.DEFAULT_BEFORE, contract.DEFAULT_AFTER, contract.bucket_of(16751), 0)]


def test_no_sql_file_repeats_a_contract_number():
    """Bucket arithmetic, materialized sizes and the default window appear in sql/ only as
    the macros of sql/contract.sql (a changed constant cannot leave a stale copy)."""
    import re

    from warehouse import contract
    from warehouse.sqlfiles import sql_dir

    sizes = "|".join(map(str, {contract.TOP_MATERIALIZED, contract.REVIEW_TOP}))
    patterns = {
        "bucket arithmetic": re.compile(rf"//\s*{contract.BUCKET_WIDTH}\b"),
        "a materialized size": re.compile(rf"\b(k|n_features)\s*(<=|>|<|>=)\s*({sizes})\b"),
        "the default window": re.compile(
            rf"\b(before\s*(:=|=)\s*{contract.DEFAULT_BEFORE}|after\s*(:=|=)\s*{contract.DEFAULT_AFTER})\b"
        ),
    }
    checked = 0
    for path in sorted(sql_dir().rglob("*.sql")):
        if path.name == "contract.sql":
            continue
        checked += 1
        code = "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())
        for what, pattern in patterns.items():
            assert not pattern.search(code), f"{path.name} repeats {what}: {pattern.search(code)[0]!r}"
    assert checked > 20
