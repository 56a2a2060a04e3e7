"""Measures the embedded reference server: start-up time, resident memory and sequential POST
throughput for accepted (201) and refused (422) Tasks. Plain Python; prints the figures that
reference_server/README.md quotes.

    .venv/bin/python benchmarks/bench_reference_server.py [--requests 500] [--starts 5]

Traffic goes to the server on 127.0.0.1 only, in bounded loops.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import httpx

from kt2conformance._koppeltaal import KT2TASK_URL
from kt2conformance.target._server import ReferenceServer

TASK: dict[str, Any] = {
    "resourceType": "Task",
    "meta": {"profile": [KT2TASK_URL]},
    "identifier": [{"system": "http://example.org/task", "value": "bench"}],
    "status": "ready",
    "intent": "order",
    "for": {"reference": "Patient/bench-patient"},
    "owner": {"reference": "Practitioner/bench-practitioner"},
}
INVALID_TASK: dict[str, Any] = {**TASK, "note": [{"text": "max 0 in KT2Task"}]}
WARM_UP = 50


def rss_mib(pid: int) -> float | None:
    """Resident set size of a process from /proc (Linux), in MiB; None elsewhere."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def measure_start(starts: int) -> list[float]:
    """Seconds from start() to a server answering GET /metadata, once per start."""
    durations = []
    for _ in range(starts):
        began = time.perf_counter()
        with ReferenceServer():
            durations.append(time.perf_counter() - began)
    return durations


def measure_posts(client: httpx.Client, body: dict[str, Any], expected: int, count: int) -> list[float]:
    """Latency in seconds of `count` sequential POST /Task calls that must all answer `expected`."""
    latencies = []
    for _ in range(count):
        began = time.perf_counter()
        response = client.post("/Task", json=body)
        latencies.append(time.perf_counter() - began)
        if response.status_code != expected:
            raise SystemExit(f"expected {expected}, got {response.status_code}: {response.text[:300]}")
    return latencies


def report(label: str, latencies: list[float]) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[int(len(ms) * 0.95) - 1]
    print(f"{label}: {len(ms) / sum(latencies):.0f} req/s, latency mean {statistics.mean(ms):.1f} ms, "
          f"p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="POSTs per case (default 500)")
    parser.add_argument("--starts", type=int, default=5, help="start-ups to time (default 5)")
    args = parser.parse_args()

    starts = measure_start(args.starts)
    print(f"start-up to first GET /metadata: median {statistics.median(starts):.2f} s "
          f"(min {min(starts):.2f}, max {max(starts):.2f}, {len(starts)} starts)")

    with ReferenceServer() as server:
        assert server.pid is not None
        print(f"RSS after start: {rss_mib(server.pid) or float('nan'):.0f} MiB")
        headers = {"Content-Type": "application/fhir+json"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30.0) as client:
            client.put("/Patient/bench-patient", json={"resourceType": "Patient", "id": "bench-patient"})
            client.put("/Practitioner/bench-practitioner",
                       json={"resourceType": "Practitioner", "id": "bench-practitioner"})
            measure_posts(client, TASK, 201, WARM_UP)
            measure_posts(client, INVALID_TASK, 422, WARM_UP)
            report(f"POST valid Task -> 201 ({args.requests} sequential)",
                   measure_posts(client, TASK, 201, args.requests))
            report(f"POST invalid Task -> 422 ({args.requests} sequential)",
                   measure_posts(client, INVALID_TASK, 422, args.requests))
            stored = client.get("/Task", params={"_summary": "count"}).json()["total"]
        print(f"RSS after {stored} stored Tasks: {rss_mib(server.pid) or float('nan'):.0f} MiB")


if __name__ == "__main__":
    main()
