"""The Shapes world: determinism, truth of every caption and falsity of every negative (checked by the parser
and by an independent checker written here from the scene dicts), heldout pairs, web noise, VQA answers, VOCAB,
score_caption, the grid layout and the CLI."""

import json
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from clipblip.cli import parser
from clipblip.data import shapes_captions
from clipblip.data import shapes_text as T
from clipblip.data.shapes import (
    ANSWERS,
    ANSWERS_BY_TYPE,
    COLORS,
    RADIUS,
    SHAPES,
    SIZES,
    VOCAB,
    Obj,
    Scene,
    ShapesWorld,
    parse,
    render,
    score_caption,
    tokenize,
)
from clipblip.errors import ClipBlipError

N = 300


@pytest.fixture(scope="module")
def world():
    return ShapesWorld(seed=0)


@pytest.fixture(scope="module")
def samples(world):
    """N train + N/3 test_heldout samples (negatives are checked on both)."""
    return [world.sample("train", i) for i in range(N)] + [world.sample("test_heldout", i) for i in range(N // 3)]


@pytest.fixture(scope="module")
def web(world):
    return [world.sample("web", i) for i in range(400)]


# ---- an independent checker, from the scene dict and the meaning in shapes_text's docstring ----------------

def _fits(o, d):
    return all(v is None or o[k] == v for k, v in zip(("size", "color", "shape"), d))


_REL = {"left": lambda a, b: a["col"] < b["col"], "right": lambda a, b: a["col"] > b["col"],
        "above": lambda a, b: a["row"] < b["row"], "below": lambda a, b: a["row"] > b["row"]}


def _true(scene, fact):
    objs = scene["objects"]
    if fact[0] == "exists":
        return any(_fits(o, fact[1]) for o in objs)
    if fact[0] == "count":
        return sum(_fits(o, fact[1]) for o in objs) == fact[2]
    _, d1, rel, d2 = fact
    return any(_fits(a, d1) and _fits(b, d2) and i != j and _REL[rel](a, b)
               for i, a in enumerate(objs) for j, b in enumerate(objs))


def _all_true(scene, text):
    facts = parse(text)
    return bool(facts) and all(_true(scene, f) for f in facts)


# ---- determinism ------------------------------------------------------------------------------------------

def test_sample_is_a_pure_function_of_seed_split_index():
    a, b = ShapesWorld(seed=3).sample("train", 17), ShapesWorld(seed=3).sample("train", 17)
    assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
    assert {k: v for k, v in a.items() if k != "image"} == {k: v for k, v in b.items() if k != "image"}
    c = ShapesWorld(seed=3).sample("train", 18)
    assert c["scene"] != a["scene"] and c["captions"] != a["captions"]
    assert ShapesWorld(seed=4).sample("train", 17)["scene"] != a["scene"]
    assert ShapesWorld(seed=3).sample("val", 17)["scene"] != a["scene"]
    # images do not depend on the text settings; the id names split and index
    other = ShapesWorld(seed=3, captions_per_image=2, noise=0.9).sample("train", 17)
    assert np.array_equal(np.asarray(other["image"]), np.asarray(a["image"])) and len(other["captions"]) == 2
    assert a["id"] == "train-000017" and a["caption"] == a["captions"][0]
    assert a["image"].mode == "RGB" and a["image"].size == (64, 64)
    assert ShapesWorld(image_size=128).sample("train", 0)["image"].size == (128, 128)
    json.dumps({k: v for k, v in a.items() if k != "image"})  # plain JSON-able data


def test_bad_arguments_raise_clipblip_error(world):
    with pytest.raises(ClipBlipError, match="unknown split"):
        world.sample("training", 0)
    with pytest.raises(ClipBlipError, match="index"):
        world.sample("train", -1)
    with pytest.raises(ClipBlipError, match="n_objects"):
        world.sample("train", 0, n_objects=7)
    with pytest.raises(ClipBlipError, match="noise"):
        ShapesWorld(noise=1.5)


# ---- captions and negatives -------------------------------------------------------------------------------

def test_every_caption_true_every_negative_false(samples):
    for s in samples:
        assert len(s["captions"]) == 5 and len(s["negatives"]) == 5
        for caption, negs in zip(s["captions"], s["negatives"]):
            assert _all_true(s["scene"], caption), (caption, s["scene"])
            score = score_caption(s["scene"], caption)
            assert score["parsed"] and score["true"] == score["facts"] > 0
            for neg in negs:
                facts = parse(neg["text"])
                assert facts and not all(_true(s["scene"], f) for f in facts), (neg, caption, s["scene"])
                score = score_caption(s["scene"], neg["text"])
                assert score["true"] < score["facts"]


def test_parser_reads_back_the_structure_it_was_generated_from(world):
    rng = random.Random(0)
    for i in range(100):
        truth = T.Truth(world.scene("train", i).objects)
        for cap in shapes_captions.captions(truth, rng, 5):
            assert parse(cap.text()) == cap.facts(), cap.text()


def test_negatives_of_each_type_are_frequent(samples):
    types = Counter(n["type"] for s in samples for negs in s["negatives"] for n in negs)
    n_captions = sum(len(s["captions"]) for s in samples)
    with_relation = sum(any(f[0] == "rel" for f in parse(c)) for s in samples for c in s["captions"])
    assert types["count_change"] > 0.95 * n_captions
    assert types["color_change"] > 0.9 * n_captions
    assert types["attribute_swap"] > 0.3 * n_captions
    assert types["relation_swap"] > 0.95 * with_relation > 0.3 * n_captions
    assert set(types) == {"attribute_swap", "relation_swap", "count_change", "color_change"}


def test_captions_have_variety(samples):
    captions = [c for s in samples for c in s["captions"]]
    assert len(set(captions)) > 0.9 * len(captions)
    joined = " ".join(captions)
    for phrase in ("two ", "left of", "right of", "above", "below", "the ", "including", "there is", "there are",
                   "a picture of", " object", " and "):
        assert phrase in joined, phrase
    # attributes are left out too: captions mentioning a shape without its colour and vice versa
    assert re.search(r"\ban? (circle|square|triangle|star|hexagon|cross)\b", joined)
    assert re.search(r"\ban? (red|green|blue|yellow|purple|orange|white|gray) (object|shape)\b", joined)


def test_count_words_mean_exactly_that_many():
    scene = Scene((Obj("circle", "red", "large", 0, 0), Obj("circle", "red", "small", 0, 1),
                   Obj("circle", "red", "small", 1, 1), Obj("square", "blue", "large", 2, 2)))
    assert score_caption(scene, "three red circles.")["true"] == 1
    assert score_caption(scene, "two red circles.")["true"] == 0
    assert score_caption(scene, "two small circles.")["true"] == 1
    assert score_caption(scene, "a red circle.")["true"] == 1  # "a": at least one
    assert score_caption(scene, "four objects.")["true"] == 1


# ---- heldout pairs ----------------------------------------------------------------------------------------

def test_heldout_pairs_never_in_other_splits_always_in_test_heldout(world):
    held = world.heldout_pairs
    assert len(held) == 6 and len({s for _, s in held}) == 6 and len({c for c, _ in held}) == 6
    assert ShapesWorld(seed=1).heldout_pairs != held
    for split in ("train", "val", "test", "web"):
        for i in range(150):
            s = world.sample(split, i)
            assert not {(o["color"], o["shape"]) for o in s["scene"]["objects"]} & held
            texts = s["captions"] + [n["text"] for negs in s["negatives"] for n in negs] + \
                [q["question"] for q in s["vqa"]]
            for t in texts:  # no text of these splits names a heldout pair either
                assert not any(f[0] in ("exists", "count") and (f[1][1], f[1][2]) in held for f in parse(t)), t
    for i in range(150):
        objs = world.scene("test_heldout", i).objects
        assert any((o.color, o.shape) in held for o in objs)
    single = [world.scene("test_heldout", i, n_objects=1).objects[0] for i in range(30)]
    assert all((o.color, o.shape) in held for o in single)


# ---- web noise --------------------------------------------------------------------------------------------

def test_web_noise_shares_and_labels(web):
    labels = Counter(n for s in web for n in s["noise"])
    total = sum(labels.values())
    assert abs((labels["wrong"] + labels["partial"]) / total - 0.3) < 0.05
    assert abs(labels["wrong"] / total - 0.15) < 0.04 and abs(labels["partial"] / total - 0.15) < 0.04
    wrong_false = []
    for s in web:
        for caption, noise, negs in zip(s["captions"], s["noise"], s["negatives"]):
            if noise == "clean":
                assert _all_true(s["scene"], caption)
            elif noise == "partial":  # one colour or count changed: false
                assert not _all_true(s["scene"], caption) and negs == []
            else:
                wrong_false.append(not _all_true(s["scene"], caption))
    assert np.mean(wrong_false) > 0.9


def test_noise_only_in_web_and_configurable(samples):
    assert all(n == "clean" for s in samples for n in s["noise"])
    quiet = ShapesWorld(noise=0.0)
    assert all(n == "clean" for i in range(50) for n in quiet.sample("web", i)["noise"])


# ---- VQA --------------------------------------------------------------------------------------------------

_NOUN = {**{s: s for s in SHAPES}, **{T.PLURALS[s]: s for s in SHAPES}, "object": None, "objects": None}


def _desc(phrase):
    words = phrase.split()
    d = [None, None, _NOUN[words[-1]]]
    for w in words[:-1]:
        d[0 if w in SIZES else 1] = w
        assert w in SIZES or w in COLORS, phrase
    return d


def _one(scene, phrase):
    found = [o for o in scene["objects"] if _fits(o, _desc(phrase))]
    assert len(found) == 1, (phrase, scene)  # "the X" names exactly one object
    return found[0]


def _answer(scene, q):
    """The answer to a generated question, computed here from the scene dict."""
    rel = r"(left of|to the left of|right of|to the right of|above|below|under)"
    if m := re.fullmatch(r"what (color|shape) is the (.+)\?", q):
        return _one(scene, m[2])[m[1]]
    if m := re.fullmatch(r"is the (.+) small or large\?", q):
        return _one(scene, m[1])["size"]
    if m := re.fullmatch(r"how many (.+) are there\?", q):
        return T.NUMBERS[sum(_fits(o, _desc(m[1])) for o in scene["objects"])]
    if m := re.fullmatch(r"is there an? (.+)\?", q):
        return "yes" if any(_fits(o, _desc(m[1])) for o in scene["objects"]) else "no"
    if m := re.fullmatch(r"is the (.+?) (left or right of|above or below) the (.+)\?", q):
        a, b = _one(scene, m[1]), _one(scene, m[3])
        x, y = m[2].split()[0], m[2].split()[2]
        assert _REL[x](a, b) != _REL[y](a, b)
        return x if _REL[x](a, b) else y
    if m := re.fullmatch(rf"is the (.+?) {rel} the (.+)\?", q):
        r = {"under": "below"}.get(m[2], m[2].split()[-2] if m[2].endswith(" of") else m[2])
        return "yes" if _REL[r](_one(scene, m[1]), _one(scene, m[3])) else "no"
    raise AssertionError(f"unknown question form: {q}")


def test_vqa_answers_are_right_and_in_the_closed_set(samples):
    types = Counter()
    yes_no = {"exists": Counter(), "relation": Counter()}
    for s in samples:
        for qa in s["vqa"]:
            assert qa["answer"] == _answer(s["scene"], qa["question"]), qa
            assert qa["answer"] in ANSWERS_BY_TYPE[qa["type"]] and qa["answer"] in ANSWERS
            types[qa["type"]] += 1
            if qa["type"] in yes_no and qa["answer"] in ("yes", "no"):
                yes_no[qa["type"]][qa["answer"]] += 1
    assert set(types) == set(ANSWERS_BY_TYPE) and min(types.values()) > 0.5 * len(samples)
    for counts in yes_no.values():
        assert 0.4 < counts["yes"] / (counts["yes"] + counts["no"]) < 0.6, yes_no


# ---- vocabulary and tokenization ----------------------------------------------------------------------------

def test_vocab_covers_every_token(samples, web):
    texts = []
    for s in samples + web:
        texts += s["captions"] + [n["text"] for negs in s["negatives"] for n in negs]
        texts += [qa["question"] for qa in s["vqa"]] + [qa["answer"] for qa in s["vqa"]]
    used = {t for text in texts for t in tokenize(text)}
    assert used <= set(VOCAB), used - set(VOCAB)
    assert VOCAB == sorted(set(VOCAB)) and len(VOCAB) < 80 and set(ANSWERS) <= set(VOCAB)
    for text in texts[:2000]:  # lowercase, single spaces, no space before punctuation
        assert text == text.lower() and re.sub(r" ([,.?])", r"\1", " ".join(tokenize(text))) == text


# ---- score_caption on model-like text ---------------------------------------------------------------------

def test_score_caption_on_model_output():
    scene = Scene((Obj("circle", "red", "large", 0, 0), Obj("square", "blue", "small", 1, 2)))
    good = score_caption(scene, "a red circle is left of a blue square.")
    assert good == {"facts": 3, "true": 3, "objects_mentioned": 2, "objects": 2, "parsed": True}
    assert score_caption(scene.to_dict(), "A red circle left of a blue square") == good  # case, no period, dict
    assert score_caption(scene, "a red circle right of a blue square.")["true"] == 2
    junk = score_caption(scene, "a a red circle the the of blue blue square square and")
    assert junk["parsed"] and junk["true"] == junk["facts"] >= 2
    assert score_caption(scene, "a red circle")["objects_mentioned"] == 1
    assert score_caption(scene, "hello world") == {"facts": 0, "true": 0, "objects_mentioned": 0, "objects": 2,
                                                   "parsed": False}
    assert score_caption(scene, "")["parsed"] is False
    assert score_caption(scene, "a green star.")["true"] == 0
    chain = parse("a circle left of a square above a star")  # relations chain: the square is above the star
    assert chain[-1] == ("rel", (None, None, "square"), "above", (None, None, "star")) and len(chain) == 5


# ---- layout, labels, single-object scenes -----------------------------------------------------------------

def test_objects_sit_in_distinct_cells_and_inside_them(world):
    for i in range(200):
        objs = world.scene("train", i).objects
        assert 1 <= len(objs) <= 4 and len({(o.row, o.col) for o in objs}) == len(objs)
    assert Counter(len(world.scene("train", i).objects) for i in range(200)).keys() == {1, 2, 3, 4}
    # pixels: a large object drawn at the far edge of its cell stays inside that cell
    for shape in SHAPES:
        scene = Scene((Obj(shape, "white", "large", 1, 1, dx=1.0, dy=-1.0),))
        pixels = np.asarray(render(scene, 90, antialias=False)).max(-1)
        ys, xs = np.nonzero(pixels > 100)
        assert xs.min() >= 30 and xs.max() < 60 and ys.min() >= 30 and ys.max() < 60, shape
    assert RADIUS["small"] < RADIUS["large"] <= 0.5


def test_labels_and_single_object_scenes(world, samples):
    for s in samples:
        objs, labels = s["scene"]["objects"], s["labels"]
        assert labels["count"] == len(objs)
        for key in ("shape", "color", "size"):
            values = {o[key] for o in objs}
            assert labels[key] == (values.pop() if len(values) == 1 else None)
    singles = [world.sample("test", i, n_objects=1) for i in range(40)]
    assert all(s["labels"]["count"] == 1 and s["labels"]["shape"] and s["labels"]["color"] for s in singles)
    assert singles[0]["id"] == "test-n1-000000"
    assert len({s["labels"]["shape"] for s in singles}) == len(SHAPES)


# ---- CLI --------------------------------------------------------------------------------------------------

def _run_cli(argv):
    """`clipblip data shapes ARGV`, its errors raised rather than printed."""
    args = parser().parse_args(["data", "shapes", *argv])
    return args.run(args)


def test_cli_writes_images_and_jsonl(tmp_path, capsys):
    assert _run_cli(["--out", str(tmp_path), "--n", "6", "--split", "web", "--start", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["written"] == 6
    lines = [json.loads(line) for line in (tmp_path / "web.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == [f"web-{i:06d}" for i in range(10, 16)]
    expected = ShapesWorld().sample("web", 12)
    assert lines[2]["captions"] == expected["captions"] and lines[2]["noise"] == expected["noise"]
    for r in lines:
        assert (tmp_path / r["image"]).is_file() and r["image"].startswith("images/")
        assert set(r) == {"id", "image", "caption", "captions", "labels", "vqa", "negatives", "noise", "scene"}
    assert len(list((tmp_path / "images").glob("*.png"))) == 6 and not list(tmp_path.glob("*.tmp"))
    assert _run_cli(["--out", str(tmp_path), "--n", "6", "--split", "web", "--start", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unchanged"] == 6  # rerun: same bytes, nothing rewritten
    with pytest.raises(ClipBlipError, match="--n"):
        _run_cli(["--out", str(tmp_path), "--n", "0"])


def test_cli_writes_webdataset_shards(tmp_path):
    import clipblip.cli
    from clipblip.data.readers import open_dataset
    from clipblip.data.shapes import ShapesWorld

    assert clipblip.cli.main(["data", "shapes", "--out", str(tmp_path), "--n", "7", "--shards", "3", "--json"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["train-000000.tar", "train-000001.tar",
                                                              "train-000002.tar"]
    records = list(open_dataset(tmp_path))
    world = ShapesWorld(seed=0)
    assert [r["id"] for r in records] == [world.sample_id("train", i) for i in range(7)]
    assert records[3]["captions"] == world.sample("train", 3)["captions"]


def test_cli_writes_caption_sidecars_the_index_reads(tmp_path, capsys):
    from clipblip.index.sources import image_items
    from clipblip.jobs import Skipped

    assert _run_cli(["--out", str(tmp_path), "--n", "4", "--split", "web", "--json"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "web.jsonl").read_text().splitlines()]
    for r in rows:
        assert (tmp_path / r["image"]).with_suffix(".txt").read_text().splitlines() == r["captions"]
    items = image_items(tmp_path / "images", skipped=Skipped())  # what `index build DIR/images` indexes
    assert sorted((Path(i.path).stem, i.caption) for i in items) == sorted((r["id"], r["caption"]) for r in rows)
