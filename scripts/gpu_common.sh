# Sourced by the GPU session scripts: the run folder, the carried wheels, the machine line, and `train`.
# Env: OUT (archives to bring back), PY, DEVICE, WORKERS, EXTRA (settings for a CPU dry run), LIMIT per run.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
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
    cat $R/$name.done; grep eval $R/$name/metrics.jsonl 2>/dev/null | tail -2
}
