"""The tokenizer loaders: the offline GPT-2 default and the transformers path."""

from __future__ import annotations

import numpy as np
import pytest

from etl.tokenizer import TokenizerError, load_tokenizer

TEXTS = [
    "I loved the salsa — café olé! 🌮 Great tacos.",
    "",
    "  leading spaces\nand a newline; “curly quotes” ¡Hola!",
]


def test_gpt2_matches_known_ids_and_offsets() -> None:
    enc = load_tokenizer("gpt2").encode_batch(TEXTS[:1])[0]
    assert enc.ids[:4].tolist() == [40, 6151, 262, 49529]  # "I", " loved", " the", " salsa"
    text = TEXTS[0]
    assert text[enc.starts[3] : enc.ends[3]] == " salsa"
    # Offsets never go backwards, so a window's text is text[start(first):end(last)].
    assert np.all(np.diff(enc.starts) >= 0) and np.all(np.diff(enc.ends) >= 0)


def test_vocab_strings_are_readable_text() -> None:
    tok = load_tokenizer("gpt2")
    assert tok.vocab_strings[49529] == " salsa"
    assert len(tok.vocab_strings) == 50257


def test_transformers_path_agrees_with_builtin_gpt2(tmp_path) -> None:
    from transformers import GPT2TokenizerFast

    from etl.tokenizer import _gpt2_files

    vocab, merges = _gpt2_files()
    GPT2TokenizerFast(vocab=str(vocab), merges=str(merges)).save_pretrained(tmp_path)
    hf = load_tokenizer(str(tmp_path))
    ours = load_tokenizer("gpt2")
    for a, b in zip(hf.encode_batch(TEXTS), ours.encode_batch(TEXTS)):
        assert a.ids.tolist() == b.ids.tolist()
        assert a.starts.tolist() == b.starts.tolist()
        assert a.ends.tolist() == b.ends.tolist()
    assert hf.vocab_strings[49529] == " salsa"


def test_unknown_tokenizer_is_a_clean_error(tmp_path) -> None:
    with pytest.raises(TokenizerError, match="cannot load tokenizer"):
        load_tokenizer(str(tmp_path / "no-such-tokenizer"))
    with pytest.raises(TokenizerError, match="cannot load tokenizer"):
        load_tokenizer("some-org/model-that-is-not-cached")


# Texts where character and byte offsets part ways, or where the byte-level tokens cut
# characters: the derived offsets must be the backend's, token for token.
AWKWARD = [
    "",
    " ",
    "   ",
    "\n",
    "\r\n\r\n",
    "\t \n ",
    "é",
    "e\u0301",  # combining accent
    "a\u0300\u0301\u0302b",
    "🌮",
    "a🌮b  🌮🌮 ",
    "👨\u200d👩\u200d👧 family",  # zero-width joiners
    "\u0000\u0001\u007f",
    "日本語のテキスト",
    "ﬁ ligature",
    "\ufeffBOM",
    "\U0010ffff",
    "'s 're 've 123 4567",
    "x" * 3000,
    "🌮" * 200,
] + TEXTS


def _flat(encs):
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int32)  # noqa: E731
    return (
        cat([e.ids for e in encs]),
        cat([e.starts for e in encs]),
        cat([e.ends for e in encs]),
        [len(e.ids) for e in encs],
    )


def _assert_flat_matches_backend(tok, texts) -> None:
    got = tok.encode_flat(texts)
    ids, starts, ends, lens = _flat(tok.encode_batch(texts))
    assert got.lens.tolist() == lens
    assert got.ids.tolist() == ids.tolist()
    assert got.starts.tolist() == starts.tolist()
    assert got.ends.tolist() == ends.tolist()


def test_derived_offsets_match_the_backend_on_awkward_texts(monkeypatch) -> None:
    import etl.tokenizer as mod

    tok = load_tokenizer("gpt2")
    derived = []
    real = mod._derive_offsets
    monkeypatch.setattr(mod, "_derive_offsets", lambda *a: derived.append(real(*a)) or derived[-1])
    for texts in ([], [""], ["", ""], AWKWARD, AWKWARD[::-1], *([t] for t in AWKWARD)):
        _assert_flat_matches_backend(tok, texts)
    assert all(d is not None for d in derived)  # the fast path was taken, not the fallback


def test_derived_offsets_match_the_backend_on_random_unicode() -> None:
    rng = np.random.default_rng(7)
    ranges = [(0, 0x250), (0x300, 0x370), (0x2000, 0x2070), (0x3040, 0x3100), (0x1F300, 0x1F650)]
    pool = [chr(c) for a, b in ranges for c in range(a, b)] + [" "] * 200 + ["\u200d", "\ufe0f"]
    tok = load_tokenizer("gpt2")
    for _ in range(100):
        texts = [
            "".join(rng.choice(pool, size=int(rng.integers(0, 80)))) for _ in range(int(rng.integers(1, 12)))
        ]
        _assert_flat_matches_backend(tok, texts)


def test_tokens_that_do_not_tile_fall_back_to_the_backend() -> None:
    import etl.tokenizer as mod

    tok = load_tokenizer("gpt2")
    enc = tok.encode_flat(TEXTS)
    wrong = tok._token_bytes.copy()
    wrong[enc.ids[0]] += 1  # a token one byte too long: the texts are no longer tiled
    assert mod._derive_offsets(TEXTS, enc.ids, enc.lens, wrong) is None
    assert mod._derive_offsets(["\ud800"], enc.ids[:0], enc.lens[:1] * 0, wrong) is None


def test_transformers_path_has_no_derived_offsets(tmp_path) -> None:
    from transformers import GPT2TokenizerFast

    from etl.tokenizer import _gpt2_files

    vocab, merges = _gpt2_files()
    GPT2TokenizerFast(vocab=str(vocab), merges=str(merges)).save_pretrained(tmp_path)
    hf = load_tokenizer(str(tmp_path))
    assert hf._token_bytes is None
    _assert_flat_matches_backend(hf, AWKWARD)
    ours = load_tokenizer("gpt2").encode_flat(AWKWARD)
    theirs = hf.encode_flat(AWKWARD)
    assert ours.ids.tolist() == theirs.ids.tolist() and ours.starts.tolist() == theirs.starts.tolist()
