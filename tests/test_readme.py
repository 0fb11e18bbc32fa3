"""The README runs: its bash and python blocks, in order, in a fresh copy of the repository after `make demo`
(scripts/readme_blocks.py). The whole run takes minutes, so it is marked `readme` and run by `make test-readme`
(and .ci/run); the checks of the extractor and of the README's directives run with the suite."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

from clipblip.eval.report import summary_table

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_blocks", ROOT / "scripts" / "readme_blocks.py")
rb = importlib.util.module_from_spec(_spec)
sys.modules["readme_blocks"] = rb  # dataclasses look their module up there
_spec.loader.exec_module(rb)

SAMPLE = """# Title

```bash
echo one
```

<!-- readme-test: skip (needs a GPU) -->
```python
import torch; torch.zeros(1).cuda()
```

```json
{"not": "run"}
```

<!-- readme-test: run with "steps=200" -> "steps=2"; "--n 500" -> "--n 5" (CI time) -->
```bash
train steps=200 --n 500
```

<!-- readme-test: serve 8000 (serves until stopped) -->
```bash
serve --port 8000
curl localhost:8000/healthz
```
"""


def test_blocks_come_in_order_with_their_directives():
    found = rb.blocks(SAMPLE)
    assert [(b.lang, b.line, b.action) for b in found] == [
        ("bash", 3, "run"), ("python", 8, "skip"), ("bash", 17, "run"), ("bash", 22, "serve")]
    assert found[0].script() == "echo one\n"
    assert found[1].why == "needs a GPU"
    assert found[2].script() == "train steps=2 --n 5\n"
    assert found[3].port == 8000 and found[3].why == "serves until stopped"


@pytest.mark.parametrize("directive, message", [
    ("<!-- readme-test: skp (typo) -->", "unknown readme-test directive"),
    ("<!-- readme-test: skip -->", "needs its reason"),
    ('<!-- readme-test: run with "steps=200" => "steps=2" (arrow) -->', "unknown readme-test directive"),
    ("<!-- readme-test: serve (no port) -->", "unknown readme-test directive"),
])
def test_a_directive_the_harness_cannot_follow_is_an_error(directive, message):
    with pytest.raises(rb.ReadmeError, match=message):
        rb.blocks(f"{directive}\n```bash\necho hi\n```\n")


def test_a_directive_must_sit_just_above_a_block_that_runs():
    with pytest.raises(rb.ReadmeError, match="just above a code fence"):
        rb.blocks("<!-- readme-test: skip (why) -->\n\n```bash\necho hi\n```\n")
    with pytest.raises(rb.ReadmeError, match="never run"):
        rb.blocks("<!-- readme-test: skip (why) -->\n```text\noutput\n```\n")


def test_a_replacement_whose_text_is_gone_is_an_error():
    text = '<!-- readme-test: run with "steps=200" -> "steps=2" (CI time) -->\n```bash\ntrain steps=50\n```\n'
    block = rb.blocks(text)
    with pytest.raises(rb.ReadmeError, match="no longer contains"):
        block[0].script()


def test_the_readmes_directives_are_valid():
    """Every block of the real README can be run as its directive says (a typo or a stale replacement fails here,
    in the suite, rather than minutes into the README run)."""
    found = rb.blocks((ROOT / "README.md").read_text())
    assert {b.lang for b in found} == {"bash", "python"}
    for b in found:
        b.script()


def test_the_copy_holds_what_a_clone_would_and_the_venv(tmp_path):
    rb.fresh_copy(ROOT, tmp_path)
    assert (tmp_path / "README.md").read_text() == (ROOT / "README.md").read_text()
    assert (tmp_path / "src" / "clipblip" / "__init__.py").is_file()
    assert (tmp_path / ".venv" / "bin").resolve() == (ROOT / ".venv" / "bin").resolve()
    assert not (tmp_path / ".venv").is_symlink()  # make's install stamps there are the copy's own
    assert not (tmp_path / "runs").exists()  # ignored outputs stay behind: the README must make its own


def _figures(table: str) -> list[list[str]]:
    """A summary table's rows without the timing ones (times differ from machine to machine and run to run) and the
    rule under the header (its width follows the widest cell, a timing)."""
    return [row.split() for row in table.strip().splitlines() if not row.startswith("time ") and row.strip("-")]


@pytest.mark.readme
def test_the_readme_runs_top_to_bottom(tmp_path, capsys):
    lines, error = [], None
    try:
        skipped = rb.run_readme(ROOT, tmp_path / "repo", log=lines.append)
    except rb.ReadmeError as e:
        error = str(e)
    if error:
        pytest.fail("\n".join(lines[-3:] + [error]), pytrace=False)
    with capsys.disabled():  # what ran, in how long, and what was not run and why, even when the test passes
        print("\n".join(["", *lines, f"README blocks not run: {len(skipped)} (marked SKIPPED above)"]))
    # The compare table the README shows is the one `make demo` (its second part) has just printed.
    shown = re.search(r"^```\n(measure .*?)^```", (ROOT / "README.md").read_text(), re.S | re.M).group(1)
    results = json.loads((tmp_path / "repo" / "runs" / "demo" / "compare" / "results.json").read_text())
    assert _figures(shown) == _figures(summary_table(results))
