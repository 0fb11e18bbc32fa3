#!/usr/bin/env bash
# One GPU session: train the shapes-blip preset, then shapes-blip-vqa from it, and bring back both models and
# their logs as archives under $OUT (the device tool brings back few, small files).
#   OUT=/some/dir DEVICE=cpu WORKERS=0 PY=.venv/bin/python EXTRA="steps=2 ..." bash scripts/gpu_blip.sh   (dry run)
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

train() {  # name, then arguments; wall time and exit code go to $R/NAME.done
    local name=$1; shift
    local t0=$(date +%s)
    timeout "${LIMIT:-300}" $PY -m clipblip.cli train "$@" device=${DEVICE:-cuda} progress=false log_every=50 ${EXTRA:-} out=$R/$name \
        > $R/$name.log 2>&1
    echo "rc=$? seconds=$(( $(date +%s) - t0 )) command=clipblip train $*" > $R/$name.done
    cat $R/$name.done; grep eval $R/$name/metrics.jsonl | tail -2; tail -2 $R/$name.log
}

LIMIT=${BLIP_LIMIT:-420} train shapes-blip --preset shapes-blip workers=${WORKERS:-12}
LIMIT=${VQA_LIMIT:-140} train shapes-blip-vqa --preset shapes-blip-vqa init=$R/shapes-blip/model workers=${WORKERS:-12}
for name in shapes-blip shapes-blip-vqa; do
    [ -d $R/$name/model ] && tar czf "$OUT/$name.tar.gz" -C $R $name/model
done
tar czf "$OUT/logs.tar.gz" --exclude=checkpoints --exclude=model -C /tmp runs
ls -la "$OUT"
