#!/usr/bin/env bash
# One GPU session: time the ViT-B/16 CLIP training step (bench/bench_train.py --gpu), train the shapes-clip
# preset, and measure the shapes-blip preset's step rate in a short time-boxed run.
# What comes back goes into a few archives under $OUT (the device tool brings back few, small files).
#   OUT=/some/dir bash scripts/gpu_session.sh        (PY, DEVICE, WORKERS, EXTRA: see below, for a CPU dry run)
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
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; $PY -c "import torch; print(torch.__version__)"; } > $R/machine.txt 2>&1
cat $R/machine.txt

timeout 100 $PY bench/bench_train.py --gpu > $R/bench_train_gpu.md 2>$R/bench_train_gpu.err
cat $R/bench_train_gpu.md; tail -3 $R/bench_train_gpu.err

train() {  # name, then arguments; wall time and exit code go to $R/NAME.done
    local name=$1; shift
    local t0=$(date +%s)
    timeout "${LIMIT:-300}" $PY -m clipblip.cli train "$@" device=${DEVICE:-cuda} progress=false log_every=50 ${EXTRA:-} out=$R/$name \
        > $R/$name.log 2>&1
    echo "rc=$? seconds=$(( $(date +%s) - t0 )) command=clipblip train $*" > $R/$name.done
    cat $R/$name.done
}

LIMIT=270 train shapes-clip --preset shapes-clip workers=${WORKERS:-12}
LIMIT=50 train blip-probe --preset shapes-blip workers=${WORKERS:-12}
for d in $R/*/; do echo "$d: $(grep eval $d/metrics.jsonl | tail -1)"; tail -1 $d/metrics.jsonl; done
tar czf "$OUT/shapes-clip.tar.gz" -C $R shapes-clip/model
tar czf "$OUT/logs.tar.gz" --exclude=checkpoints --exclude=model -C /tmp runs
ls -la "$OUT"
