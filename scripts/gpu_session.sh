#!/usr/bin/env bash
# One GPU session: train the embedded default models (shapes-clip, shapes-blip, shapes-blip-vqa) with their
# presets, two learning rates each for the first two, and time the ViT-B/16 CLIP training step.
# Everything lands in one archive under $OUT (the device tool brings back few files).
#   OUT=/some/dir bash scripts/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu}
R=/tmp/runs
PY=${PY:-python3}
rm -rf $R
mkdir -p "$OUT" "$R"
if ls .whl/*.whl >/dev/null 2>&1; then  # packages the GPU image lacks (ftfy, webdataset), carried as wheels
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; python3 -c "import torch; print(torch.__version__)"; } > $R/machine.txt 2>&1
cat $R/machine.txt

train() {  # name, then arguments; wall time and exit code go to $R/NAME.done
    local name=$1; shift
    local t0=$(date +%s)
    timeout "${LIMIT:-300}" $PY -m clipblip.cli train "$@" device=${DEVICE:-cuda} progress=false log_every=50 ${EXTRA:-} out=$R/$name \
        > $R/$name.log 2>&1
    echo "rc=$? seconds=$(( $(date +%s) - t0 )) command=clipblip train $*" > $R/$name.done
    cat $R/$name.done
}

W=${WORKERS:-3}
train clip-lr1e-3 --preset shapes-clip workers=$W &
train clip-lr5e-4 --preset shapes-clip lr=5e-4 workers=$W &
train blip-lr1e-3 --preset shapes-blip workers=$W &
train blip-lr5e-4 --preset shapes-blip lr=5e-4 workers=$W &
wait

# Of each pair, the run with the better final zero-shot + retrieval score is kept; the BLIP one goes on to VQA.
cat > $R/pick.py <<'EOF'
import json, pathlib, sys
def score(name):
    path = pathlib.Path(f"/tmp/runs/{name}/metrics.jsonl")
    lines = [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []
    ev = [l["eval"] for l in lines if "eval" in l]
    return sum(ev[-1][k] for k in ("zs_shape", "zs_color", "zs_count", "t2i_r1")) if ev else -1
print(max(sys.argv[1:], key=score))
EOF
best=$($PY $R/pick.py blip-lr1e-3 blip-lr5e-4)
clip=$($PY $R/pick.py clip-lr1e-3 clip-lr5e-4)
echo "VQA fine-tuning from $best"
LIMIT=120 train blip-vqa --preset shapes-blip-vqa init=$R/$best/model workers=$((2 * W))

timeout 90 $PY bench/bench_train.py --gpu > $R/bench_train_gpu.md 2>$R/bench_train_gpu.err
cat $R/bench_train_gpu.md
for f in $R/*.done; do echo "$f: $(cat $f)"; done
for d in $R/*/; do echo "$d: $(grep eval $d/metrics.jsonl | tail -1)"; done
# The device tool brings back files of at most 16 MiB: one archive per kept model, one with every log.
for run in $clip $best blip-vqa; do
    tar czf "$OUT/$run.tar.gz" -C $R $run/model
done
tar czf "$OUT/logs.tar.gz" --exclude=checkpoints --exclude=model -C /tmp runs
ls -la "$OUT"
