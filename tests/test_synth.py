"""The synthetic generator writes the seed formats exactly, and its planted features mean
exactly what `etl.synth` says: checked here by brute-force scans of the written files."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from etl.synth import (
    PLANTED,
    SALSA_TOKENS,
    SynthResult,
    dead_features,
    planted_features,
    synthesize,
)
from etl.synth.meta import make_meta
from etl.synth.text import ReviewWriter
from etl.tokenizer import load_tokenizer

N_REVIEWS = 300
K = 32
N_LATENTS = 24576
ID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")


def _load(res: SynthResult) -> dict[str, np.ndarray]:
    with h5py.File(res.h5_path, "r") as f:
        out = {name: f[name][:] for name in ("z_idx", "z_val", "rev_idx", "review_ids_unique")}
        out["_dtypes"] = {name: f[name].dtype for name in f}
        out["_chunks"] = {name: f[name].chunks for name in f}
    with np.load(res.npz_path, allow_pickle=True) as d:
        out.update({name: d[name] for name in d.files})
    return out


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[SynthResult, dict]:
    res = synthesize(tmp_path_factory.mktemp("synth"), n_reviews=N_REVIEWS, seed=0)
    return res, _load(res)


@pytest.fixture(scope="module")
def layout(synth: tuple[SynthResult, dict]) -> dict:
    """Per-token review row, stars, business and GPT-2 token text, from the NPZ texts."""
    _, d = synth
    row_of = {rid: i for i, rid in enumerate(d["review_ids"])}
    runs_start = np.flatnonzero(np.r_[True, d["rev_idx"][1:] != d["rev_idx"][:-1]])
    runs_len = np.diff(np.r_[runs_start, len(d["rev_idx"])])
    run_rows = np.array([row_of[d["rev_idx"][s].decode()] for s in runs_start])
    tok = load_tokenizer("gpt2")
    encs = tok.encode_batch([d["texts"][r] for r in run_rows])
    token_text = [tok.vocab_strings[i] for e in encs for i in e.ids]
    tok_row = np.repeat(run_rows, runs_len)
    return {
        "runs_len": runs_len,
        "run_rows": run_rows,
        "gpt2_counts": np.array([len(e.ids) for e in encs]),
        "token_text": token_text,
        "tok_row": tok_row,
        "tok_stars": d["stars"][tok_row],
        "tok_business": d["business_ids"][tok_row],
    }


def _active(d: dict, feature: int) -> tuple[np.ndarray, np.ndarray]:
    """(token positions, values) where `feature` is active."""
    rows, cols = np.nonzero(d["z_idx"] == feature)
    return rows, d["z_val"][rows, cols]


def test_h5_shapes_and_dtypes(synth: tuple[SynthResult, dict]) -> None:
    res, d = synth
    n = res.n_tokens
    assert d["z_idx"].shape == (n, K) and d["z_idx"].dtype == np.int32
    assert d["z_val"].shape == (n, K) and d["z_val"].dtype == np.float32
    assert d["rev_idx"].shape == (n,) and d["_dtypes"]["rev_idx"] == np.dtype("S22")
    assert d["_dtypes"]["review_ids_unique"] == np.dtype("S22")
    # Chunked (so the writer could append in bounded memory) and resizable.
    assert d["_chunks"]["z_idx"] is not None and d["_chunks"]["z_idx"][1] == K
    assert res.n_reviews == N_REVIEWS and res.planted == PLANTED
    assert res.h5_path.name == "sae_features.h5" and res.npz_path.name == "metadata.npz"


def test_npz_matches_real_file_layout(synth: tuple[SynthResult, dict]) -> None:
    res, d = synth
    # Like the real file, the string arrays are pickled object arrays.
    with np.load(res.npz_path) as raw, pytest.raises(ValueError):
        raw["texts"]
    for name in ("review_ids", "texts", "user_ids", "business_ids"):
        assert d[name].dtype == object and d[name].shape == (N_REVIEWS,)
        assert all(type(x) is str for x in d[name])
    for name in ("review_ids", "user_ids", "business_ids"):
        assert all(ID_RE.match(x) for x in d[name])
    assert len(set(d["review_ids"])) == N_REVIEWS
    assert d["stars"].dtype == np.int64 and set(d["stars"]) <= {1, 2, 3, 4, 5}
    assert d["useful"].dtype == np.int64 and (d["useful"] >= 0).all()
    assert len(set(d["user_ids"])) <= N_REVIEWS // 3
    assert 5 <= len(set(d["business_ids"])) <= max(5, N_REVIEWS // 50)


def test_k_distinct_positive_in_range(synth: tuple[SynthResult, dict]) -> None:
    _, d = synth
    srt = np.sort(d["z_idx"], axis=1)
    assert (srt[:, 1:] != srt[:, :-1]).all()
    assert srt.min() >= 0 and srt.max() < N_LATENTS
    assert np.isfinite(d["z_val"]).all() and (d["z_val"] > 0).all()
    logs = np.log(d["z_val"][d["z_idx"] != PLANTED["salsa"]])
    assert abs(logs.mean() + 1.0) < 0.05 and abs(logs.std() - 0.8) < 0.05  # lognormal(-1, 0.8)


def test_reviews_contiguous_in_npz_order(synth: tuple[SynthResult, dict], layout: dict) -> None:
    _, d = synth
    rows = layout["run_rows"]
    # One run per review (contiguous), runs in NPZ order, and the unique list agrees.
    assert len(set(rows)) == len(rows) and (np.diff(rows) > 0).all()
    assert [d["review_ids"][r] for r in rows] == [x.decode() for x in d["review_ids_unique"]]
    skipped = N_REVIEWS - len(rows)
    assert 1 <= skipped <= N_REVIEWS // 20


def test_skip_rate_is_about_one_percent() -> None:
    meta = make_meta(np.random.default_rng(7), 20000)
    assert 0.005 < meta.skipped.mean() < 0.015


def test_token_counts_are_real_gpt2_counts(synth: tuple[SynthResult, dict], layout: dict) -> None:
    res, _ = synth
    assert (layout["runs_len"] == layout["gpt2_counts"]).all()
    assert layout["runs_len"].sum() == res.n_tokens


def test_planted_salsa_fires_exactly_on_salsa_tokens(
    synth: tuple[SynthResult, dict], layout: dict
) -> None:
    _, d = synth
    pos, val = _active(d, PLANTED["salsa"])
    expected = np.flatnonzero([t in SALSA_TOKENS for t in layout["token_text"]])
    assert len(expected) > 50
    assert np.array_equal(pos, expected)
    assert ((val >= 5.0) & (val < 10.0)).all()
    # A good fraction of reviews have salsa, some several times.
    per_review = np.bincount(layout["tok_row"][pos], minlength=N_REVIEWS)
    assert (per_review > 0).mean() > 0.25 and (per_review > 1).sum() > 10


def test_planted_one_star_only_in_one_star_reviews(
    synth: tuple[SynthResult, dict], layout: dict
) -> None:
    _, d = synth
    pos, _ = _active(d, PLANTED["one_star"])
    assert len(pos) > 0 and (layout["tok_stars"][pos] == 1).all()
    rate = len(pos) / (layout["tok_stars"] == 1).sum()
    assert 0.2 < rate < 0.4


def test_planted_business_only_in_business_zero(
    synth: tuple[SynthResult, dict], layout: dict
) -> None:
    _, d = synth
    biz0 = d["business_ids"][0]
    pos, _ = _active(d, PLANTED["business"])
    assert len(pos) > 0 and (layout["tok_business"][pos] == biz0).all()
    rate = len(pos) / (layout["tok_business"] == biz0).sum()
    assert 0.4 < rate < 0.6


def test_planted_dense_and_dead(synth: tuple[SynthResult, dict]) -> None:
    res, d = synth
    pos, _ = _active(d, PLANTED["dense"])
    assert 0.27 < len(pos) / res.n_tokens < 0.33
    dead = dead_features(N_LATENTS)
    assert PLANTED["dead"] in dead and len(dead) >= N_LATENTS // 50
    assert not np.isin(d["z_idx"], dead).any()


def test_heavy_tailed_frequencies(synth: tuple[SynthResult, dict]) -> None:
    res, d = synth
    density = np.bincount(d["z_idx"].ravel(), minlength=N_LATENTS) / res.n_tokens
    density[list(PLANTED.values())] = 0  # judge the random features alone
    assert density.max() > 0.2
    assert 3 <= (density > 0.2).sum() <= 50
    assert np.median(density) < 1e-3
    assert (density < 1e-3).mean() > 0.5


def test_deterministic(tmp_path: Path, synth: tuple[SynthResult, dict]) -> None:
    _, d = synth
    again = _load(synthesize(tmp_path / "a", n_reviews=N_REVIEWS, seed=0))
    for name in ("z_idx", "z_val", "rev_idx", "review_ids_unique", "stars", "useful"):
        assert np.array_equal(again[name], d[name]), name
    for name in ("review_ids", "texts", "user_ids", "business_ids"):
        assert list(again[name]) == list(d[name]), name
    other = _load(synthesize(tmp_path / "b", n_reviews=N_REVIEWS, seed=1))
    assert list(other["review_ids"]) != list(d["review_ids"])


def test_small_sae_width_scales_planted(tmp_path: Path) -> None:
    n_latents = 4096
    planted = planted_features(n_latents)
    assert len(set(planted.values())) == len(planted)
    assert all(0 <= v < n_latents for v in planted.values())
    res = synthesize(tmp_path, n_reviews=60, seed=3, n_latents=n_latents, k=16)
    assert res.planted == planted
    d = _load(res)
    assert d["z_idx"].shape == (res.n_tokens, 16) and d["z_idx"].max() < n_latents
    srt = np.sort(d["z_idx"], axis=1)
    assert (srt[:, 1:] != srt[:, :-1]).all()
    assert not np.isin(d["z_idx"], dead_features(n_latents)).any()
    tok = load_tokenizer("gpt2")
    salsa = [
        tok.vocab_strings[i] in SALSA_TOKENS
        for r in d["review_ids_unique"]
        for i in tok.encode_batch([d["texts"][list(d["review_ids"]).index(r.decode())]])[0].ids
    ]
    assert np.array_equal(_active(d, planted["salsa"])[0], np.flatnonzero(salsa))


@pytest.mark.parametrize("n_latents,k", [(65536, 64), (300, 100)])
def test_other_widths_keep_rows_distinct(tmp_path: Path, n_latents: int, k: int) -> None:
    res = synthesize(tmp_path, n_reviews=20, seed=5, n_latents=n_latents, k=k)
    d = _load(res)
    srt = np.sort(d["z_idx"], axis=1)
    assert d["z_idx"].shape == (res.n_tokens, k) and srt.max() < n_latents
    assert (srt[:, 1:] != srt[:, :-1]).all()
    assert not np.isin(d["z_idx"], dead_features(n_latents)).any()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        synthesize(tmp_path, n_reviews=10, k=3)
    with pytest.raises(ValueError):
        synthesize(tmp_path, n_reviews=10, n_latents=64)
    with pytest.raises(ValueError):
        synthesize(tmp_path, n_reviews=0)


def test_review_text_is_varied_unicode_and_follows_stars() -> None:
    writer = ReviewWriter(11)
    stars = np.random.default_rng(11).choice([1, 5], size=2000)
    texts = [writer.review(int(s)) for s in stars]
    counts = load_tokenizer("gpt2").count_tokens(texts)
    assert 100 <= counts.mean() <= 130 and counts.min() < 40 and counts.max() > 300
    assert len(set(texts)) == len(texts)
    joined = "".join(texts)
    for ch in ("é", "ñ", "—", "🌮", "’", "“"):
        assert ch in joined, ch
    assert np.mean([" salsa" in t for t in texts]) > 0.3

    def praise(t: str) -> bool:
        return any(w in t for w in ("amazing", "delicious", "Highly recommend", "to die for"))

    pos = np.array([praise(t) for t in texts])
    assert pos[stars == 5].mean() > pos[stars == 1].mean() + 0.3
