"""Brute-force reference answers for every table and macro of the warehouse contract.

Reads the H5 with h5py in chunks and the NPZ with numpy, the way the reference document
(`data-format.md`) does: a per-token scan for a feature (first slot whose index matches,
`acts > 0` is active), a review -> token positions map built in file order (a token's
`position` is its rank in that list), contexts from the GPT-2 tokenization of the review
text.  Deliberately slow and simple; imports nothing from `etl.build` or `warehouse`.

Conventions of the answers (chosen to compare directly with DuckDB rows):
- values are `np.float32` (float16 inputs upcast exactly), derived numbers Python floats;
- NULL is `None`;
- `review_idx` is 0-based: NPZ reviews in NPZ order, then the reviews only the H5 names,
  in order of their first token in the file.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from etl.tokenizer import load_tokenizer


def _decode(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


@dataclass
class Review:
    review_idx: int
    review_id: str
    text: str | None
    stars: int | None
    useful: int | None
    user_id: str | None
    business_id: str | None
    in_npz: bool
    token_positions: list[int]  # H5 rows, file order: position p is token_positions[p]
    ids: np.ndarray | None = None  # GPT-2 tokenization of the text (None when no text)
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.token_positions)

    @property
    def n_text_tokens(self) -> int | None:
        return None if self.ids is None else len(self.ids)

    @property
    def first_token_pos(self) -> int | None:
        return min(self.token_positions) if self.token_positions else None

    @property
    def alignment(self) -> str:
        if not self.in_npz:
            return "no_text"
        if self.n_tokens == 0:
            return "no_tokens"
        if self.n_tokens == self.n_text_tokens:
            return "exact"
        if self.n_tokens < self.n_text_tokens:
            return "truncated"
        return "mismatch"

    @property
    def offsets_ok(self) -> bool:
        """Token columns and contexts are defined (not NULL) for this review."""
        return self.alignment in ("exact", "truncated")


class BruteForce:
    def __init__(
        self, h5_path: Path | str, npz_path: Path | str, tokenizer: str = "gpt2",
        chunk_size: int = 100,
    ):
        self.h5_path = Path(h5_path)
        self.chunk_size = chunk_size
        self.tok = load_tokenizer(tokenizer)
        self._acts_cache: dict[int, np.ndarray] = {}

        data = np.load(npz_path, allow_pickle=True)
        npz_ids = [str(x) for x in data["review_ids"]]
        texts = [str(x) for x in data["texts"]]
        stars = [int(x) for x in data["stars"]]
        useful = [int(x) for x in data["useful"]]
        users = [str(x) for x in data["user_ids"]]
        businesses = [str(x) for x in data["business_ids"]]

        # Reference "Build Token Position Map".
        positions: dict[str, list[int]] = defaultdict(list)
        self.token_review_id: list[str] = []
        with h5py.File(self.h5_path, "r") as f:
            self.n_tokens, self.k = f["z_idx"].shape
            for start in range(0, self.n_tokens, chunk_size):
                end = min(start + chunk_size, self.n_tokens)
                for local, rid in enumerate(f["rev_idx"][start:end]):
                    rid = _decode(rid)
                    positions[rid].append(start + local)
                    self.token_review_id.append(rid)

        self.reviews: list[Review] = []
        for i, rid in enumerate(npz_ids):
            self.reviews.append(Review(
                i, rid, texts[i], stars[i], useful[i], users[i], businesses[i], True,
                positions.get(rid, []),
            ))
        npz_set = set(npz_ids)
        for rid in dict.fromkeys(self.token_review_id):  # first-appearance order
            if rid not in npz_set:
                self.reviews.append(Review(
                    len(self.reviews), rid, None, None, None, None, None, False, positions[rid]
                ))
        self.by_id = {r.review_id: r for r in self.reviews}

        encs = self.tok.encode_batch([r.text for r in self.reviews if r.in_npz])
        for r, e in zip((r for r in self.reviews if r.in_npz), encs, strict=True):
            r.ids, r.starts, r.ends = e.ids, e.starts, e.ends

        # Per H5 row: review and position (rank in file order within its review).
        self.token_review = [self.by_id[rid] for rid in self.token_review_id]
        self.token_position = [0] * self.n_tokens
        for r in self.reviews:
            for p, t in enumerate(r.token_positions):
                self.token_position[t] = p

    # ---- scans -------------------------------------------------------------------------
    def feature_acts(self, feature: int) -> np.ndarray:
        """The reference's `get_feature_activations_chunk` over the whole file (float32)."""
        if feature not in self._acts_cache:
            acts = np.zeros(self.n_tokens, dtype=np.float32)
            with h5py.File(self.h5_path, "r") as f:
                for start in range(0, self.n_tokens, self.chunk_size):
                    end = min(start + self.chunk_size, self.n_tokens)
                    idx = f["z_idx"][start:end]
                    val = f["z_val"][start:end].astype(np.float32)
                    for i in range(end - start):
                        mask = idx[i] == feature
                        if np.any(mask):
                            acts[start + i] = val[i][mask][0]
            self._acts_cache[feature] = acts
        return self._acts_cache[feature]

    def active_positions(self, feature: int) -> np.ndarray:
        return np.where(self.feature_acts(feature) > 0)[0]

    def n_latents_seen(self) -> int:
        """1 + the largest feature index in the file (all slots, zero ones included)."""
        hi = -1
        with h5py.File(self.h5_path, "r") as f:
            for start in range(0, self.n_tokens, self.chunk_size):
                hi = max(hi, int(f["z_idx"][start:start + self.chunk_size].max()))
        return hi + 1

    # ---- macros --------------------------------------------------------------------------
    def activation(self, token_pos: int, feature: int) -> float:
        """Reference `get_feature_activation`, with `> 0` deciding activity."""
        with h5py.File(self.h5_path, "r") as f:
            active_features = f["z_idx"][token_pos]
            active_values = f["z_val"][token_pos].astype(np.float32)
        mask = active_features == feature
        if np.any(mask) and active_values[mask][0] > 0:
            return float(active_values[mask][0])
        return 0.0

    def feature_tokens(self, feature: int) -> list[tuple]:
        """(token_pos, review_idx, review_id, position, value) by token_pos."""
        acts = self.feature_acts(feature)
        out = []
        for t in self.active_positions(feature):
            r = self.token_review[t]
            out.append((int(t), r.review_idx, r.review_id, self.token_position[t], acts[t]))
        return out

    def top_k(self, feature: int, k: int) -> list[tuple]:
        """(rank, token_pos, review_id, position, value, stars, review_idx)."""
        acts = self.feature_acts(feature)
        pos = sorted(self.active_positions(feature).tolist(), key=lambda t: (-acts[t], t))
        out = []
        for rank, t in enumerate(pos[: max(k, 0)], start=1):
            r = self.token_review[t]
            out.append((rank, t, r.review_id, self.token_position[t], acts[t], r.stars,
                        r.review_idx))
        return out

    def context(self, token_pos: int, before: int = 20, after: int = 10):
        """(left_context, token, right_context) or (None, None, None)."""
        r = self.token_review[token_pos]
        if not r.offsets_ok:
            return (None, None, None)
        p = self.token_position[token_pos]
        first = max(0, p - before)
        last = min(r.n_tokens - 1, p + after)
        s, e = r.starts, r.ends
        return (r.text[s[first]:s[p]], r.text[s[p]:e[p]], r.text[e[p]:e[last]])

    def top_k_contexts(self, feature: int, k: int, before: int = 20, after: int = 10):
        return [row + self.context(row[1], before, after) for row in self.top_k(feature, k)]

    def token_text(self, r: Review, p: int) -> str:
        """The token's own text: its vocabulary string, byte-level decoded."""
        return self.tok.vocab_strings[int(r.ids[p])]

    def token_slice(self, r: Review, p: int) -> str:
        return r.text[r.starts[p]:r.ends[p]]

    def review_tokens(self, review_id: str) -> list[tuple]:
        """(position, token_pos, token_id, token, char_start, char_end) by position."""
        r = self.by_id.get(review_id)
        if r is None:
            return []
        out = []
        for p, t in enumerate(r.token_positions):
            if r.offsets_ok:
                out.append((p, t, int(r.ids[p]), self.token_text(r, p), int(r.starts[p]),
                            int(r.ends[p])))
            else:
                out.append((p, t, None, None, None, None))
        return out

    def review_features(self, review_id: str, k: int) -> list[tuple]:
        """(feature, max_value, n_tokens_active); max_value desc, ties by feature asc."""
        r = self.by_id.get(review_id)
        if r is None:
            return []
        best: dict[int, np.float32] = {}
        count: dict[int, int] = defaultdict(int)
        with h5py.File(self.h5_path, "r") as f:
            for t in r.token_positions:
                for feat, v in zip(f["z_idx"][t], f["z_val"][t].astype(np.float32), strict=True):
                    if v > 0:
                        feat = int(feat)
                        best[feat] = max(best.get(feat, v), v)
                        count[feat] += 1
        rows = sorted(best, key=lambda feat: (-best[feat], feat))
        return [(feat, best[feat], count[feat]) for feat in rows[: max(k, 0)]]

    def review_max(self, feature: int) -> dict[int, np.float32]:
        """review_idx -> the review's max activation of `feature` (active reviews only)."""
        acts = self.feature_acts(feature)
        out: dict[int, np.float32] = {}
        for t in self.active_positions(feature):
            ri = self.token_review[t].review_idx
            out[ri] = max(out.get(ri, acts[t]), acts[t])
        return out

    def feature_by_stars(self, feature: int) -> list[tuple]:
        """(stars, n_reviews, n_active_reviews, frac_active, mean_max_value, lift)."""
        considered = [r for r in self.reviews if r.n_tokens > 0 and r.stars is not None]
        rmax = self.review_max(feature)
        total = len(considered)
        total_active = sum(1 for r in considered if r.review_idx in rmax)
        out = []
        for s in sorted({r.stars for r in considered}):
            group = [r for r in considered if r.stars == s]
            active = [float(rmax[r.review_idx]) for r in group if r.review_idx in rmax]
            frac = len(active) / len(group)
            mean_max = sum(active) / len(active) if active else None
            lift = frac / (total_active / total) if total_active else None
            out.append((s, len(group), len(active), frac, mean_max, lift))
        return out

    # ---- tables ------------------------------------------------------------------------
    def activations(self, features) -> list[tuple]:
        """(token_pos, review_idx, feature, value, bucket) for the given features."""
        out = []
        for f in features:
            for t, ri, _rid, _p, v in self.feature_tokens(f):
                out.append((t, ri, f, v, f // 64))
        return out

    def reviews_table(self) -> list[tuple]:
        """reviews rows by review_idx, columns as in the README."""
        return [
            (r.review_idx, r.review_id, r.text, r.stars, r.useful, r.user_id, r.business_id,
             r.first_token_pos, r.n_tokens, r.n_text_tokens, r.alignment, r.in_npz)
            for r in self.reviews
        ]

    def tokens_table(self) -> list[tuple]:
        """(token_pos, review_idx, position, token_id, token, char_start, char_end)."""
        out = []
        for t in range(self.n_tokens):
            r = self.token_review[t]
            p = self.token_position[t]
            if r.offsets_ok:
                out.append((t, r.review_idx, p, int(r.ids[p]), self.token_text(r, p),
                            int(r.starts[p]), int(r.ends[p])))
            else:
                out.append((t, r.review_idx, p, None, None, None, None))
        return out

    def feature_row(self, feature: int) -> tuple:
        """(feature, n_active, n_reviews, density, review_density, max_value, mean_value,
        sum_value); max/mean/sum are None for a dead feature."""
        acts = self.feature_acts(feature)
        pos = self.active_positions(feature)
        n_active = len(pos)
        n_reviews = len({self.token_review[t].review_idx for t in pos})
        with_tokens = sum(1 for r in self.reviews if r.n_tokens > 0)
        vals = [float(acts[t]) for t in pos]
        return (
            feature, n_active, n_reviews, n_active / self.n_tokens, n_reviews / with_tokens,
            np.float32(max(vals)) if vals else None,
            sum(vals) / n_active if vals else None,
            sum(vals) if vals else None,
        )

    def top_examples(self, feature: int) -> list[tuple]:
        """(feature, rank, token_pos, review_idx, value) for the strongest 100."""
        return [(feature, rank, t, ri, v) for rank, t, _rid, _p, v, _s, ri in
                self.top_k(feature, 100)]

    def feature_stars(self, feature: int) -> list[tuple]:
        """(feature, stars, n_active_reviews, sum_max_value) for star ratings with at least
        one active review (same review set as feature_by_stars)."""
        rmax = self.review_max(feature)
        out = []
        for s, _n, n_active, _frac, mean_max, _lift in self.feature_by_stars(feature):
            if n_active:
                group = [float(rmax[ri]) for ri in rmax if self.reviews[ri].stars == s
                         and self.reviews[ri].n_tokens > 0]
                assert len(group) == n_active and abs(sum(group) / n_active - mean_max) < 1e-12
                out.append((feature, s, n_active, sum(group)))
        return out
