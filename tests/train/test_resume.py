"""A run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one, on map-style data and on
webdataset shards, in any epoch; half-written checkpoints are never read; a damaged or planted newest checkpoint is
passed over (never unpickled) and the run resumes from the one before."""

import os
import pickle
import signal
import subprocess
import time

import pytest
from train_helpers import Shell, assert_same_weights, env, resumable_copy, resume_cmd, run, train_cmd

import clipblip.cli
from clipblip.train import state
from clipblip.train.data import loader

STEPS = ["steps=10", "batch_size=8", "save_every=2", "keep=2"]


def _kill_after(cmd, ckpt_dir, name: str, timeout: float = 120) -> None:
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not (ckpt_dir / name).exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"the run ended or stalled before writing {name}")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("preset", ["shapes-clip", "shapes-blip"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, preset):
    run(train_cmd(preset, tmp_path / "whole", *STEPS))
    cut = tmp_path / "cut"
    _kill_after(train_cmd(preset, cut, *STEPS), cut / "checkpoints", "step-00000004.pt")
    assert not (cut / "model").exists(), "the run finished before it was killed"
    # a checkpoint being written when the kill came: never picked up
    (cut / "checkpoints" / ".step-00000006.pt.99999.tmp").write_bytes(b"half a checkpoint")
    assert state.latest(cut / "checkpoints").name >= "step-00000004.pt"
    run(resume_cmd(cut))
    assert_same_weights(tmp_path / "whole", cut)
    steps = [line for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == 10  # the steps redone after the checkpoint are logged once


def test_latest_ignores_temporary_files(tmp_path):
    assert state.latest(tmp_path) is None
    state.save(tmp_path, 2, {"step": 2}, keep=2)
    (tmp_path / ".step-00000004.pt.1.tmp").write_bytes(b"")
    assert state.latest(tmp_path).name == "step-00000002.pt"
    for step in (4, 6):
        state.save(tmp_path, step, {"step": step}, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step-*.pt")) == ["step-00000004.pt", "step-00000006.pt"]
    assert state.latest(tmp_path).name == "step-00000006.pt"


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """A 6-step run, checkpointed at steps 2, 4 and 6."""
    out = tmp_path_factory.mktemp("whole")
    run(train_cmd("shapes-clip", out, "steps=6", "batch_size=8", "save_every=2", "keep=0"))
    return out


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("clipblip: warning:")]


def test_resume_never_unpickles_a_planted_checkpoint(whole_run, tmp_path):
    cut, marker = tmp_path / "cut", tmp_path / "ran"
    resumable_copy(whole_run, cut, "step-00000002.pt", "step-00000004.pt")
    planted = cut / "checkpoints/step-99999999.pt"
    planted.write_bytes(pickle.dumps({"step": 99999999, "model": Shell(f"touch {marker}")}))
    with open(planted, "rb") as f:  # the file is live: a plain unpickler runs its command
        pickle.load(f)
    assert marker.exists()
    marker.unlink()
    done = subprocess.run(resume_cmd(cut), env=env(), capture_output=True, text=True, timeout=300)
    assert not marker.exists(), "the planted checkpoint was unpickled"
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(_warnings(done.stderr)) == 1 and str(planted) in _warnings(done.stderr)[0]
    assert_same_weights(whole_run, cut)  # resumed from step 4, as if the file were not there


def test_resume_falls_back_past_a_truncated_newest_checkpoint(whole_run, tmp_path):
    cut = tmp_path / "cut"
    resumable_copy(whole_run, cut, "step-00000002.pt", "step-00000004.pt")
    newest = cut / "checkpoints/step-00000004.pt"
    newest.write_bytes(newest.read_bytes()[:20000])
    done = run(resume_cmd(cut))
    assert len(_warnings(done.stderr)) == 1 and str(newest) in _warnings(done.stderr)[0]
    assert_same_weights(whole_run, cut)


@pytest.mark.parametrize("sized", [True, False], ids=["len known", "counted"])
def test_an_iterable_source_resumed_in_any_epoch_reads_on_where_it_stopped(sized):
    records = [{"id": f"r{i}"} for i in range(10)]  # 2.5 batches of 4 an epoch

    def open_at(skip: int):
        return records[skip:] if sized else iter(records[skip:])

    def batches(start: int, n: int) -> list:
        it = loader(open_at, lambda items: items, global_batch=4, rank=0, world=1, start_batch=start, seed=0)
        return [next(it) for _ in range(n)]

    whole = batches(0, 12)
    for start in range(1, 9):
        assert batches(start, 4) == whole[start:start + 4], start


def test_webdataset_resume_past_the_first_epoch_is_bit_identical(tmp_path):
    shards, whole, cut = tmp_path / "shards", tmp_path / "whole", tmp_path / "cut"
    assert clipblip.cli.main(["data", "shapes", "--out", str(shards), "--n", "40", "--size", "32",
                              "--shards", "16"]) == 0
    run(train_cmd("shapes-clip", whole, "steps=8", "batch_size=8", "save_every=2", "keep=0", f"data={shards}"))
    resumable_copy(whole, cut, "step-00000006.pt")  # 48 samples read: into the second epoch of 40
    run(resume_cmd(cut))
    assert_same_weights(whole, cut)
