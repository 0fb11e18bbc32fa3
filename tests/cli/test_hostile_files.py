"""Every command that reads files, run over hostile files made at test time (tests/hostile.py): one-line errors
(exit 1) or the bad items skipped and listed (exit 3), no traceback, nothing run, nothing read that the inputs only
named, nothing written outside the output folder, each case within its time bound."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HOSTILE = Path(__file__).parents[1] / "hostile.py"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    (root / "home").mkdir()
    (root / "cwd").mkdir()
    # matplotlib's font cache is its own, kept outside the watched tree
    cache = tmp_path_factory.mktemp("mplconfig")
    env = {**os.environ, "HOME": str(root / "home"), "XDG_CACHE_HOME": str(root / "home" / ".cache"),
           "MPLCONFIGDIR": str(cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(HOSTILE), str(root)], cwd=root / "cwd", env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return {r["case"]: r for r in lines if "case" in r}, lines[-1]


def test_the_sweep_covers_every_command_that_reads_files(sweep):
    cases, _ = sweep
    commands = {name.split("-")[0] for name in cases}
    assert {"classify", "embed", "search", "caption", "ask", "match", "score", "rerank", "index", "data", "capfilt",
            "train", "load", "convert"} <= commands
    assert len(cases) >= 40


def test_no_case_crashes_hangs_or_runs_code(sweep):
    cases, summary = sweep
    bad = {n: r for n, r in cases.items() if r["crash"] or r["traceback"] or r["timed_out"] or r["marker"]}
    assert bad == {}
    assert summary["written_outside"] == []  # no file made or changed outside out/, a payload's marker included


def test_errors_are_one_line_and_bad_items_are_skipped_and_listed(sweep):
    cases, _ = sweep
    for name, r in cases.items():
        assert r["rc"] in (0, 1, 3), (name, r)
        if r["rc"] == 1:
            assert len(r["errors"]) == 1 and "\n" not in r["errors"][0], (name, r)
        assert r["unlisted"] == [], (name, r)  # each input that is no image is named in the output


def test_hostile_checkpoints_and_configs_are_refused(sweep):
    cases, _ = sweep
    refused = {n: r["rc"] for n, r in cases.items() if n.startswith(("load-", "convert-"))}
    assert refused and set(refused.values()) == {1}


def test_batch_jobs_finish_the_good_items(sweep):
    cases, _ = sweep
    for name in ("classify", "embed", "search", "caption", "score-set", "rerank", "index-build-folder",
                 "data-pack-folder"):
        assert cases[name]["rc"] == 3, cases[name]  # done, with the bad items skipped


def test_a_shard_cannot_make_a_job_read_a_file_it_names(sweep):
    cases, summary = sweep
    assert cases["index-build-names-a-file"]["rc"] in (0, 3) and cases["data-pack-names-a-file"]["rc"] in (0, 3)
    assert summary["secret_in_outputs"] == []
