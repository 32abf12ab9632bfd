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

import argparse
import math
import os
import random
import string
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from etl.tokenizer import load_tokenizer

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


# --------------------------------------------------------------------------- metadata


def _random_ids(rng: np.random.Generator, n: int, taken: set[bytes]) -> np.ndarray:
    """`n` distinct 22-char URL-safe ids (S22), none of them in `taken`."""
    out = np.empty(n, dtype=f"S{ID_LEN}")
    filled = 0
    while filled < n:
        need = n - filled
        raw = _ID_ALPHABET[rng.integers(0, 64, size=(need, ID_LEN), dtype=np.uint8)]
        cand = raw.view(f"S{ID_LEN}").ravel()
        # Collisions are astronomically rare, but ids are keys downstream: make them certain.
        for c in cand:
            if c not in taken:
                taken.add(c)
                out[filled] = c
                filled += 1
    return out


def _skewed_choice(rng: np.random.Generator, n_items: int, size: int, power: float) -> np.ndarray:
    """Indices in [0, n_items) with popularity ~ 1/(i+1)^power (a few heavy users/shops)."""
    w = 1.0 / np.arange(1, n_items + 1, dtype=np.float64) ** power
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), n_items - 1)


@dataclass
class _Meta:
    review_ids: np.ndarray  # S22
    user_ids: np.ndarray  # S22
    business_idx: np.ndarray  # int64 into business_pool
    business_pool: np.ndarray  # S22
    stars: np.ndarray
    useful: np.ndarray
    skipped: np.ndarray  # bool: review has no H5 tokens


def _make_meta(rng: np.random.Generator, n_reviews: int) -> _Meta:
    taken: set[bytes] = set()
    review_ids = _random_ids(rng, n_reviews, taken)
    n_users = max(1, n_reviews // 3)
    n_biz = max(5, n_reviews // 50)
    user_pool = _random_ids(rng, n_users, taken)
    business_pool = _random_ids(rng, n_biz, taken)
    user_ids = user_pool[_skewed_choice(rng, n_users, n_reviews, 0.6)]
    business_idx = _skewed_choice(rng, n_biz, n_reviews, 0.7)
    # Pinning review 0 to business 0 lets callers find the planted business as business_ids[0].
    business_idx[0] = 0

    # Some restaurants are better than others: tilt each business's star mix by a quality score.
    quality = rng.normal(0.0, 1.0, n_biz)[business_idx]
    logits = np.log(_STAR_P)[None, :] + 0.35 * quality[:, None] * (np.arange(5) - 2.0)[None, :]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    u = rng.random(n_reviews)[:, None] * cdf[:, -1:]
    stars = (u > cdf).sum(axis=1).astype(np.int64) + 1
    useful = rng.geometric(0.45, n_reviews).astype(np.int64) - 1

    skipped = rng.random(n_reviews) < _SKIP_FRACTION
    if skipped.all():
        skipped[0] = False
    return _Meta(review_ids, user_ids, business_idx, business_pool, stars, useful, skipped)


# --------------------------------------------------------------------------- review text

_VOCAB: dict[str, tuple[str, ...]] = {
    "restaurant": (
        "El Güero", "La Cocina", "Taquería El Sol", "Los Compadres", "Casa Jalisco",
        "Tacos El Gordo", "La Señora", "Mi Pueblo", "Cantina Loca", "Don Pepe's",
        "La Parrilla", "El Charro", "Los Dos Molinos", "Señor Frog's", "La Fonda",
        "Taquería Guadalajara", "El Rancho", "Abuela's Kitchen", "Cocina Oaxaqueña",
    ),
    "city": (
        "Phoenix", "Las Vegas", "Tucson", "Tempe", "Scottsdale", "Mesa", "Henderson",
        "Charlotte", "Pittsburgh", "Cleveland", "Montréal", "Toronto", "Madison", "Chandler",
    ),
    "server": (
        "José", "María", "Zoë", "Renée", "Luis", "Ana", "Carlos", "Beatriz", "Jesús",
        "Sofía", "Mike", "Jenny", "Chris", "Ramón", "Lupe", "Dani",
    ),
    "companion": (
        "husband", "wife", "boyfriend", "girlfriend", "mom", "dad", "coworkers", "kids",
        "best friend", "in-laws", "roommate", "sister", "brother",
    ),
    "dish": (
        "carne asada burrito", "al pastor tacos", "fish tacos", "enchiladas suizas",
        "chile relleno", "carnitas plate", "mole poblano", "pozole", "pork tamales",
        "chicken quesadilla", "chimichanga", "steak fajitas", "birria tacos", "elote",
        "guacamole", "queso fundido", "torta ahogada", "sopes", "huevos rancheros",
        "chilaquiles", "menudo", "tostadas", "flautas", "nachos", "street tacos",
        "camarones a la diabla", "cochinita pibil", "jalapeño poppers", "shrimp ceviche",
        "enchiladas verdes", "tacos de lengua", "combo plate", "carne asada fries",
        "California burrito", "pollo asado", "wet burrito",
    ),
    "dessert": ("churros", "flan", "tres leches cake", "sopapillas", "fried ice cream"),
    "protein": (
        "carne asada", "al pastor", "carnitas", "chicken", "barbacoa", "lengua",
        "chorizo", "shrimp", "fish", "birria", "pollo asado", "cabeza",
    ),
    "side": (
        "rice and beans", "refried beans", "Mexican rice", "charro beans", "pico de gallo",
        "pickled onions", "grilled jalapeños", "street corn",
    ),
    "drink": (
        "margarita", "house margarita", "mango margarita", "Cadillac margarita", "paloma",
        "horchata", "michelada", "Negra Modelo", "piña colada", "agua fresca",
        "tamarindo", "Mexican Coke", "jamaica", "prickly pear margarita",
    ),
    "salsa_kind": (
        "roja", "verde", "tomatillo", "habanero", "chipotle", "mango", "pineapple",
        "smoky árbol", "red", "green", "avocado", "fire-roasted",
    ),
    "pepper": ("jalapeños", "serranos", "chile de árbol", "habaneros", "chipotles"),
    "adj_pos": (
        "amazing", "delicious", "incredible", "perfect", "so flavorful", "fantastic",
        "outstanding", "on point", "excellent", "really good", "fresh and tasty",
        "to die for", "legit", "phenomenal",
    ),
    "adj_neg": (
        "bland", "greasy", "dry", "cold", "soggy", "flavorless", "overcooked",
        "mushy", "way too salty", "disappointing", "tough", "stale",
    ),
    "adj_neu": ("fine", "okay", "decent", "pretty average", "not bad", "alright", "solid"),
    "detail_pos": (
        "tender meat and a nice char", "handmade tortillas", "just the right amount of lime",
        "plenty of cilantro and onion", "a great smoky flavor", "a sauce I'd drink by the cup",
        "a crispy edge on the meat", "perfectly melted cheese",
    ),
    "service_pos": (
        "attentive", "super friendly", "fast", "welcoming", "on top of everything",
        "sweet and patient", "fantastic",
    ),
    "service_neg": (
        "slow", "rude", "inattentive", "disorganized", "nonexistent", "painfully slow",
        "dismissive",
    ),
    "small_minutes": ("5", "10", "ten", "five", "fifteen", "12"),
    "minutes": ("20", "25", "30", "thirty", "40", "45"),
    "big_minutes": ("45", "50", "an hour and", "60", "75", "90"),
    "price_low": ("20", "25", "30", "35", "40"),
    "price_high": ("14", "16", "18", "22", "28"),
    "day": ("Friday", "Saturday", "Sunday", "Tuesday", "Wednesday", "Monday", "Thursday"),
    "daypart": ("night", "afternoon", "evening", "morning", "lunch"),
    "occasion": (
        "a birthday dinner", "lunch", "date night", "a quick bite", "happy hour",
        "Taco Tuesday", "Cinco de Mayo", "brunch", "a work lunch", "takeout",
    ),
    "activity": (
        "a Suns game", "a long hike", "church", "a movie", "work", "soccer practice",
        "the airport", "a concert", "shopping",
    ),
    "years": ("two", "three", "five", "ten", "15", "20"),
    "other": ("Chipotle", "Taco Bell", "the taco truck down the street", "Filiberto's"),
    "emoji_pos": (" 🌮", " 🌯", " 😋", " 🔥", " 👍", " 💯", " 🙌", " 🌶️", " 🍹", " ❤️"),
    "emoji_neg": (" 😡", " 👎", " 🙄", " 😒", " 🤢"),
}

_T_OPEN: dict[str, tuple[str, ...]] = {
    "any": (
        "Came here for {occasion} on a {day} {daypart}.",
        "We stopped by {restaurant} after {activity}.",
        "My {companion} and I finally tried {restaurant} last {day}.",
        "I've been coming to this place for {years} years.",
        "Found this spot on a whim while driving through {city}.",
        "{restaurant} has been on my list forever, so we went for {occasion}.",
        "Ordered {occasion} from here through the app.",
        "Went with my {companion} on a {day} {daypart}.",
    ),
    "pos": (
        "Hands down the best Mexican food in {city}!",
        "What a gem.{emoji_pos}",
        "Wow. Just wow.",
        "This is my go-to spot for tacos in {city}.",
        "If you want authentic Mexican food, this is the place.",
        "¡Qué rico! I can't say enough good things about {restaurant}.",
    ),
    "neg": (
        "I really wanted to like this place.",
        "Not sure how this place has such good reviews.",
        "Save your money.",
        "This used to be one of my favorite spots, but it has gone downhill.",
        "Where do I even start?",
    ),
    "neu": (
        "This is a decent spot if you're in the area.",
        "Pretty standard Mexican place in a strip mall.",
        "Mixed feelings about this one.",
    ),
}

_T_FOOD: dict[str, tuple[str, ...]] = {
    "pos": (
        "The {dish} was {adj_pos}, with {detail_pos}.",
        "I ordered the {dish} and it was {adj_pos}.",
        "Their {protein} tacos are {adj_pos} — {detail_pos}.",
        "The {dish} came out hot and {adj_pos}.",
        "You have to try the {dish}; the {protein} was perfectly seasoned.",
        "My {companion} got the {dish} and couldn't stop talking about it.",
        "Even the {side} hit the spot, which is rare.",
        "We split the {dish} and the {dish}, and both were {adj_pos}.",
        "They call it the “{dish} special” and it lives up to the name.",
        "For dessert, the {dessert} was {adj_pos}.",
        "Every bite of the {protein} was {adj_pos}.",
    ),
    "neg": (
        "The {dish} was {adj_neg} and {adj_neg}.",
        "My {protein} tacos were {adj_neg}, and the tortillas tasted store-bought.",
        "The {dish} arrived lukewarm and honestly kind of {adj_neg}.",
        "Everything tasted like it had been sitting under a heat lamp.",
        "The {side} tasted {adj_neg}, and the {protein} was {adj_neg}.",
        "I found a hair in my {dish}.",
        "The {dish} was mostly lettuce with a few sad pieces of {protein}.",
        "How do you mess up {dish}? Somehow they managed.",
    ),
    "neu": (
        "The {dish} was {adj_neu}, nothing special.",
        "Portions are big, and the {dish} was {adj_neu}.",
        "The {protein} was {adj_neu} but the {side} could use more seasoning.",
        "I got the {dish}. It was {adj_neu}.",
    ),
}

_T_SALSA: dict[str, tuple[str, ...]] = {
    "pos": (
        "The salsa was {adj_pos}, and they bring out a fresh bowl of chips and salsa as soon "
        "as you sit down.",
        "Their salsa verde has a real kick from the {pepper}.",
        "Don't skip the salsa bar — the {salsa_kind} salsa is {adj_pos}.",
        "I could eat their {salsa_kind} salsa by the gallon.",
        "Chips were warm and the salsa tasted homemade.",
        "The house salsa has just the right amount of heat from the {pepper}.",
        "They give you three kinds of salsa and the {salsa_kind} one is my favorite.",
        "Honestly I'd come back just for the chips and salsa.{emoji_pos}",
    ),
    "neg": (
        "The salsa tasted like it came out of a jar.",
        "Chips were stale and the salsa was watery.",
        "They charge extra for salsa, which is ridiculous.",
        "The salsa had zero flavor — basically tomato soup.",
        "We asked for more salsa twice and never got it.",
        "Even the salsa was {adj_neg}.",
    ),
    "neu": (
        "The salsa is on the mild side, so ask for the hot salsa if you like heat.",
        "Salsa was {adj_neu}, a bit mild for my taste.",
        "Free chips and salsa, the usual.",
        "The {salsa_kind} salsa was {adj_neu}.",
    ),
}

_T_DRINK: dict[str, tuple[str, ...]] = {
    "pos": (
        "The {drink} was strong and {adj_pos}.{emoji_pos}",
        "Happy hour drinks are a steal, and the {drink} is the one to get.",
        "Try the {drink} — trust me.",
        "Their {drink} pairs perfectly with the tacos.",
    ),
    "neg": (
        "My {drink} was mostly ice and way too sweet.",
        "The {drink} tasted watered down.",
        "${price_high} for a {drink} that tasted like sour mix? No thanks.",
    ),
    "neu": (
        "The {drink} was {adj_neu}.",
        "Drinks are {adj_neu}; the {drink} is a safe bet.",
    ),
}

_T_SERVICE: dict[str, tuple[str, ...]] = {
    "pos": (
        "Our server, {server}, was {service_pos} and kept the chips coming.",
        "Service was {service_pos} from start to finish.",
        "The staff made us feel like family.",
        "{server} remembered our order from last time, which was a nice touch.",
        "¡Gracias, {server}!",
    ),
    "neg": (
        "Our server disappeared for {minutes} minutes at a time.",
        "Service was {service_neg}; we had to flag someone down for refills.",
        "The hostess was rude and acted like we were bothering her.",
        "Nobody checked on us once after the food came out.",
        "They got our order wrong twice and didn't even apologize.",
    ),
    "neu": (
        "Service was {adj_neu}.",
        "Our server was nice but clearly had too many tables.",
    ),
}

_T_WAIT: dict[str, tuple[str, ...]] = {
    "pos": (
        "Even on a {day} night we were seated in under {small_minutes} minutes.",
        "Food came out fast, maybe {small_minutes} minutes after ordering.",
        "No wait at all when we went.",
    ),
    "neg": (
        "We waited {minutes} minutes for a table even though half the restaurant was empty.",
        "It took over {big_minutes} minutes to get our food.",
        "The drive-thru line took {minutes} minutes for two burritos.",
    ),
    "neu": (
        "Expect a wait on weekends — we waited about {minutes} minutes.",
        "It gets busy on {day}s, so plan ahead.",
    ),
}

_T_PLACE: dict[str, tuple[str, ...]] = {
    "pos": (
        "The patio is lovely, with string lights and a mariachi band on weekends.",
        "Colorful décor, loud music, great vibe.",
        "It's a hole in the wall, but don't let that scare you off.",
        "Prices are very reasonable — we ate for under ${price_low} for two.",
    ),
    "neg": (
        "The tables were sticky and the bathroom was a mess.",
        "It was so loud we couldn't hear each other.",
        "${price_high} for three tacos is highway robbery.",
        "The parking lot is a nightmare.",
    ),
    "neu": (
        "It's a small place, so it fills up quickly.",
        "A bit pricey, but portions are big.",
        "Parking can be tricky on weekends.",
    ),
}

_T_CLOSE: dict[str, tuple[str, ...]] = {
    "pos": (
        "We'll definitely be back!{emoji_pos}",
        "Highly recommend!",
        "Can't wait to come back and try the {dish}.",
        "Five stars, no question.",
        "This is the real deal.{emoji_pos}",
        "¡Muy bueno!",
    ),
    "neg": (
        "We won't be coming back.",
        "Skip it and go to {other} instead.",
        "Two words: never again.{emoji_neg}",
        "Really disappointing.",
        "I'd give zero stars if I could.",
    ),
    "neu": (
        "Might come back if I'm in the area.",
        "Overall, an okay experience.",
        "Not bad, not great.",
    ),
}

Template = tuple[tuple[str, "str | None"], ...]


def _compile(groups: dict[str, tuple[str, ...]]) -> dict[str, tuple[Template, ...]]:
    # Pre-parsing once keeps per-sentence work to list lookups; str.format would re-parse.
    fmt = string.Formatter()
    return {
        mood: tuple(tuple((lit, field) for lit, field, _, _ in fmt.parse(t)) for t in temps)
        for mood, temps in groups.items()
    }


_OPEN = _compile(_T_OPEN)
_CLOSE = _compile(_T_CLOSE)
# (templates, weight): food talk dominates real reviews; salsa is common enough to study.
_BODY = (
    (_compile(_T_FOOD), 4.0),
    (_compile(_T_SALSA), 1.2),
    (_compile(_T_DRINK), 1.0),
    (_compile(_T_SERVICE), 1.6),
    (_compile(_T_WAIT), 0.8),
    (_compile(_T_PLACE), 1.0),
)
_BODY_CDF = tuple(np.cumsum([w for _, w in _BODY]).tolist())
# P(positive), P(negative) of a sentence by star rating; the rest is neutral.
_MOOD_P = {1: (0.04, 0.86), 2: (0.12, 0.68), 3: (0.40, 0.30), 4: (0.80, 0.07), 5: (0.93, 0.02)}
_FIXED_SLOTS = ("restaurant", "city", "server", "companion")


class _ReviewWriter:
    """Template + vocab prose; Python's `random` is far faster than numpy for scalar draws."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed)

    def _fill(self, tpl: Template, fixed: dict[str, str]) -> str:
        rnd = self._rng.random
        parts = []
        for lit, field in tpl:
            parts.append(lit)
            if field:
                val = fixed.get(field)
                if val is None:
                    opts = _VOCAB[field]
                    val = opts[int(rnd() * len(opts))]
                parts.append(val)
        return "".join(parts)

    def _pick(
        self, groups: dict[str, tuple[Template, ...]], mood: str, used: set[int]
    ) -> Template:
        opts = groups[mood]
        # Real people rarely repeat a sentence verbatim; two redraws make it rare here too.
        for _ in range(3):
            tpl = opts[int(self._rng.random() * len(opts))]
            if id(tpl) not in used:
                break
        used.add(id(tpl))
        return tpl

    def review(self, stars: int) -> str:
        rnd = self._rng.random
        fixed = {s: _VOCAB[s][int(rnd() * len(_VOCAB[s]))] for s in _FIXED_SLOTS}
        p_pos, p_neg = _MOOD_P[stars]

        def mood() -> str:
            u = rnd()
            return "pos" if u < p_pos else ("neg" if u < p_pos + p_neg else "neu")

        # Lognormal sentence count: mostly a short paragraph, a long tail of essays.
        n_body = min(40, max(1, round(math.exp(1.8 + 0.6 * self._rng.gauss(0.0, 1.0)))))
        sents: list[str] = []
        used: set[int] = set()
        if rnd() < 0.7:
            m = "any" if rnd() < 0.5 else mood()
            sents.append(self._fill(self._pick(_OPEN, m, used), fixed))
        total = _BODY_CDF[-1]
        for _ in range(n_body):
            u = rnd() * total
            g = 0
            while _BODY_CDF[g] < u:
                g += 1
            sents.append(self._fill(self._pick(_BODY[g][0], mood(), used), fixed))
        if rnd() < 0.6:
            sents.append(self._fill(self._pick(_CLOSE, mood(), used), fixed))

        if len(sents) >= 5 and rnd() < 0.75:
            paras, i = [], 0
            while i < len(sents):
                step = 2 + int(rnd() * 4)
                paras.append(" ".join(sents[i : i + step]))
                i += step
            text = ("\n\n" if rnd() < 0.8 else "\n").join(paras)
        else:
            text = " ".join(sents)

        # Per-author quirks, so the text is not uniformly tidy.
        style = rnd()
        if style < 0.25:
            text = text.replace("'", "’")
        elif style < 0.28:
            text = text.lower()
        elif style < 0.32 and stars == 1:
            text = text.replace("never", "NEVER").replace(".", "!!", 1)
        return text


# --------------------------------------------------------------------------- activations


class _FeatureSampler:
    """Vectorized draw of k distinct, heavy-tailed, non-planted features per token."""

    def __init__(self, rng: np.random.Generator, n_latents: int, k: int, excluded: np.ndarray):
        live = np.setdiff1d(np.arange(n_latents), excluded)
        # Zipf over a random permutation: frequency is unrelated to the feature id.
        rank_to_feature = rng.permutation(live)
        n_live = len(live)
        w = 1.0 / (np.arange(n_live) + _ZIPF_OFFSET)
        p = w / w.sum()
        cdf = np.cumsum(p)
        m = 1 << _TABLE_BITS
        # Inverse-CDF table: a uniform index into it is a Zipf draw, with no binary search.
        # It holds feature ids, not ranks, so a draw needs one gather; int16 halves its cache
        # footprint (and the sort's work) whenever ids fit.
        ranks = np.minimum(np.searchsorted(cdf, (np.arange(m) + 0.5) / m), n_live - 1)
        self.table = rank_to_feature[ranks].astype(np.int16 if n_latents <= 2**15 else np.int32)
        self.k = k
        self.live = live
        # Enough candidates that, after removing repeats, a row almost always has >= k left.
        n_cand = k
        while n_cand < 8 * k and np.sum(-np.expm1(n_cand * np.log1p(-p))) < k + max(6, k // 4):
            n_cand += 1
        self.n_cand = n_cand

    def features(self, rng: np.random.Generator, n: int) -> np.ndarray:
        out = np.empty((n, self.k), dtype=np.int32)
        rows = np.arange(n)
        n_cand = self.n_cand
        for _ in range(4):
            feats, ok = self._draw(rng, len(rows), n_cand)
            if ok.all() and len(rows) == n:
                out[:] = feats
            else:
                out[rows[ok]] = feats
            rows = rows[~ok]
            if not len(rows):
                return out
            n_cand *= 2
        # Pathological widths only (k close to the number of live features).
        for r in rows:
            out[r] = rng.choice(self.live, self.k, replace=False)
        return out

    def _draw(self, rng: np.random.Generator, n: int, n_cand: int) -> tuple[np.ndarray, np.ndarray]:
        """Features (ok rows only, k per row) and the mask of rows that had >= k distinct."""
        k = self.k
        # Raw 64-bit draws split in two are ~2x cheaper than Generator.integers.
        bits = rng.bit_generator.random_raw((n * n_cand + 1) // 2).view(np.uint32)[: n * n_cand]
        bits >>= np.uint32(32 - _TABLE_BITS)
        cand = self.table[bits.reshape(n, n_cand)]
        cand.sort(axis=1)
        new = np.empty(cand.shape, dtype=bool)
        new[:, 0] = True
        np.not_equal(cand[:, 1:], cand[:, :-1], out=new[:, 1:])
        # int8 keeps the mask arithmetic cheap; the window end (start + k) must not overflow.
        cdt = np.int8 if n_cand + k < 127 else np.int16
        rank = np.cumsum(new, axis=1, dtype=cdt)  # 1-based rank among the row's distinct
        n_distinct = rank[:, -1]
        ok = n_distinct >= k
        # Keep a random circular window of k distinct ids: every distinct candidate is
        # kept with probability k/n_distinct, so the Zipf shape survives the truncation.
        start = (rng.random(n, dtype=np.float32) * n_distinct).astype(cdt)
        start = np.minimum(start, n_distinct - 1)[:, None]
        end = start + k
        wrap = end - n_distinct[:, None]
        keep = (rank > start) & (rank <= end)
        keep |= rank <= wrap
        keep &= new
        # Short rows would break the reshape; they are redrawn by the caller instead.
        keep &= ok[:, None]
        return cand[keep].reshape(-1, k), ok

    def values(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Lognormal(_VAL_MU, _VAL_SIGMA) float32 values."""
        # Box-Muller on float32 uniforms is ~2x faster than Generator.standard_normal,
        # which is a third of the sampling time otherwise.
        size = math.prod(shape)
        m = (size + 1) // 2
        u = rng.random(2 * m, dtype=np.float32)
        r, theta = u[:m], u[m:]
        np.subtract(np.float32(1.0), r, out=r)  # (0, 1]: log stays finite
        np.log(r, out=r)
        r *= np.float32(-2.0 * _VAL_SIGMA**2)
        np.sqrt(r, out=r)
        theta *= np.float32(2.0 * np.pi)
        out = np.empty(2 * m, dtype=np.float32)
        np.cos(theta, out=out[:m])
        np.sin(theta, out=out[m:])
        out[:m] *= r
        out[m:] *= r
        out += np.float32(_VAL_MU)
        np.exp(out, out=out)
        return out[:size].reshape(shape)


class _ChunkedAppender:
    """Appends rows to resizable chunked datasets, writing whole chunks only.

    A batch that ends mid-chunk would otherwise make HDF5 write that chunk, then read it
    back and rewrite it when the next batch completes it.
    """

    def __init__(self, f: h5py.File, specs: dict[str, tuple[object, int]], chunk: int):
        self.chunk = chunk
        self.ds = {}
        for name, (dtype, width) in specs.items():
            tail = (width,) if width else ()
            self.ds[name] = f.create_dataset(
                name, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype, chunks=(chunk, *tail)
            )
        self.carry: dict[str, np.ndarray] = {}
        self.n = 0

    def append(self, **cols: np.ndarray) -> None:
        if self.carry:
            cols = {name: np.concatenate([self.carry[name], a]) for name, a in cols.items()}
        rows = len(next(iter(cols.values())))
        whole = rows // self.chunk * self.chunk
        self.carry = {name: a[whole:].copy() for name, a in cols.items()}
        if whole:
            self._write({name: a[:whole] for name, a in cols.items()})

    def close(self) -> None:
        if self.carry and len(next(iter(self.carry.values()))):
            self._write(self.carry)
        self.carry = {}

    def _write(self, cols: dict[str, np.ndarray]) -> None:
        rows = len(next(iter(cols.values())))
        for name, a in cols.items():
            ds = self.ds[name]
            ds.resize(self.n + rows, axis=0)
            ds[self.n :] = a
        self.n += rows


def _batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    for a in range(0, n, size):
        yield a, min(n, a + size)


# --------------------------------------------------------------------------- driver


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

    meta = _make_meta(np.random.default_rng(ss_meta), n_reviews)
    writer = _ReviewWriter(int(ss_text.generate_state(1, np.uint64)[0]))
    texts = [writer.review(int(s)) for s in meta.stars]
    if progress:
        print(f"synth: {n_reviews} texts in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    # Object arrays of str, exactly like the real file (readers need allow_pickle=True).
    def obj(a: np.ndarray | list[str]) -> np.ndarray:
        arr = np.empty(len(a), dtype=object)
        arr[:] = [x.decode() if isinstance(x, bytes) else x for x in a]
        return arr

    tmp_npz = out_dir / (NPZ_NAME + ".tmp.npz")
    np.savez_compressed(
        tmp_npz,
        review_ids=obj(meta.review_ids),
        texts=obj(texts),
        stars=meta.stars,
        useful=meta.useful,
        user_ids=obj(meta.user_ids),
        business_ids=obj(meta.business_pool[meta.business_idx]),
    )
    os.replace(tmp_npz, npz_path)

    tok = load_tokenizer("gpt2")
    salsa_lut = np.zeros(len(tok.vocab_strings), dtype=bool)
    salsa_lut[[i for i, s in enumerate(tok.vocab_strings) if s in SALSA_TOKENS]] = True
    rng = np.random.default_rng(ss_feat)
    sampler = _FeatureSampler(rng, n_latents, k, excluded)
    # Planted draws get their own stream so the random features do not depend on them.
    prng = np.random.default_rng(ss_tok)
    planted_order = ("salsa", "one_star", "business", "dense")
    if extra_plants:
        # Their own stream (spawn's 5th child; the first four are the ones above), so the
        # draws of the original plants stay the same.
        xrng = np.random.default_rng(np.random.SeedSequence(seed).spawn(5)[4])
        planted_order += ("one_star_few", "scattered")
        few = np.flatnonzero(~meta.skipped & (meta.stars == 1))[:FEW_REVIEWS]
        in_few = np.zeros(n_reviews, bool)
        in_few[few] = True
        in_scattered = xrng.random(n_reviews) < _SCATTERED_REVIEWS

    kept = np.flatnonzero(~meta.skipped)
    n_tokens = 0
    t_feat = 0.0
    tmp_h5 = out_dir / (H5_NAME + ".tmp")
    with h5py.File(tmp_h5, "w") as f:
        # Small files get small chunks: HDF5 allocates whole chunks, 8 MB each at full size.
        chunk = _H5_CHUNK if n_reviews >= 2000 else 8192
        out = _ChunkedAppender(
            f, {"z_idx": (np.int32, k), "z_val": (np.float32, k), "rev_idx": (f"S{ID_LEN}", 0)}, chunk
        )
        f.create_dataset("review_ids_unique", data=meta.review_ids[kept])

        for a, b in _batches(len(kept), _REVIEWS_PER_BATCH):
            rows = kept[a:b]
            encs = tok.encode_batch([texts[i] for i in rows])
            counts = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
            ids = np.concatenate([e.ids for e in encs])
            n = len(ids)
            tf = time.perf_counter()
            feats = np.empty((n, k), dtype=np.int32)
            vals = np.empty((n, k), dtype=np.float32)
            for s, e in _batches(n, _TOKENS_PER_SAMPLE):
                feats[s:e] = sampler.features(rng, e - s)
                vals[s:e] = sampler.values(rng, (e - s, k))

            tok_stars = np.repeat(meta.stars[rows], counts)
            tok_biz = np.repeat(meta.business_idx[rows], counts)
            masks = {
                "salsa": salsa_lut[ids],
                "one_star": (tok_stars == 1) & (prng.random(n) < _ONE_STAR_RATE),
                "business": (tok_biz == 0) & (prng.random(n) < _BUSINESS_RATE),
                "dense": prng.random(n) < _DENSE_RATE,
            }
            if extra_plants:
                tok_review = np.repeat(rows, counts)
                masks["one_star_few"] = in_few[tok_review] & (xrng.random(n) < _ONE_STAR_RATE)
                masks["scattered"] = in_scattered[tok_review] & (xrng.random(n) < _ONE_STAR_RATE)
            # Planted feature j overwrites slot (base + j) % k: distinct slots per token, and
            # random draws never produce planted ids, so each row stays k-distinct.
            base = prng.integers(0, k, n)
            for j, name in enumerate(planted_order):
                hit = np.flatnonzero(masks[name])
                col = (base[hit] + j) % k
                feats[hit, col] = planted[name]
                if name == "salsa":
                    vals[hit, col] = prng.uniform(5.0, 10.0, len(hit)).astype(np.float32)
                elif name in EXTRA_PLANTED:
                    vals[hit, col] = sampler.values(xrng, (len(hit),))
                else:
                    vals[hit, col] = sampler.values(prng, (len(hit),))
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
