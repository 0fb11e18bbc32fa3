"""Starting `clipblip serve` in a process of its own, for the tests that need a real server (browser, soak)."""

import socket
import subprocess
import sys
import time

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], port: int, log) -> tuple[str, subprocess.Popen]:
    """`clipblip serve ARGS --port PORT`, its output in `log`; returns (url, process) once /healthz answers, or
    fails the test with the server's log after 60 s or when the process ends."""
    proc = subprocess.Popen([sys.executable, "-m", "clipblip.cli", "serve", *args, "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return url, proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.seek(0)
            pytest.fail(f"the server did not start:\n{log.read()}")
        time.sleep(0.2)
