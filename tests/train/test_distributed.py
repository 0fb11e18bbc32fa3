"""2 processes (torchrun, gloo) give the losses of 1 process with the same global batch, step for step."""

import json

import pytest
from train_helpers import run, train_cmd


def losses(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if "eval" not in line]


@pytest.mark.parametrize("preset", ["shapes-clip", "shapes-blip"])
def test_two_ranks_match_one_process(tmp_path, preset):
    common = ["steps=4", "batch_size=8", "save_every=0"]
    run(train_cmd(preset, tmp_path / "one", *common))
    run(train_cmd(preset, tmp_path / "two", *common, nproc=2))
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [1, 2, 3, 4]
    terms = [k for k in one[0] if k not in ("step", "lr", "samples_per_s", "time")]
    # BLIP: itc (momentum distillation over the gathered batch and the queue), itm (hard negatives drawn from
    # the gathered batch with a rank-independent generator) and lm (mean over the global batch's tokens).
    assert set(terms) >= ({"contrastive"} if preset == "shapes-clip" else {"itc", "itm", "lm"})
    for a, b in zip(one, two):
        for k in terms:
            assert abs(a[k] - b[k]) <= 1e-5, (a["step"], k, a[k], b[k])
    # the losses moved: the runs trained rather than repeating one value
    assert one[0]["loss"] != one[-1]["loss"]
