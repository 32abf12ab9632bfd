"""Tests of the test oracle itself: bruteforce.py on hand-computed tiny inputs, and the
awkward input writer actually producing every irregularity it promises."""

from __future__ import annotations

from collections import Counter

import h5py
import numpy as np
import pytest
from bruteforce import BruteForce
from inputs import (
    DENSE,
    ONLY_MISMATCH,
    ONLY_NO_TEXT,
    RARE_ONCE,
    RARE_TWICE,
    SALSA,
    TIE_A,
    ZERO_ONLY,
    write_inputs,
)

from etl.tokenizer import load_tokenizer


def _write(tmp_path, name, rev_ids, z_idx, z_val, npz_rows):
    h5 = tmp_path / f"{name}.h5"
    npz = tmp_path / f"{name}.npz"
    with h5py.File(h5, "w") as f:
        f.create_dataset("z_idx", data=np.asarray(z_idx, dtype=np.int32))
        f.create_dataset("z_val", data=np.asarray(z_val, dtype=np.float32))
        f.create_dataset("rev_idx", data=np.array([r.encode() for r in rev_ids], "S8"))
        uniq = list(dict.fromkeys(rev_ids))
        f.create_dataset("review_ids_unique", data=np.array([r.encode() for r in uniq], "S8"))
    ids, texts, stars = zip(*npz_rows, strict=True)
    np.savez(
        npz,
        review_ids=np.array(ids, dtype=object),
        texts=np.array(texts, dtype=object),
        stars=np.array(stars, dtype=np.int64),
        useful=np.arange(len(ids), dtype=np.int64),
        user_ids=np.array([f"u{i}" for i in range(len(ids))], dtype=object),
        business_ids=np.array([f"b{i}" for i in range(len(ids))], dtype=object),
    )
    return h5, npz


def test_gpt2_tokenization_used_by_the_examples():
    tok = load_tokenizer("gpt2")
    enc = tok.encode_batch(["Great salsa", "Hi", "Great salsa here"])
    assert enc[0].ids.tolist() == [13681, 49529]
    assert enc[0].starts.tolist() == [0, 5] and enc[0].ends.tolist() == [5, 11]
    assert len(enc[1].ids) == 1
    assert len(enc[2].ids) == 3


@pytest.mark.parametrize("chunk_size", [1, 2, 100])
def test_three_token_example(tmp_path, chunk_size):
    # t0: A, t1: B (H5 only), t2: A.  Slot (t0, feature 2) is zero: not an activation.
    h5, npz = _write(
        tmp_path, "tiny", ["A", "B", "A"],
        [[1, 2], [1, 3], [2, 1]],
        [[0.5, 0.0], [1.0, 2.0], [0.5, 0.25]],
        [("A", "Great salsa", 4), ("C", "Hi", 2)],
    )
    bf = BruteForce(h5, npz, chunk_size=chunk_size)
    assert bf.n_tokens == 3
    # review_idx: NPZ order, then H5-only.
    assert [(r.review_idx, r.review_id, r.alignment) for r in bf.reviews] == [
        (0, "A", "exact"), (1, "C", "no_tokens"), (2, "B", "no_text")]
    assert bf.reviews_table() == [
        (0, "A", "Great salsa", 4, 0, "u0", "b0", 0, 2, 2, "exact", True),
        (1, "C", "Hi", 2, 1, "u1", "b1", None, 0, 1, "no_tokens", True),
        (2, "B", None, None, None, None, None, 1, 1, None, "no_text", False),
    ]
    assert bf.tokens_table() == [
        (0, 0, 0, 13681, "Great", 0, 5),
        (1, 2, 0, None, None, None, None),
        (2, 0, 1, 49529, " salsa", 5, 11),
    ]
    assert bf.activation(0, 1) == 0.5
    assert bf.activation(0, 2) == 0.0  # zero slot
    assert bf.activation(1, 3) == 2.0
    assert bf.activation(2, 1) == 0.25
    assert bf.activation(2, 3) == 0.0
    assert bf.feature_tokens(1) == [(0, 0, "A", 0, 0.5), (1, 2, "B", 0, 1.0), (2, 0, "A", 1, 0.25)]
    assert bf.feature_tokens(2) == [(2, 0, "A", 1, 0.5)]
    assert bf.feature_tokens(0) == []
    assert bf.top_k(1, 2) == [(1, 1, "B", 0, 1.0, None, 2), (2, 0, "A", 0, 0.5, 4, 0)]
    assert bf.top_k(1, 0) == []
    assert len(bf.top_k(1, 50)) == 3
    assert bf.top_k_contexts(2, 1) == [(1, 2, "A", 1, 0.5, 4, 0, "Great", " salsa", "")]
    assert bf.top_k_contexts(2, 1, before=0) == [(1, 2, "A", 1, 0.5, 4, 0, "", " salsa", "")]
    assert bf.top_k_contexts(1, 1) == [(1, 1, "B", 0, 1.0, None, 2, None, None, None)]
    assert bf.top_k_contexts(1, 3, before=0, after=5)[1][-3:] == ("", "Great", " salsa")
    assert bf.review_tokens("A") == [(0, 0, 13681, "Great", 0, 5), (1, 2, 49529, " salsa", 5, 11)]
    assert bf.review_tokens("B") == [(0, 1, None, None, None, None)]
    assert bf.review_tokens("C") == []
    assert bf.review_tokens("nope") == []
    # Tie on max_value 0.5 between features 1 and 2: feature asc.
    assert bf.review_features("A", 10) == [(1, 0.5, 2), (2, 0.5, 1)]
    assert bf.review_features("A", 1) == [(1, 0.5, 2)]
    assert bf.review_features("B", 10) == [(3, 2.0, 1), (1, 1.0, 1)]
    assert bf.review_features("C", 10) == []
    # Only A has tokens and stars.
    assert bf.feature_by_stars(1) == [(4, 1, 1, 1.0, 0.5, 1.0)]
    assert bf.feature_by_stars(3) == [(4, 1, 0, 0.0, None, None)]
    assert bf.feature_stars(1) == [(1, 4, 1, 0.5)]
    assert bf.feature_stars(3) == []
    assert bf.feature_row(1) == (1, 3, 2, 1.0, 1.0, 1.0, 1.75 / 3, 1.75)
    assert bf.feature_row(2) == (2, 1, 1, 1 / 3, 0.5, 0.5, 0.5, 0.5)
    assert bf.feature_row(3) == (3, 1, 1, 1 / 3, 0.5, 2.0, 2.0, 2.0)
    assert bf.feature_row(0) == (0, 0, 0, 0.0, 0.0, None, None, None)
    assert bf.top_examples(1) == [(1, 1, 1, 2, 1.0), (1, 2, 0, 0, 0.5), (1, 3, 2, 0, 0.25)]
    assert bf.activations([2, 3]) == [(2, 0, 2, 0.5, 0), (1, 2, 3, 2.0, 0)]


def test_alignment_example(tmp_path):
    # D "Hi" (1 text token, 2 H5 tokens: mismatch), E "Great salsa here" (3 text tokens,
    # 1 H5 token: truncated), F "Great salsa" (exact).  Feature 7 only in zero slots.
    h5, npz = _write(
        tmp_path, "align", ["D", "E", "D", "F", "F"],
        [[4, 7], [4, 7], [4, 7], [4, 6], [5, 7]],
        [[1, 0], [2, 0], [3, 0], [2, 0.75], [0, 0]],
        [("D", "Hi", 5), ("E", "Great salsa here", 1), ("F", "Great salsa", 1)],
    )
    bf = BruteForce(h5, npz, chunk_size=2)
    assert [(r.review_id, r.alignment, r.n_tokens, r.n_text_tokens) for r in bf.reviews] == [
        ("D", "mismatch", 2, 1), ("E", "truncated", 1, 3), ("F", "exact", 2, 2)]
    assert bf.top_k_contexts(4, 10) == [
        (1, 2, "D", 1, 3.0, 5, 0, None, None, None),
        (2, 1, "E", 0, 2.0, 1, 1, "", "Great", ""),  # clipped to the H5 tokens
        (3, 3, "F", 0, 2.0, 1, 2, "", "Great", " salsa"),
        (4, 0, "D", 0, 1.0, 5, 0, None, None, None),
    ]
    assert bf.top_k_contexts(4, 3, after=0)[2][-1] == ""
    assert bf.review_tokens("D") == [(0, 0, None, None, None, None),
                                     (1, 2, None, None, None, None)]
    assert bf.review_tokens("E") == [(0, 1, 13681, "Great", 0, 5)]
    assert bf.feature_row(7)[1] == 0 and bf.feature_row(5)[1] == 0
    assert bf.activation(4, 5) == 0.0
    # Feature 6: only on F (1 star).  Stars 1: E, F; stars 5: D.
    assert bf.feature_by_stars(6) == [(1, 2, 1, 0.5, 0.75, 1.5), (5, 1, 0, 0.0, None, 0.0)]
    assert bf.feature_by_stars(4) == [(1, 2, 2, 1.0, 2.0, 1.0), (5, 1, 1, 1.0, 3.0, 1.0)]
    assert bf.feature_stars(6) == [(6, 1, 1, 0.75)]
    assert bf.feature_stars(4) == [(4, 1, 2, 4.0), (4, 5, 1, 3.0)]


def test_chunk_size_does_not_matter(tmp_path):
    h5, npz = write_inputs(tmp_path, n_reviews=14, variant="awkward", seed=3)
    a, b = BruteForce(h5, npz, chunk_size=7), BruteForce(h5, npz, chunk_size=10_000)
    assert a.reviews_table() == b.reviews_table()
    assert a.tokens_table() == b.tokens_table()
    for f in range(0, 256, 5):
        assert a.feature_tokens(f) == b.feature_tokens(f)


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    h5, npz = write_inputs(tmp_path_factory.mktemp("awk"), variant="awkward")
    return h5, npz, BruteForce(h5, npz)


def test_awkward_inputs_have_every_irregularity(awkward):
    h5, npz, bf = awkward
    with h5py.File(h5) as f:
        assert f["z_idx"].dtype == np.int64
        assert f["z_val"].dtype == np.float16
        assert h5py.check_string_dtype(f["rev_idx"].dtype) is not None
        assert h5py.check_string_dtype(f["rev_idx"].dtype).length is None  # variable length
        z_idx, z_val = f["z_idx"][:], f["z_val"][:]
    assert (z_val == 0).sum() > 10  # zero slots
    assert ((z_idx == DENSE) & (z_val == 0)).any()
    assert (z_idx == ZERO_ONLY).any() and bf.feature_row(ZERO_ONLY)[1] == 0
    counts = Counter(r.alignment for r in bf.reviews)
    for alignment in ("exact", "truncated", "mismatch", "no_tokens", "no_text"):
        assert counts[alignment] >= 1, alignment
    assert any(r.in_npz and r.text == "" and r.n_tokens == 0 for r in bf.reviews)
    assert {len(r.review_id) for r in bf.reviews} >= {10, 22, 30}
    # A split review: its token rows are not contiguous, with another review between.
    split = [r for r in bf.reviews
             if r.n_tokens and max(r.token_positions) - min(r.token_positions) >= r.n_tokens]
    assert len(split) == 1 and split[0].alignment == "exact"
    # H5 order differs from NPZ order.
    firsts = [r.first_token_pos for r in bf.reviews if r.in_npz and r.n_tokens]
    assert firsts != sorted(firsts)
    # Role features land where promised.
    (once,) = bf.feature_tokens(RARE_ONCE)
    trunc = bf.reviews[once[1]]
    assert trunc.alignment == "truncated" and once[3] == trunc.n_tokens - 1
    twice = bf.feature_tokens(RARE_TWICE)
    assert len(twice) == 2 and twice[1][0] - twice[0][0] > 1 and twice[1][3] == twice[0][3] + 1
    assert bf.reviews[twice[0][1]] is split[0]
    assert {bf.reviews[row[1]].alignment for row in bf.feature_tokens(ONLY_NO_TEXT)} == {
        "no_text"}
    assert {bf.reviews[row[1]].alignment for row in bf.feature_tokens(ONLY_MISMATCH)} == {
        "mismatch"}
    assert all(" salsa" == row[-2] for row in bf.top_k_contexts(SALSA, 100) if row[-2])
    # Ties on value inside one feature's top-k.
    values = [row[4] for row in bf.top_k(TIE_A, 1000)]
    assert len(values) > 5 and len(set(values)) == 1
    # Star 2 exists only on a review without tokens.
    assert 2 in {r.stars for r in bf.reviews}
    assert 2 not in {s for s, *_ in bf.feature_by_stars(DENSE)}
    # A whole bucket (features 192..255) never fires; so do some features in live buckets.
    assert all(bf.feature_row(f)[1] == 0 for f in range(192, 256))
    assert any(bf.feature_row(f)[1] == 0 for f in range(0, 64))
    # Emoji split into several byte-level tokens whose offsets overlap.
    assert any(len(r.ids) > 1 and (r.starts[1:] < r.ends[:-1]).any()
               for r in bf.reviews if r.ids is not None)


def test_token_text_agrees_with_offsets_except_byte_fragments(awkward):
    """Where a token is a whole-character piece, its vocab string is its text slice."""
    _, _, bf = awkward
    n = 0
    for r in bf.reviews:
        if not r.offsets_ok:
            continue
        for p in range(r.n_tokens):
            vocab, piece = bf.token_text(r, p), bf.token_slice(r, p)
            if "\ufffd" not in vocab:
                assert vocab == piece
                n += 1
            assert r.text[r.starts[p]:r.ends[p]] == piece
    assert n > 100


def test_plain_inputs_are_plain(tmp_path):
    h5, npz = write_inputs(tmp_path, variant="plain", n_reviews=10)
    with h5py.File(h5) as f:
        assert f["z_idx"].dtype == np.int32 and f["z_val"].dtype == np.float32
        assert f["rev_idx"].dtype == np.dtype("S22")
        assert (f["z_val"][:] > 0).all()
    bf = BruteForce(h5, npz)
    assert {r.alignment for r in bf.reviews} == {"exact"}
    firsts = [r.first_token_pos for r in bf.reviews]
    assert firsts == sorted(firsts)
    for r in bf.reviews:
        assert r.token_positions == list(range(r.first_token_pos, r.first_token_pos + r.n_tokens))
