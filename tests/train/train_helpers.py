import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch

# Small enough that a step takes milliseconds; every part of both families is still there.
TINY_VISION = ["model.vision.width=32", "model.vision.layers=1", "model.vision.heads=2", "model.vision.mlp_dim=64",
               "model.vision.image_size=32", "shapes.size=32", "model.image.size=32", "model.vision.patch_size=8"]
TINY = {
    "shapes-clip": TINY_VISION + ["model.vision.output_dim=16", "model.embed_dim=16", "model.text.width=32",
                                  "model.text.layers=1", "model.text.heads=2", "model.text.mlp_dim=64",
                                  "model.text.output_dim=16"],
    "shapes-blip": TINY_VISION + ["model.embed_dim=16", "model.text.width=32", "model.text.layers=1",
                                  "model.text.heads=2", "model.text.mlp_dim=64", "model.text.cross_width=32",
                                  "queue_size=48", "init_vision=null"],
}
RUN = ["eval_n=0", "progress=false", "log_every=1", "shapes.n=256", "warmup=2", "lr=2e-3"]


class Shell:
    """Unpickled, runs a shell command: what a planted checkpoint would do."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_cmd(preset: str, out, *overrides, nproc: int = 1) -> list[str]:
    args = ["train", "--preset", preset, *TINY[preset], *RUN, *overrides, f"out={out}"]
    if nproc == 1:
        return [sys.executable, "-m", "clipblip.cli", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
            "127.0.0.1", "--master_port", str(free_port()), "-m", "clipblip.cli", *args]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(cmd, timeout=300) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[:2000]}\n...\n{done.stderr[-1500:]}")
    return done


def resumable_copy(run_dir, copy, *checkpoints: str) -> None:
    """`copy` as `run_dir` would be had it been killed after writing only `checkpoints` (names in checkpoints/)."""
    (copy / "checkpoints").mkdir(parents=True)
    shutil.copy(run_dir / "train_config.json", copy / "train_config.json")
    for name in checkpoints:
        shutil.copy(run_dir / "checkpoints" / name, copy / "checkpoints" / name)


def resume_cmd(out) -> list[str]:
    return [sys.executable, "-m", "clipblip.cli", "train", "--resume", str(out)]


def assert_same_weights(a, b) -> None:
    """The final models of two runs are bit-identical."""
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model/model.safetensors"), load_file(b / "model/model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
