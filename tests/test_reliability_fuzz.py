"""Property test: random small H5/NPZ inputs, valid or broken, never end badly.

Every generated case is either valid, and must build a warehouse that verifies and
matches the brute-force oracle (tests/bruteforce.py) on the activations and reviews
tables, or carries one planted defect, and must end in a clean error: exit code 3, one
`saewh: error:` line naming the broken file, no traceback, nothing at the target or
beside it.  A watchdog turns a hang into a failure.

Bounded so it stays fast on two shared cores: every defect once, plus 14 valid inputs
(30 in-process builds), derandomized so CI is repeatable.  For a deeper, random run:
`SAEWH_FUZZ=500 python -m pytest tests/test_reliability_fuzz.py` (examples per defect
kind are then SAEWH_FUZZ // 10).
"""

from __future__ import annotations

import faulthandler
import io
import os
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from bruteforce import BruteForce
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability import assert_clean_error, assert_no_partial, saewh

from etl.tokenizer import load_tokenizer

SENTENCES = ["Great salsa.", "The tacos were cold", "Meh.", "Café — très bien 🌮", "", "ok ok ok ok"]
H5_DEFECTS = ["idx_range", "nan", "negative", "inf", "dup_feature", "drop_dataset", "short_val",
              "truncate_h5", "not_utf8"]
NPZ_DEFECTS = ["drop_array", "short_array", "dup_id", "half_star", "pickle", "none_text", "truncate_npz"]


DEEP = int(os.environ.get("SAEWH_FUZZ", "0"))


@st.composite
def cases(draw, defect):
    n_latents = draw(st.sampled_from([64, 96, 130]))
    k = draw(st.integers(1, 4))
    n_reviews = draw(st.integers(1, 5))
    texts = [" ".join(draw(st.lists(st.sampled_from(SENTENCES), min_size=0, max_size=3)))
             for _ in range(n_reviews)]
    # Per review: H5 tokens as the text's count plus a delta (truncated/mismatch), or none.
    deltas = [draw(st.sampled_from([0, 0, 0, -1, -3, 2, None])) for _ in range(n_reviews)]
    n_extra = draw(st.integers(0, 2))  # reviews only the H5 names
    return {
        "n_latents": n_latents, "k": k, "texts": texts, "deltas": deltas, "n_extra": n_extra,
        "stars": draw(st.lists(st.integers(1, 5), min_size=n_reviews, max_size=n_reviews)),
        "idx_dtype": draw(st.sampled_from(["<i4", "<i8", "<u2"])),
        "val_dtype": draw(st.sampled_from(["<f4", "<f2", "<f8"])),
        "vlen_ids": draw(st.booleans()),
        "split": draw(st.booleans()),  # one review's tokens in two runs
        "infer": draw(st.booleans()),
        "workers": draw(st.sampled_from([1, 1, 2])),
        "chunk": draw(st.sampled_from([3, 16, 131072])),
        "defect": defect,
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def write_case(case: dict, d: Path) -> tuple[Path, Path, bool]:
    """The H5 and NPZ of a case; the bool says whether a defect was planted."""
    rng = np.random.default_rng(case["seed"])
    tok = load_tokenizer("gpt2")
    n = len(case["texts"])
    ids = [f"r{i:02d}_{rng.integers(1e9):09d}" for i in range(n)]
    extra = [f"x{i:02d}_{rng.integers(1e9):09d}" for i in range(case["n_extra"])]
    counts = []
    for text, delta in zip(case["texts"], case["deltas"]):
        n_text = len(tok.encode_batch([text])[0].ids)
        counts.append(0 if delta is None else max(0, n_text + delta))
    counts += [int(rng.integers(1, 4)) for _ in extra]
    if sum(counts) == 0:
        counts[0] = 1
    owners = ids + extra
    runs = [(owners[i], c) for i, c in enumerate(counts) if c]
    order = rng.permutation(len(runs))
    runs = [runs[i] for i in order]
    if case["split"] and len(runs) > 1 and runs[0][1] > 1:
        (rid, c), rest = runs[0], runs[1:]
        runs = [(rid, c // 2), rest[0], (rid, c - c // 2), *rest[1:]]
    rev = [rid for rid, c in runs for _ in range(c)]
    n_tok, k, n_latents = len(rev), case["k"], case["n_latents"]
    idx = np.stack([rng.choice(n_latents, size=k, replace=False) for _ in range(n_tok)])
    val = rng.lognormal(0, 1, size=(n_tok, k)) * (rng.random((n_tok, k)) > 0.2)  # some zero slots
    idx = idx.astype(case["idx_dtype"])
    val = val.astype(case["val_dtype"])
    stars = np.array(case["stars"], np.int64)
    npz_data = {
        "review_ids": np.array(ids, dtype=object), "texts": np.array(case["texts"], dtype=object),
        "stars": stars, "useful": np.arange(n, dtype=np.int64),
        "user_ids": np.array([f"u{i % 3}" for i in range(n)], dtype=object),
        "business_ids": np.array([f"b{i % 2}" for i in range(n)], dtype=object),
    }
    h5_data = {"z_idx": idx, "z_val": val}
    if case["vlen_ids"]:
        h5_data["rev_idx"] = np.array(rev, dtype=object)
        h5_data["review_ids_unique"] = np.array(list(dict.fromkeys(rev)), dtype=object)
    else:
        h5_data["rev_idx"] = np.array([r.encode() for r in rev], "S22")
        h5_data["review_ids_unique"] = np.array([r.encode() for r in dict.fromkeys(rev)], "S22")

    defect = case["defect"]
    row, col = int(rng.integers(n_tok)), int(rng.integers(k))
    planted = True
    if defect == "idx_range":
        h5_data["z_idx"] = h5_data["z_idx"].astype(np.int64)
        h5_data["z_idx"][row, col] = n_latents + 3 if not case["infer"] else -2
    elif defect in ("nan", "negative", "inf"):
        h5_data["z_val"][row, col] = {"nan": np.nan, "negative": -1.0, "inf": np.inf}[defect]
    elif defect == "dup_feature" and k >= 2:
        h5_data["z_idx"][row, (col + 1) % k] = h5_data["z_idx"][row, col]
    elif defect == "drop_dataset":
        del h5_data[["z_idx", "z_val", "rev_idx"][row % 3]]
    elif defect == "short_val" and n_tok >= 1:
        h5_data["z_val"] = h5_data["z_val"][:-1]
    elif defect == "not_utf8":
        h5_data["rev_idx"] = np.array([r.encode() for r in rev], "S22")
        h5_data["rev_idx"][row] = b"\xff" + h5_data["rev_idx"][row][1:]
        h5_data.pop("review_ids_unique")
    elif defect == "drop_array":
        del npz_data[list(npz_data)[row % 6]]
    elif defect == "short_array":
        key = list(npz_data)[1 + row % 5]
        npz_data[key] = npz_data[key][:-1]
    elif defect == "dup_id" and n >= 2:
        npz_data["review_ids"][1] = npz_data["review_ids"][0]
    elif defect == "half_star":
        npz_data["stars"] = stars.astype(np.float64)
        npz_data["stars"][row % n] += 0.5
    elif defect == "none_text":
        npz_data["texts"][row % n] = None
    elif defect not in ("pickle", "truncate_h5", "truncate_npz"):
        planted = False

    h5, npz = d / "in.h5", d / "in.npz"
    with h5py.File(h5, "w") as f:
        for key, value in h5_data.items():
            if value.dtype == object:
                f.create_dataset(key, data=value, dtype=h5py.string_dtype())
            else:
                f.create_dataset(key, data=value)
    np.savez(npz, **npz_data)
    if defect == "truncate_h5":
        raw = h5.read_bytes()
        h5.write_bytes(raw[: int(len(raw) * rng.uniform(0.05, 0.95))])
    elif defect == "truncate_npz":
        raw = npz.read_bytes()
        npz.write_bytes(raw[: int(len(raw) * rng.uniform(0.05, 0.95))])
    elif defect == "pickle":
        arr = npz_data["user_ids"].copy()
        arr[0] = _Evil()
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=True)
        with zipfile.ZipFile(npz, "a") as zf:  # a second user_ids.npy: the last one wins
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zf.writestr("user_ids.npy", buf.getvalue())
    return h5, npz, planted


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/saewh-fuzz-pwned",))


def _check_against_bruteforce(h5, npz, target, n_latents_expected):
    from warehouse.db import connect
    from warehouse.verify import verify_warehouse

    verify_warehouse(target, checksums=True)
    bf = BruteForce(h5, npz)
    con = connect(target)
    try:
        n_feat = con.execute("SELECT count(*) FROM features").fetchone()[0]
        assert n_feat == n_latents_expected
        got = con.execute("SELECT token_pos, review_idx, feature, value FROM activations "
                          "ORDER BY feature, token_pos").fetchall()
        exp = sorted(((t, ri, f, v) for t, ri, f, v, _b in bf.activations(range(n_feat))),
                     key=lambda r: (r[2], r[0]))
        assert [(t, ri, f) for t, ri, f, _v in got] == [(t, ri, f) for t, ri, f, _v in exp]
        assert all(np.float32(g[3]) == np.float32(e[3]) for g, e in zip(got, exp))
        got = con.execute("SELECT review_idx, review_id, n_tokens, alignment, stars FROM reviews "
                          "ORDER BY review_idx").fetchall()
        exp = [(r.review_idx, r.review_id, r.n_tokens, r.alignment, r.stars) for r in bf.reviews]
        assert got == exp
    finally:
        con.close()


@pytest.mark.parametrize("defect", [None] + H5_DEFECTS + NPZ_DEFECTS)
def test_random_inputs_build_correctly_or_fail_cleanly(defect):
    examples = max(1, DEEP // 10) if DEEP else (14 if defect is None else 1)

    @settings(max_examples=examples, deadline=None, derandomize=not DEEP, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=cases(defect))
    def run(case):
        _run_case(case)

    run()


def _run_case(case):
    # A hang fails the run instead (pytest captures stderr, hence the file).
    hang_log = open(Path(tempfile.gettempdir()) / "saewh-fuzz-hang.txt", "w")
    faulthandler.dump_traceback_later(180, exit=True, file=hang_log)
    try:
        with tempfile.TemporaryDirectory(prefix="saewh-fuzz-") as tmp:
            d = Path(tmp)
            h5, npz, planted = write_case(case, d)
            target = d / "wh"
            args = ["build", "--h5", h5, "--npz", npz, "-w", target, "--workers", case["workers"],
                    "--chunk-tokens", case["chunk"]]
            args += ["--infer-latents"] if case["infer"] else ["--latents", case["n_latents"]]
            result = saewh(*args)
            if planted:
                broken = npz.name if case["defect"] in NPZ_DEFECTS else h5.name
                assert_clean_error(result, 3, broken)
                assert_no_partial(target)
            else:
                assert result.exit_code == 0, result.stderr
                with h5py.File(h5, "r") as f:
                    top = int(f["z_idx"][()].max()) + 1
                _check_against_bruteforce(h5, npz, target, top if case["infer"] else case["n_latents"])
        assert not os.path.exists("/tmp/saewh-fuzz-pwned")
    finally:
        faulthandler.cancel_dump_traceback_later()
        hang_log.close()
