"""Review texts: templated restaurant reviews whose mood follows the star rating.
"""

from __future__ import annotations

import math
import random
import string

import numpy as np

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


class ReviewWriter:
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
