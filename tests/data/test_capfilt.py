"""CapFilt with the shipped shapes-blip: the filter removes planted wrong captions, bad images are listed, a
killed run resumes to the same output, 2 ranks write what 1 process writes, and shards work in and out."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import clipblip
from clipblip.cli import main
from clipblip.data.capfilt import capfilt, with_intervals
from clipblip.data.readers import open_dataset
from clipblip.metrics import calibrate, curves, filter_quality
from clipblip.tasks.capfilt import CapFiltConfig

N = 40


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """40 web images with one caption each, half of them noisy, plus a record whose image is corrupt."""
    d = tmp_path_factory.mktemp("web")
    assert main(["data", "shapes", "--out", str(d), "--n", str(N), "--split", "web", "--captions", "1",
                 "--noise", "0.5", "--json"]) == 0
    (d / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with open(d / "web.jsonl", "a") as f:
        f.write(json.dumps({"id": "broken", "image": "images/broken.png", "caption": "a red circle."}) + "\n")
    return d / "web.jsonl"


@pytest.fixture(scope="module")
def blip():
    return clipblip.load("shapes-blip")


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "clipblip.cli", "capfilt", *args, "--threads", "1", "--json"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _done(cmd) -> None:
    """Run to the end; exit 3: done, with the corrupt image skipped and listed."""
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr[-2000:]


def _rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "captions.jsonl").read_text().splitlines()]


def test_filter_removes_planted_wrong_captions(noisy, blip, tmp_path):
    summary = capfilt(noisy, tmp_path, blip, cfg=CapFiltConfig(part_size=16), progress=False)
    labels = [json.loads(line).get("noise") for line in noisy.read_text().splitlines()]
    assert summary["images"] == N and summary["rejected"] == 1
    rejects = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rejects] == ["broken"]
    q = summary["filter_quality"]
    assert q["n"] == N and q["wrong"]["n"] == sum(lab == ["wrong"] for lab in labels[:N]) > 3
    # another scene's caption: the shipped ITM filter removes (nearly) all of them, and ranks them below clean
    assert q["wrong"]["recall"] >= 0.9 and q["wrong"]["roc_auc"] >= 0.95
    assert q["all"]["roc_auc"] >= 0.8
    for row in _rows(tmp_path):
        sources = [c["source"] for c in row["candidates"]]
        assert sources == ["original", "synthetic"]  # one original, one synthetic caption per image
        assert row["captions"] == [c["text"] for c in row["candidates"] if c["kept"]] and row["captions"]
        assert all((c["score"] >= 0.5) == c["kept"] for c in row["candidates"])
        assert os.path.isabs(row["image"])
    # the output is a dataset the readers (and so `clipblip train`) take
    data = open_dataset(tmp_path / "captions.jsonl")
    assert len(data) == N - summary["images_without_captions"] and not data.rejects
    assert (tmp_path / "scores.png").stat().st_size > 1000


def test_curves_and_quality_by_hand():
    scores = np.array([0.1, 0.2, 0.7, 0.9, 0.4])
    labels = ["wrong", "clean", "clean", "clean", "partial"]
    q = filter_quality(list(zip(scores, labels)), threshold=0.5)
    # removed (< 0.5): 0.1 wrong, 0.2 clean, 0.4 partial -> precision 2/3, recall 2/2, clean removed 1/3
    assert q["all"]["precision"] == pytest.approx(2 / 3) and q["all"]["recall"] == 1.0
    assert q["all"]["clean_removed"] == pytest.approx(1 / 3)
    assert q["wrong"]["precision"] == pytest.approx(1 / 2) and q["wrong"]["recall"] == 1.0
    # the Wilson intervals of those shares: precision 2 of 3 removed, recall 2 of 2, clean removed 1 of 3
    ci = with_intervals(q)["all"]["ci"]
    assert ci["precision"] == pytest.approx([0.2077, 0.9385], abs=1e-4)
    assert ci["recall"] == pytest.approx([0.3424, 1], abs=1e-4)
    assert ci["clean_removed"] == pytest.approx([0.0615, 0.7923], abs=1e-4)
    fpr, tpr, prec, rec = curves(scores, np.array([lab != "clean" for lab in labels]))
    # lowest first: wrong(+), clean, partial(+), clean, clean
    assert tpr.tolist() == [0, 0.5, 0.5, 1, 1, 1] and fpr.tolist() == pytest.approx([0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert q["all"]["roc_auc"] == pytest.approx(5 / 6)
    # Youden's J: remove below 0.7 -> TPR 1, FPR 1/3
    assert calibrate(list(zip(scores, labels))) == pytest.approx(0.7)


def test_killed_run_resumes_to_the_same_output(noisy, tmp_path):
    args = ["--data", str(noisy), "--part-size", "8"]
    whole = tmp_path / "whole"
    _done(_cli(*args, "--out", str(whole)))
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_cli(*args, "--out", str(cut)), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first, deadline = cut / "parts" / "part-000001.json", time.time() + 120
    while not first.exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended or stalled before its second part"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / "captions.jsonl").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in (cut / "parts").glob("part-*.json")}
    done = subprocess.run(_cli(*args, "--out", str(cut)), env=_env(), capture_output=True, text=True)
    assert done.returncode == 3, done.stderr  # finished, with the corrupt image skipped and listed
    assert (cut / "captions.jsonl").read_text() == (whole / "captions.jsonl").read_text()
    assert all((cut / "parts" / name).stat().st_mtime_ns == t for name, t in kept.items())  # not redone
    # other settings would mix two filters in one corpus: refused
    other = subprocess.run(_cli(*args, "--out", str(cut), "--threshold", "0.3"), env=_env(), capture_output=True,
                           text=True)
    assert other.returncode == 1 and "other settings" in other.stderr and "Traceback" not in other.stderr


def test_two_ranks_write_what_one_process_writes(noisy, tmp_path):
    args = ["--data", str(noisy), "--part-size", "8"]
    _done(_cli(*args, "--out", str(tmp_path / "one")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "clipblip.cli", "capfilt", *args, "--out", str(tmp_path / "two"),
           "--threads", "1", "--json", "--device", "cpu"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # skips are listed; under torchrun a non-zero exit is a failure
    assert (tmp_path / "two" / "captions.jsonl").read_text() == (tmp_path / "one" / "captions.jsonl").read_text()


def test_shards_in_and_out(noisy, tmp_path, blip):
    shards = tmp_path / "in"
    assert main(["data", "shapes", "--out", str(shards), "--n", "12", "--split", "web", "--captions", "1",
                 "--shards", "6", "--json"]) == 0
    out = tmp_path / "out"
    assert main(["capfilt", "--data", str(shards), "--out", str(out), "--shards", "5", "--threads", "1",
                 "--json"]) == 0
    rows = _rows(out)
    assert rows and all(not os.path.isabs(r["image"]) and (out / r["image"]).exists() for r in rows)
    packed = open_dataset(out / "shards", format="webdataset")
    assert sum(1 for _ in packed) == len(rows)


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["capfilt", "--data", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["capfilt", "--data", "x", "--out", str(tmp_path / "o"), "--captioner", "shapes-clip"]) == 1
    assert "needs a BLIP model" in capsys.readouterr().err

