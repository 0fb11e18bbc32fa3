"""Hostile files, made at test time (never committed as binaries), and the sweep that runs the CLI over them.

Checkpoints whose pickles would run a command, configs that would build for minutes, images that would take
unbounded memory or time (a 1 x 200,000 PNG, a decompression bomb, /dev/zero, a FIFO that never ends), shards whose
metadata names another file or whose members are gzip bombs. Every payload that could run code would create MARKER.

`python tests/hostile.py ROOT` builds them under ROOT, runs every command that reads files over them in this one
process (each case under an alarm, so a read that blocks ends), and prints one JSON line per case. The test
(tests/cli/test_hostile_files.py) runs it in a subprocess and checks each line; the same output gives the figures
recorded in bench/README.md.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import pickle
import resource
import signal
import struct
import sys
import tarfile
import time
import traceback
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

CASE_SECONDS = 60
MARKER = "PWNED"


class _RunsCommand:
    """Unpickling this runs `touch MARKER`: the payload of every hostile pickle here."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _png(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _thin_png(width: int, height: int) -> bytes:
    """A valid greyscale PNG of zeros: a few hundred bytes for any shape."""
    rows = zlib.compressobj(9)
    data = b"".join(rows.compress(b"\x00" * (width + 1)) for _ in range(height)) + rows.flush()
    return _png(width, height, data)


class _Zeros(io.RawIOBase):
    """`size` zero bytes, read without ever holding them: the body of a bomb."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def _gzip_zeros(path: Path, size: int) -> Path:
    with gzip.open(path, "wb", compresslevel=1) as f:
        src = _Zeros(size)
        while chunk := src.read(1 << 20):
            f.write(chunk)
    return path


def _dataset(work: Path, images: list[str], secret: Path) -> Path:
    """A JSONL dataset over the images, plus records naming the secret through odd fields and a non-image."""
    rows = [{"id": f"r{i}", "image": p, "caption": "a red square."} for i, p in enumerate(images)]
    rows += [{"id": "noimage", "caption": "no image at all"}, {"id": "list", "image": [str(secret)], "caption": "x"},
             {"id": "number", "image": 7, "caption": "x"}]
    path = work / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    return path


def _planted_run(work: Path, marker: Path) -> Path:
    """A training run folder whose newest checkpoint is a pickle that would run a command."""
    run = work / "run"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run / "checkpoints" / "step-99999999.pt").write_bytes(pickle.dumps(_RunsCommand(marker)))
    from clipblip.train.config import PRESETS

    (run / "train_config.json").write_text(json.dumps({**PRESETS["shapes-clip"](), "out": str(run), "steps": 1}))
    return run


def _score_set(work: Path, images: list[str]) -> Path:
    path = work / "score.jsonl"
    path.write_text("".join(json.dumps({"image": i, "prompt": "a red square."}) + "\n" for i in images))
    return path


def _good_png(color=(200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (48, 40), color).save(buf, format="PNG")
    return buf.getvalue()


def images(d: Path) -> dict[str, Path]:
    """One good image and the hostile ones, by name."""
    d.mkdir(parents=True, exist_ok=True)
    made = {
        "good.png": _good_png(),
        "random.png": os.urandom(4096),
        "empty.jpg": b"",
        "truncated.png": _good_png()[:60],
        "tall.png": _thin_png(1, 200_000),
        "wide.png": _thin_png(200_000, 1),
        "bomb.png": _png(60_000, 60_000, zlib.compress(b"\x00" * 1024)),  # 3.6 G pixels declared
    }
    for name, data in made.items():
        (d / name).write_bytes(data)
    _gzip_zeros(d / "gzip.jpg", 50 << 20)
    (d / "zero.png").symlink_to("/dev/zero")
    os.mkfifo(d / "fifo.png")
    return {p.name: p for p in d.iterdir()}


def _torch_zip(obj, path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A torch.save archive of `obj`, with `extra` members added (e.g. constants.pkl: it then looks TorchScript)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w") as dst:
        prefix = src.namelist()[0].split("/")[0]
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        for name, data in (extra or {}).items():
            dst.writestr(f"{prefix}/{name}", data)
    return path


def _config_dir(d: Path, source: Path, edit) -> Path:
    cfg = json.loads((source / "config.json").read_text())
    cfg = edit(cfg)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "model.safetensors").write_bytes((source / "model.safetensors").read_bytes())
    return d


def _set(path: str, value):
    def edit(cfg):
        node = cfg
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
        return cfg
    return edit


def checkpoints(d: Path, marker: Path) -> dict[str, Path]:
    """Weights files and model folders that must be refused in one line, running nothing."""
    import clipblip.catalog

    d.mkdir(parents=True, exist_ok=True)
    shapes = clipblip.catalog.embedded("shapes-clip")
    safetensors = (shapes / "model.safetensors").read_bytes()
    made = {
        "pickle.pt": _torch_zip({"state_dict": _RunsCommand(marker)}, d / "pickle.pt"),
        "torchscript.pt": _torch_zip({"state_dict": _RunsCommand(marker)}, d / "torchscript.pt",
                                     {"constants.pkl": pickle.dumps(()), "code/__torch__/model.py": b"def f(): pass"}),
        "raw-pickle.bin": d / "raw-pickle.bin",
        "truncated.safetensors": d / "truncated.safetensors",
        "huge-header.safetensors": d / "huge-header.safetensors",
        "random.bin": d / "random.bin",
    }
    made["raw-pickle.bin"].write_bytes(pickle.dumps({"state_dict": _RunsCommand(marker)}))
    made["truncated.safetensors"].write_bytes(safetensors[:200])
    made["huge-header.safetensors"].write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    made["random.bin"].write_bytes(os.urandom(4096))
    configs = {
        "config-list": lambda cfg: [],
        "config-string-width": _set("vision.width", "wide"),
        "config-negative-layers": _set("vision.layers", -3),
        "config-huge-width": _set("text.width", 1 << 40),
        "config-million-layers": _set("text.layers", 1_000_000),
        "config-unknown-family": _set("family", "gpt"),
    }
    for name, edit in configs.items():
        made[name] = _config_dir(d / name, shapes, edit)
    return made


def _tar(path: Path, members: dict[str, bytes | int], compress: bool = False) -> Path:
    """A tar of `members` (bytes, or an int: that many zero bytes, streamed), gzip-compressed if asked."""
    with tarfile.open(path, "w:gz" if compress else "w", **({"compresslevel": 1} if compress else {})) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = data if isinstance(data, int) else len(data)
            tar.addfile(info, _Zeros(data) if isinstance(data, int) else io.BytesIO(data))
    return path


def shards(d: Path, secret: Path) -> dict[str, Path]:
    """Shard folders: metadata naming another file, a gzip bomb named .tar, a member far over any cap."""
    good = _good_png()
    made = {}
    for name, members, compress in [
        ("names-a-file", {"s0.png": good, "s0.json": json.dumps({"caption": "a red square.", "image": str(secret)})
                          .encode(), "s1.json": json.dumps({"caption": "x", "image": str(secret)}).encode()}, False),
        ("gzip-bomb", {"s0.png": 300 << 20, "s0.txt": b"zeros"}, True),
        ("traversal", {"../../escaped.png": good, "../../escaped.txt": b"up"}, False),
    ]:
        folder = d / name
        folder.mkdir(parents=True, exist_ok=True)
        made[name] = _tar(folder / "shard-000000.tar", members, compress).parent
    return made


@dataclass
class Case:
    name: str
    argv: list[str]
    inputs: list[str] = field(default_factory=list)  # what a skipped-and-listed run must name


def cases(root: Path) -> list[Case]:
    work, out = root / "in", root / "out"
    marker = root / MARKER
    secret = root / "secret.png"
    secret.write_bytes(_good_png((7, 7, 7)))  # a file outside the data that a shard's metadata names
    img = images(work / "images")
    ckpt = checkpoints(work / "checkpoints", marker)
    shard = shards(work / "shards", secret)
    # the extreme shapes are images (cropped before they are resized); the rest can never be
    bad = [str(p) for n, p in sorted(img.items()) if n not in ("good.png", "tall.png", "wide.png")]
    data = _dataset(work, [str(p) for _, p in sorted(img.items())], secret)
    every = [str(img["good.png"]), str(img["tall.png"]), str(img["wide.png"]), *bad]
    found = [
        Case("classify", ["classify", *every, "--labels", "circle", "square", "--json"], bad),
        Case("embed", ["embed", "--images", *every, "--output", str(out / "embed" / "e.safetensors"), "--json"], bad),
        Case("search", ["search", "a red square", "--images", *every, "--json"], bad),
        Case("caption", ["caption", *every, "-m", "shapes-blip", "--json"], bad),
        Case("score-set", ["score", "--set", str(_score_set(work, every)), "--json"], bad),
        Case("rerank", ["rerank", "a red square", *every, "--json"], bad),
        Case("ask", ["ask", str(img["random.png"]), "what color is it?", "-m", "shapes-blip-vqa"]),
        Case("match", ["match", str(img["fifo.png"]), "a red square."]),
        Case("index-build-jsonl", ["index", "build", str(data), "--out", str(out / "index-jsonl"), "--json"]),
        Case("data-pack-jsonl", ["data", "pack", str(data), "--out", str(out / "pack-jsonl"), "--json"]),
        Case("capfilt", ["capfilt", "--data", str(data), "--out", str(out / "capfilt"), "--json", "--part-size", "64"]),
        Case("train-resume-planted", ["train", "--resume", str(_planted_run(work, marker)), "--json"]),
        Case("train-config-list", ["train", "--config", str(_write(work / "train.json", "[]")), "--json"]),
        Case("train-data-hostile", ["train", "--preset", "shapes-clip", f"data={data}", "steps=1", "batch_size=4",
                                    f"out={out / 'train'}", "eval_every=0", "save_every=0", "--json"]),
        Case("index-build-folder", ["index", "build", str(work / "images"), "--out", str(out / "index-folder"),
                                    "--json"]),
        Case("data-pack-folder", ["data", "pack", str(work / "images"), "--format", "folder", "--out",
                                  str(out / "pack-folder"), "--json"]),
    ]
    for name, path in sorted(ckpt.items()):
        found.append(Case(f"load-{name}", ["classify", str(img["good.png"]), "--labels", "a", "b", "-m", str(path)]))
        found.append(Case(f"convert-{name}", ["convert", str(path), str(out / f"convert-{name}")]))
    for name, path in sorted(shard.items()):
        found.append(Case(f"index-build-{name}", ["index", "build", str(path), "--format", "webdataset", "--out",
                                                   str(out / f"index-{name}"), "--json"]))
        found.append(Case(f"data-pack-{name}", ["data", "pack", str(path), "--format", "webdataset", "--out",
                                                 str(out / f"pack-{name}"), "--json"]))
    return found


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def run_case(case: Case, marker: Path) -> dict:
    from clipblip.cli import main

    err, outs = io.StringIO(), io.StringIO()
    start, crash, timed_out, rc = time.perf_counter(), None, False, None
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(outs):
            rc = main(case.argv)
    except _Timeout:
        timed_out = True
    except SystemExit as e:  # argparse: a usage error
        rc = e.code
    except BaseException:  # noqa: BLE001 - a crash is what the sweep looks for
        crash = traceback.format_exc(limit=-3)
    finally:
        signal.alarm(0)
    text = outs.getvalue() + err.getvalue()
    errors = [line for line in err.getvalue().splitlines() if line.startswith("clipblip: error:")]
    return {"case": case.name, "rc": rc, "seconds": round(time.perf_counter() - start, 2), "timed_out": timed_out,
            "crash": crash, "traceback": "Traceback (most recent call last)" in text, "errors": errors,
            "unlisted": [p for p in case.inputs if p not in text], "marker": marker.exists()}


def _tree(root: Path, skip: Path) -> dict[str, int]:
    """Every path under root (not following links) with its size, except under `skip`."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip:
            dirnames.clear()
            continue
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            found[str(p)] = p.lstat().st_size if not p.is_dir() or p.is_symlink() else -1
    return found


def _mentions(outs: list[Path], needles: list[bytes]) -> list[str]:
    """Files under `outs` that hold any of `needles` (the secret file's path or bytes)."""
    return [str(p) for out in outs for p in out.rglob("*") if p.is_file() and any(n in p.read_bytes() for n in needles)]


def main(root: str) -> None:
    import torch

    torch.set_num_threads(1)
    root = Path(root)
    found = cases(root)
    out = root / "out"
    out.mkdir(exist_ok=True)
    before = _tree(root, out)
    for case in found:
        print(json.dumps(run_case(case, root / MARKER)), flush=True)
    after = _tree(root, out)
    secret = root / "secret.png"
    print(json.dumps({
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "written_outside": sorted(set(after.items()) ^ set(before.items())),
        # a shard is self-contained: what a job makes of one never holds a file its metadata named
        "secret_in_outputs": _mentions([out / "index-names-a-file", out / "pack-names-a-file"],
                                       [str(secret).encode(), secret.read_bytes()]),
    }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
