"""Synthetic inputs in exactly the seed formats: `sae_features.h5` + `metadata.npz`.

The real inputs (432,248 Yelp reviews of Mexican restaurants, ~50M GPT-2 tokens, top-32
activations of a 24,576-latent SAE) are too big and too private to ship, so tests, demos
and benchmarks run on this generator instead.  It mimics the real files where the
warehouse cares (dtypes, contiguous review runs, ~1% of NPZ reviews without tokens, real
GPT-2 token counts, heavy-tailed feature frequencies, dead latents) and plants a few
features whose meaning is known exactly, so a query's answer can be checked by a scan.

Planted features (`PLANTED`, valid for the default `n_latents=24576`):

- ``salsa``: active, with a value in [5, 10), on every token whose text is ``" salsa"``
  or ``" Salsa"`` (GPT-2 only has ``" salsa"``) and on no other token.
- ``one_star``: active on ~30% of the tokens of 1-star reviews, never elsewhere.
- ``business``: active on ~50% of the tokens of the reviews of business 0, never
  elsewhere.  Business 0 is the business of the first NPZ review (`business_ids[0]`).
- ``dense``: active on ~30% of all tokens, at random.
- ``dead``: never active (nor is the last 2% of feature ids).

Two more with ``extra_plants=True`` (off by default, so the default data, and every
output computed from it, stay exactly what they were):

- ``one_star_few``: active on ~30% of the tokens of the first ``FEW_REVIEWS`` 1-star
  reviews only: a real but tiny effect, too little support to be a discovery.
- ``scattered``: active on ~30% of the tokens of a random ~20% of the reviews, chosen
  independently of business, user and stars: no association, no concentration.

With ``n_latents < 24576`` the planted indices are scaled, ``idx * n_latents // 24576``
(see `planted_features`); `SynthResult.planted` always holds the indices actually used.

Everything is a pure function of ``(n_reviews, seed, n_latents, k)``.
"""

from __future__ import annotations

from etl.synth.driver import main, synthesize
from etl.synth.spec import (
    EXTRA_PLANTED,
    FEW_REVIEWS,
    H5_NAME,
    ID_LEN,
    NPZ_NAME,
    PLANTED,
    REFERENCE_LATENTS,
    SALSA_TOKENS,
    SynthResult,
    dead_features,
    planted_features,
)
from etl.synth.text import Template

__all__ = [
    "EXTRA_PLANTED",
    "FEW_REVIEWS",
    "H5_NAME",
    "ID_LEN",
    "NPZ_NAME",
    "PLANTED",
    "REFERENCE_LATENTS",
    "SALSA_TOKENS",
    "SynthResult",
    "Template",
    "dead_features",
    "main",
    "planted_features",
    "synthesize",
]
