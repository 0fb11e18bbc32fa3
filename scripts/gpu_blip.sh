#!/usr/bin/env bash
# One GPU session: train the shapes-blip preset, then shapes-blip-vqa from it, and bring back both models and
# their logs as archives under $OUT (the device tool brings back few, small files).
#   OUT=/some/dir DEVICE=cpu WORKERS=0 PY=.venv/bin/python EXTRA="steps=2 ..." bash scripts/gpu_blip.sh   (dry run)
source "$(dirname "$0")/gpu_common.sh"

LIMIT=${BLIP_LIMIT:-420} train shapes-blip --preset shapes-blip workers=${WORKERS:-12}
LIMIT=${VQA_LIMIT:-140} train shapes-blip-vqa --preset shapes-blip-vqa init=$R/shapes-blip/model workers=${WORKERS:-12}
for name in shapes-blip shapes-blip-vqa; do
    [ -d $R/$name/model ] && tar czf "$OUT/$name.tar.gz" -C $R $name/model
done
tar czf "$OUT/logs.tar.gz" --exclude=checkpoints --exclude=model -C /tmp runs
ls -la "$OUT"
