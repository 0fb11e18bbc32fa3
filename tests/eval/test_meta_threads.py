"""The report's machine line says how many threads the measurements ran on and how many CPUs there were."""

import os

import clipblip
from clipblip.eval import benchmark


def test_machine_line_counts_threads_and_cpus_in_words(tiny_clip_dir, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # a 2-core machine
    results, _ = benchmark.run(clipblip.load(tiny_clip_dir), n=4, progress=False)
    assert ", 1 thread of 2 CPUs, torch " in results["meta"]["machine"]  # conftest runs torch on one thread
