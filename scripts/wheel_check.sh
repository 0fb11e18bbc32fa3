#!/usr/bin/env bash
# The package as a user gets it: build the wheel from the files git sees, install it (not editable) with the core
# dependencies alone into a fresh virtual environment, and caption and classify a generated image with the
# embedded models. It catches a file left out of the wheel (tokenizer assets, weights, the web page), a core
# dependency missing from pyproject.toml, and a core command that needs an extra. CI runs it after `make test`.
# Env: PYTHON (default python3), KEEP=1 keeps the work folder. torch comes from .venv's pin (pip's cache).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$(mktemp -d)
[ "${KEEP:-}" = 1 ] && echo "work folder: $work" || trap 'rm -rf "$work"' EXIT
unset PYTHONPATH  # the repository's src/ must not stand in for the installed package
step() { echo "wheel_check: $*"; }

# Built from a copy (tracked and new files, not ignored ones): a clean clone's content, and no build/ or
# *.egg-info left in the checkout.
mkdir "$work/tree"
git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - 2>/dev/null |
    tar -xf - -C "$work/tree"
step "building the wheel"
"${PYTHON:-python3}" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" wheel --no-deps -w "$work/dist" "$work/tree"
wheel=$(ls "$work"/dist/clipblip-*.whl)

# Every file of the package in the tree is in the wheel (package data is listed by hand in pyproject.toml).
"$work/venv/bin/python" - "$work/tree/src" "$wheel" <<'EOF'
import sys, zipfile
from pathlib import Path
src, wheel = Path(sys.argv[1]), sys.argv[2]
want = {p.relative_to(src).as_posix() for p in (src / "clipblip").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts}
missing = sorted(want - set(zipfile.ZipFile(wheel).namelist()))
sys.exit(f"wheel_check: not in the wheel: {', '.join(missing)}" if missing else None)
EOF

step "installing $(basename "$wheel") with the core dependencies"
pin=.venv/torch-pin.txt
[ -f "$pin" ] || pin=constraints.txt
"${pip[@]}" install -c "$pin" "$wheel"
cd "$work"
py=$work/venv/bin/python
"$py" - <<'EOF'
import importlib.util, sys
import clipblip
# (huggingface_hub is not in the list: tokenizers depends on it)
extras = [m for m in ("fastapi", "uvicorn", "faiss", "matplotlib", "sacrebleu", "webdataset", "pyarrow", "onnx",
                      "onnxruntime", "transformers") if importlib.util.find_spec(m)]
if extras or "site-packages" not in clipblip.__file__:
    sys.exit(f"wheel_check: not a core-only install of the wheel: {clipblip.__file__}, extras {extras}")
from PIL import Image, ImageDraw
image = Image.new("RGB", (64, 64), "white")
ImageDraw.Draw(image).ellipse((12, 12, 52, 52), fill="red")
image.save("red_circle.png")
EOF

step "clipblip caption and classify with the embedded models"
export CLIPBLIP_DEVICE=cpu CLIPBLIP_PRECISION=fp32
"$work/venv/bin/clipblip" caption red_circle.png
"$work/venv/bin/clipblip" classify red_circle.png --labels "red circle" "blue square" --templates "a {}." --top-k 1 | tee classify.txt
grep -q "red circle" classify.txt || { echo "wheel_check: classify did not pick the red circle" >&2; exit 1; }

# A command whose extra is missing says which one, in one line, and exits 1.
set +e
"$work/venv/bin/clipblip" serve 2>serve.txt
rc=$?
set -e
if [ "$rc" -ne 1 ] || [ "$(wc -l <serve.txt)" -ne 1 ] || ! grep -q "pip install 'clipblip\[serve\]'" serve.txt; then
    echo "wheel_check: clipblip serve without its extra: exit $rc, said:" >&2; cat serve.txt >&2; exit 1
fi
step "ok"
