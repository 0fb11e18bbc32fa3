"""`clipblip compare` records the command line as given, shell-quoted, in results.json and the report, whether it
came from the console script (sys.argv) or from `clipblip.cli.main(argv)` (as `make demo` calls it)."""

import json
import shlex
import sys

import pytest

import clipblip.cli


@pytest.mark.parametrize("via", ["main(argv)", "sys.argv"])
def test_compare_records_the_command_line(tmp_path, monkeypatch, via):
    out = tmp_path / "a report"  # a space: the recorded command must quote it to be runnable
    argv = ["compare", "--n", "4", "--blip", "none", "--blip-vqa", "none", "--json", "--out", str(out)]
    if via == "sys.argv":
        monkeypatch.setattr(sys, "argv", ["/somewhere/bin/clipblip", *argv])
        assert clipblip.cli.main() == 0
    else:
        assert clipblip.cli.main(argv) == 0
    command = json.loads((out / "results.json").read_text())["meta"]["command"]
    assert command == "clipblip compare --n 4 --blip none --blip-vqa none --json --out " + shlex.quote(str(out))
    assert shlex.split(command)[1:] == argv
    assert f"```\n{command}\n```" in (out / "report.md").read_text()
