#!/usr/bin/env bash
# One GPU session for issue 13's runtime (about 8 minutes on an H100/H200): the CUDA tests of the device and
# precision rule and of graph-captured decoding, the inference benchmark against transformers (bf16, SDPA), and
# the ViT-B/16 training step with and without torch.compile against the bf16 matmul rate. Results under $OUT.
#   run it with the device tool:  OUT=$OUT bash scripts/gpu_runtime.sh      (timeout_s 560)
source "$(dirname "$0")/gpu_common.sh"

timeout 90 $PY -m pytest -q -p no:cacheprovider tests/test_runtime.py tests/nn/test_kvcache.py \
    -k "cuda or graph" > "$OUT/cuda_tests.txt" 2>&1; echo "cuda tests rc=$?" | tee -a "$OUT/cuda_tests.txt"
timeout 330 $PY scripts/gpu_runtime.py --budget 300 --out "$OUT/gpu_runtime.json" > "$OUT/gpu_runtime.txt" 2>&1
echo "gpu_runtime rc=$?"; tail -20 "$OUT/gpu_runtime.txt"
for flag in "" "--compile"; do
    timeout 100 $PY bench/bench_train.py --gpu --repeat 3 $flag >> "$OUT/bench_train.txt" 2>&1
    echo "bench_train $flag rc=$?" | tee -a "$OUT/bench_train.txt"
done
cat "$OUT/machine.txt" 2>/dev/null; cp $R/machine.txt "$OUT/" 2>/dev/null; ls -la "$OUT"
