"""`clipblip compare --binding DIR`: the binding experiment runs (here at a tiny budget), lands in results.json and
gets its section in the report."""

import json

import clipblip.cli
from clipblip.eval.binding_blocks import TITLE
from clipblip.experiments import binding

TINY = binding.BindingConfig(steps=2, batch_size=8, warmup=1, queue_size=32, eval_n=4, retrieval_n=4,
                             baselines=False)


def test_binding_flag_runs_the_experiment_into_the_report(tmp_path, monkeypatch):
    monkeypatch.setattr(binding, "BindingConfig", lambda: TINY)
    out, where = tmp_path / "report", tmp_path / "binding run"
    argv = ["compare", "--n", "4", "--blip", "none", "--blip-vqa", "none", "--out", str(out), "--binding", str(where)]
    assert clipblip.cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["binding"]["settings"]["steps"] == 2 and set(results["binding"]["arms"]) == set(binding.ARMS)
    assert (where / "binding.json").exists()
    md = (out / "report.md").read_text()
    assert f"## {TITLE}" in md and "D (ITM) vs B (CLIP)" in md
