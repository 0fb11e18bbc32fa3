#!/usr/bin/env bash
# The binding experiment (clipblip compare --binding, issue 15 item 6) at its full budget on one GPU: five arms
# fine-tuned from the shipped models, 3,000 steps of 256 each (experiments.binding.full()), the probe on 1,000
# scenes per split. Resumable: run it again with the same RUN_DIR and it goes on where it stopped. Writes
# RUN_DIR/binding.json, RUN_DIR/binding.md (the report section) and RUN_DIR/log.txt; with OUT set, an archive of
# them (no checkpoints, no models) for the device tool to bring back.
#   scripts/binding_gpu.sh [RUN_DIR]          (default runs/binding-gpu)
#   Env: PY (default .venv/bin/python), DEVICE (default cuda), EXTRA (key=value pairs, JSON values: fields of BindingConfig to replace,
#   e.g. "steps=2, eval_n=4" for a dry run on the CPU), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=${1:-runs/binding-gpu}
PY=${PY:-.venv/bin/python}
mkdir -p "$run_dir"
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true; nproc; } > "$run_dir/machine.txt"
$PY - "$run_dir" "${DEVICE:-cuda}" "${EXTRA:-}" <<'PY' 2>&1 | tee -a "$run_dir/log.txt"
import dataclasses
import json
import sys

from clipblip.eval.binding_blocks import section
from clipblip.eval.render import to_markdown
from clipblip.experiments.binding import full, run

out, device, extra = sys.argv[1], sys.argv[2], sys.argv[3]
# EXTRA is data, "steps=2, eval_n=4": key=value pairs, each value JSON (never evaluated as Python)
fields = {}
for item in filter(None, (part.strip() for part in extra.split(","))):
    key, sep, value = item.partition("=")
    if not sep:
        sys.exit(f"binding_gpu.sh: EXTRA item {item!r} is not key=value (e.g. EXTRA='steps=2, eval_n=4')")
    fields[key.strip()] = json.loads(value)
cfg = dataclasses.replace(full(), device=device, **fields)
results = run(out, cfg)
with open(f"{out}/binding.md", "w") as f:
    f.write(to_markdown(section(results)))
g = results["goal"]
print(f"binding: done in {results['wall_s'] / 60:.1f} min; D's ITM on attribute swaps {100 * g['attribute_swap']:.1f}%")
PY
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    tar czf "$OUT/binding.tar.gz" --exclude=checkpoints --exclude=model -C "$(dirname "$run_dir")" "$(basename "$run_dir")"
fi
