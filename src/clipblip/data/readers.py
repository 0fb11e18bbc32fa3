"""Dataset readers: CSV/TSV, JSONL, an image folder with sidecar captions, COCO captions, VQA, webdataset shards.

Every reader yields plain dicts, the contract with the training loop:

- captions: {"id": str, "image": str | bytes, "caption": str, ...}. Several captions per image: "captions"
  (list[str]) and "caption" = the first. Extra fields of the source (Shapes' "labels", "vqa", "scene"...) pass
  through unchanged.
- VQA: {"id", "image", "question": str, "answers": list[str], "answer_weights": list[float]}: repeated answers
  are merged, weight = count / total (as BLIP's VQA trains); a question without answers has two empty lists.

"image" is an absolute path (relative ones are resolved against `image_root`, else the dataset file's folder;
URLs are kept as given) or, from shards, the encoded bytes. Readers never decode: `decode(record, rejects)`
does, and turns a bad image into a logged reject instead of an exception; it reads a path only if it is a regular
file within the cap on one item (`files.item_limit()`, $CLIPBLIP_MAX_ITEM_MB, 64 MB by default).

File formats give a map-style `Dataset` (len, [i], a deterministic order; use a DistributedSampler for ranks).
webdataset shards give an iterable `shards.ShardDataset` (ranks read disjoint shards; see there). Both carry
`.rejects`: the items skipped while reading the index (a bad JSONL line, an image without a caption).
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from pathlib import Path

from ..errors import ClipBlipError
from ..files import read_item
from ..image import load_image
from ..jobs import find_images
from .rejects import Rejects

FORMATS = ("csv", "tsv", "jsonl", "folder", "coco", "vqa", "webdataset")
IMAGE_COLUMNS = ("image", "filepath", "file", "path", "url")
CAPTION_COLUMNS = ("caption", "title", "text")
KARPATHY_SPLITS = {"train": ("train", "restval"), "restval": ("restval",), "val": ("val",), "test": ("test",)}
_ID_KEYS = ("id", "question_id", "image_id", "key")

log = logging.getLogger(__name__)


class Dataset:
    """A map-style dataset of records (plain dicts; `[i]` returns a copy), with the index's `rejects`."""

    def __init__(self, records: list[dict], rejects: Rejects, source: str):
        self.records, self.rejects, self.source = records, rejects, source

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        return dict(self.records[i])

    def __iter__(self):
        return (dict(r) for r in self.records)

    def __repr__(self) -> str:
        return f"Dataset({self.source!r}: {len(self)} records, {len(self.rejects)} rejected)"


def decode(record: dict, rejects: Rejects | None = None) -> dict | None:
    """A copy of `record` with "image" as an RGB PIL image, or None when it cannot be read (logged to
    `rejects` with the reason; without `rejects`, to the `clipblip.data.readers` logger)."""
    try:
        return {**record, "image": load_image(_image_data(record["image"]))}
    except (ClipBlipError, KeyError) as e:
        reason = str(e) if isinstance(e, ClipBlipError) else "the record has no image"
        if rejects is None:
            log.warning("skipped %s: %s", record.get("id"), reason)
        else:
            rejects.add(record.get("id"), reason, image=record.get("image"))
        return None


def _image_data(image):
    """A path's bytes, read through `files.read_item` (a regular file, at most `item_limit()` bytes: a record may
    name any file, a FIFO or /dev/zero too); bytes and PIL images as they are."""
    return read_item(image, "image") if isinstance(image, (str, os.PathLike)) else image


def open_dataset(source, *, format: str | None = None, image_root=None, split: str | None = None,
                 columns: tuple[str, str] | None = None, annotations=None, rank: int = 0, world_size: int = 1,
                 start: int = 0, rejects: Rejects | None = None):
    """Open any supported dataset; `format` is inferred from the path (and a .json file's layout) when None.

    image_root: where relative image paths start (default: the dataset file's folder). split: train/val/test
    of COCO's Karpathy dataset_coco.json ("train" includes "restval"). columns: the (image, caption) columns
    of a CSV. annotations: the VQAv2 annotations file (default: found beside the questions file).
    rank/world_size/start: webdataset shards only (disjoint shards per rank, skip `start` samples on resume).
    rejects: where index-time rejects go (default: a new in-memory `Rejects`); also `.rejects` of the result.
    """
    fmt = (format or infer_format(source)).lower()
    if fmt not in FORMATS and fmt != "json":  # "json": coco or vqa, told apart by the file's layout
        raise ClipBlipError(f"unknown dataset format {fmt!r}; supported: {', '.join(FORMATS)}")
    rejects = rejects if rejects is not None else Rejects()
    if fmt == "webdataset":
        from .shards import ShardDataset

        if (image_root, split, columns, annotations) != (None, None, None, None):
            raise ClipBlipError("shards hold their images and fields: image_root, split, columns and annotations "
                                "apply to the source they were packed from; leave them out when reading shards")
        return ShardDataset(source, rank=rank, world_size=world_size, start=start, rejects=rejects)
    if (rank, world_size, start) != (0, 1, 0):
        raise ClipBlipError(f"rank/world_size/start apply to webdataset shards; a {fmt} dataset is map-style: "
                            "split it across ranks with torch's DistributedSampler")
    path = Path(source)
    if not path.exists():
        raise ClipBlipError(f"{path}: no such file or directory")
    if split is not None and fmt not in ("coco", "json"):
        raise ClipBlipError(f"split={split!r} selects part of COCO's Karpathy dataset_coco.json; "
                            f"a {fmt} dataset has no splits: open the file of the split you want")
    if columns is not None and fmt not in ("csv", "tsv"):
        raise ClipBlipError("columns=(image, caption) picks CSV/TSV columns; this is a " + fmt + " dataset")
    if path.is_dir() != (fmt == "folder"):
        wanted = "a folder of images with .txt captions" if fmt == "folder" else "one file"
        raise ClipBlipError(f"{path} is {'a folder' if path.is_dir() else 'a file'}, but a {fmt} dataset is "
                            f"{wanted}; check the path or pass another format")
    root = Path(image_root if image_root is not None else (path if path.is_dir() else path.parent)).absolute()
    if fmt in ("csv", "tsv"):
        records = _read_csv(path, root, columns, rejects, "\t" if fmt == "tsv" else None)
    elif fmt == "jsonl":
        records = _read_jsonl(path, root, rejects)
    elif fmt == "folder":
        records = _read_folder(path, rejects)
    else:
        records = _read_json(path, fmt, root, split, annotations, image_root is not None, rejects)
    return Dataset(records, rejects, str(path))


def infer_format(source) -> str:
    s = os.fspath(source)
    path = Path(s)
    if ("{" in s and ".." in s) or path.suffix == ".tar":
        return "webdataset"
    if path.is_dir():
        if (path / "manifest.json").is_file() or any(path.glob("*.tar")):
            return "webdataset"
        return "folder"
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".json":
        return "json"
    raise ClipBlipError(f"cannot tell the dataset format of {s!r} from its name; pass format= (--format) "
                        f"as one of {', '.join(FORMATS)}")


# --------------------------------------------------------------------------------------------------- records


def _resolve(image: str, root: Path) -> str:
    if "://" in image:
        return image
    p = Path(image).expanduser()
    return os.path.normpath(p if p.is_absolute() else root / p)


def _caption_record(rid, image, captions, extra: dict) -> dict | str:
    """The record, or the reason it cannot be one."""
    captions = [captions] if isinstance(captions, str) else captions
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        return "the caption is not a string (or a list of strings)"
    # empty ones are not dropped: per-caption extras (Shapes' "negatives", "noise") must stay aligned
    captions = [c.strip() for c in captions]
    if not captions or not all(captions):
        return "empty caption"
    rec = {"id": str(rid), "image": image, "caption": captions[0]}
    if len(captions) > 1:
        rec["captions"] = captions
    return {**rec, **extra}


def _vqa_record(rid, image, question, answers, extra: dict) -> dict | str:
    if not isinstance(question, str) or not question.strip():
        return "empty question"
    answers = [answers] if isinstance(answers, str) else (answers or [])
    # the official VQAv2 files give {"answer": ...} dicts; BLIP's lists give plain strings
    answers = [a["answer"] if isinstance(a, dict) else a for a in answers]
    if not all(isinstance(a, str) for a in answers):
        return "an answer is not a string"
    counts = Counter(answers)  # first-appearance order
    weights = [n / len(answers) for n in counts.values()]
    return {"id": str(rid), "image": image, "question": question, "answers": list(counts),
            "answer_weights": weights, **extra}


def _from_object(obj, rid, root: Path) -> dict | str:
    """A JSONL or JSON-list object -> a caption or VQA record, other keys passed through."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    if not isinstance(obj.get("image"), str) or not obj["image"]:
        return "no \"image\" (a path)"
    rid = next((obj[k] for k in _ID_KEYS if obj.get(k) is not None), rid)
    image = _resolve(obj["image"], root)
    if "question" in obj:
        extra = {k: v for k, v in obj.items() if k not in ("id", "image", "question", "answers", "answer")}
        return _vqa_record(rid, image, obj["question"], obj.get("answers", obj.get("answer")), extra)
    if "caption" not in obj and "captions" not in obj:
        return "no \"caption\", \"captions\" or \"question\""
    extra = {k: v for k, v in obj.items() if k not in ("id", "image", "caption", "captions")}
    return _caption_record(rid, image, obj.get("captions", obj.get("caption")), extra)


def _keep(records: list, rec, item, rejects: Rejects, image=None) -> None:
    if isinstance(rec, dict):
        records.append(rec)
    else:
        rejects.add(item, rec, image=image)


# --------------------------------------------------------------------------------------------------- formats


def _read_csv(path: Path, root: Path, columns, rejects: Rejects, delimiter: str | None) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        if delimiter is None:
            head = f.read(65536)
            f.seek(0)
            try:
                delimiter = csv.Sniffer().sniff(head, delimiters=",\t;|").delimiter
            except csv.Error:  # one column, or too little text to tell: the CSV default
                delimiter = ","
        reader = csv.DictReader(f, delimiter=delimiter)
        image_col, caption_col = _csv_columns(path, reader.fieldnames or [], columns)
        id_col = next((c for c in reader.fieldnames if c.lower() in ("id", "key")), None)
        records = []
        for i, row in enumerate(reader):
            line = reader.line_num
            image, caption = (row.get(image_col) or "").strip(), row.get(caption_col) or ""
            rid = row[id_col] if id_col and row.get(id_col) else str(i)
            if not image:
                rejects.add(f"{path.name}:{line}", f"line {line}: empty {image_col!r}")
                continue
            extra = {k: v for k, v in row.items() if k not in (image_col, caption_col, id_col) and k is not None}
            rec = _caption_record(rid, _resolve(image, root), caption, extra)
            _keep(records, rec, f"{path.name}:{line}", rejects, image)
    return records


def _csv_columns(path: Path, header: list[str], columns) -> tuple[str, str]:
    if columns is not None:
        missing = [c for c in columns if c not in header]
        if len(columns) != 2 or missing:
            raise ClipBlipError(f"{path}: columns must name two header columns (image, caption); "
                                f"missing {missing}; the header has {header}")
        return tuple(columns)
    lower = {h.lower().strip(): h for h in header}
    image = next((lower[c] for c in IMAGE_COLUMNS if c in lower), None)
    caption = next((lower[c] for c in CAPTION_COLUMNS if c in lower), None)
    if image is None or caption is None:
        raise ClipBlipError(f"{path}: the header {header} needs an image column ({', '.join(IMAGE_COLUMNS)}) and "
                            f"a caption column ({', '.join(CAPTION_COLUMNS)}); or pick them with "
                            "columns=(image, caption) / --columns IMAGE CAPTION")
    return image, caption


def _read_jsonl(path: Path, root: Path, rejects: Rejects) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                rejects.add(f"{path.name}:{n}", f"line {n}: invalid JSON ({e.msg} at column {e.colno})")
                continue
            rec = _from_object(obj, str(n - 1), root)
            if not isinstance(rec, dict):
                rec = f"line {n}: {rec}"
            _keep(records, rec, f"{path.name}:{n}", rejects, obj.get("image") if isinstance(obj, dict) else None)
    return records


def _read_folder(path: Path, rejects: Rejects) -> list[dict]:
    records = []
    for image in find_images(path.absolute()):
        rid = image.relative_to(path.absolute()).with_suffix("").as_posix()
        sidecar = image.with_suffix(".txt")
        if not sidecar.is_file():
            rejects.add(rid, f"no caption: {sidecar.name} is missing", image=image)
            continue
        try:
            text = read_item(sidecar, "caption").decode("utf-8", "replace")
        except ClipBlipError as e:
            rejects.add(rid, str(e), image=image)
            continue
        lines = [t for t in text.splitlines() if t.strip()]
        _keep(records, _caption_record(rid, str(image), lines, {}), rid, rejects, image)
    return records


def _read_json(path: Path, fmt: str, root: Path, split, annotations, root_given: bool, rejects) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ClipBlipError(f"{path}: not valid JSON ({e}); a file of one object per line must end in .jsonl")
    if isinstance(data, dict) and "images" in data and fmt in ("json", "coco"):
        return _read_karpathy(data, root, split, path, rejects)
    if split is not None:
        raise ClipBlipError(f"{path} holds one split already: split= picks part of the Karpathy dataset_coco.json")
    if isinstance(data, dict) and "questions" in data and fmt in ("json", "vqa"):
        return _read_vqav2(data, path, annotations, root if root_given else path.parent, rejects)
    if isinstance(data, list) and fmt in ("json", "coco", "vqa"):
        return _read_json_list(data, path, root, rejects)
    raise ClipBlipError(f"{path}: not a layout the {fmt} reader knows: expected COCO Karpathy "
                        "{\"images\": [...]}, a VQAv2 questions file {\"questions\": [...]}, or a list of "
                        "{\"image\", \"caption\"} / {\"image\", \"question\", \"answer\"} objects")


def _read_karpathy(data: dict, root: Path, split, path: Path, rejects: Rejects) -> list[dict]:
    if split is not None and split not in KARPATHY_SPLITS:
        raise ClipBlipError(f"unknown split {split!r}; Karpathy's splits are {', '.join(KARPATHY_SPLITS)}")
    wanted = KARPATHY_SPLITS.get(split)
    records = []
    for i, img in enumerate(data["images"]):
        if wanted is not None and img.get("split") not in wanted:
            continue
        rid = img.get("cocoid", img.get("imgid", i))
        if "filename" not in img:
            rejects.add(rid, f"{path.name}: image {i} has no \"filename\"")
            continue
        image = _resolve(os.path.join(img.get("filepath", ""), img["filename"]), root)
        captions = [s.get("raw", "") for s in img.get("sentences", []) if isinstance(s, dict)]
        _keep(records, _caption_record(rid, image, captions, {"split": img.get("split")}), rid, rejects, image)
    return records


def _read_json_list(data: list, path: Path, root: Path, rejects: Rejects) -> list[dict]:
    """BLIP/LAVIS lists: captions ({"image", "caption": str | list, "image_id"}) or VQA ({"question_id",
    "image", "question", "answer": [...]}). One caption per entry (the train files) gives one record per
    entry, numbered per image ("<image_id>#<n>"); a list of captions (val/test) gives one record per image."""
    records, seen = [], Counter()
    for i, obj in enumerate(data):
        rec = _from_object(obj, str(i), root)
        shared_id = isinstance(obj, dict) and "image_id" in obj and not {"id", "question_id"} & obj.keys()
        if isinstance(rec, dict) and shared_id and isinstance(obj.get("caption"), str):
            base = rec["id"]
            rec["id"] = f"{base}#{seen[base]}"
            seen[base] += 1
        _keep(records, rec, f"{path.name}[{i}]", rejects, obj.get("image") if isinstance(obj, dict) else None)
    return records


def _read_vqav2(questions: dict, path: Path, annotations, root: Path, rejects: Rejects) -> list[dict]:
    """The official pair: v2_OpenEnded_mscoco_<subtype>_questions.json + v2_mscoco_<subtype>_annotations.json
    (test sets have none: no answers); images COCO_<subtype>_<12-digit id>.jpg under root (or root/<subtype>)."""
    ann_path = Path(annotations) if annotations else path.with_name(
        path.name.replace("_OpenEnded", "").replace("_questions", "_annotations"))
    answers = {}
    if ann_path.is_file():
        answers = {a["question_id"]: a.get("answers", []) for a in json.loads(ann_path.read_text())["annotations"]}
    elif annotations:
        raise ClipBlipError(f"{ann_path}: no such annotations file")
    subtype = questions.get("data_subtype", "")
    folder = root / subtype if subtype and (root / subtype).is_dir() else root
    records = []
    for q in questions["questions"]:
        image = str(folder / f"COCO_{subtype}_{int(q['image_id']):012d}.jpg")
        rec = _vqa_record(q["question_id"], image, q.get("question"), answers.get(q["question_id"], []),
                          {"image_id": q["image_id"]})
        _keep(records, rec, q["question_id"], rejects, image)
    return records

