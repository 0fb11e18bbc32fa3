"""Shapes captions: the random caption generator and its hard negatives (grammar and meaning: shapes_text).

Captions are built as structures (Caption / Clause / NP) from the scene, so they are true by construction, and
negatives are minimal edits of those structures, kept only when the scene makes them false:
- attribute_swap: swap the colours (or shapes) of two described objects
- relation_swap:  left <-> right, above <-> below, or the two objects of a relation change places
- count_change:   another number ("two red circles" -> "three red circles", "a star" -> "two stars")
- color_change:   one colour replaced
"""

from __future__ import annotations

from .shapes_text import COLORS, NP, NUMBERS, OPPOSITE, PREFIXES, REL_WORDS, Caption, Clause, Truth, related


def describe(o, rng, truth: Truth | None = None, unique_tries: int = 1) -> tuple:
    """A random description of `o`: shape kept 80%, colour 80%, size 35%, never both shape and colour left out.
    With `truth`, redraw up to `unique_tries` times to get one that only `o` fits."""
    for _ in range(unique_tries):
        shape = o.shape if rng.random() < 0.8 else None
        color = o.color if rng.random() < 0.8 or shape is None else None
        d = (o.size if rng.random() < 0.35 else None, color, shape)
        if truth is None or truth.count(d) == 1:
            break
    return d


def _list_nps(truth: Truth, rng, subset) -> list[NP]:
    """NPs for the objects in `subset`: some existential ("a red circle"), some exact counts of everything that
    fits the description ("two red circles"); one NP per distinct description."""
    nps, covered, seen = [], set(), set()
    for o in subset:
        if id(o) in covered:
            continue
        d = describe(o, rng)
        if d in seen:
            continue
        seen.add(d)
        n = truth.count(d)
        if rng.random() < (0.6 if n > 1 else 0.2):
            nps.append(NP(d, n, "a", "shape" if rng.random() < 0.3 else "object"))
            covered.update(id(m) for m in truth.fits(d))
        else:
            nps.append(NP(d))
            covered.add(id(o))
    return nps


def _relation_clause(truth: Truth, rng, verb: bool) -> Clause:
    """NP REL NP about two objects that differ somewhere ("a white star left of a white star" is true of
    twins, but says little); their descriptions are redrawn for uniqueness, and differ."""
    objs = truth.objects
    pairs = [(a, b) for a in objs for b in objs
             if a is not b and (a.size, a.color, a.shape) != (b.size, b.color, b.shape)]
    a, b = rng.choice(pairs) if pairs else rng.sample(objs, 2)
    rel = rng.choice([r for r in OPPOSITE if related(a, r, b)])
    da, db = describe(a, rng, truth, unique_tries=4), describe(b, rng, truth, unique_tries=4)
    if da == db:
        da, db = (a.size, a.color, a.shape), (b.size, b.color, b.shape)
    nps = [NP(d, None, "the" if verb and truth.count(d) == 1 and rng.random() < 0.5 else "a") for d in (da, db)]
    return Clause(nps[0], rel, nps[1], verb, rng.randrange(len(REL_WORDS[rel])))


def caption(truth: Truth, rng) -> Caption:
    """One random caption of the scene, true by construction (tests check it with the parser)."""
    objects = truth.objects
    n = len(objects)
    kind = "list" if n == 1 else rng.choices(("list", "count", "relation"), (3, 2, 5))[0]
    subset = rng.sample(objects, n if rng.random() < 0.6 else rng.randint(1, n))
    if kind == "relation":
        verb = rng.random() < 0.6
        clauses = [_relation_clause(truth, rng, verb)]
        extra = rng.random()
        if extra < 0.25:
            clauses.append(_relation_clause(truth, rng, verb))
        elif extra < 0.5:
            stated = {c.subject.d for c in clauses} | {c.obj.d for c in clauses}
            clauses += [Clause(np) for np in _list_nps(truth, rng, subset[:1]) if np.d not in stated]
        prefix = "" if verb else rng.choice(PREFIXES[1:])
        return Caption(tuple(clauses), prefix)
    clauses = [Clause(np) for np in _list_nps(truth, rng, subset)]
    if kind == "count":
        total = Clause(NP((None, None, None), n, "a", "shape" if rng.random() < 0.5 else "object"))
        return Caption((total, *clauses), rng.choice(("", "a picture of", "an image of", "there")), True)
    return Caption(tuple(clauses), rng.choice(PREFIXES))


def captions(truth: Truth, rng, k: int) -> list[Caption]:
    """k captions, distinct where a few redraws allow it (a one-object scene has few)."""
    out, texts = [], set()
    for _ in range(k):
        for _ in range(4):
            c = caption(truth, rng)
            text = c.text()
            if text not in texts:
                break
        out.append(c)
        texts.add(text)
    return out


# ---- hard negatives ----------------------------------------------------------------------------------------

# Each generator yields edits {clause index: new clause}; `negatives` keeps the first that makes the caption
# false. The caption is true, so it is false exactly when an edited clause is: only those are checked.

def _set_np(edits: dict, cap: Caption, slot, np: NP) -> dict:
    i, part = slot
    c = edits.get(i, cap.clauses[i])
    edits[i] = Clause(np, c.rel, c.obj, c.verb, c.form) if part == 0 else Clause(c.subject, c.rel, np, c.verb, c.form)
    return edits


def _attribute_swaps(cap: Caption, rng, truth):
    nps = cap.nps()
    for i, (s, a) in enumerate(nps):
        for t, b in nps[i + 1:]:
            for k in ((1, 2) if rng.random() < 0.5 else (2, 1)):  # colour, shape
                if a.d[k] and b.d[k] and a.d[k] != b.d[k]:
                    da, db = list(a.d), list(b.d)
                    da[k], db[k] = b.d[k], a.d[k]
                    edits = _set_np({}, cap, s, NP(tuple(da), a.count, a.det, a.head))
                    yield _set_np(edits, cap, t, NP(tuple(db), b.count, b.det, b.head))


def _relation_swaps(cap: Caption, rng, truth):
    for i, c in enumerate(cap.clauses):
        if c.rel is not None:
            flip = OPPOSITE[c.rel]
            # each NP keeps its determiner: "the" marks a description only one object fits
            edits = [Clause(c.subject, flip, c.obj, c.verb, min(c.form, len(REL_WORDS[flip]) - 1)),
                     Clause(c.obj, c.rel, c.subject, c.verb, c.form)]
            for new in edits if rng.random() < 0.5 else edits[::-1]:
                yield {i: new}


def _count_changes(cap: Caption, rng, truth):
    nps = cap.nps()
    for s, np in [x for x in nps if x[1].count is not None] + [x for x in nps if x[1].count is None]:
        actual = truth.count(np.d)
        near = (np.count - 1, np.count + 1) if np.count is not None else (2, 1, 3)
        for m in near if rng.random() < 0.5 else near[::-1]:
            if 1 <= m < len(NUMBERS) and m != actual:
                yield _set_np({}, cap, s, NP(np.d, m, np.det, np.head))


def _color_changes(cap: Caption, rng, truth):
    nps = cap.nps()
    start = rng.randrange(len(nps))
    for s, np in nps[start:] + nps[:start]:
        if np.d[1]:
            first = rng.randrange(len(COLORS))
            for c in COLORS[first:] + COLORS[:first]:
                if c != np.d[1]:
                    yield _set_np({}, cap, s, NP((np.d[0], c, np.d[2]), np.count, np.det, np.head))


NEGATIVE_TYPES = {"attribute_swap": _attribute_swaps, "relation_swap": _relation_swaps,
                  "count_change": _count_changes, "color_change": _color_changes}


def _acceptable(truth: Truth, edits: dict, forbid) -> bool:
    """Is the edited caption false, and free of forbidden pairs? (the hot loop of sample(): kept flat)"""
    false = False
    for c in edits.values():
        for f in c.facts():
            if not truth(f):
                false = True
                break
        if forbid:
            for np in (c.subject, c.obj):
                if np is not None and (np.d[1], np.d[2]) in forbid:
                    return False
    return false


def negatives(truth: Truth, cap: Caption, rng, forbid=frozenset()) -> list[dict]:
    """Minimal edits of `cap` (which must be true) that are false for the scene, at most one per type; a type
    with no false edit (e.g. relation_swap of a caption without a relation) is left out. No negative names a
    (colour, shape) pair in `forbid` (the heldout pairs, outside test_heldout)."""
    out = []
    for kind, candidates in NEGATIVE_TYPES.items():
        for edits in candidates(cap, rng, truth):
            if _acceptable(truth, edits, forbid):
                clauses = tuple(edits.get(i, c) for i, c in enumerate(cap.clauses))
                out.append({"type": kind, "text": Caption(clauses, cap.prefix, cap.including).text()})
                break
    return out
