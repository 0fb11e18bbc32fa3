"""Load test of `clipblip serve` on loopback: throughput and p50/p99 latency of N concurrent clients (1, 4, 16,
64), with the server's micro-batching on and off (--no-batching), on two workloads: /embed of one text and
/caption of one image (64 px Shapes scenes, the embedded models). Every request is valid; any that fails is
counted and reported.

    python bench/bench_serve.py [--duration 8] [--clients 1 4 16 64] [--threads 1]

The load generator is bounded (closed loop): N clients, each sending its next request when the last one is
answered, for `duration` seconds after a warm-up. It runs in this process, the server in a subprocess, on the
same machine: both share its CPUs. The two servers (batching on, off) run side by side, their rows alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import subprocess
import sys
import time
from collections import Counter

import httpx

from clipblip.serve.metrics import percentile
from common import machine


def _inputs(n: int = 16):
    from clipblip.data.shapes import ShapesWorld

    world, texts, images = ShapesWorld(seed=1), [], []
    for i in range(n):
        s = world.sample("test", i)
        buf = io.BytesIO()
        s["image"].save(buf, format="PNG")
        texts.append(s["caption"])
        images.append((f"scene{i}.png", buf.getvalue(), "image/png"))
    return texts, images


TEXTS, IMAGES = _inputs()
WORKLOADS = {
    "embed text": lambda c, i: c.post("/embed", data={"text": TEXTS[i % len(TEXTS)]}),
    "caption image": lambda c, i: c.post("/caption", files={"image": IMAGES[i % len(IMAGES)]}),
}


def start_server(batching: bool, threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "clipblip.cli", "serve", "--port", str(port), "--threads", str(threads),
           "--max-queue", "1024", "--log-level", "warning",
           "--max-connections", "256"] + ([] if batching else ["--no-batching"])  # rows of 64 clients
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


async def load(url: str, request, clients: int, duration: float) -> dict:
    """Run `clients` closed-loop clients for `duration` seconds; latencies of the answered requests."""
    latencies, failures = [], Counter()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as c:
        deadline = time.perf_counter() + duration

        async def client(k: int):
            i = k
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    r = await request(c, i)
                    if r.status_code == 200:
                        latencies.append(time.perf_counter() - start)
                    else:
                        failures[f"{r.status_code}: {r.text[:80]}"] += 1
                except httpx.HTTPError as e:
                    failures[f"{type(e).__name__}: {e} after {time.perf_counter() - start:.1f} s"] += 1
                i += clients

        start = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(clients)))
        elapsed = time.perf_counter() - start
    return {"ok": len(latencies), "failed": failures, "rps": len(latencies) / elapsed,
            "p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99)}


def mean_batch(before: dict, after: dict, task: str) -> float:
    """Mean items per model call for `task` between two /metrics snapshots."""
    b, a = before.get(task, {}), after.get(task, {})
    counts = {int(s): n - b.get(s, 0) for s, n in a.items()}
    calls = sum(counts.values())
    return sum(s * n for s, n in counts.items()) / calls if calls else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    args = ap.parse_args()
    task = {"embed text": "embed_text", "caption image": "caption"}
    # Both servers run side by side and the rows alternate between them, so that both see the same machine
    # (the other processes on a shared machine come and go). An idle server's worker sleeps.
    servers = {b: start_server(b, args.threads) for b in (False, True)}
    rows = []
    try:
        for name, request in WORKLOADS.items():
            for _, url in servers.values():
                asyncio.run(load(url, request, 4, 1.0))  # warm-up
            for n in args.clients:
                for batching, (_, url) in servers.items():
                    before = httpx.get(f"{url}/metrics").json()["batch_sizes"]
                    r = asyncio.run(load(url, request, n, args.duration))
                    after = httpx.get(f"{url}/metrics").json()["batch_sizes"]
                    rows.append({"workload": name, "clients": n, "batching": batching, **r,
                                 "batch": mean_batch(before, after, task[name])})
                    print(f"{name} {n} clients batching={batching}: {r['rps']:.1f}/s", file=sys.stderr)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait()
    report(rows, args)


def report(rows: list[dict], args) -> None:
    print(f"`clipblip serve` on loopback, {machine()}; server --threads {args.threads}, {args.duration:.0f} s "
          "per row; load generator in the same machine (shared CPU)\n")
    print("| workload | clients | batching | requests/s | p50 ms | p99 ms | mean batch | failed |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['workload']} | {r['clients']} | {'on' if r['batching'] else 'off'} | {r['rps']:.1f} | "
              f"{1000 * r['p50']:.1f} | {1000 * r['p99']:.1f} | {r['batch']:.1f} | {sum(r['failed'].values())} |")
    print()
    for name in WORKLOADS:
        for n in args.clients:
            on, off = ([r for r in rows if r["workload"] == name and r["clients"] == n and r["batching"] == b][0]
                       for b in (True, False))
            print(f"- {name}, {n} clients: batching gives {on['rps'] / off['rps']:.2f}x the throughput")
    failed = sum((r["failed"] for r in rows), Counter())
    print(f"\nfailed valid requests: {sum(failed.values())}" + (f" ({dict(failed)})" if failed else ""))


if __name__ == "__main__":
    main()
