"""scripts/binding_token_probe.py, small: the token under each object's centre must carry its colour (which any
patch of the object shows), so a wrong patch index (an object's place misread) shows as a colour accuracy far
below the ~100% measured at full size."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_token_under_each_object_reads_its_colour(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "binding_token_probe.py"), "shapes-blip",
                           "--train", "128", "--test", "64"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = re.search(r"shape ([\d.]+)% \(majority class ([\d.]+)%\), colour ([\d.]+)%", proc.stdout)
    assert m, proc.stdout
    shape, majority, colour = map(float, m.groups())
    assert colour >= 90 and shape > majority
