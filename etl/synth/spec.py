"""What the synthetic inputs are: their file names, sizes, and the planted features.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REFERENCE_LATENTS = 24576


PLANTED: dict[str, int] = {
    "salsa": 16751,
    "one_star": 4242,
    "business": 777,
    "dense": 5,
    "dead": 24000,
}


EXTRA_PLANTED: dict[str, int] = {"one_star_few": 9001, "scattered": 12345}


FEW_REVIEWS = 4


_SCATTERED_REVIEWS = 0.20


H5_NAME = "sae_features.h5"


NPZ_NAME = "metadata.npz"


ID_LEN = 22


SALSA_TOKENS = (" salsa", " Salsa")


_ID_ALPHABET = np.frombuffer(
    (string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_").encode(), np.uint8
)


# Yelp-like star mix: mostly 5s, a fat 1-star bump, few 2s and 3s.
_STAR_P = np.array([0.15, 0.08, 0.10, 0.20, 0.47])


_SKIP_FRACTION = 0.01


_DEAD_TAIL_FRACTION = 0.02


_ONE_STAR_RATE = 0.30


_BUSINESS_RATE = 0.50


_DENSE_RATE = 0.30


_ZIPF_OFFSET = 3.0  # flattens the head so "dense" random features sit at 20-65% density


_TABLE_BITS = 22  # inverse-CDF lookup table; resolution 2.4e-7 keeps the rarest ranks alive


_VAL_MU, _VAL_SIGMA = -1.0, 0.8


_REVIEWS_PER_BATCH = 2048


_TOKENS_PER_SAMPLE = 131072  # bounds the sampler's scratch arrays (~30 MB) and stays in cache


_H5_CHUNK = 65536


@dataclass
class SynthResult:
    h5_path: Path
    npz_path: Path
    n_reviews: int
    n_tokens: int
    planted: dict[str, int]


def planted_features(n_latents: int = REFERENCE_LATENTS, extra: bool = False) -> dict[str, int]:
    """The planted feature indices used for a given SAE width (`extra`: with EXTRA_PLANTED)."""
    chosen = {**PLANTED, **(EXTRA_PLANTED if extra else {})}
    if n_latents >= REFERENCE_LATENTS:
        return chosen
    return {name: idx * n_latents // REFERENCE_LATENTS for name, idx in chosen.items()}


def dead_features(n_latents: int = REFERENCE_LATENTS) -> np.ndarray:
    """All feature ids that never fire: the reserved tail plus the planted dead one."""
    tail = np.arange(n_latents - max(1, int(n_latents * _DEAD_TAIL_FRACTION)), n_latents)
    return np.union1d(tail, [planted_features(n_latents)["dead"]]).astype(np.int64)
