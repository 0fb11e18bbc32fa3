"""The Shapes world: seeded, random-access small scenes of coloured shapes on a grid, with captions, VQA pairs,
hard negatives and labels (the project's embedded dataset; no download, any size, every caption checkable).

A scene has 1 to `max_objects` objects, each in its own cell of a `grid` x `grid` layout (so objects never
overlap), each with a shape (SHAPES), a colour (COLORS) and a size (SIZES), on a dark plain or lightly textured
background (every colour, white and gray included, stands out against it). Row 0 is the top row, column 0 the
left column; the relations of the captions are read from the cells (see shapes_text).

`ShapesWorld(seed).sample(split, index)` is a pure function of (seed, split, index, config): each sample draws
from `random.Random` seeded with a string naming those (string seeds go through SHA-512, never Python's salted
`hash()`), so a training run resumes at any data position and ranks take disjoint index ranges. The scene and
the texts use separate streams: changing `captions_per_image` or `noise` leaves every image unchanged.

Splits: train, val, test, web (noisy captions for CapFilt) and test_heldout. `heldout_pairs` are a few
(colour, shape) pairs drawn from the seed, one per shape, each with a different colour (so every shape and every
colour is still seen in training); they never appear in a train/val/test/web scene, and every test_heldout scene
has at least one. Texts of the other splits never name them either (no negative, no "is there" question).

Labels (zero-shot classification): `count` is the number of objects; `shape`, `color`, `size` are set only when
every object shares it (always so for one object) and None otherwise, since "the colour of the image" has no
answer when it holds a red and a blue object. For a clean classification set ask for single-object scenes:
`sample(split, index, n_objects=1)` (ids `<split>-n1-<index>`, a stream of its own).
"""

from __future__ import annotations

import functools
import math
import numbers
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ClipBlipError
from . import shapes_captions as gen
from . import shapes_text as text
from .shapes_text import COLORS, NUMBERS, SHAPES, SIZES, fact_holds, matches, parse, parse_nps, stated_facts, tokenize  # noqa: F401 (public)
from .shapes_vqa import ANSWERS, ANSWERS_BY_TYPE, TEMPLATES, questions  # noqa: F401 (public)

SPLITS = ("train", "val", "test", "test_heldout", "web")
HELDOUT = "test_heldout"
RGB = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 235), "yellow": (240, 215, 40),
       "purple": (150, 60, 205), "orange": (250, 140, 20), "white": (240, 240, 240), "gray": (135, 135, 135)}
BACKGROUNDS = ((16, 16, 20), (30, 22, 34), (18, 30, 34), (34, 28, 20))
N_TEXTURES = 4  # texture 0 is plain; 1..N_TEXTURES are light gradient + grain tiles
# Half-extent of an object as a share of its cell: large fills ~85% of the cell, small ~50% (easy to tell apart
# at 64 px, where a cell is ~21 px).
RADIUS = {"small": 0.25, "large": 0.42}


def _vocab() -> list[str]:
    texts = [*SHAPES, *text.PLURALS.values(), *COLORS, *SIZES, *NUMBERS, *text.PREFIXES, "there is are an the",
             *(p for ps in text.REL_WORDS.values() for p in ps), "and including , .", *ANSWERS, *TEMPLATES]
    return sorted({t for line in texts for t in tokenize(line)})


# Every token a caption, negative, question or answer can contain (see shapes_text.tokenize), sorted.
VOCAB = _vocab()


def _star(points: int = 5, inner: float = 0.45):
    return [((1 if k % 2 == 0 else inner) * math.sin(k * math.pi / points),
             -(1 if k % 2 == 0 else inner) * math.cos(k * math.pi / points)) for k in range(2 * points)]


_ARM = 0.34  # half-width of the cross's arms
# Unit outlines (x right, y down, radius ~1); the circle is drawn as an ellipse.
OUTLINES = {
    "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
    "triangle": [(0.0, -1.0), (1.0, 0.8), (-1.0, 0.8)],
    "star": _star(),
    "hexagon": [(math.cos(k * math.pi / 3), math.sin(k * math.pi / 3)) for k in range(6)],
    "cross": [(-_ARM, -1), (_ARM, -1), (_ARM, -_ARM), (1, -_ARM), (1, _ARM), (_ARM, _ARM), (_ARM, 1), (-_ARM, 1),
              (-_ARM, _ARM), (-1, _ARM), (-1, -_ARM), (-_ARM, -_ARM)],
}


@dataclass(frozen=True)
class Obj:
    """One object. dx, dy in [-1, 1] place its centre within the free room of its cell; shade in [-1, 1]
    brightens or darkens its colour by up to 10% (render detail, not part of any text)."""

    shape: str
    color: str
    size: str
    row: int
    col: int
    dx: float = 0.0
    dy: float = 0.0
    shade: float = 0.0


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    grid: int = 3
    background: int = 0
    texture: int = 0

    def to_dict(self) -> dict:
        """Plain JSON-able dict (the `scene` of a sample and of the JSONL)."""
        return {"grid": self.grid, "background": self.background, "texture": self.texture,
                "objects": [dict(vars(o)) for o in self.objects]}

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        return cls(tuple(Obj(**o) for o in d["objects"]), d.get("grid", 3), d.get("background", 0),
                   d.get("texture", 0))

    def render(self, size: int = 64, antialias: bool = True) -> Image.Image:
        return render(self, size, antialias)


def as_scene(scene) -> Scene:
    """A Scene from a Scene or its dict (as stored in the JSONL)."""
    return scene if isinstance(scene, Scene) else Scene.from_dict(scene)


def score_caption(scene, text: str) -> dict:
    """How true a caption is of a scene (a Scene or its dict): facts stated, facts true, objects mentioned
    (objects that some true NP with at least one attribute can be pinned on; an existential NP pins one object,
    a count all it counts; greedy, most specific NP first), objects in the scene, and whether any fact was
    parsed. The share of true facts is true / facts; the share of objects mentioned objects_mentioned / objects."""
    objects = as_scene(scene).objects
    parsed = parse_nps(text)
    facts, phrases = stated_facts(parsed), [phrase for phrase, _ in parsed]
    true = sum(fact_holds(objects, f) for f in facts)
    pinned = set()
    for phrase in sorted(phrases, key=lambda p: -sum(a is not None for a in p.d)):
        if phrase.d == (None, None, None) or not fact_holds(objects, phrase.fact()):
            continue  # "three objects" counts them but describes none
        fits = [k for k, o in enumerate(objects) if matches(o, phrase.d)]
        if phrase.count is None:
            free = [k for k in fits if k not in pinned]
            pinned.update(free[:1])
        else:
            pinned.update(fits)
    return {"facts": len(facts), "true": true, "objects_mentioned": len(pinned), "objects": len(objects),
            "parsed": bool(facts)}


@functools.lru_cache(maxsize=64)
def _background(size: int, background: int, texture: int) -> Image.Image:
    rgb = np.array(BACKGROUNDS[background], np.float32)
    if texture == 0:
        return Image.new("RGB", (size, size), tuple(int(v) for v in rgb))
    # A seeded tile (the same for every image with this texture): a soft diagonal gradient plus fine grain.
    rng = np.random.default_rng([texture, size])
    angle = rng.uniform(0, 2 * math.pi)
    y, x = np.mgrid[0:size, 0:size] / size - 0.5
    ramp = 14 * (x * math.cos(angle) + y * math.sin(angle))
    grain = rng.normal(0, 4, (size, size))
    pixels = rgb + (ramp + grain)[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def centre(o: Obj, cell: float, margin: float = 1.0) -> tuple[float, float]:
    """Where `o`'s centre is drawn, in px, when a cell is `cell` px a side: its cell's centre moved by (dx, dy)
    within the room that keeps the object `margin` px inside the cell."""
    room = max(0.0, cell / 2 - RADIUS[o.size] * cell - margin)
    return (o.col + 0.5) * cell + o.dx * room, (o.row + 0.5) * cell + o.dy * room


def render(scene: Scene, size: int = 64, antialias: bool = True) -> Image.Image:
    """RGB image of `size` x `size`. With antialias the scene is drawn at 2x and box-downsampled (cheap: the
    2x canvas of a 64 px image is 128 px)."""
    scale = 2 if antialias else 1
    canvas = _background(size * scale, scene.background, scene.texture).copy()
    draw = ImageDraw.Draw(canvas)
    cell = size * scale / scene.grid
    for o in scene.objects:
        r = RADIUS[o.size] * cell
        cx, cy = centre(o, cell, margin=scale)  # a 1 px margin in the output image
        fill = tuple(min(255, max(0, round(c * (1 + 0.1 * o.shade)))) for c in RGB[o.color])
        if o.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            draw.polygon([(cx + r * px, cy + r * py) for px, py in OUTLINES[o.shape]], fill=fill)
    return canvas.reduce(2) if antialias else canvas


def draw_heldout(seed: int, n: int = 6) -> frozenset:
    """`n` (colour, shape) pairs from the seed: distinct shapes, distinct colours (n <= 6)."""
    rng = random.Random(f"clipblip-shapes/{seed}/heldout")
    shapes = rng.sample(SHAPES, n)
    colors = rng.sample(COLORS, n)
    return frozenset(zip(colors, shapes))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ClipBlipError(message)


class ShapesWorld:
    """The generator. `sample(split, index)` gives a dict: id, image (PIL RGB), captions, caption (the first),
    scene (plain dict), labels, vqa, negatives (per caption: [{"type", "text"}]), noise (per caption:
    "clean" | "wrong" | "partial"; only the web split has noisy captions)."""

    def __init__(self, seed: int = 0, image_size: int = 64, captions_per_image: int = 5, noise: float = 0.3,
                 grid: int = 3, max_objects: int = 4, n_heldout: int = 6, textured: float = 0.5,
                 antialias: bool = True):
        _check(image_size >= 16, f"image_size must be at least 16 (got {image_size})")
        _check(captions_per_image >= 1, f"captions_per_image must be at least 1 (got {captions_per_image})")
        _check(0.0 <= noise <= 1.0, f"noise is a share of captions in [0, 1] (got {noise})")
        _check(2 <= grid <= 3, f"grid must be 2 or 3 cells a side (got {grid})")
        most = min(grid * grid, len(NUMBERS) - 1)  # counts are spelled "one" .. "four"
        _check(1 <= max_objects <= most, f"max_objects must be in [1, {most}] (got {max_objects})")
        _check(1 <= n_heldout <= len(SHAPES), f"n_heldout must be in [1, {len(SHAPES)}] (got {n_heldout})")
        _check(0.0 <= textured <= 1.0, f"textured is a share in [0, 1] (got {textured})")
        self.seed, self.image_size, self.captions_per_image = int(seed), image_size, captions_per_image
        self.noise, self.grid, self.max_objects, self.textured = noise, grid, max_objects, textured
        self.antialias = antialias
        self.heldout_pairs = draw_heldout(self.seed, n_heldout)
        all_pairs = [(c, s) for c in COLORS for s in SHAPES]
        self._seen_pairs = [p for p in all_pairs if p not in self.heldout_pairs]
        self._all_pairs, self._heldout_list = all_pairs, sorted(self.heldout_pairs)

    def _key(self, split: str, index: int, n_objects) -> str:
        _check(split in SPLITS, f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        _check(isinstance(index, numbers.Integral) and index >= 0, f"index must be an integer >= 0 (got {index!r})")
        _check(n_objects is None or 1 <= n_objects <= self.max_objects,
               f"n_objects must be in [1, {self.max_objects}] (got {n_objects})")
        return f"clipblip-shapes/{self.seed}/{split}/{int(index)}/{n_objects or 0}"  # numpy ints print alike

    def sample_id(self, split: str, index: int, n_objects=None) -> str:
        return f"{split}-n{n_objects}-{index:06d}" if n_objects else f"{split}-{index:06d}"

    def scene(self, split: str, index: int, n_objects=None) -> Scene:
        rng = random.Random(self._key(split, index, n_objects) + "/scene")
        n = n_objects or rng.randint(1, self.max_objects)
        cells = rng.sample(range(self.grid * self.grid), n)
        pairs = [rng.choice(self._all_pairs if split == HELDOUT else self._seen_pairs) for _ in range(n)]
        if split == HELDOUT:
            pairs[rng.randrange(n)] = rng.choice(self._heldout_list)
        objects = []
        for cell, (color, shape) in zip(cells, pairs):
            objects.append(Obj(shape, color, rng.choice(SIZES), cell // self.grid, cell % self.grid,
                               round(rng.uniform(-1, 1), 3), round(rng.uniform(-1, 1), 3),
                               round(rng.uniform(-1, 1), 3)))
        objects.sort(key=lambda o: (o.row, o.col))
        texture = rng.randint(1, N_TEXTURES) if rng.random() < self.textured else 0
        return Scene(tuple(objects), self.grid, rng.randrange(len(BACKGROUNDS)), texture)

    def sample(self, split: str, index: int, n_objects=None, captions_only: bool = False) -> dict:
        """`captions_only`: leave out the negatives and questions (empty lists), about 3x faster, for training
        that reads only captions; the image and captions are the same either way (the web split, whose noise
        is made from negatives, always has them)."""
        if captions_only and split != "web":
            return self._captions_only(split, index, n_objects)
        scene = self.scene(split, index, n_objects)
        rng = random.Random(self._key(split, index, n_objects) + "/text")
        forbid = frozenset() if split == HELDOUT else self.heldout_pairs
        truth = text.Truth(scene.objects)
        structs = gen.captions(truth, rng, self.captions_per_image)
        captions = [c.text() for c in structs]
        negatives = [gen.negatives(truth, c, rng, forbid) for c in structs]
        noise = ["clean"] * len(captions)
        if split == "web":
            self._add_noise(truth, index, n_objects, captions, negatives, noise, rng)
        return {"id": self.sample_id(split, index, n_objects),
                "image": render(scene, self.image_size, self.antialias),
                "captions": captions, "caption": captions[0], "scene": scene.to_dict(), "labels": labels(scene),
                "vqa": questions(truth, rng, forbid), "negatives": negatives, "noise": noise}

    def _captions_only(self, split: str, index: int, n_objects) -> dict:
        scene = self.scene(split, index, n_objects)
        rng = random.Random(self._key(split, index, n_objects) + "/text")
        captions = [c.text() for c in gen.captions(text.Truth(scene.objects), rng, self.captions_per_image)]
        return {"id": self.sample_id(split, index, n_objects), "image": render(scene, self.image_size, self.antialias),
                "captions": captions, "caption": captions[0], "scene": scene.to_dict(), "labels": labels(scene),
                "vqa": [], "negatives": [[] for _ in captions], "noise": ["clean"] * len(captions)}

    def _add_noise(self, truth, index, n_objects, captions, negatives, noise, rng) -> None:
        """Web split: a share `self.noise` of the captions, half "wrong" (another image's caption, preferably one
        that is false here) and half "partial" (one colour or count changed: a color_change / count_change
        negative). A noisy caption gets no negatives (they would be edits of a text that is not shown)."""
        for i in range(len(captions)):
            u = rng.random()
            if u < self.noise / 2:
                captions[i] = self._wrong_caption(truth, index, n_objects, rng)
                noise[i], negatives[i] = "wrong", []
            elif u < self.noise:
                edits = [n["text"] for n in negatives[i] if n["type"] in ("color_change", "count_change")]
                if edits:
                    captions[i] = rng.choice(edits)
                    noise[i], negatives[i] = "partial", []

    def _wrong_caption(self, truth, index, n_objects, rng) -> str:
        for _ in range(8):  # another scene's caption is nearly always false here; retry the rare true one
            other = rng.randrange(1 << 30)
            other += other == index
            other_truth = text.Truth(self.scene("web", other, n_objects).objects)
            caption = gen.caption(other_truth, rng)
            if not text.holds(truth, caption):
                break
        return caption.text()


def labels(scene: Scene) -> dict:
    """count; shape / color / size when every object shares it (always so for one object), else None."""
    objs = scene.objects

    def shared(attr):
        values = {getattr(o, attr) for o in objs}
        return values.pop() if len(values) == 1 else None

    return {"count": len(objs), "shape": shared("shape"), "color": shared("color"), "size": shared("size")}
