"""Writers of small, deliberately awkward H5/NPZ inputs for the contract tests.

Independent of `etl.synth`: only numpy, h5py and the GPT-2 tokenizer (to make the H5
token counts line up with the texts the way the real pipeline's do).

`write_inputs(dir, variant="plain")` is the happy path: int32 `z_idx`, float32 `z_val`,
fixed-length `S22` ids, every NPZ review present in the H5 with exactly its GPT-2 token
count, reviews contiguous and in NPZ order.

`variant="awkward"` packs every irregularity the contract talks about into one file:

- review ids as variable-length strings (`h5py.string_dtype()`), not all 22 characters,
  `review_ids_unique` sorted (not in file order);
- `z_idx` int64, `z_val` float16 (lots of exact ties after rounding);
- zero-valued slots (value 0 is not an activation), including a feature that only ever
  appears in zero slots (so it is dead);
- H5 review order shuffled relative to the NPZ;
- one review split into two non-contiguous runs with another review's tokens between;
- a truncated review (the H5 holds only its first m tokens);
- a mismatch review (more H5 tokens than its text tokenizes to);
- two reviews the NPZ lacks (`no_text`);
- NPZ reviews with no H5 tokens (one of them with an empty text, and the only 2-star
  review, so star 2 has no review with tokens);
- a whole bucket of features (`feature // 64 == 3` when n_latents=256) that never fires
  (its last latent appears in a zero slot only, so the file still spans every latent).

Feature roles (see the constants below) give the tests handles on a dense feature, tied
values, a feature firing on " salsa", rare features placed at the interesting spots
(last H5 token of the truncated review, across the split), and features living only in
`no_text` / `mismatch` reviews.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from etl.tokenizer import load_tokenizer

# Feature roles (valid for n_latents >= 64).
DENSE = 0  # fires on ~90% of tokens
TIE_A = 1  # constant value 1.5 wherever it fires -> ties broken by token_pos
TIE_B = 2  # also constant 1.5 -> ties between features in review_features
SALSA = 3  # fires on the " salsa" token (strongly) and nowhere else
RARE_ONCE = 5  # one activation (awkward: the last H5 token of the truncated review)
RARE_TWICE = 6  # two activations in one review (awkward: around the split)
ZERO_ONLY = 7  # awkward: only ever in zero-valued slots -> dead
ONLY_NO_TEXT = 8  # awkward: fires only in reviews the NPZ lacks
ONLY_MISMATCH = 9  # awkward: fires only in the mismatch review
NEVER = (10, 11)  # never written at all (dead inside a live bucket)
STARRY = 4  # fires with a probability growing with the review's stars
ROLE_FEATURES = (DENSE, TIE_A, TIE_B, SALSA, STARRY, RARE_ONCE, RARE_TWICE, ZERO_ONLY,
                 ONLY_NO_TEXT, ONLY_MISMATCH, *NEVER)
FIRST_FILLER = 12
TIE_VALUE = 1.5

_ID_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))

_SENTENCES = [
    "The tacos were great.",
    "Great salsa and friendly staff.",
    "The salsa verde was a bit too salty for me.",
    "Café de olla after dinner — perfect!",
    "We ordered the enchiladas and the jalapeño poppers.",
    "Service was slow, but the food made up for it.",
    "Best carnitas in town 🌮🌮",
    "I would not come back.",
    "The crème brûlée was oddly good for a taquería.",
    "Chips were stale; salsa was fresh.",
    "Portions are huge — bring a friend.",
    "Loved it 🌮 will return.",
    "The waiter recommended the mole and he was right.",
    "Too loud on Friday nights.",
    "Guacamole made at the table, très bien.",
    "Parking is a nightmare.",
    "The horchata tasted like cinnamon heaven.",
    "Meh.",
    "Their salsa bar has six kinds of salsa!",
    "Naïve me ordered the spiciest dish — ouch 🌶️.",
]


def _review_id(rng: np.random.Generator, length: int = 22) -> str:
    return "".join(rng.choice(_ID_CHARS, size=length))


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    out = []
    for _ in range(n):
        n_sent = int(rng.integers(1, 4))
        picks = rng.choice(len(_SENTENCES), size=n_sent, replace=False)
        out.append(" ".join(_SENTENCES[i] for i in picks))
    return out


def _token_features(
    rng: np.random.Generator,
    k: int,
    is_salsa: bool,
    p_star: float,
    pool: np.ndarray,
    weights: np.ndarray,
) -> tuple[list[int], list[float], list[bool]]:
    """k distinct features with values for one token; also which slots are fillers."""
    feats: list[int] = []
    vals: list[float] = []
    if rng.random() < 0.9:
        feats.append(DENSE)
        vals.append(float(np.clip(rng.lognormal(0.0, 0.8), 0.02, 30.0)))
    for f in (TIE_A, TIE_B):
        if rng.random() < 0.25 and len(feats) < k:
            feats.append(f)
            vals.append(TIE_VALUE)
    if is_salsa and len(feats) < k:
        feats.append(SALSA)
        vals.append(float(8.0 + rng.random()))
    if rng.random() < p_star and len(feats) < k:
        feats.append(STARRY)  # more likely in reviews with more stars
        vals.append(float(np.clip(rng.lognormal(0.0, 1.0), 0.02, 30.0)))
    n_fill = k - len(feats)
    fill = rng.choice(pool, size=n_fill, replace=False, p=weights)
    filler = [False] * len(feats) + [True] * n_fill
    feats.extend(int(x) for x in fill)
    vals.extend(float(np.clip(rng.lognormal(-0.5, 1.0), 0.02, 30.0)) for _ in range(n_fill))
    order = rng.permutation(k)
    return [feats[i] for i in order], [vals[i] for i in order], [filler[i] for i in order]


def _replace_filler(idx, val, filler, row: int, feature: int, value: float, rng) -> None:
    """Put `feature` into one filler slot of `row` (keeps the row's features distinct)."""
    slots = np.flatnonzero(filler[row])
    assert len(slots), "no filler slot left"
    s = int(rng.choice(slots))
    idx[row, s] = feature
    val[row, s] = value
    filler[row, s] = False


def write_inputs(
    dir: Path | str,
    *,
    n_reviews: int = 40,
    n_latents: int = 256,
    k: int = 8,
    seed: int = 0,
    variant: str = "plain",
) -> tuple[Path, Path]:
    """Write `<dir>/<variant>.h5` and `<dir>/<variant>.npz`; return their paths."""
    if variant not in ("plain", "awkward"):
        raise ValueError(f"unknown variant {variant!r}")
    if n_latents < 64 or k < 6:
        raise ValueError("need n_latents >= 64 and k >= 6 for the feature roles")
    awkward = variant == "awkward"
    if awkward and n_reviews < 12:
        raise ValueError("the awkward variant needs n_reviews >= 12")
    rng = np.random.default_rng(seed)
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer("gpt2")

    # ---- NPZ side -------------------------------------------------------------------
    texts = _texts(rng, n_reviews)
    if awkward:
        length = [22] * n_reviews
        length[1], length[2] = 10, 30  # vlen ids need not be 22 characters
        ids = [_review_id(rng, n) for n in length]
    else:
        ids = [_review_id(rng) for _ in range(n_reviews)]
    stars = rng.choice([1, 3, 4, 5], size=n_reviews).astype(np.int64)
    if not awkward:
        stars[:5] = [1, 2, 3, 4, 5]
    useful = rng.integers(0, 20, size=n_reviews).astype(np.int64)
    users = [f"user_{int(u):03d}" for u in rng.integers(0, 15, size=n_reviews)]
    businesses = [f"biz-{int(b):02d}" for b in rng.integers(0, 6, size=n_reviews)]

    # ---- which H5 rows belong to whom ---------------------------------------------
    # Per NPZ review: number of H5 tokens.  Special reviews (awkward only):
    #   0: truncated, 3: mismatch, 4: split, 5/6/7: no tokens (6 has empty text,
    #   7 is the only 2-star review).  Two extra reviews exist only in the H5.
    if awkward:
        texts[0] = " ".join(_SENTENCES[i] for i in (2, 4, 9))  # long enough to truncate
        texts[4] = " ".join(_SENTENCES[i] for i in (1, 5, 12))  # long enough to split
        texts[6] = ""
        stars[7] = 2
    encs = tok.encode_batch(texts)
    n_text = [len(e.ids) for e in encs]
    n_h5 = list(n_text)
    if awkward:
        n_h5[0] = n_text[0] // 2
        n_h5[3] = n_text[3] + 3
        n_h5[5] = n_h5[6] = n_h5[7] = 0
        extra_ids = sorted(_review_id(rng) for _ in range(2))
        extra_counts = [5, 9]
    else:
        extra_ids, extra_counts = [], []

    # Runs of (review key, first position, count) in file order.  Review key: NPZ index
    # or ("h5", j) for H5-only reviews.
    keys = [i for i in range(n_reviews) if n_h5[i] > 0]
    if awkward:
        order = [int(x) for x in rng.permutation(keys)]
        order.remove(4)
        order.insert(1, 4)  # early, so that other runs follow its first half
        # Place the H5-only reviews in sorted-id order (so any reading of "then the
        # reviews only the H5 names" gives the same review_idx), one early, one late.
        order.insert(2, ("h5", 0))
        order.insert(len(order) - 2, ("h5", 1))
        runs = []
        for key in order:
            if key == 4:
                half = n_h5[4] // 2
                runs.append((4, 0, half))
                runs.append(("split-tail", half, n_h5[4] - half))
            else:
                count = n_h5[key] if not isinstance(key, tuple) else extra_counts[key[1]]
                runs.append((key, 0, count))
        # Move the split tail two runs further on: another review's tokens in between.
        tail_at = next(i for i, r in enumerate(runs) if r[0] == "split-tail")
        tail = runs.pop(tail_at)
        assert tail_at + 2 <= len(runs)
        runs.insert(tail_at + 2, (4, tail[1], tail[2]))
    else:
        runs = [(i, 0, n_h5[i]) for i in keys]

    rows_review: list = []  # review key per H5 row
    rows_pos: list[int] = []  # position within the review per H5 row
    for key, first, count in runs:
        for p in range(first, first + count):
            rows_review.append(key)
            rows_pos.append(p)
    n_tokens = len(rows_review)

    # ---- features ------------------------------------------------------------------
    dead_start = n_latents * 3 // 4 if awkward else n_latents - 8
    pool = np.arange(FIRST_FILLER, dead_start)
    weights = 1.0 / (np.arange(len(pool)) + 1.0) ** 1.1
    weights /= weights.sum()
    salsa_id = tok.encode_batch([" salsa"])[0].ids[0]

    idx = np.zeros((n_tokens, k), dtype=np.int64)
    val = np.zeros((n_tokens, k), dtype=np.float64)
    filler = np.zeros((n_tokens, k), dtype=bool)
    for r, (key, p) in enumerate(zip(rows_review, rows_pos, strict=True)):
        in_text = not isinstance(key, tuple) and p < n_text[key]
        is_salsa = in_text and int(encs[key].ids[p]) == salsa_id
        p_star = 0.05 if isinstance(key, tuple) else 0.03 * float(stars[key]) - 0.02
        f, v, fl = _token_features(rng, k, is_salsa, p_star, pool, weights)
        idx[r], val[r], filler[r] = f, v, fl

    def rows_of(key) -> list[int]:
        return [r for r, kk in enumerate(rows_review) if kk == key]

    if awkward:
        # RARE_ONCE: the last H5 token of the truncated review (right context clipped).
        _replace_filler(idx, val, filler, rows_of(0)[-1], RARE_ONCE, 4.0, rng)
        # RARE_TWICE: the last token of the split's first run and the first of the second.
        split_rows = rows_of(4)
        half = n_h5[4] // 2
        _replace_filler(idx, val, filler, split_rows[half - 1], RARE_TWICE, 2.5, rng)
        _replace_filler(idx, val, filler, split_rows[half], RARE_TWICE, 3.5, rng)
        for r in rows_of(("h5", 0)) + rows_of(("h5", 1)):
            _replace_filler(idx, val, filler, r, ONLY_NO_TEXT, float(1 + r % 7), rng)
        for r in rows_of(3):
            _replace_filler(idx, val, filler, r, ONLY_MISMATCH, float(1 + r % 5) / 2, rng)
        # Zero-valued slots: random filler slots, the DENSE slot of some tokens, and
        # ZERO_ONLY, which never has a non-zero value.
        zero = filler & (rng.random(filler.shape) < 0.04)
        val[zero] = 0.0
        dense_rows = np.flatnonzero((idx == DENSE).any(axis=1))
        for r in rng.choice(dense_rows, size=min(15, len(dense_rows)), replace=False):
            val[r, np.flatnonzero(idx[r] == DENSE)[0]] = 0.0
        for r in rng.choice(n_tokens, size=6, replace=False):
            if filler[r].any():
                _replace_filler(idx, val, filler, int(r), ZERO_ONLY, 0.0, rng)
        # The top latent shows up only in a zero slot: the file names it, it never fires.
        _replace_filler(idx, val, filler, n_tokens // 2, n_latents - 1, 0.0, rng)
    else:
        first_rows = rows_of(keys[1])
        _replace_filler(idx, val, filler, first_rows[-1], RARE_ONCE, 4.0, rng)
        twice_rows = rows_of(max(keys, key=lambda i: n_h5[i]))
        _replace_filler(idx, val, filler, twice_rows[0], RARE_TWICE, 2.5, rng)
        _replace_filler(idx, val, filler, twice_rows[-1], RARE_TWICE, 3.5, rng)
        # The top latent fires exactly once (so the file spans every latent).
        _replace_filler(idx, val, filler, n_tokens // 2, n_latents - 1, 0.75, rng)

    assert all(len(set(row)) == k for row in idx.tolist()), "features must be distinct"

    # ---- write -----------------------------------------------------------------------
    def rid(key) -> str:
        return extra_ids[key[1]] if isinstance(key, tuple) else ids[key]

    rev_ids = [rid(key) for key in rows_review]
    first_seen = list(dict.fromkeys(rev_ids))
    h5_path = dir / f"{variant}.h5"
    npz_path = dir / f"{variant}.npz"
    with h5py.File(h5_path, "w") as f:
        if awkward:
            f.create_dataset("z_idx", data=idx.astype(np.int64), chunks=(64, k))
            f.create_dataset("z_val", data=val.astype(np.float16), chunks=(64, k))
            sdt = h5py.string_dtype()
            f.create_dataset("rev_idx", data=np.array(rev_ids, dtype=object), dtype=sdt)
            f.create_dataset(
                "review_ids_unique", data=np.array(sorted(first_seen), dtype=object), dtype=sdt
            )
        else:
            f.create_dataset("z_idx", data=idx.astype(np.int32))
            f.create_dataset("z_val", data=val.astype(np.float32))
            f.create_dataset("rev_idx", data=np.array([s.encode() for s in rev_ids], "S22"))
            f.create_dataset(
                "review_ids_unique", data=np.array([s.encode() for s in first_seen], "S22")
            )
    np.savez(
        npz_path,
        review_ids=np.array(ids, dtype=object),
        texts=np.array(texts, dtype=object),
        stars=stars,
        useful=useful,
        user_ids=np.array(users, dtype=object),
        business_ids=np.array(businesses, dtype=object),
    )
    return h5_path, npz_path
