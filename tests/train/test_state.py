"""Training checkpoints are data: read with weights_only=True, hostile or damaged ones passed over in one line."""

import pickle
import random

import numpy as np
import pytest
import torch
from train_helpers import Shell

from clipblip.errors import ClipBlipError
from clipblip.train import state
from clipblip.train.config import resolve


def _parts(width: int = 4):
    torch.manual_seed(0)
    model = torch.nn.Linear(width, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98))
    model(torch.randn(2, width)).sum().backward()
    opt.step()
    return model, opt


def _state(step: int, width: int = 4) -> dict:
    model, opt = _parts(width)
    return {"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(), "momentum": None,
            "rng": state.rng_state(), "config": resolve("shapes-clip").to_dict()}


def _apply_to(model, opt):
    def apply(saved: dict) -> None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        state.set_rng_state(saved["rng"])
    return apply


def _draws():
    return random.random(), random.gauss(0, 1), np.random.rand(), np.random.normal(), torch.rand(3).tolist()


def test_a_checkpoint_reads_back_with_weights_only_and_restores_every_generator(tmp_path):
    random.gauss(0, 1)  # both generators now hold a cached second Gaussian: part of their state
    np.random.normal()
    path = state.save(tmp_path, 3, _state(3), keep=2)
    saved = torch.load(path, weights_only=True)  # no numpy arrays, no classes: plain data only
    first = _draws()
    state.set_rng_state(saved["rng"])
    assert _draws() == first
    assert saved["config"] == resolve("shapes-clip").to_dict()


def _hostile(kind: str, good: bytes, marker) -> bytes | dict:
    shell = Shell(f"touch {marker}")
    return {"pickle": pickle.dumps({"step": 99999999, "rng": shell}),
            "torch.save pickle": {"step": 99999999, "model": shell},
            "truncated": good[: len(good) // 2],
            "empty": b"",
            "missing keys": {"step": 99999999, "model": {}},
            "not a dict": [1, 2, 3],
            "negative step": {**_state(2), "step": -1},
            "another model": _state(2, width=5)}[kind]


@pytest.mark.parametrize("kind", ["pickle", "torch.save pickle", "truncated", "empty", "missing keys", "not a dict",
                                  "negative step", "another model"])
def test_restore_passes_over_a_bad_newest_checkpoint_in_one_line(tmp_path, capsys, kind):
    good = state.save(tmp_path, 2, _state(2), keep=0)
    marker, bad = tmp_path / "ran", tmp_path / "step-99999999.pt"
    content = _hostile(kind, good.read_bytes(), marker)
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        torch.save(content, bad)
    model, opt = _parts()
    with torch.no_grad():
        model.weight.zero_()
    assert state.restore(tmp_path, _apply_to(model, opt)) == good
    assert not marker.exists()
    assert torch.equal(model.weight, torch.load(good, weights_only=True)["model"]["weight"])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "resuming from the one before" in err


def test_restore_with_no_good_checkpoint_is_one_line_error(tmp_path, capsys):
    (tmp_path / "step-00000002.pt").write_bytes(b"not a checkpoint")
    torch.save({"step": 4}, tmp_path / "step-00000004.pt")
    with pytest.raises(ClipBlipError, match="none of the 2 checkpoints") as e:
        state.restore(tmp_path, lambda saved: None)
    assert "\n" not in str(e.value)
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
    with pytest.raises(ClipBlipError, match="nothing to resume"):
        state.restore(tmp_path / "none", lambda saved: None)


def test_warnings_can_be_silenced_on_other_ranks(tmp_path, capsys):
    good = state.save(tmp_path, 2, _state(2), keep=0)
    (tmp_path / "step-00000004.pt").write_bytes(b"")
    assert state.restore(tmp_path, lambda saved: None, warn=False) == good
    assert capsys.readouterr().err == ""


def test_pruning_never_counts_a_checkpoint_resume_passed_over(tmp_path):
    planted = tmp_path / "step-99999999.pt"
    planted.write_bytes(b"garbage")
    for step in (2, 4):
        state.save(tmp_path, step, {"step": step}, keep=1)
    assert sorted(p.name for p in tmp_path.glob("step-*.pt")) == ["step-00000004.pt", planted.name]
