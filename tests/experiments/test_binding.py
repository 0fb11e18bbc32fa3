"""The binding experiment (`compare --binding`) at a tiny budget: five arms fine-tuned from the shipped models and
scored, the paired tests, resume without training, the settings guard, and the report section."""

import json
from dataclasses import replace

import pytest
import torch

from clipblip.errors import ClipBlipError
from clipblip.eval.binding_blocks import section
from clipblip.eval.render import to_markdown
from clipblip.experiments import binding
from clipblip.experiments.binding import ARMS, EDIT_TYPES, SPLITS, TESTS, BindingConfig, run

TINY = BindingConfig(steps=2, batch_size=8, warmup=1, queue_size=32, eval_n=4, retrieval_n=4)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    out = tmp_path_factory.mktemp("binding")
    with torch.inference_mode():  # as compare runs it
        return out, run(out, TINY, progress=False)


def test_every_arm_trains_the_same_budget_and_is_scored(done):
    out, r = done
    assert set(r["arms"]) == {*ARMS, "shipped-clip", "shipped-blip"}
    for name, arm in ARMS.items():
        a = r["arms"][name]
        assert a["objective"] == arm.objective and a["steps"] == 2 and a["samples"] == 16 and a["train_s"] > 0
        saved = json.loads((out / name / "train_config.json").read_text())
        assert (saved["steps"], saved["batch_size"], saved["lr"], saved["init"]) == (2, 8, TINY.lr, arm.model)
        paths = {"clip"} if arm.model == "shapes-clip" else {"blip_itm", "blip_itc"}
        for split in SPLITS:
            assert set(a["probe"][split]) == paths
            for s in a["probe"][split].values():
                counts = [s["per_type"][t]["n"] for t in EDIT_TYPES]
                assert sum(counts) == s["all"]["n"] > 0
                assert s["all"]["ci"][0] <= s["all"]["acc"] <= s["all"]["ci"][1]
        assert all(0 <= rec["t2i_r1"] <= 1 for rec in a["retrieval"].values())
    assert r["arms"]["shipped-blip"]["train_s"] is None and r["arms"]["shipped-blip"]["steps"] == 0
    evals = {n: json.loads((out / n / "eval.json").read_text()) for n in ARMS}
    # the probe pairs are the same for every arm: the paired tests compare like with like
    assert evals["B"]["probe"]["test"]["clip"]["types"] == evals["D"]["probe"]["test"]["blip_itm"]["types"]
    assert json.loads((out / "binding.json").read_text()) == json.loads(json.dumps(r))
    assert r["machine"]["torch_threads"] >= 1 and r["date"] and r["wall_s"] > 0


def test_paired_tests_are_mcnemar_on_the_arms_outcomes_with_holm(done):
    out, r = done
    assert len(r["tests"]) == len(TESTS) * len(SPLITS) * len(EDIT_TYPES)
    evals = {n: json.loads((out / n / "eval.json").read_text()) for n in ARMS}
    t = next(t for t in r["tests"] if t["name"] == "D (ITM) vs B (CLIP)" and t["split"] == "test"
             and t["type"] == "attribute_swap")
    b, d = evals["B"]["probe"]["test"]["clip"], evals["D"]["probe"]["test"]["blip_itm"]
    rb = [c for c, u in zip(b["correct"], b["types"]) if u == "attribute_swap"]
    rd = [c for c, u in zip(d["correct"], d["types"]) if u == "attribute_swap"]
    assert t["only_a"] == sum(x and not y for x, y in zip(rb, rd)) and t["n"] == len(rb)
    assert t["diff"] == pytest.approx(sum(rd) / len(rd) - sum(rb) / len(rb))
    assert all(x["p"] <= x["p_holm"] <= 1 for x in r["tests"])
    assert t in r["question"]
    assert all(x["verdict"] in ("supported", "contradicted") or x["verdict"].startswith("no significant difference")
               for x in r["tests"])
    d = r["arms"]["D"]["probe"]["test"]["blip_itm"]["per_type"]["attribute_swap"]
    assert r["goal"]["attribute_swap"] == d["acc"] and r["goal"]["met"] == (d["acc"] >= 0.9)


def test_second_run_trains_nothing_and_other_settings_are_refused(done, monkeypatch):
    out, r = done

    def no_training(*args):
        raise AssertionError("an arm was trained again")
    monkeypatch.setattr(binding, "train_arm", no_training)
    again = run(out, TINY, progress=False)
    assert again["arms"] == r["arms"] and again["tests"] == r["tests"]
    with pytest.raises(ClipBlipError, match="other settings"):
        run(out, replace(TINY, steps=3), progress=False)


def test_an_arm_killed_after_training_is_only_evaluated(done, monkeypatch):
    out, r = done
    (out / "C" / "eval.json").unlink()
    monkeypatch.setattr(binding, "train_arm", lambda *a: pytest.fail("C's model exists: no training"))
    again = run(out, TINY, progress=False)
    assert again["arms"]["C"]["probe"] == r["arms"]["C"]["probe"]


def test_section_renders_the_numbers(done):
    _, r = done
    md = to_markdown(section(r))
    d = r["arms"]["D"]["probe"]["test"]["blip_itm"]["per_type"]["attribute_swap"]
    assert f"{100 * d['acc']:.1f}% ({100 * d['ci'][0]:.1f}%–{100 * d['ci'][1]:.1f}%)" in md  # as the report writes it
    assert "D (ITM) vs B (CLIP)" in md
    assert "attribute swap" in md and "held-out" in md and r["date"] in md
    t = r["question"][0]
    lo, hi = t["diff_ci"]
    assert f"{100 * t['diff']:+.1f}% ({100 * lo:+.1f}%–{100 * hi:+.1f}%)" in md and t["verdict"] in md
    assert section(None) == [] and section({}) == []
