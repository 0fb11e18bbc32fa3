"""Shapes VQA: question-answer pairs by type, each unambiguous for its scene, answered by one word of ANSWERS.

"the X" in a question always names exactly one object of the scene (otherwise the question is not asked), so
"what color is the star?" appears only when there is one star. Types:
- color    "what color is the large star?"            -> a colour
- shape    "what shape is the red object?"            -> a shape
- size     "is the blue square small or large?"       -> small | large
- count    "how many red circles are there?"          -> zero .. four (exact count; "zero" for absent ones)
- exists   "is there a blue square?"                  -> yes | no (every scene gets one of each)
- relation "is the star left of the red circle?"      -> yes | no (half each, in expectation)
           "is the star above or below the circle?"   -> above | below (left | right), asked only when the
                                                         two differ on that axis
"""

from __future__ import annotations

from .shapes_captions import describe
from .shapes_text import COLORS, NP, NUMBERS, OPPOSITE, REL_WORDS, SHAPES, SIZES, Truth, related, words

ANSWERS_BY_TYPE = {
    "color": tuple(sorted(COLORS)), "shape": tuple(sorted(SHAPES)), "size": tuple(sorted(SIZES)),
    "count": NUMBERS, "exists": ("no", "yes"), "relation": ("above", "below", "left", "no", "right", "yes"),
}
ANSWERS = tuple(sorted({a for answers in ANSWERS_BY_TYPE.values() for a in answers}))
# Every word of the question templates (VOCAB is built from these, the caption grammar and ANSWERS).
TEMPLATES = ("what color is the object ?", "what shape is the object ?", "is the object small or large ?",
             "how many objects are there ?", "is there a an object ?", "is the object left or right of the object ?",
             "is the object above or below the object ?")


def _unique_masks(truth: Truth) -> dict:
    """id(object) -> the attribute subsets that only this object fits, as bit masks (1 size, 2 colour, 4 shape).
    A subset singles o out when every other object differs from o on one of its attributes."""
    attrs = [(o.size, o.color, o.shape) for o in truth.objects]
    out = {}
    for i, o in enumerate(truth.objects):
        a = attrs[i]
        same = [(m[0] == a[0]) | (m[1] == a[1]) << 1 | (m[2] == a[2]) << 2 for j, m in enumerate(attrs) if j != i]
        out[id(o)] = [mask for mask in range(8) if all(mask & ~s for s in same)]
    return out


def _unique(o, masks: dict, rng, leave_out=None):
    """A random description (size, colour, shape) that only `o` fits, never stating attribute `leave_out`
    (0 size, 1 colour, 2 shape); None when there is none."""
    found = masks[id(o)] if leave_out is None else [m for m in masks[id(o)] if not m >> leave_out & 1]
    if not found:
        return None
    mask = rng.choice(found)
    return (o.size if mask & 1 else None, o.color if mask & 2 else None, o.shape if mask & 4 else None)


def _the(d) -> str:
    return NP(d, det="the").text()


def _attribute_question(objects, masks, rng, kind: str):
    k = {"size": 0, "color": 1, "shape": 2}[kind]
    for o in rng.sample(objects, len(objects)):
        d = _unique(o, masks, rng, leave_out=k)
        if d is not None:
            answer = getattr(o, kind)
            if kind == "size":
                return f"is {_the(d)} small or large?", answer
            return f"what {kind} is {_the(d)}?", answer
    return None


def _count_question(truth: Truth, rng, forbid):
    o = rng.choice(truth.objects)
    d = rng.choice([(None, None, o.shape), (None, o.color, None), (None, o.color, o.shape), (None, None, None)])
    if rng.random() < 0.2:  # often absent, so "zero" is asked too
        d = (None, rng.choice(COLORS), rng.choice(SHAPES))
        if (d[1], d[2]) in forbid:
            d = (None, None, d[2])
    return f"how many {words(d, True)} are there?", NUMBERS[truth.count(d)]


def _absent(truth: Truth, rng, forbid):
    """A description no object fits: half the time one attribute off an object that is there (a near miss)."""
    for _ in range(30):
        if rng.random() < 0.5:
            o = rng.choice(truth.objects)
            d = [o.size if rng.random() < 0.4 else None, o.color, o.shape]
            k = rng.choice((1, 2))
            d[k] = rng.choice(COLORS if k == 1 else SHAPES)
        else:
            d = [rng.choice(SIZES) if rng.random() < 0.3 else None, rng.choice(COLORS), rng.choice(SHAPES)]
        d = tuple(d)
        if truth.count(d) == 0 and (d[1], d[2]) not in forbid:
            return d
    return None


def _exists_questions(truth: Truth, rng, forbid):
    present = describe(rng.choice(truth.objects), rng)
    out = [(f"is there {NP(present).text()}?", "yes")]
    absent = _absent(truth, rng, forbid)
    if absent is not None:
        out.append((f"is there {NP(absent).text()}?", "no"))
    rng.shuffle(out)
    return out


def _relation_question(objects, masks, rng):
    pairs = [(a, b) for a in objects for b in objects if a is not b and masks[id(a)] and masks[id(b)]]
    if pairs:
        a, b = rng.choice(pairs)
        da, db = _unique(a, masks, rng), _unique(b, masks, rng)
        if rng.random() < 2 / 3:
            want = rng.random() < 0.5
            rels = [r for r in OPPOSITE if related(a, r, b) == want]
            rel = rng.choice(rels)
            phrase = rng.choice(REL_WORDS[rel])
            return f"is {_the(da)} {phrase} {_the(db)}?", "yes" if want else "no"
        axes = [(x, y) for x, y in (("left", "right"), ("above", "below")) if related(a, x, b) or related(a, y, b)]
        x, y = rng.choice(axes)
        where = f"{x} or {y} of" if x == "left" else f"{x} or {y}"
        return f"is {_the(da)} {where} {_the(db)}?", x if related(a, x, b) else y
    return None


def questions(truth: Truth, rng, forbid=frozenset()) -> list[dict]:
    """About seven questions: one per type where the scene allows it, exists twice (a yes and a no). No question
    names a (colour, shape) pair in `forbid`."""
    objects, masks, out = list(truth.objects), _unique_masks(truth), []
    for kind in ("color", "shape", "size"):
        qa = _attribute_question(objects, masks, rng, kind)
        if qa:
            out.append((kind, qa))
    out.append(("count", _count_question(truth, rng, forbid)))
    out += [("exists", qa) for qa in _exists_questions(truth, rng, forbid)]
    if len(objects) > 1:
        qa = _relation_question(objects, masks, rng)
        if qa:
            out.append(("relation", qa))
    return [{"type": kind, "question": q, "answer": a} for kind, (q, a) in out]
