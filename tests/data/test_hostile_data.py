"""Hostile datasets: files a record or a shard names, and shards built to blow up. Every bad item is skipped and
listed with a reason; nothing is read from a file the data did not own, nor without a bound. All inputs are made
here, at test time."""

import io
import json
import os
import tarfile
import threading

import numpy as np
import pytest
from PIL import Image

from clipblip.data.pack import pack
from clipblip.data.readers import decode, open_dataset
from clipblip.data.rejects import Rejects
from clipblip.data.shards import ShardDataset
from clipblip.files import ITEM_LIMIT_ENV
from clipblip.index.sources import image_items
from clipblip.jobs import Skipped

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"),
                                reason="needs FIFOs and /dev/zero")


def _png(color, size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _noise_png(path, side: int = 200) -> None:
    """A valid PNG that does not compress: about 3 * side**2 bytes."""
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)


def _cap(monkeypatch, nbytes: int) -> int:
    monkeypatch.setenv(ITEM_LIMIT_ENV, str(nbytes / (1 << 20)))
    return nbytes


def _tar(path, members, mode="w") -> None:
    """A tar of (name, bytes) members, in order."""
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _unblocking(fn, fifo):
    """fn() in a thread; if it is still blocked on `fifo` after a minute, open the FIFO's write end so the thread
    ends, and fail: a reader that opens a FIFO waits for a writer forever."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # re-raised in the test's thread
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    if t.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # a writer that closes at once: the reader sees EOF
        t.join(60)
        pytest.fail(f"still waiting on the FIFO {fifo} after a minute: it was opened")
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.fixture
def outside(tmp_path):
    """A valid image outside the data folder, which no record of the data owns."""
    (tmp_path / "private").mkdir()
    secret = tmp_path / "private" / "secret.png"
    secret.write_bytes(_png((255, 0, 0)))
    return secret


# ------------------------------------------------------------------------------------------------------ shards


def test_a_shards_json_cannot_replace_its_image_with_a_file(tmp_path, outside):
    blue = _png((0, 0, 255))
    data = tmp_path / "data"
    data.mkdir()
    fields = {"id": "x", "caption": "a blue square", "image": str(outside)}
    _tar(data / "shard-000000.tar", [("000000000.png", blue), ("000000000.json", json.dumps(fields).encode())])
    [record] = list(ShardDataset(data))
    assert record["image"] == blue and record["caption"] == "a blue square" and record["id"] == "x"
    assert decode(record)["image"].getpixel((0, 0)) == (0, 0, 255)
    skipped = Skipped()
    [item] = image_items(data, skipped=skipped)
    assert item.path is None and item.content() == blue and outside.read_bytes() != blue  # what index build embeds


def test_a_gzip_bomb_named_tar_is_refused_unread(tmp_path, monkeypatch):
    cap = _cap(monkeypatch, 1 << 20)
    data = tmp_path / "data"
    data.mkdir()
    caption = json.dumps({"caption": "zeros"}).encode()
    _tar(data / "bomb-000000.tar", [("000000000.png", _png((1, 2, 3))), ("000000000.json", caption),
                                    ("000000001.png", bytes(8 * cap)), ("000000001.json", caption)], mode="w:gz")
    assert (data / "bomb-000000.tar").stat().st_size < cap / 8  # small on disk, 8 caps once inflated
    ds = ShardDataset(data)
    assert list(ds) == []
    [(item, reason)] = ds.rejects.items
    assert item == "bomb-000000.tar" and "gzip-compressed" in reason and "decompress" in reason


def test_members_over_the_cap_or_given_twice_are_skipped_and_listed(tmp_path, monkeypatch):
    cap = _cap(monkeypatch, 64 << 10)
    data = tmp_path / "data"
    data.mkdir()

    def sample(key, image, *extra):
        return [(f"{key}.png", image), (f"{key}.json", json.dumps({"caption": key}).encode()), *extra]

    _tar(data / "s-000000.tar", [*sample("a", _png((9, 9, 9))),
                                 *sample("big", bytes(cap + 1)),
                                 *sample("twice", _png((1, 1, 1)), ("twice.json", b'{"caption": "other"}')),
                                 *sample("marker", _png((2, 2, 2)), ("marker.__refused__", b"not a reason")),
                                 *sample("z", _png((3, 3, 3)))])
    ds = ShardDataset(data)
    got = list(ds)
    assert [r["id"] for r in got] == ["a", "marker", "z"] and max(len(r["image"]) for r in got) <= cap
    reasons = dict(ds.rejects.items)
    assert "over the cap" in reasons["s-000000.tar:big"] and "two .json" in reasons["s-000000.tar:twice"]


# ------------------------------------------------------------------------------------------- records that name files


@needs_fifo
def test_decode_skips_devices_fifos_folders_and_oversized_files_with_a_reason(tmp_path, monkeypatch):
    _cap(monkeypatch, 64 << 10)
    (tmp_path / "ok.png").write_bytes(_png((0, 255, 0)))
    _noise_png(tmp_path / "huge.png")
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "folder.jpg").mkdir()
    rows = ["image,caption", "ok.png,fine", "/dev/zero,zeros", "/dev/urandom,noise", "pipe.jpg,a fifo",
            "folder.jpg,a folder", "huge.png,too big"]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    ds = open_dataset(tmp_path / "data.csv")
    rejects = Rejects()
    decoded = _unblocking(lambda: [decode(r, rejects) for r in ds], tmp_path / "pipe.jpg")
    assert [d is not None for d in decoded] == [True, False, False, False, False, False]
    reasons = [reason for _, reason in rejects.items]
    assert ["character device" in r for r in reasons[:2]] == [True, True] and "FIFO" in reasons[2]
    assert "directory" in reasons[3] and "cap" in reasons[4] and ITEM_LIMIT_ENV in reasons[4]


@needs_fifo
def test_pack_skips_and_lists_what_it_cannot_read_boundedly(tmp_path, monkeypatch, outside):
    _cap(monkeypatch, 64 << 10)
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.png").write_bytes(_png((0, 255, 0)))
    _noise_png(src / "huge.png")
    os.mkfifo(src / "pipe.png")
    lines = [{"id": "ok", "image": "ok.png", "caption": "fine"}, {"id": "zero", "image": "/dev/zero", "caption": "z"},
             {"id": "pipe", "image": "pipe.png", "caption": "p"}, {"id": "huge", "image": "huge.png", "caption": "h"}]
    (src / "data.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    result, rejects = _unblocking(lambda: pack(str(src / "data.jsonl"), tmp_path / "out"), src / "pipe.png")
    assert (result["samples"], result["rejected"]) == (1, 3)
    logged = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert {r["id"]: r["image"] for r in logged} == {"zero": "/dev/zero", "pipe": str(src / "pipe.png"),
                                                     "huge": str(src / "huge.png")}
    [record] = list(ShardDataset(tmp_path / "out"))
    assert record["id"] == "ok" and record["image"] == (src / "ok.png").read_bytes()


@needs_fifo
def test_index_sources_read_only_bounded_regular_files(tmp_path, monkeypatch):
    _cap(monkeypatch, 64 << 10)
    (tmp_path / "ok.png").write_bytes(_png((0, 255, 0)))
    _noise_png(tmp_path / "huge.png")
    os.mkfifo(tmp_path / "pipe.png")
    rows = ["image,caption", "ok.png,fine", "huge.png,big", "pipe.png,fifo", "/dev/zero,zero"]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    items = image_items(tmp_path / "data.csv", skipped=Skipped())
    assert items[0].content() == (tmp_path / "ok.png").read_bytes()
    for item in items[1:]:  # index build lists an OSError of content() as a skipped item
        with pytest.raises(OSError, match="cap|FIFO|character device"):
            _unblocking(item.content, tmp_path / "pipe.png")


def test_caption_sidecars_over_the_cap_are_not_read(tmp_path, monkeypatch):
    cap = _cap(monkeypatch, 64 << 10)
    for name, caption in (("small", b"a small caption"), ("large", b"x" * (cap + 1))):
        (tmp_path / f"{name}.png").write_bytes(_png((5, 5, 5)))
        (tmp_path / f"{name}.txt").write_bytes(caption)
    ds = open_dataset(tmp_path, format="folder")
    assert [r["id"] for r in ds] == ["small"] and "cap" in dict(ds.rejects.items)["large"]
    captions = {os.path.basename(it.path): it.caption for it in image_items(tmp_path, skipped=Skipped())}
    assert captions == {"large.png": None, "small.png": "a small caption"}
