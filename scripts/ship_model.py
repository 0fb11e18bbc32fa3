"""Turn a finished training run into a shipped model: fp16 weights + config + a model card (JSON).

    .venv/bin/python scripts/ship_model.py RUN_DIR NAME --machine "one NVIDIA H200" --seconds 200 \
        --command "clipblip train --preset shapes-clip device=cuda workers=12" [--cpu-samples-per-s 120]

RUN_DIR is a `clipblip train` output (train_config.json, metrics.jsonl, model/). Writes
src/clipblip/weights/NAME/{config.json, model.safetensors, card.json}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("name")
    ap.add_argument("--machine", required=True)
    ap.add_argument("--seconds", type=float, required=True, help="wall time of the training run")
    ap.add_argument("--command", required=True)
    ap.add_argument("--cpu-samples-per-s", type=float, help="measured training rate on the 2-core CPU")
    ap.add_argument("--cpu-how", default="measured step rate of this model on the 2-core CPU x the preset's samples",
                    help="how the CPU rate was measured")
    args = ap.parse_args()
    run = Path(args.run)
    cfg = json.loads((run / "train_config.json").read_text())
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [line for line in lines if "eval" in line]
    out = ROOT / "src/clipblip/weights" / args.name
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.to(torch.float16) for k, v in load_file(run / "model/model.safetensors").items()}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt", "dtype": "float16"})
    (out / "config.json").write_text((run / "model/config.json").read_text())
    samples = cfg["steps"] * cfg["batch_size"] * cfg["accum"]
    card = {
        "name": args.name, "family": json.loads((run / "model/config.json").read_text())["family"],
        "objective": cfg["objective"], "command": args.command,
        "data": {"source": cfg["data"], "shapes": cfg["shapes"]}, "seed": cfg["seed"],
        "steps": cfg["steps"], "batch_size": cfg["batch_size"], "samples": samples, "lr": cfg["lr"],
        "wall_time_s": args.seconds, "machine": args.machine, "date": datetime.date.today().isoformat(),
        "parameters": int(sum(v.numel() for v in weights.values())), "stored_as": "float16",
        "final_val_metrics": evals[-1]["eval"] if evals else None,
        "val_metrics_by_step": {str(e["step"]): e["eval"] for e in evals},
    }
    if args.cpu_samples_per_s:
        card["cpu_2core_estimate"] = {"samples_per_s": args.cpu_samples_per_s,
                                      "hours": round(samples / args.cpu_samples_per_s / 3600, 1),
                                      "how": args.cpu_how}
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(f"wrote {out}: {sum(f.stat().st_size for f in out.iterdir()) / 2**20:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
