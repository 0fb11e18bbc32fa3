"""The Shapes caption language: words, meaning, the caption structures and their text, the parser and checker
(the generator and hard negatives: shapes_captions; questions: shapes_vqa).

Tokenization: lowercase; words are runs of letters, each punctuation mark ("," "." "?") is a token of its own
(`tokenize`). Generated text puts a single space between words and none before "," or the final "." / "?", so
splitting on spaces and punctuation (e.g. `tokenizers`' Whitespace) gives exactly these tokens. VOCAB lists them.

Meaning. A caption is a conjunction of facts, each about the objects of one scene:
- a noun phrase (NP) describes objects by any of size, colour, shape ("a large red circle", "a red object",
  "a circle"); a left-out attribute matches anything.
- "a"/"an"/"the" + NP: at least one object matches (existential; "the" is generated only when exactly one object
  matches, but it is read as existential, like "a"). A numeral ("one" .. "four") + NP: exactly that many objects
  match ("two red circles": exactly two red circles, whatever else is there). "three objects": three in all.
- NP1 REL NP2: some object matching NP1 and some *other* object matching NP2 stand in REL, read from the grid
  cells: "left of" = smaller column, "right of" = larger column, "above" = smaller row (row 0 is the top),
  "below"/"under" = larger row. Both NPs also state their own existence / count fact.
- "," "and" "including" join clauses; prefixes ("a picture of", "there is", ...) carry no fact.

The parser reads this back (`parse`); it skips words it does not know, so model output that is lowercase, lacks
the final period or is not quite grammatical still yields every fact it can. `shapes.score_caption` counts stated
facts, true facts and objects mentioned.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "cross")
COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "gray")
SIZES = ("small", "large")
NUMBERS = ("zero", "one", "two", "three", "four")
PLURALS = {s: s + ("es" if s.endswith("s") else "s") for s in SHAPES} | {"object": "objects", "shape": "shapes"}
OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}
REL_WORDS = {"left": ("left of", "to the left of"), "right": ("right of", "to the right of"),
             "above": ("above",), "below": ("below", "under")}
PREFIXES = ("", "a picture of", "an image of", "a photo of", "there")  # "there" renders as "there is"/"there are"


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


_TOKEN = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")


def matches(o, d) -> bool:
    """Does object `o` fit description d = (size, colour, shape), None matching anything?"""
    return (d[0] is None or o.size == d[0]) and (d[1] is None or o.color == d[1]) and (d[2] is None or o.shape == d[2])


def related(a, rel: str, b) -> bool:
    if rel == "left":
        return a.col < b.col
    if rel == "right":
        return a.col > b.col
    if rel == "above":
        return a.row < b.row
    return a.row > b.row


def fact_holds(objects, fact) -> bool:
    """fact: ("exists", d) | ("count", d, n) | ("rel", d1, rel, d2)."""
    if fact[0] == "exists":
        return any(matches(o, fact[1]) for o in objects)
    if fact[0] == "count":
        return sum(matches(o, fact[1]) for o in objects) == fact[2]
    _, d1, rel, d2 = fact
    return any(matches(a, d1) and matches(b, d2) and a is not b and related(a, rel, b)
               for a in objects for b in objects)


class Truth:
    """The objects of one scene with memoized fact checks (a sample's captions, negatives and questions ask the
    same few hundred facts many times over)."""

    def __init__(self, objects):
        self.objects = tuple(objects)
        self._facts: dict = {}
        self._fits: dict = {}

    def fits(self, d) -> list:
        """The objects that description d fits."""
        found = self._fits.get(d)
        if found is None:
            size, color, shape = d
            found = self._fits[d] = [o for o in self.objects if (size is None or o.size == size)
                                     and (color is None or o.color == color) and (shape is None or o.shape == shape)]
        return found

    def count(self, d) -> int:
        return len(self.fits(d))

    def __call__(self, fact) -> bool:
        v = self._facts.get(fact)
        if v is None:
            kind = fact[0]
            if kind == "exists":
                v = bool(self.fits(fact[1]))
            elif kind == "count":
                v = len(self.fits(fact[1])) == fact[2]
            else:
                _, d1, rel, d2 = fact
                v = any(a is not b and related(a, rel, b) for a in self.fits(d1) for b in self.fits(d2))
            self._facts[fact] = v
        return v


def words(d, plural: bool, head: str = "object") -> str:
    """'large red circles' for d = ("large", "red", "circle"); a shapeless d ends in `head` ("object"/"shape")."""
    noun = d[2] or head
    return " ".join([w for w in d[:2] if w] + [PLURALS[noun] if plural else noun])


@functools.lru_cache(maxsize=None)  # a few thousand distinct phrases; rendering them is a hot spot
def _np_text(d, count, det, head) -> str:
    rest = words(d, count is not None and count != 1, head)
    if count is not None:
        return f"{NUMBERS[count]} {rest}"
    if det == "the":
        return f"the {rest}"
    return ("an " if rest[0] in "aeiou" else "a ") + rest


# Named tuples, not dataclasses: negatives build tens of thousands of these per second.
class NP(NamedTuple):
    """A noun phrase: `count` None is existential ("a"/"an", or "the" with det="the"), else an exact count."""

    d: tuple  # (size, colour, shape)
    count: int | None = None
    det: str = "a"
    head: str = "object"

    @property
    def plural(self) -> bool:
        return self.count is not None and self.count != 1

    def text(self) -> str:
        return _np_text(self.d, self.count, self.det, self.head)

    def fact(self) -> tuple:
        return ("exists", self.d) if self.count is None else ("count", self.d, self.count)


class Clause(NamedTuple):
    """An NP, or NP REL NP. verb: "a circle is left of a square" (True) or "a circle left of a square"."""

    subject: NP
    rel: str | None = None
    obj: NP | None = None
    verb: bool = False
    form: int = 0  # which of REL_WORDS[rel]

    def text(self) -> str:
        return _clause_text(self)

    def facts(self) -> list:
        if self.rel is None:
            return [self.subject.fact()]
        return [self.subject.fact(), self.obj.fact(), ("rel", self.subject.d, self.rel, self.obj.d)]


@functools.lru_cache(maxsize=1 << 16)
def _clause_text(c: Clause) -> str:
    if c.rel is None:
        return c.subject.text()
    verb = (" are" if c.subject.plural else " is") if c.verb else ""
    return f"{c.subject.text()}{verb} {REL_WORDS[c.rel][c.form]} {c.obj.text()}"


class Caption(NamedTuple):
    """prefix + clauses joined by "," / "and"; with `including`, "<clause 0>, including <the rest>"."""

    clauses: tuple
    prefix: str = ""
    including: bool = False

    def text(self) -> str:
        parts = [_clause_text(c) for c in self.clauses]
        body = f"{parts[0]}, including {_join(parts[1:])}" if self.including else _join(parts)
        prefix = self.prefix
        if prefix == "there":
            prefix = "there are" if self.clauses[0].subject.plural else "there is"
        return f"{prefix} {body}." if prefix else f"{body}."

    def facts(self) -> list:
        return [f for c in self.clauses for f in c.facts()]

    def nps(self) -> list:
        """[(slot, NP)], slot = (clause index, 0 subject | 2 object)."""
        out = []
        for i, c in enumerate(self.clauses):
            out.append(((i, 0), c.subject))
            if c.obj is not None:
                out.append(((i, 2), c.obj))
        return out


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def holds(objects, caption: Caption) -> bool:
    truth = objects if isinstance(objects, Truth) else Truth(objects)
    return all(truth(f) for f in caption.facts())


# ---- parsing and scoring ----------------------------------------------------------------------------------

_DETS = {"a": None, "an": None, "the": None, "some": None, "no": 0} | {w: i for i, w in enumerate(NUMBERS)}
_NOUNS = {s: s for s in SHAPES} | {PLURALS[s]: s for s in SHAPES} | dict.fromkeys(
    ("object", "objects", "shape", "shapes", "thing", "things"))
_REL_PHRASES = sorted([(tuple(p.split()), r) for r, ps in REL_WORDS.items() for p in ps] + [
    (("on", "the", "left", "of"), "left"), (("on", "the", "right", "of"), "right"), (("over",), "above"),
    (("beneath",), "below"), (("underneath",), "below")], key=lambda x: -len(x[0]))


def _parse_np(toks, i):
    """(NP, next index) for an NP starting at toks[i], or (None, i)."""
    j, count, d = i, None, [None, None, None]
    if j < len(toks) and (toks[j] in _DETS or toks[j].isdigit()):
        count = int(toks[j]) if toks[j].isdigit() else _DETS[toks[j]]
        j += 1
    while j < len(toks) and (toks[j] in SIZES or toks[j] in COLORS):
        d[0 if toks[j] in SIZES else 1] = toks[j]
        j += 1
    if j < len(toks) and toks[j] in _NOUNS:
        d[2] = _NOUNS[toks[j]]
        return NP(tuple(d), count), j + 1
    return None, i


def _parse_rel(toks, i):
    for phrase, rel in _REL_PHRASES:
        if tuple(toks[i:i + len(phrase)]) == phrase:
            return rel, i + len(phrase)
    return None, i


def parse_nps(text: str) -> list[tuple[NP, tuple | None]]:
    """[(NP, the relation fact that introduced it or None)] in text order. Unknown words are skipped; relations
    chain ("a circle left of a square above a star": the square is above the star)."""
    toks, out, i = tokenize(text), [], 0
    while i < len(toks):
        np, j = _parse_np(toks, i)
        if np is None:
            i += 1
            continue
        out.append((np, None))
        i = j
        while True:  # NP [is|are] REL NP [REL NP ...]
            k = i + (i < len(toks) and toks[i] in ("is", "are"))
            rel, k = _parse_rel(toks, k)
            other, m = _parse_np(toks, k) if rel else (None, k)
            if other is None:
                break
            out.append((other, ("rel", np.d, rel, other.d)))
            np, i = other, m
    return out


def parse(text: str) -> list[tuple]:
    """The facts a caption states, in text order (see the module docstring for their meaning)."""
    return stated_facts(parse_nps(text))


def stated_facts(parsed) -> list[tuple]:
    """The facts of `parse_nps` output: each noun phrase's, then its relation's, if any."""
    facts = []
    for np, rel in parsed:
        facts.append(np.fact())
        if rel:
            facts.append(rel)
    return facts
