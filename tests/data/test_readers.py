"""Dataset readers: each format gives the right records; bad items are counted with a reason, never fatal."""

import json
import os
import pickle

import pytest
from PIL import Image

from clipblip.data.readers import FORMATS, Dataset, decode, open_dataset
from clipblip.data.rejects import Rejects
from clipblip.errors import ClipBlipError


@pytest.fixture
def images(tmp_path):
    """imgs/red.png, imgs/blue.jpg, imgs/sub/green.png, imgs/broken.jpg (corrupt); imgs/missing.jpg is absent."""
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    Image.new("RGB", (12, 10), "red").save(d / "red.png")
    Image.new("RGB", (9, 14), "blue").save(d / "blue.jpg")
    Image.new("RGB", (8, 8), "green").save(d / "sub" / "green.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return d


def _abs(path) -> str:
    return os.path.normpath(os.path.abspath(path))


# ----------------------------------------------------------------------------------------------------- CSV/TSV


def test_csv_resolves_paths_and_skips_empty_captions(images, tmp_path):
    (tmp_path / "data.csv").write_text(
        "filepath,title,license\nimgs/red.png,a red square,cc\nimgs/missing.jpg,gone,cc\n"
        f"{images / 'blue.jpg'},a blue box,\nimgs/sub/green.png,   ,cc\n")
    ds = open_dataset(tmp_path / "data.csv")
    assert isinstance(ds, Dataset) and len(ds) == 3
    assert ds[0] == {"id": "0", "image": _abs(images / "red.png"), "caption": "a red square", "license": "cc"}
    assert ds[1]["image"] == _abs(images / "missing.jpg")  # readers never open images: decode does
    assert (ds[2]["id"], ds[2]["image"], ds[2]["caption"]) == ("2", str(images / "blue.jpg"), "a blue box")
    assert len(ds.rejects) == 1 and "empty caption" in ds.rejects.items[0][1]
    assert ds.rejects.items[0][0] == "data.csv:5"  # file and line of the bad row


def test_tsv_sniffed_delimiter_columns_and_image_root(images, tmp_path):
    (tmp_path / "a.tsv").write_text("id\timage\tcaption\nk1\tred.png\ta red, square thing\n")
    ds = open_dataset(tmp_path / "a.tsv", image_root=images)
    assert ds[0] == {"id": "k1", "image": _abs(images / "red.png"), "caption": "a red, square thing"}
    (tmp_path / "b.csv").write_text("img;txt\nred.png;one, two\nblue.jpg;three\n")
    ds = open_dataset(tmp_path / "b.csv", columns=("img", "txt"), image_root=images)
    assert [r["caption"] for r in ds] == ["one, two", "three"] and ds[1]["image"] == _abs(images / "blue.jpg")


def test_csv_without_known_columns_says_what_to_do(tmp_path):
    (tmp_path / "c.csv").write_text("picture,words\nx.png,hello\n")
    with pytest.raises(ClipBlipError, match="columns=") as e:
        open_dataset(tmp_path / "c.csv")
    assert "picture" in str(e.value)
    with pytest.raises(ClipBlipError, match="missing"):
        open_dataset(tmp_path / "c.csv", columns=("picture", "text"))


# ------------------------------------------------------------------------------------------------------- JSONL


def test_jsonl_captions_vqa_extras_and_bad_lines(images, tmp_path):
    lines = [
        json.dumps({"id": 7, "image": "imgs/red.png", "caption": "red", "labels": ["square"], "scene": {"n": 1}}),
        json.dumps({"image": "imgs/blue.jpg", "captions": ["a blue box ", "blue"], "noise": ["clean", "wrong"]}),
        "{not json",
        "",
        json.dumps({"image": "imgs/red.png", "text": "no caption key"}),
        json.dumps({"image": "imgs/sub/green.png", "question": "what colour?", "answers": ["green", "lime", "green",
                                                                                              "green"]}),
        json.dumps(["a list"]),
        json.dumps({"image": "imgs/red.png", "captions": ["fine", " "], "negatives": [[], []]}),  # kept aligned: out
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    ds = open_dataset(tmp_path / "d.jsonl")
    assert len(ds) == 3
    assert ds[0] == {"id": "7", "image": _abs(images / "red.png"), "caption": "red", "labels": ["square"],
                     "scene": {"n": 1}}
    assert ds[1] == {"id": "1", "image": _abs(images / "blue.jpg"), "caption": "a blue box",
                     "captions": ["a blue box", "blue"], "noise": ["clean", "wrong"]}
    assert ds[2]["question"] == "what colour?" and ds[2]["answers"] == ["green", "lime"]
    assert ds[2]["answer_weights"] == [0.75, 0.25]
    reasons = dict(ds.rejects.items)
    assert len(ds.rejects) == 4 and set(reasons) == {"d.jsonl:3", "d.jsonl:5", "d.jsonl:7", "d.jsonl:8"}
    assert "invalid JSON" in reasons["d.jsonl:3"] and "line 3" in reasons["d.jsonl:3"]
    assert "caption" in reasons["d.jsonl:5"] and "empty caption" in reasons["d.jsonl:8"]


# ------------------------------------------------------------------------------------------------------ folder


def test_folder_sidecar_captions(images):
    (images / "red.txt").write_text("a red square\n\nred again\n")
    (images / "sub" / "green.txt").write_text("green\n")
    (images / "broken.txt").write_text("broken")
    ds = open_dataset(images)
    assert [r["id"] for r in ds] == ["broken", "red", "sub/green"]  # sorted paths, ids relative, no suffix
    assert ds[1] == {"id": "red", "image": _abs(images / "red.png"), "caption": "a red square",
                     "captions": ["a red square", "red again"]}
    assert ds[2]["caption"] == "green" and "captions" not in ds[2]
    assert len(ds.rejects) == 1 and ds.rejects.items[0][0] == "blue" and "no caption" in ds.rejects.items[0][1]


# -------------------------------------------------------------------------------------------------------- COCO


def _karpathy(tmp_path):
    def img(cocoid, split, sentences, folder="val2014"):
        return {"filepath": folder, "filename": f"COCO_{folder}_{cocoid:012d}.jpg", "split": split, "cocoid": cocoid,
                "sentences": [{"raw": s, "tokens": s.split()} for s in sentences]}
    data = {"dataset": "coco", "images": [img(1, "train", ["a cat", "a cat sitting"], "train2014"),
                                          img(2, "restval", ["a dog"]), img(3, "val", ["a bird"]),
                                          img(4, "test", ["a fish", "fish"]), img(5, "val", [])]}
    (tmp_path / "dataset_coco.json").write_text(json.dumps(data))
    return tmp_path / "dataset_coco.json"


def test_coco_karpathy_splits(tmp_path):
    path = _karpathy(tmp_path)
    train = open_dataset(path, split="train")
    assert [r["id"] for r in train] == ["1", "2"]  # restval counts as train
    assert train[0] == {"id": "1", "image": _abs(tmp_path / "train2014" / "COCO_train2014_000000000001.jpg"),
                        "caption": "a cat", "captions": ["a cat", "a cat sitting"], "split": "train"}
    val = open_dataset(path, split="val", image_root="/data/coco")
    assert [r["id"] for r in val] == ["3"] and val[0]["image"] == "/data/coco/val2014/COCO_val2014_000000000003.jpg"
    assert len(val.rejects) == 1 and "empty caption" in val.rejects.items[0][1]  # image 5 has no sentences
    assert [r["id"] for r in open_dataset(path)] == ["1", "2", "3", "4"]
    assert open_dataset(path, split="test", format="coco")[0]["captions"] == ["a fish", "fish"]
    with pytest.raises(ClipBlipError, match="train, restval, val, test"):
        open_dataset(path, split="dev")


def test_lavis_caption_lists(tmp_path):
    train = [{"image": "val2014/a.jpg", "caption": "one", "image_id": "coco_1"},
             {"image": "val2014/a.jpg", "caption": "two", "image_id": "coco_1"},
             {"image": "val2014/b.jpg", "caption": "three", "image_id": "coco_2"}]
    (tmp_path / "coco_karpathy_train.json").write_text(json.dumps(train))
    ds = open_dataset(tmp_path / "coco_karpathy_train.json", image_root=tmp_path / "root")
    assert [(r["id"], r["caption"]) for r in ds] == [("coco_1#0", "one"), ("coco_1#1", "two"), ("coco_2#0", "three")]
    assert ds[0]["image"] == _abs(tmp_path / "root" / "val2014" / "a.jpg") and ds[0]["image_id"] == "coco_1"
    val = [{"image": "val2014/a.jpg", "caption": ["one", "two"]}, {"image": "val2014/b.jpg", "caption": []}]
    (tmp_path / "coco_karpathy_val.json").write_text(json.dumps(val))
    ds = open_dataset(tmp_path / "coco_karpathy_val.json")
    assert len(ds) == 1 and ds[0]["captions"] == ["one", "two"] and ds[0]["caption"] == "one"
    assert len(ds.rejects) == 1 and ds.rejects.items[0][0] == "coco_karpathy_val.json[1]"
    with pytest.raises(ClipBlipError, match="one split already"):
        open_dataset(tmp_path / "coco_karpathy_val.json", split="val")


# --------------------------------------------------------------------------------------------------------- VQA


def test_vqa_lavis_list_weights(tmp_path):
    data = [{"question_id": 11, "image": "val2014/x.jpg", "question": "how many?",
             "answer": ["2", "2", "two", "2", "3"], "dataset": "vqa"},
            {"question_id": 12, "image": "val2014/y.jpg", "question": "is it?"}]
    (tmp_path / "vqa_train.json").write_text(json.dumps(data))
    ds = open_dataset(tmp_path / "vqa_train.json", image_root="/v")
    assert ds[0] == {"id": "11", "image": "/v/val2014/x.jpg", "question": "how many?", "answers": ["2", "two", "3"],
                     "answer_weights": [0.6, 0.2, 0.2], "question_id": 11, "dataset": "vqa"}
    assert ds[1]["answers"] == [] and ds[1]["answer_weights"] == []  # a test question: no answers


def test_vqav2_official_pair(tmp_path):
    qs = {"data_subtype": "val2014", "questions": [
        {"image_id": 42, "question": "what is it?", "question_id": 420},
        {"image_id": 43, "question": "", "question_id": 430}]}
    given = [{"answer": a, "answer_id": i} for i, a in enumerate(["cat"] * 8 + ["dog"] * 2)]
    anns = {"annotations": [{"question_id": 420, "image_id": 42, "multiple_choice_answer": "cat", "answers": given}]}
    qpath = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    qpath.write_text(json.dumps(qs))
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(json.dumps(anns))
    (tmp_path / "coco" / "val2014").mkdir(parents=True)
    ds = open_dataset(qpath, format="vqa", image_root=tmp_path / "coco")
    assert len(ds) == 1 and len(ds.rejects) == 1  # the empty question
    assert ds[0] == {"id": "420", "image": str(tmp_path / "coco" / "val2014" / "COCO_val2014_000000000042.jpg"),
                     "question": "what is it?", "answers": ["cat", "dog"], "answer_weights": [0.8, 0.2], "image_id": 42}


# ------------------------------------------------------------------------------------------ formats and errors


def test_format_errors_say_what_to_do(tmp_path, images):
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(ClipBlipError) as e:
        open_dataset(tmp_path / "x.parquet")
    assert all(f in str(e.value) for f in FORMATS)
    with pytest.raises(ClipBlipError, match="unknown dataset format"):
        open_dataset(images, format="arrow")
    with pytest.raises(ClipBlipError, match="no such file"):
        open_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "d.jsonl").write_text("")
    with pytest.raises(ClipBlipError, match="no splits"):
        open_dataset(tmp_path / "d.jsonl", split="train")
    with pytest.raises(ClipBlipError, match="DistributedSampler"):
        open_dataset(tmp_path / "d.jsonl", rank=1, world_size=2)
    (tmp_path / "bad.json").write_text('{"images": [')
    with pytest.raises(ClipBlipError, match="not valid JSON"):
        open_dataset(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"foo": 1}')
    with pytest.raises(ClipBlipError, match="layout"):
        open_dataset(tmp_path / "other.json")


# ------------------------------------------------------------------------------------------- decode, rejects


def test_decode_good_corrupt_and_missing(images, tmp_path):
    good = {"id": "r", "image": str(images / "red.png"), "caption": "red"}
    out = decode(good)
    assert out["image"].mode == "RGB" and out["image"].size == (12, 10) and out["caption"] == "red"
    assert good["image"] == str(images / "red.png")  # the input record is not changed
    with Rejects(tmp_path / "rejects.jsonl") as rejects:
        assert decode({"id": "b", "image": str(images / "broken.jpg")}, rejects) is None
        assert decode({"id": "m", "image": str(images / "missing.jpg")}, rejects) is None
        assert decode({"id": "x", "image": b"\x00\x01"}, rejects) is None
        assert decode({"id": "n"}, rejects) is None
    rows = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["b", "m", "x", "n"] and len(rejects) == 4
    assert rows[0]["image"] == str(images / "broken.jpg") and "corrupt" in rows[0]["reason"]
    assert "no such file" in rows[1]["reason"] and rows[2]["image"] == "<2 bytes>" and rows[3]["image"] is None


def test_rejects_file_count_summary_and_truncate(tmp_path):
    path = tmp_path / "r" / "rejects.jsonl"
    with Rejects(path, keep=2) as r:
        r.add("a", "bad one", image="a.jpg")
        mark = r.offset()
        r.add("b", "bad two")
        r.add("c", "bad three é")
        assert len(r) == 3 and [i for i, _ in r.items] == ["a", "b"]  # memory stays bounded
        assert "3 item(s) rejected" in r.summary() and str(path) in r.summary() and "bad one" in r.summary()
        r.truncate(mark)
        assert len(r) == 1
        r.add("d", "bad four")
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "d"]
    with Rejects(path, append=True) as r:  # continuing a log counts what is there
        assert len(r) == 2 and r.items == [("a", "bad one"), ("d", "bad four")]
    with Rejects(path) as r:  # a fresh log empties the file
        assert len(r) == 0 and path.read_text() == ""
        worker = pickle.loads(pickle.dumps(r))  # a DataLoader worker's copy appends to the same file
        worker.add("w", "in a worker")
        worker.close()
        r.add("m", "in the main process")
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["w", "m"]
    assert Rejects().summary() == "no items rejected"
