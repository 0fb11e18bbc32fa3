#!/usr/bin/env bash
# One GPU session: time the ViT-B/16 CLIP training step (bench/bench_train.py --gpu), train the shapes-clip
# preset, and measure the shapes-blip preset's step rate in a short time-boxed run.
# What comes back goes into a few archives under $OUT (the device tool brings back few, small files).
#   OUT=/some/dir bash scripts/gpu_session.sh        (PY, DEVICE, WORKERS, EXTRA: see gpu_common.sh)
source "$(dirname "$0")/gpu_common.sh"

timeout 100 $PY bench/bench_train.py --gpu > $R/bench_train_gpu.md 2>$R/bench_train_gpu.err
cat $R/bench_train_gpu.md; tail -3 $R/bench_train_gpu.err

LIMIT=270 train shapes-clip --preset shapes-clip workers=${WORKERS:-12}
LIMIT=50 train blip-probe --preset shapes-blip workers=${WORKERS:-12}
for d in $R/*/; do echo "$d: $(grep eval $d/metrics.jsonl | tail -1)"; tail -1 $d/metrics.jsonl; done
tar czf "$OUT/shapes-clip.tar.gz" -C $R shapes-clip/model
tar czf "$OUT/logs.tar.gz" --exclude=checkpoints --exclude=model -C /tmp runs
ls -la "$OUT"
