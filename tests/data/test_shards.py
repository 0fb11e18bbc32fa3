"""webdataset shards: write -> read equals the input; disjoint rank splits; resume after a kill; `data pack`."""

import io
import json
import tarfile

import pytest
import webdataset as wds
from PIL import Image

from clipblip.cli import parser
from clipblip.data.readers import open_dataset
from clipblip.data.rejects import Rejects
from clipblip.data.shards import MANIFEST, ShardDataset, list_shards, read_manifest, write_shards
from clipblip.errors import ClipBlipError

FORMATS = ["png", "jpg", "webp", "gif", "png", "jpg", "png", "jpg"]  # the GIF is stored re-encoded as PNG


@pytest.fixture
def source(tmp_path):
    """data.jsonl: 8 good images of mixed formats (captions, extras, one VQA record) + a corrupt and a missing one."""
    d = tmp_path / "src"
    d.mkdir()
    lines = []
    for i, fmt in enumerate(FORMATS):
        Image.new("RGB", (10 + i, 12), (30 * i, 255 - 30 * i, 7)).save(d / f"im{i}.{fmt}")
        lines.append({"id": f"item.{i}", "image": f"im{i}.{fmt}", "caption": f"picture {i}", "labels": [i]})
        if i == 3:
            lines.append({"id": "broken", "image": "broken.jpg", "caption": "corrupt"})
        if i == 5:
            lines.append({"id": "gone", "image": "missing.png", "caption": "missing"})
    lines[1] = {"id": "q1", "image": "im1.jpg", "question": "what?", "answers": ["x", "x", "y"]}
    lines[2]["captions"] = ["picture 2", "another"]
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 corrupt jpeg")
    (d / "data.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return d / "data.jsonl"


def _records(source):
    return [r for r in open_dataset(source) if r["id"] not in ("broken", "gone")]


def _read_all(path, **kw):
    return list(ShardDataset(path, **kw))


def test_write_then_read_equals_input(source, tmp_path):
    out = tmp_path / "shards"
    rejects = Rejects(tmp_path / "rejects.jsonl")
    paths = write_shards(open_dataset(source), out, shard_size=3, rejects=rejects, progress=False)
    assert [p.name for p in paths] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    assert len(rejects) == 2 and {i for i, _ in rejects.items} == {"broken", "gone"}
    got = _read_all(out)
    want = _records(source)
    assert len(got) == len(want) == 8
    for g, w, fmt in zip(got, want, FORMATS):
        assert isinstance(g["image"], bytes)
        if fmt != "gif":  # the original bytes, exactly
            assert g["image"] == open(w["image"], "rb").read()
        else:
            assert g["image"].startswith(b"\x89PNG")
            assert Image.open(io.BytesIO(g["image"])).convert("RGB").tobytes() == \
                Image.open(w["image"]).convert("RGB").tobytes()
        assert {k: v for k, v in g.items() if k != "image"} == {k: v for k, v in w.items() if k != "image"}
    names = tarfile.open(paths[0]).getnames()
    assert names == ["000000000.json", "000000000.png", "000000001.jpg", "000000001.json", "000000002.json",
                     "000000002.webp"]  # keys are sample numbers: ids like "item.0" live in the JSON
    m = read_manifest(out)
    assert m["complete"] and [s["samples"] for s in m["shards"]] == [3, 3, 2]
    assert [s["inputs_end"] for s in m["shards"]] == [3, 7, 10]  # filled to size past the rejects


def test_ranks_read_disjoint_shards_covering_everything(source, tmp_path):
    out = tmp_path / "shards"
    write_shards(open_dataset(source), out, shard_size=2, progress=False)  # 4 shards
    everything = [r["id"] for r in _read_all(out)]
    parts = [[r["id"] for r in _read_all(out, rank=k, world_size=3)] for k in range(3)]
    assert [len(p) for p in parts] == [4, 2, 2]  # shards 0 and 3 go to rank 0
    assert sorted(sum(parts, [])) == sorted(everything) and len(set(everything)) == 8
    assert ShardDataset(out, rank=1, world_size=3).shards == [str(out / "shard-000001.tar")]
    assert len(ShardDataset(out, rank=0, world_size=3)) == 4
    with pytest.raises(ClipBlipError, match="smaller --shard-size"):
        ShardDataset(out, rank=0, world_size=5)


def test_start_resumes_a_stream_with_and_without_manifest(source, tmp_path):
    out = tmp_path / "shards"
    write_shards(open_dataset(source), out, shard_size=3, progress=False)
    ids = [r["id"] for r in _read_all(out)]
    for start in (0, 2, 3, 7, 8, 20):
        assert [r["id"] for r in _read_all(out, start=start)] == ids[start:]
        pattern = str(out / "shard-{000000..000002}.tar")  # no manifest: skipped sample by sample
        assert [r["id"] for r in _read_all(pattern, start=start)] == ids[start:]
    assert len(ShardDataset(out, start=3)) == 5
    with pytest.raises(TypeError, match="unknown"):
        len(ShardDataset(pattern))
    assert [r["id"] for r in _read_all(out / "shard-000001.tar")] == ids[3:6]
    assert list_shards(pattern)[1] is None and list_shards(out)[1] == [3, 3, 2]


def test_open_dataset_reads_shards(source, tmp_path):
    out = tmp_path / "shards"
    write_shards(open_dataset(source), out, shard_size=3, progress=False)
    ds = open_dataset(out, rank=1, world_size=2)
    assert isinstance(ds, ShardDataset) and [r["id"] for r in ds] == ["item.3", "item.4", "item.5"]
    assert open_dataset(str(out / "shard-{000000..000001}.tar")).shards[1].endswith("shard-000001.tar")


def test_reader_skips_bad_samples_and_reads_txt_captions(tmp_path):
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    with wds.TarWriter(str(tmp_path / "hand-0.tar"), encoder=False) as w:
        w.write({"__key__": "a", "png": png.getvalue(), "txt": b"a caption from txt\n"})
        w.write({"__key__": "b", "json": b'{"caption": "no image"}'})
        w.write({"__key__": "c", "png": png.getvalue(), "json": b"{broken"})
        w.write({"__key__": "d", "png": png.getvalue(), "json": b'{"labels": [1]}'})
        w.write({"__key__": "e", "jpeg": b"...", "json": b'{"id": "E", "question": "q?", "answers": []}'})
    good = open(tmp_path / "hand-0.tar", "rb").read()
    (tmp_path / "hand-1.tar").write_bytes(good[: len(good) // 2 + 100])  # a truncated copy
    ds = ShardDataset(tmp_path)
    got = list(ds)
    assert [(r["id"], r.get("caption") or r.get("question")) for r in got][:2] == [("a", "a caption from txt"),
                                                                                  ("E", "q?")]
    reasons = " | ".join(r for _, r in ds.rejects.items)
    assert "no image" in reasons and "unreadable .json" in reasons and "no caption" in reasons
    assert len(got) >= 2 and len(ds.rejects) >= 3  # the truncated shard adds rejects; it never raises


def test_resume_after_a_kill_writes_what_an_uninterrupted_run_would(source, tmp_path):
    full = tmp_path / "full"
    write_shards(open_dataset(source), full, shard_size=2, progress=False)
    want = {p.name: p.read_bytes() for p in full.glob("*.tar")}

    def killed_after(n):
        for i, rec in enumerate(open_dataset(source)):
            if i == n:
                raise KeyboardInterrupt
            yield rec

    out = tmp_path / "out"
    with Rejects(out / "rejects.jsonl") as rejects, pytest.raises(KeyboardInterrupt):
        write_shards(killed_after(6), out, shard_size=2, rejects=rejects, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "rejects.jsonl", "shard-000000.tar",
                                                     "shard-000001.tar"]  # no half shard left behind
    # a hard kill: a leftover temp file, and a manifest that only got as far as the first shard
    (out / ".shard-000002.tar.99999.tmp").write_bytes(b"half a shard")  # files.temp_name of another process
    m = read_manifest(out)
    m["shards"] = m["shards"][:1]
    (out / MANIFEST).write_text(json.dumps(m))
    with Rejects(out / "rejects.jsonl", append=True) as rejects:
        paths = write_shards(open_dataset(source), out, shard_size=2, rejects=rejects, progress=False)
        assert len(rejects) == 2  # "broken" logged once, though both runs passed it
    assert {p.name: p.read_bytes() for p in paths} == want
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    ids = [r["id"] for r in _read_all(out)]
    assert ids == [r["id"] for r in _records(source)]  # nothing lost, nothing twice
    lines = (out / "rejects.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == ["broken", "gone"]


def test_resume_refuses_another_job(source, tmp_path):
    out = tmp_path / "out"
    write_shards(open_dataset(source), out, shard_size=2, progress=False, meta={"source": "a"})
    with pytest.raises(ClipBlipError, match="same options"):
        write_shards(open_dataset(source), out, shard_size=3, progress=False, meta={"source": "a"})
    with pytest.raises(ClipBlipError, match="same options"):
        write_shards(open_dataset(source), out, shard_size=2, progress=False, meta={"source": "b"})
    (out / MANIFEST).unlink()
    with pytest.raises(ClipBlipError, match="empty directory"):
        write_shards(open_dataset(source), out, shard_size=2, progress=False)


def _pack(argv) -> int:
    """`clipblip data pack ARGV`, its errors raised rather than printed."""
    args = parser().parse_args(["data", "pack", *argv])
    return args.run(args)


def test_pack_cli_end_to_end(source, tmp_path, capsys):
    out = tmp_path / "packed"
    assert _pack(([str(source), "--out", str(out), "--shard-size", "3"])) == 3
    stdout, stderr = capsys.readouterr()
    assert "3 shard(s) written, 0 already complete" in stdout and "8 samples" in stdout
    assert "2 input(s) skipped" in stderr and "broken" in stderr
    assert len((out / "rejects.jsonl").read_text().splitlines()) == 2
    assert _pack(([str(source), "--out", str(out), "--shard-size", "3", "--json"])) == 3
    result = json.loads(capsys.readouterr().out)
    assert (result["written"], result["skipped_complete"], result["samples"], result["rejected"]) == (0, 3, 8, 2)
    assert len((out / "rejects.jsonl").read_text().splitlines()) == 2  # a re-run lists nothing twice
    assert [r["id"] for r in ShardDataset(out)] == [r["id"] for r in _records(source)]
    clean = tmp_path / "clean.jsonl"  # elsewhere: paths resolved against --image-root
    clean.write_text("".join(line + "\n" for line in source.read_text().splitlines()
                             if '"broken"' not in line and '"gone"' not in line))
    argv = [str(clean), "--out", str(tmp_path / "c"), "--image-root", str(source.parent), "--rejects",
            str(tmp_path / "r.jsonl")]
    assert _pack((argv)) == 0 and (tmp_path / "r.jsonl").read_text() == ""
    with pytest.raises(ClipBlipError, match="no such file"):
        _pack(([str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x")]))


def test_main_data_pack(source, tmp_path, capsys):
    from clipblip.cli import main

    code = main(["data", "pack", str(source), "--out", str(tmp_path / "o"), "--shard-size", "4"])
    assert code == 3 and "2 shard(s) written" in capsys.readouterr().out
