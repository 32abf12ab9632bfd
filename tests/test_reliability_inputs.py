"""Broken and hostile inputs: every case is a clean error or a correct warehouse.

A clean error is exactly one `saewh: error:` line on stderr naming the file, the dataset
or array and the first bad position, a documented exit code (3 for bad input, see
`warehouse.cli.ExitCode`), no traceback, and nothing left at the target or beside it.
"""

from __future__ import annotations

import json
import shutil
import zipfile

import h5py
import numpy as np
import pytest
from inputs import write_inputs
from reliability import (
    N_LATENTS,
    assert_clean_error,
    assert_no_partial,
    error_lines,
    read_h5,
    read_npz,
    saewh,
    saewh_subprocess,
    write_h5,
    write_npz,
)

BAD_INPUT, WAREHOUSE, USAGE = 3, 4, 2


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("base")
    h5, npz = write_inputs(d, n_reviews=12, n_latents=N_LATENTS, k=8, seed=1)
    return h5, npz


def build(h5, npz, target, *extra):
    args = ["build", "--h5", h5, "--npz", npz, "-w", target]
    if "--infer-latents" not in extra and "--latents" not in extra:
        args += ["--latents", N_LATENTS]
    return saewh(*args, *extra)


def broken_h5(base, tmp_path, name="broken.h5", **changes):
    data = read_h5(base[0])
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return write_h5(tmp_path / name, data)


def broken_npz(base, tmp_path, name="broken.npz", **changes):
    data = read_npz(base[1])
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return write_npz(tmp_path / name, data)


# --------------------------------------------------------------------------- files


def test_missing_files(base, tmp_path):
    target = tmp_path / "wh"
    assert_clean_error(build(tmp_path / "nope.h5", base[1], target), BAD_INPUT, "nope.h5", "not found")
    assert_clean_error(build(base[0], tmp_path / "nope.npz", target), BAD_INPUT, "nope.npz", "not found")
    assert_no_partial(target)


def test_not_hdf5_and_not_npz(base, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a data file\n")
    target = tmp_path / "wh"
    assert_clean_error(build(text, base[1], target), BAD_INPUT, "notes.txt", "not a readable HDF5")
    assert_clean_error(build(base[0], text, target), BAD_INPUT, "notes.txt", "not an NPZ")
    assert_no_partial(target)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_truncated_h5(base, tmp_path, fraction):
    raw = base[0].read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(raw[: int(len(raw) * fraction)])
    target = tmp_path / "wh"
    assert_clean_error(build(cut, base[1], target), BAD_INPUT, "cut.h5")
    assert_no_partial(target)


def test_truncated_npz(base, tmp_path):
    raw = base[1].read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(raw[: len(raw) // 2])
    target = tmp_path / "wh"
    assert_clean_error(build(base[0], cut, target), BAD_INPUT, "cut.npz")
    assert_no_partial(target)


def test_npz_member_damaged(base, tmp_path):
    """A flipped byte inside a compressed member: the zip's CRC (or zlib) catches it."""
    data = read_npz(base[1])
    packed = tmp_path / "packed.npz"
    np.savez_compressed(packed, **data)
    with zipfile.ZipFile(packed) as zf:
        info = zf.getinfo("texts.npy")
    raw = bytearray(packed.read_bytes())
    at = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    raw[at] ^= 0xFF
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(bytes(raw))
    target = tmp_path / "wh"
    assert_clean_error(build(base[0], damaged, target), BAD_INPUT, "damaged.npz", "'texts'")
    assert_no_partial(target)


def damaged_chunked_h5(base, tmp_path, bad_row: int) -> tuple:
    """A gzip-chunked copy whose z_val chunk holding `bad_row` has garbage bytes.

    The file opens fine (its size and superblock are intact); h5py fails only when the
    build reads that chunk, in the middle of the explode phase.
    """
    data = read_h5(base[0])
    path = tmp_path / "damaged.h5"
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            chunks = (min(16, len(v)),) + v.shape[1:]
            f.create_dataset(k, data=v, chunks=chunks, compression="gzip")
    with h5py.File(path, "r") as f:
        info = f["z_val"].id.get_chunk_info_by_coord((bad_row // 16 * 16, 0))
    raw = bytearray(path.read_bytes())
    raw[info.byte_offset + 2 : info.byte_offset + info.size - 2] = b"\xa5" * (info.size - 4)
    path.write_bytes(bytes(raw))
    lo = bad_row // 16 * 16
    return path, f"z_val[{lo}:{lo + 16}]"


@pytest.mark.parametrize("workers", [1, 2])
def test_h5_damaged_mid_build(base, tmp_path, workers):
    n = read_h5(base[0])["z_idx"].shape[0]
    damaged, where = damaged_chunked_h5(base, tmp_path, bad_row=n - 20)
    target = tmp_path / "wh"
    result = build(damaged, base[1], target, "--workers", workers, "--chunk-tokens", 64)
    assert_clean_error(result, BAD_INPUT, "damaged.h5", where, "cannot read")
    assert_no_partial(target)


# --------------------------------------------------------------------------- H5 structure


@pytest.mark.parametrize("dataset", ["z_idx", "z_val", "rev_idx"])
def test_h5_missing_dataset(base, tmp_path, dataset):
    h5 = broken_h5(base, tmp_path, **{dataset: None})
    target = tmp_path / "wh"
    assert_clean_error(build(h5, base[1], target), BAD_INPUT, "broken.h5", dataset, "missing")
    assert_no_partial(target)


def test_h5_shapes_disagree(base, tmp_path):
    data = read_h5(base[0])
    target = tmp_path / "wh"
    cases = {
        "short_val": ({"z_val": data["z_val"][:-3]}, "z_val"),
        "narrow_val": ({"z_val": data["z_val"][:, :-1]}, "z_val"),
        "short_rev": ({"rev_idx": data["rev_idx"][:-1]}, "rev_idx"),
        "flat_idx": ({"z_idx": data["z_idx"].ravel(), "z_val": data["z_val"].ravel()}, "z_idx"),
        "float_idx": ({"z_idx": data["z_idx"].astype(np.float32)}, "z_idx"),
        "int_val": ({"z_val": data["z_val"].astype(np.int32)}, "z_val"),
        "int_rev": ({"rev_idx": np.arange(len(data["rev_idx"]))}, "rev_idx"),
        "empty": ({k: data[k][:0] for k in ("z_idx", "z_val", "rev_idx")}, "z_idx"),
    }
    for name, (changes, dataset) in cases.items():
        h5 = broken_h5(base, tmp_path, name=f"{name}.h5", **changes)
        assert_clean_error(build(h5, base[1], target), BAD_INPUT, f"{name}.h5", dataset)
        assert_no_partial(target)


# --------------------------------------------------------------------------- H5 values


def planted(base, tmp_path, name, row, col, *, idx=None, val=None):
    data = read_h5(base[0])
    if idx is not None:
        data["z_idx"][row, col] = idx
    if val is not None:
        data["z_val"] = data["z_val"].astype(np.float32)
        data["z_val"][row, col] = val
    return write_h5(tmp_path / name, data)


@pytest.mark.parametrize("workers", [1, 2])
def test_feature_index_out_of_range(base, tmp_path, workers):
    h5 = planted(base, tmp_path, "wide.h5", 7, 3, idx=N_LATENTS + 10)
    target = tmp_path / "wh"
    result = build(h5, base[1], target, "--workers", workers, "--chunk-tokens", 16)
    assert_clean_error(result, BAD_INPUT, "wide.h5", "z_idx[7, 3]", f"{N_LATENTS + 10}", f"[0, {N_LATENTS})")
    assert_no_partial(target)


def test_negative_feature_index(base, tmp_path):
    h5 = planted(base, tmp_path, "neg.h5", 11, 0, idx=-1)
    target = tmp_path / "wh"
    assert_clean_error(build(h5, base[1], target), BAD_INPUT, "neg.h5", "z_idx[11, 0]", "-1")
    assert_clean_error(build(h5, base[1], target, "--infer-latents"), BAD_INPUT, "z_idx[11, 0]", "negative")
    assert_no_partial(target)


def test_infer_latents(base, tmp_path):
    """--infer-latents: n_latents = max index + 1, from a pre-pass; the build is correct."""
    data = read_h5(base[0])
    top = int(data["z_idx"].max())
    h5 = planted(base, tmp_path, "wide.h5", 5, 2, idx=top + 100)
    target = tmp_path / "wh"
    assert_clean_error(build(h5, base[1], target), BAD_INPUT, "z_idx[5, 2]")
    result = build(h5, base[1], target, "--infer-latents")
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["sae"]["n_latents"] == top + 101
    assert manifest["summary"]["n_latents_inferred"] is True
    from warehouse.db import connect

    con = connect(target)
    try:
        assert con.execute("SELECT count(*) FROM features").fetchone()[0] == top + 101
        got = con.execute("SELECT token_pos, value FROM activations WHERE feature = $f", {"f": top + 100})
        assert got.fetchall() == [(5, pytest.approx(float(data["z_val"][5, 2])))]
    finally:
        con.close()


def test_latents_and_infer_latents_exclude_each_other(base, tmp_path):
    result = saewh("build", "--h5", base[0], "--npz", base[1], "-w", tmp_path / "wh",
                   "--latents", 300, "--infer-latents")
    assert_clean_error(result, USAGE, "--infer-latents")
    assert_no_partial(tmp_path / "wh")


@pytest.mark.parametrize(
    "value, word", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf"), (-0.5, "-0.5")]
)
def test_bad_activation_values(base, tmp_path, value, word):
    h5 = planted(base, tmp_path, "vals.h5", 9, 4, val=value)
    target = tmp_path / "wh"
    assert_clean_error(build(h5, base[1], target), BAD_INPUT, "vals.h5", "z_val[9, 4]", word)
    assert_no_partial(target)


def test_duplicate_feature_in_a_row_is_an_error(base, tmp_path):
    """A top-k row names distinct features; a repeated one means a corrupt file
    (and would make two `activations` rows for one (token, feature))."""
    data = read_h5(base[0])
    data["z_idx"][6, 5] = data["z_idx"][6, 1]
    h5 = write_h5(tmp_path / "dup.h5", data)
    target = tmp_path / "wh"
    line = assert_clean_error(build(h5, base[1], target), BAD_INPUT, "dup.h5", "z_idx[6]", "twice")
    assert "slots 1 and 5" in line
    assert_no_partial(target)


def test_first_bad_position_with_parallel_workers(base, tmp_path):
    """Two bad rows, one per worker: the error names the earlier one, whichever worker
    stumbles first (a sequential re-scan on the error path makes it deterministic)."""
    data = read_h5(base[0])
    n = data["z_idx"].shape[0]
    early, late = n // 2 - 2, n // 2 + 1  # end of worker 0's range, start of worker 1's
    data["z_val"] = data["z_val"].astype(np.float32)
    data["z_val"][early, 0] = np.nan
    data["z_idx"][late, 0] = N_LATENTS
    h5 = write_h5(tmp_path / "two.h5", data)
    target = tmp_path / "wh"
    for _ in range(3):
        result = build(h5, base[1], target, "--workers", 2, "--chunk-tokens", 4)
        assert_clean_error(result, BAD_INPUT, f"z_val[{early}, 0]")
        assert_no_partial(target)


def test_review_id_not_utf8(base, tmp_path):
    data = read_h5(base[0])
    rev = data["rev_idx"].copy()
    rev[13] = b"\xff\xfe" + rev[13][2:]
    h5 = broken_h5(base, tmp_path, rev_idx=rev)
    target = tmp_path / "wh"
    assert_clean_error(build(h5, base[1], target), BAD_INPUT, "broken.h5", "rev_idx[13]", "UTF-8")
    assert_no_partial(target)


def test_all_zero_values_build_an_empty_activations_table(base, tmp_path):
    data = read_h5(base[0])
    data["z_val"][:] = 0
    h5 = write_h5(tmp_path / "zeros.h5", data)
    target = tmp_path / "wh"
    result = build(h5, base[1], target)
    assert result.exit_code == 0, result.stderr
    assert saewh("verify", "-w", target).exit_code == 0
    from warehouse.db import connect

    con = connect(target)
    try:
        assert con.execute("SELECT count(*) FROM activations").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM features WHERE n_active = 0").fetchone()[0] == N_LATENTS
    finally:
        con.close()


# --------------------------------------------------------------------------- NPZ


@pytest.mark.parametrize("array", ["review_ids", "texts", "stars", "useful", "user_ids", "business_ids"])
def test_npz_missing_array(base, tmp_path, array):
    npz = broken_npz(base, tmp_path, **{array: None})
    target = tmp_path / "wh"
    assert_clean_error(build(base[0], npz, target), BAD_INPUT, "broken.npz", array, "missing")
    assert_no_partial(target)


def test_npz_unequal_lengths(base, tmp_path):
    data = read_npz(base[1])
    npz = broken_npz(base, tmp_path, stars=data["stars"][:-2])
    target = tmp_path / "wh"
    assert_clean_error(build(base[0], npz, target), BAD_INPUT, "broken.npz", "'stars'", "10 entries", "12")
    assert_no_partial(target)


def test_npz_duplicate_review_ids(base, tmp_path):
    data = read_npz(base[1])
    ids = data["review_ids"].copy()
    ids[9] = ids[4]
    npz = broken_npz(base, tmp_path, review_ids=ids)
    target = tmp_path / "wh"
    assert_clean_error(build(base[0], npz, target), BAD_INPUT, "broken.npz", "duplicate review id", "index 9")
    assert_no_partial(target)


def test_npz_non_integer_stars(base, tmp_path):
    data = read_npz(base[1])
    target = tmp_path / "wh"
    stars = data["stars"].astype(np.float64)
    stars[3] = 3.5
    npz = broken_npz(base, tmp_path, name="half.npz", stars=stars)
    assert_clean_error(build(base[0], npz, target), BAD_INPUT, "half.npz", "stars[3] = 3.5", "not an integer")
    stars[3] = np.nan
    npz = broken_npz(base, tmp_path, name="nan.npz", stars=stars)
    assert_clean_error(build(base[0], npz, target), BAD_INPUT, "nan.npz", "stars[3]")
    npz = broken_npz(base, tmp_path, name="str.npz", stars=data["stars"].astype(str))
    assert_clean_error(build(base[0], npz, target), BAD_INPUT, "str.npz", "'stars'", "integers")
    big = data["useful"].copy()
    big[2] = 2**40
    npz = broken_npz(base, tmp_path, name="big.npz", useful=big)
    assert_clean_error(build(base[0], npz, target), BAD_INPUT, "big.npz", "useful[2]", "32-bit")
    assert_no_partial(target)


def test_npz_whole_number_float_stars_are_accepted(base, tmp_path):
    """pandas turns an int column with a gap into floats: 4.0 is a star rating."""
    data = read_npz(base[1])
    npz = broken_npz(base, tmp_path, stars=data["stars"].astype(np.float64))
    target = tmp_path / "wh"
    result = build(base[0], npz, target)
    assert result.exit_code == 0, result.stderr
    from warehouse.db import connect

    con = connect(target)
    try:
        rows = con.execute("SELECT stars FROM reviews WHERE in_npz ORDER BY review_idx").fetchall()
        got = [r[0] for r in rows]
    finally:
        con.close()
    assert got == data["stars"].tolist()


def test_npz_strings_that_are_not_strings(base, tmp_path):
    data = read_npz(base[1])
    target = tmp_path / "wh"
    texts = data["texts"].copy()
    texts[5] = None
    npz = broken_npz(base, tmp_path, name="none.npz", texts=texts)
    assert_clean_error(build(base[0], npz, target), BAD_INPUT, "none.npz", "'texts'", "NoneType")
    npz = broken_npz(base, tmp_path, name="num.npz", user_ids=np.arange(12.0))
    assert_clean_error(build(base[0], npz, target), BAD_INPUT, "num.npz", "'user_ids'", "strings")
    npz = broken_npz(base, tmp_path, name="2d.npz", useful=data["useful"].reshape(3, 4))
    assert_clean_error(build(base[0], npz, target), BAD_INPUT, "2d.npz", "'useful'", "1-D")
    assert_no_partial(target)


def test_npz_text_with_a_lone_surrogate(base, tmp_path):
    """A Python str can hold what UTF-8 cannot: caught while loading, not as an internal
    error in the middle of the build."""
    texts = read_npz(base[1])["texts"].copy()
    texts[3] = "fine until \ud800 here"
    npz = broken_npz(base, tmp_path, name="surrogate.npz", texts=texts)
    target = tmp_path / "wh"
    assert_clean_error(build(base[0], npz, target), BAD_INPUT, "surrogate.npz", "texts[3]", "UTF-8")
    assert_no_partial(target)


# --------------------------------------------------------------------------- tokenizer, target


def test_tokenizer_that_cannot_be_loaded(base, tmp_path):
    """In a fresh process: transformers' import-time advisory must not add a line."""
    target = tmp_path / "wh"
    empty = tmp_path / "tok"
    empty.mkdir()
    for name in (str(tmp_path / "missing-dir"), str(empty), "no-such-model-anywhere-xyz"):
        result = saewh_subprocess("build", "--h5", base[0], "--npz", base[1], "-w", target,
                                  "--latents", N_LATENTS, "--tokenizer", name, timeout=120)
        assert_clean_error(result, BAD_INPUT, "cannot load tokenizer", name)
        assert result.stderr.count("\n") == 1, result.stderr
        assert_no_partial(target)


def test_existing_target(base, tmp_path):
    target = tmp_path / "wh"
    target.mkdir()
    (target / "precious.txt").write_text("mine")
    assert_clean_error(build(*base, target), WAREHOUSE, "already exists", "--replace")
    assert_clean_error(build(*base, target, "--replace"), WAREHOUSE, "not a warehouse")
    assert (target / "precious.txt").read_text() == "mine"


# --------------------------------------------------------------------------- warnings


def test_counted_warnings(tmp_path):
    """Alignment problems are counted warnings, not errors: the build succeeds, prints one
    `saewh: warning:` line per kind, and records the counts in the manifest."""
    h5, npz = write_inputs(tmp_path / "in", n_reviews=14, n_latents=N_LATENTS, k=8, seed=3,
                           variant="awkward")
    target = tmp_path / "wh"
    result = build(h5, npz, target)
    assert result.exit_code == 0, result.stderr
    assert error_lines(result.stderr) == []
    warnings = [line for line in result.stderr.splitlines() if line.startswith("saewh: warning:")]
    summary = json.loads((target / "manifest.json").read_text())["summary"]
    assert summary["warnings"] == {"reviews_unaligned": 1, "reviews_without_metadata": 2}
    assert summary["alignment"]["mismatch"] == 1 and summary["alignment"]["no_text"] == 2
    assert len(warnings) == 2
    assert "1 review(s)" in warnings[0] and "mismatch" in warnings[0]
    assert "2 review(s)" in warnings[1] and "no_text" in warnings[1]
    # Truncated reviews, token-less NPZ reviews and zero slots are expected in real data:
    # counted in the summary, no warning.
    assert summary["alignment"]["truncated"] == 1 and summary["zero_slots_dropped"] > 0


def test_plain_input_has_no_warnings(base, tmp_path):
    result = build(*base, tmp_path / "wh")
    assert result.exit_code == 0, result.stderr
    assert "warning" not in result.stderr
    shutil.rmtree(tmp_path / "wh")
