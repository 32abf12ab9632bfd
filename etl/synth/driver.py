"""Writing both files: the NPZ of metadata and texts, then the H5 of activations.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from etl.synth.meta import make_meta
from etl.synth.sampling import ChunkedAppender, FeatureSampler, batches
from etl.synth.spec import (
    _BUSINESS_RATE,
    _DENSE_RATE,
    _H5_CHUNK,
    _ONE_STAR_RATE,
    _REVIEWS_PER_BATCH,
    _SCATTERED_REVIEWS,
    _TOKENS_PER_SAMPLE,
    EXTRA_PLANTED,
    FEW_REVIEWS,
    H5_NAME,
    ID_LEN,
    NPZ_NAME,
    REFERENCE_LATENTS,
    SALSA_TOKENS,
    SynthResult,
    dead_features,
    planted_features,
)
from etl.synth.text import ReviewWriter
from etl.tokenizer import load_tokenizer


def _objects(a: np.ndarray | list[str]) -> np.ndarray:
    """An object array of str, exactly like the real file's (readers need allow_pickle=True)."""
    arr = np.empty(len(a), dtype=object)
    arr[:] = [x.decode() if isinstance(x, bytes) else x for x in a]
    return arr


def write_npz(npz_path: Path, meta, texts: list[str]) -> None:
    """The metadata NPZ, written beside its name and renamed into place."""
    tmp_npz = npz_path.with_name(npz_path.name + ".tmp.npz")
    np.savez_compressed(
        tmp_npz,
        review_ids=_objects(meta.review_ids),
        texts=_objects(texts),
        stars=meta.stars,
        useful=meta.useful,
        user_ids=_objects(meta.user_ids),
        business_ids=_objects(meta.business_pool[meta.business_idx]),
    )
    os.replace(tmp_npz, npz_path)


class _ExtraPlants:
    """The reviews of the extra planted features (`extra_plants`), drawn from their own
    stream (spawn's 5th child; the first four are the ones above), so the draws of the
    original plants stay the same."""

    def __init__(self, meta, seed: int, n_reviews: int) -> None:
        self.rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(5)[4])
        few = np.flatnonzero(~meta.skipped & (meta.stars == 1))[:FEW_REVIEWS]
        self.in_few = np.zeros(n_reviews, bool)
        self.in_few[few] = True
        self.in_scattered = self.rng.random(n_reviews) < _SCATTERED_REVIEWS


def _random_features(sampler: FeatureSampler, rng: np.random.Generator, n: int, k: int):
    """`n` tokens' random features and values, sampled a bounded block at a time."""
    feats = np.empty((n, k), dtype=np.int32)
    vals = np.empty((n, k), dtype=np.float32)
    for s, e in batches(n, _TOKENS_PER_SAMPLE):
        feats[s:e] = sampler.features(rng, e - s)
        vals[s:e] = sampler.values(rng, (e - s, k))
    return feats, vals


def _plant_masks(meta, rows: np.ndarray, counts: np.ndarray, salsa: np.ndarray,
                 prng: np.random.Generator, extra: _ExtraPlants | None) -> dict[str, np.ndarray]:
    """Per planted feature, the tokens of a batch (reviews `rows`) it fires on."""
    n = len(salsa)
    tok_stars = np.repeat(meta.stars[rows], counts)
    tok_biz = np.repeat(meta.business_idx[rows], counts)
    masks = {
        "salsa": salsa,
        "one_star": (tok_stars == 1) & (prng.random(n) < _ONE_STAR_RATE),
        "business": (tok_biz == 0) & (prng.random(n) < _BUSINESS_RATE),
        "dense": prng.random(n) < _DENSE_RATE,
    }
    if extra:
        tok_review = np.repeat(rows, counts)
        masks["one_star_few"] = extra.in_few[tok_review] & (extra.rng.random(n) < _ONE_STAR_RATE)
        masks["scattered"] = extra.in_scattered[tok_review] & (extra.rng.random(n) < _ONE_STAR_RATE)
    return masks


def _plant(feats: np.ndarray, vals: np.ndarray, masks: dict, order: tuple[str, ...], planted: dict,
           sampler: FeatureSampler, prng: np.random.Generator, extra: _ExtraPlants | None) -> None:
    """Write the planted features into a batch's rows (in place)."""
    k = feats.shape[1]
    # Planted feature j overwrites slot (base + j) % k: distinct slots per token, and
    # random draws never produce planted ids, so each row stays k-distinct.
    base = prng.integers(0, k, len(feats))
    for j, name in enumerate(order):
        hit = np.flatnonzero(masks[name])
        col = (base[hit] + j) % k
        feats[hit, col] = planted[name]
        if name == "salsa":
            vals[hit, col] = prng.uniform(5.0, 10.0, len(hit)).astype(np.float32)
        elif name in EXTRA_PLANTED:
            vals[hit, col] = sampler.values(extra.rng, (len(hit),))
        else:
            vals[hit, col] = sampler.values(prng, (len(hit),))


def synthesize(
    out_dir: Path,
    n_reviews: int = 2000,
    seed: int = 0,
    n_latents: int = 24576,
    k: int = 32,
    progress: bool = False,
    extra_plants: bool = False,
) -> SynthResult:
    """Write `out_dir/sae_features.h5` and `out_dir/metadata.npz`; see the module doc."""
    if n_reviews < 1:
        raise ValueError("n_reviews must be >= 1")
    if n_latents < 128:
        raise ValueError("n_latents must be >= 128 so the planted features stay distinct")
    planted = planted_features(n_latents, extra_plants)
    dead = dead_features(n_latents)
    excluded = np.union1d(dead, list(planted.values()))
    n_live = n_latents - len(excluded)
    n_planted = 6 if extra_plants else 4
    if not n_planted <= k <= n_live // 2:
        # The planted features can share a token, and sampling needs room for distinct draws.
        raise ValueError(f"k must be in [{n_planted}, {n_live // 2}] for n_latents={n_latents}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    h5_path, npz_path = out_dir / H5_NAME, out_dir / NPZ_NAME
    ss_meta, ss_text, ss_feat, ss_tok = np.random.SeedSequence(seed).spawn(4)
    t0 = time.perf_counter()

    meta = make_meta(np.random.default_rng(ss_meta), n_reviews)
    writer = ReviewWriter(int(ss_text.generate_state(1, np.uint64)[0]))
    texts = [writer.review(int(s)) for s in meta.stars]
    if progress:
        print(f"synth: {n_reviews} texts in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    write_npz(npz_path, meta, texts)

    tok = load_tokenizer("gpt2")
    salsa_lut = np.zeros(len(tok.vocab_strings), dtype=bool)
    salsa_lut[[i for i, s in enumerate(tok.vocab_strings) if s in SALSA_TOKENS]] = True
    rng = np.random.default_rng(ss_feat)
    sampler = FeatureSampler(rng, n_latents, k, excluded)
    # Planted draws get their own stream so the random features do not depend on them.
    prng = np.random.default_rng(ss_tok)
    planted_order = ("salsa", "one_star", "business", "dense")
    extra = _ExtraPlants(meta, seed, n_reviews) if extra_plants else None
    if extra:
        planted_order += ("one_star_few", "scattered")

    kept = np.flatnonzero(~meta.skipped)
    n_tokens = 0
    t_feat = 0.0
    tmp_h5 = out_dir / (H5_NAME + ".tmp")
    with h5py.File(tmp_h5, "w") as f:
        # Small files get small chunks: HDF5 allocates whole chunks, 8 MB each at full size.
        chunk = _H5_CHUNK if n_reviews >= 2000 else 8192
        out = ChunkedAppender(
            f, {"z_idx": (np.int32, k), "z_val": (np.float32, k), "rev_idx": (f"S{ID_LEN}", 0)}, chunk
        )
        f.create_dataset("review_ids_unique", data=meta.review_ids[kept])

        for a, b in batches(len(kept), _REVIEWS_PER_BATCH):
            rows = kept[a:b]
            encs = tok.encode_batch([texts[i] for i in rows])
            counts = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
            ids = np.concatenate([e.ids for e in encs])
            n = len(ids)
            tf = time.perf_counter()
            feats, vals = _random_features(sampler, rng, n, k)

            masks = _plant_masks(meta, rows, counts, salsa_lut[ids], prng, extra)
            _plant(feats, vals, masks, planted_order, planted, sampler, prng, extra)
            t_feat += time.perf_counter() - tf

            out.append(z_idx=feats, z_val=vals, rev_idx=np.repeat(meta.review_ids[rows], counts))
            n_tokens += n
            if progress:
                el = time.perf_counter() - t0
                print(
                    f"synth: {b}/{len(kept)} reviews, {n_tokens:,} tokens, {el:.1f}s "
                    f"(sampling {n_tokens / max(t_feat, 1e-9) / 1e6:.2f}M tok/s)",
                    file=sys.stderr,
                )
        out.close()
    os.replace(tmp_h5, h5_path)
    return SynthResult(h5_path, npz_path, n_reviews, n_tokens, planted)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write synthetic sae_features.h5 + metadata.npz")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--reviews", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latents", type=int, default=REFERENCE_LATENTS)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--progress", action="store_true")
    a = ap.parse_args(argv)
    res = synthesize(a.out_dir, a.reviews, a.seed, a.latents, a.k, a.progress)
    print(f"{res.h5_path} ({res.n_tokens:,} tokens), {res.npz_path} ({res.n_reviews:,} reviews)")


if __name__ == "__main__":
    main()
