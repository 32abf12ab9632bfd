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
