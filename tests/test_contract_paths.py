"""Both paths of every macro with a fast path, against the brute-force oracle.

top_k, top_k_contexts and review_features answer small k (and the default window) from
build-time materializations (top_examples with contexts, review_top_features, native
copies in warehouse.duckdb) and everything else by scanning.  test_contract.py checks
the macros' answers; this file makes sure each path is taken on purpose, at its edges
(k = 100 / 101, the default window given explicitly), that the two agree where they
overlap, that the general path's branch really folds away on the fast path, and that
the helpers behind the materializations agree with their slow equivalents.
"""

from __future__ import annotations

import numpy as np
import pytest
from bruteforce import BruteForce
from inputs import RARE_TWICE, SALSA, TIE_A, write_inputs
from test_contract import N_LATENTS, assert_rows, pick_features

# Small chunks: most reviews straddle a chunk, so their per-review ranking goes through
# the cross-chunk merge (etl.build.finish.write_review_top_partials); one worker, big
# chunks: every review is ranked inside its chunk.
# "subblocks": chunks of 97 tokens sorted in blocks of ~16 (Tuning.sort_block_tokens).
BUILDS = {
    "awkward-split": ("awkward", {"workers": 2, "chunk_tokens": 13}, None),
    "awkward-subblocks": ("awkward", {"workers": 2, "chunk_tokens": 97}, 16),
    "plain-whole": ("plain", {"workers": 1}, None),
}


@pytest.fixture(scope="module", params=list(BUILDS))
def wh(request, tmp_path_factory):
    from etl.build import Tuning, build_warehouse
    from warehouse.db import connect

    variant, options, sort_block = BUILDS[request.param]
    root = tmp_path_factory.mktemp(f"paths-{request.param}")
    # k = 24 slots a token: reviews reach more than 100 distinct features.
    h5, npz = write_inputs(root / "inputs", variant=variant, n_latents=N_LATENTS, k=24, seed=23)
    bf = BruteForce(h5, npz)
    tuning = Tuning(sort_block_tokens=sort_block) if sort_block else None
    build_warehouse(h5, npz, root / "wh", tokenizer="gpt2", n_latents=N_LATENTS, tuning=tuning, **options)
    con = connect(root / "wh")
    yield bf, con
    con.close()


def q(con, sql, params):
    return con.execute(sql, params).fetchall()


def test_top_k_fast_and_general_paths(wh):
    bf, con = wh
    for f in pick_features(bf, N_LATENTS):
        n = len(bf.active_positions(f))
        fast = q(con, "SELECT * FROM top_k($f, 100)", {"f": f})
        general = q(con, "SELECT * FROM top_k($f, 101)", {"f": f})
        assert_rows("top_k", fast, bf.top_k(f, 100), what=f"({f}, 100)")
        assert_rows("top_k", general, bf.top_k(f, 101), what=f"({f}, 101)")
        assert general[: min(n, 100)] == fast


def test_top_k_contexts_fast_and_general_paths(wh):
    bf, con = wh
    for f in [*pick_features(bf, N_LATENTS), SALSA, RARE_TWICE, TIE_A]:
        for k in (1, 20, 100):
            fast = q(con, "SELECT * FROM top_k_contexts($f, $k)", {"f": f, "k": k})
            explicit = q(con, "SELECT * FROM top_k_contexts($f, $k, before := 20, after := 10)",
                         {"f": f, "k": k})
            assert fast == explicit
            assert_rows("top_k_contexts", fast, bf.top_k_contexts(f, k), what=f"({f}, {k})")
        # k = 101 takes the general path with the default window: same first 100 rows.
        general = q(con, "SELECT * FROM top_k_contexts($f, 101)", {"f": f})
        assert_rows("top_k_contexts", general, bf.top_k_contexts(f, 101), what=f"({f}, 101)")
        assert general[:100] == q(con, "SELECT * FROM top_k_contexts($f, 100)", {"f": f})
        # Another window with a small k: the general path too.
        other = q(con, "SELECT * FROM top_k_contexts($f, 20, before := 19, after := 10)", {"f": f})
        assert_rows("top_k_contexts", other, bf.top_k_contexts(f, 20, before=19, after=10),
                    what=f"({f}, 20, 19/10)")


def test_review_features_fast_and_general_paths(wh):
    bf, con = wh
    wide = 0
    for r in bf.reviews:
        exp_all = bf.review_features(r.review_id, 10_000)
        wide += len(exp_all) > 100
        for k in (1, 20, 99, 100):
            got = q(con, "SELECT * FROM review_features($r, $k)", {"r": r.review_id, "k": k})
            assert_rows("review_features", got, exp_all[:k], what=f"({r.review_id!r}, {k})")
        general = q(con, "SELECT * FROM review_features($r, 101)", {"r": r.review_id})
        assert_rows("review_features", general, exp_all[:101], what=f"({r.review_id!r}, 101)")
    assert wide, "some review has more than 100 features, so the materialization truncates"


def _review_report_features(bf: BruteForce, review_id: str, k: int) -> list[tuple]:
    """`report review`'s features section by brute force: (rank, feature, max_value,
    n_tokens_active, peak_position, peak_token), the peak the review's first token
    (in file order) holding the maximum."""
    import h5py

    r = bf.by_id[review_id]
    token_of = {row[1]: row[3] for row in bf.review_tokens(review_id)}
    best: dict[int, tuple] = {}
    with h5py.File(bf.h5_path, "r") as f:
        for p, t in enumerate(r.token_positions):
            values = f["z_val"][t].astype(np.float32).tolist()
            for feat, v in zip(f["z_idx"][t].tolist(), values, strict=True):
                if v > 0:
                    m, n, peak = best.get(feat, (v, 0, p))
                    best[feat] = (v, n + 1, p) if v > m else (m, n + 1, peak)
    order = sorted(best, key=lambda feat: (-best[feat][0], feat))[:k]
    return [(i, feat, best[feat][0], best[feat][1], best[feat][2], token_of[r.token_positions[best[feat][2]]])
            for i, feat in enumerate(order, start=1)]


def test_review_report_features(wh):
    """`report review`'s features (ranked from review_features, peaks looked up in their
    buckets) on both sides of review_top(), against the H5 scan."""
    from pathlib import Path

    from warehouse.sqlfiles import parse_sql

    bf, con = wh
    path = Path(__file__).parents[1] / "sql" / "reports" / "review.sql"
    features = [st for st in parse_sql(path.read_text(), path).statements if st.name == "features"][0].sql
    reviews = [r for r in bf.reviews if r.n_tokens][:6]
    for r in reviews:
        for k in (5, 100, 101):
            got = q(con, features, {"review_id": r.review_id, "k": k})
            exp = _review_report_features(bf, r.review_id, k)
            assert [g[:2] + g[3:6] for g in got] == [e[:2] + e[3:] for e in exp], (r.review_id, k)
            assert all(np.float32(g[2]) == np.float32(e[2]) for g, e in zip(got, exp, strict=True))


def test_review_top_features_table(wh):
    """The materialization itself: per review, the 100 strongest features, ranked."""
    bf, con = wh
    got = q(con, "SELECT review_idx, rank, feature, max_value, n_tokens_active FROM review_top_features "
                 "ORDER BY review_idx, rank", {})
    exp = []
    for r in bf.reviews:
        for rank, (f, v, n) in enumerate(bf.review_features(r.review_id, 100), start=1):
            exp.append((r.review_idx, rank, f, v, n))
    assert [(g[0], g[1], g[2], g[4]) for g in got] == [(e[0], e[1], e[2], e[4]) for e in exp]
    assert all(np.float32(g[3]) == np.float32(e[3]) for g, e in zip(got, exp, strict=True))


@pytest.mark.parametrize("sql", [
    "SELECT * FROM top_k($f, 20)",
    "SELECT * FROM top_k_contexts($f, 20)",
])
def test_fast_path_plans_skip_the_scans(wh, sql):
    """The general branch is planned away: no activations/tokens Parquet in the plan."""
    _, con = wh
    plan = "\n".join(row[1] for row in con.execute("EXPLAIN " + sql, {"f": SALSA}).fetchall())
    assert "top_examples_native" in plan
    assert "READ_PARQUET" not in plan, plan


def test_texts_taken_chunk_by_chunk():
    """The build reads texts from a memory-mapped file of 64K-text chunks, by review:
    any order, repeats, empty chunks and chunk boundaries give ChunkedArray.take's
    answer (which it avoids: that take copies every chunk first)."""
    import pyarrow as pa

    from etl.build.files import texts_at

    texts = pa.chunked_array(
        [pa.array(["a", "b", "c"], pa.large_string()), pa.array([], pa.large_string()),
         pa.array(["d", None, "é"], pa.large_string())]
    )
    for rows in ([5, 0, 2, 3], [], [1], [3, 3, 0], [2, 3], list(range(6))[::-1]):
        want = texts.take(pa.array(rows, pa.int64())).to_pylist()
        assert texts_at(texts, np.array(rows, np.int64)) == want, rows


def test_top_examples_native_is_stored_in_feature_rank_order(wh):
    """sql/native.sql loads top_examples_native without ORDER BY, relying on DuckDB's
    insertion order of one scanned file: its zone maps prune on feature only if the
    rows sit in (feature, rank) order."""
    _, con = wh
    got = con.execute("SELECT feature, rank FROM top_examples_native ORDER BY rowid").fetchall()
    assert len(got) > 100
    assert got == sorted(got)


def test_review_features_fast_plan_skips_activations(wh):
    _, con = wh
    plan = "\n".join(row[1] for row in con.execute(
        "EXPLAIN SELECT * FROM review_features('x', 20)").fetchall())
    assert "activations" not in plan and "bucket=" not in plan, plan


# ---- helpers --------------------------------------------------------------------------


def _reference_top(g, f, v, c, k):
    rows = sorted(zip(g.tolist(), f.tolist(), v.tolist(), c.tolist()), key=lambda r: (r[0], -r[2], r[1]))
    out, seen = [], {}
    for gg, ff, vv, cc in rows:
        seen[gg] = seen.get(gg, 0) + 1
        if seen[gg] <= k:
            out.append((gg, seen[gg], ff, vv, cc))
    return out


@pytest.mark.parametrize("prefilter", [True, False])
@pytest.mark.parametrize("packed", [True, False])
def test_top_per_group_matches_sorting(prefilter, packed):
    from etl.build.kernels import top_per_group

    rng = np.random.default_rng(3)
    for n_groups, n, k in ((1, 5, 3), (7, 2000, 10), (300, 60_000, 100), (50, 3_000, 100)):
        g = rng.integers(0, n_groups, n)
        # Distinct (group, feature) pairs, as the build produces them.
        f = rng.permutation(n * 4)[:n] % 5000
        key = np.unique(g * 10_000 + f, return_index=True)[1]
        g, f = g[key], f[key]
        # Few distinct values: ties inside groups, at the rank-k boundary too.
        v = (rng.integers(1, 40, len(g)) / 8).astype(np.float32)
        c = rng.integers(1, 9, len(g))
        got = top_per_group(g, f, v, c, n_groups, k, prefilter=prefilter, packed=packed)
        got = list(zip(*(x.tolist() for x in got)))
        assert got == _reference_top(g, f, v, c, k)


@pytest.mark.parametrize("n_latents", [64, 24_576, 70_000, 1 << 26])
def test_explode_chunk_packed_sort_matches_stable_argsort(n_latents):
    """The packed (feature, token, value) sort against the stable argsort it replaced,
    including zero slots and a feature twice in a token (which must still be flagged).
    1 << 26 features do not fit beside token and value: that takes the argsort path."""
    from etl.build.kernels import explode_chunk, explode_chunk_argsort

    rng = np.random.default_rng(11)
    cases = [
        # (tokens, k, fraction of zero slots, a feature twice in one token)
        (1, 1, 0.0, False),
        (37, 8, 0.0, False),
        (5000, 32, 0.0, False),
        (5000, 32, 0.3, False),
        (300, 16, 0.1, True),
        (300, 16, 0.0, True),
        (4, 4, 1.0, False),
    ]
    for m, k, zero_frac, dup in cases:
        idx = np.stack([rng.choice(n_latents, k, replace=False) for _ in range(m)]).astype(np.int32)
        val = rng.gamma(2.0, 1.0, (m, k)).astype(np.float32)
        val[rng.random((m, k)) < zero_frac] = 0
        val[0, 0] = np.float32(1e-40)  # subnormal: the bits are carried, not the number
        if dup:
            idx[m // 2, 1] = idx[m // 2, 0]
            val[m // 2, :2] = 1.0
        got = explode_chunk(idx, val, n_latents)
        want = explode_chunk_argsort(idx, val, n_latents)
        assert got[4] == want[4] == dup
        if dup:
            continue  # the chunk is rejected; its order does not matter
        assert got[0].tolist() == want[0].tolist()
        assert got[1].dtype == want[1].dtype and got[1].tolist() == want[1].tolist()
        assert got[2].tolist() == want[2].tolist()
        assert got[3].view(np.uint32).tolist() == want[3].view(np.uint32).tolist()


def test_spill_append_survives_short_writes(tmp_path, monkeypatch):
    """os.writev may write less than asked: the rest follows, in order."""
    import os

    from etl.build import files

    real = os.writev
    monkeypatch.setattr(files.os, "writev", lambda fd, bufs: real(fd, [memoryview(bufs[0])[:5]]))
    a, b = np.arange(7, dtype=np.uint32), np.linspace(1, 2, 3, dtype=np.float32)
    fd = os.open(tmp_path / "spill.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        files.append(fd, a, b)
        files.append(fd, b[:1], a[:1])
    finally:
        os.close(fd)
    want = a.tobytes() + b.tobytes() + b[:1].tobytes() + a[:1].tobytes()
    assert (tmp_path / "spill.bin").read_bytes() == want
