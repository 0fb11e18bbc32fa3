"""A run killed with SIGKILL and resumed ends bit-identical to an uninterrupted one; half-written checkpoints are
never read."""

import os
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import env, run, train_cmd

from clipblip.train import state

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
    run([*train_cmd(preset, cut)[:3], "train", "--resume", str(cut)])
    whole, resumed = load_file(tmp_path / "whole/model/model.safetensors"), load_file(cut / "model/model.safetensors")
    assert whole.keys() == resumed.keys()
    for k in whole:
        assert torch.equal(whole[k], resumed[k]), k
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
    assert state.load(state.latest(tmp_path))["step"] == 6
