"""Run every benchmark in this folder, one after another (`make bench`). Each prints a markdown table."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script in ("bench_tokenizer.py", "bench_image.py", "bench_towers.py", "bench_blip.py", "bench_train.py",
               "bench_shapes.py", "bench_index.py", "bench_serve.py", "judge_guidance.py", "bench_runtime.py",
               "bench_precision.py", "bench_decode.py", "bench_input.py"):
    print(f"\n## {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=True, cwd=HERE.parent)
