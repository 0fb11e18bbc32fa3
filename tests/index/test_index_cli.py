"""`clipblip index ...` end to end: outputs, --json, exit codes (3 when inputs were skipped)."""

import json

from clipblip.cli import EXIT_ERROR, EXIT_PARTIAL, main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_build_search_delete_info(shapes, tmp_path, capsys):
    out = tmp_path / "ix"
    code, stdout, err = run(capsys, "index", "build", shapes, "--out", out, "--json", "--batch-size", "8")
    assert code == EXIT_PARTIAL and "broken.png" in err
    report = json.loads(stdout)
    assert (report["count"], report["embedded"], report["kind"]) == (20, 20, "flat")
    assert [s["item"].endswith("broken.png") for s in report["skipped"]] == [True]

    code, stdout, _ = run(capsys, "index", "search", out, "--image", shapes / "0002.png", "--top-k", "3", "--json")
    hits = json.loads(stdout)["hits"]
    assert code == 0 and len(hits) == 3 and hits[0]["path"].endswith("0002.png") and hits[0]["id"] == 2
    code, stdout, _ = run(capsys, "index", "search", out, "a green star", "--top-k", "2", "--rerank")
    lines = stdout.splitlines()
    assert code == 0 and len(lines) == 2 and all(".png" in line for line in lines)

    code, stdout, err = run(capsys, "index", "delete", out, "2", "77")
    assert code == EXIT_PARTIAL and "77" in err and "removed 1" in stdout
    code, stdout, _ = run(capsys, "index", "info", out, "--json")
    info = json.loads(stdout)
    assert (info["count"], info["version"], info["model"]) == (19, 2, "shapes-clip")
    code, stdout, _ = run(capsys, "index", "search", out, "--image", shapes / "0002.png", "--json")
    assert all(h["id"] != 2 for h in json.loads(stdout)["hits"])


def test_errors_are_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "index", "search", tmp_path / "nope", "a query")
    assert code == EXIT_ERROR and err.count("\n") == 1 and "clipblip index build" in err
    code, _, err = run(capsys, "index", "build", tmp_path / "nothing", "--out", tmp_path / "ix")
    assert code == EXIT_ERROR and "no such file" in err
