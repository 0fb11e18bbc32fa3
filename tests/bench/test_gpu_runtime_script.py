"""scripts/gpu_runtime.py is run on a GPU machine that a session may get once: it must work before it gets there.
Its --tiny --device cpu mode runs every case on tiny models; this checks that each one produced a rate for both
sides and an output check, and that the JSON says what it ran on."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CASES = {"clip-b16-image", "clip-l14-image", "clip-text", "clip-text-captions", "blip-caption", "blip-itm"}


def test_gpu_runtime_script_tiny_on_cpu(tmp_path):
    out = tmp_path / "runtime.json"
    env = {**os.environ, "CLIPBLIP_DEVICE": "cpu", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_runtime.py"), "--tiny", "--device", "cpu",
                           "--repeat", "3", "--warmup", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["cases"]) == CASES
    assert report["skipped"] == []
    for key, res in report["cases"].items():
        for side in ("clipblip", "transformers"):
            assert res[side]["rate"] > 0, (key, side, res[side])
            assert len(res[side]["seconds"]) >= 3, (key, side)
        assert res["speedup"] > 0 and res["agreement"], key
        assert res["goal"] > 0 and res["goal_met"] is None, key  # tiny models: the goal is not judged
    machine = report["machine"]
    assert machine["tiny"] and machine["device"] == "cpu" and machine["precision"] == "bf16"
    assert machine["torch"] and machine["transformers"]
