"""train compile=true: the towers run through torch.compile and train as the eager ones do."""

import json
import shutil

import pytest
from train_helpers import RUN, TINY

from clipblip.train import train
from clipblip.train.config import resolve


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="torch.compile's CPU backend needs a C compiler")
def test_compiled_towers_train_like_eager_ones(tmp_path):
    losses = {}
    for compiled in (False, True):
        out = tmp_path / str(compiled)
        cfg = resolve("shapes-clip", overrides=[*TINY["shapes-clip"], *RUN, "steps=3", "batch_size=8",
                                                "save_every=0", f"compile={str(compiled).lower()}", f"out={out}"])
        train(cfg)
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        losses[compiled] = [row["loss"] for row in lines if "loss" in row]
    assert len(losses[True]) == 3
    assert losses[True] == pytest.approx(losses[False], rel=1e-4, abs=1e-5)
