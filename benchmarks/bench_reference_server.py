"""Measures the embedded reference server (HAPI FHIR 8.2): start-up time (to the first line, which
the server prints once the validator is warm), the latency of the first validation, sequential
and concurrent POST throughput for accepted (201) and refused (422) Tasks, and resident memory.
Plain Python; prints the figures the README's Performance table quotes.

    .venv/bin/python benchmarks/bench_reference_server.py [--requests 500] [--starts 3] [--concurrency 4]

Traffic goes to the server on 127.0.0.1 only, in bounded loops.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from kt2conformance._koppeltaal import KT2TASK_URL
from kt2conformance._paths import FIXTURES_DIR
from kt2conformance.target._origin import without_resource_origin
from kt2conformance.target._server import ReferenceServer, ensure_jar

TASK: dict[str, Any] = {
    "resourceType": "Task",
    "meta": {"profile": [KT2TASK_URL]},
    "identifier": [{"system": "http://example.org/task", "value": "bench"}],
    "status": "ready",
    "intent": "order",
}
INVALID_TASK: dict[str, Any] = {**TASK, "status": "bogus"}  # required binding: the validator's 422
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
    """Seconds from start() (java launched) to a warm server answering GET /metadata."""
    ensure_jar()
    durations = []
    for _ in range(starts):
        began = time.perf_counter()
        with ReferenceServer():
            durations.append(time.perf_counter() - began)
    return durations


def post(client: httpx.Client, body: dict[str, Any], expected: int) -> float:
    began = time.perf_counter()
    response = client.post("/Task", json=body)
    elapsed = time.perf_counter() - began
    if response.status_code != expected:
        raise SystemExit(f"expected {expected}, got {response.status_code}: {response.text[:300]}")
    created = response.headers.get("location")
    if created:  # keep the store small and the figures about validation, not memory growth
        client.delete(created.split("/fhir/")[1].split("/_history")[0])
    return elapsed


def measure_posts(client: httpx.Client, body: dict[str, Any], expected: int, count: int) -> list[float]:
    """Latency in seconds of `count` sequential POST /Task calls that must all answer `expected`."""
    return [post(client, body, expected) for _ in range(count)]


def measure_concurrent(base: str, body: dict[str, Any], expected: int, count: int,
                       concurrency: int) -> float:
    """POSTs per second with `concurrency` clients sending `count` POSTs in all."""
    clients = [httpx.Client(base_url=base, headers=HEADERS, timeout=60.0) for _ in range(concurrency)]
    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda i: post(clients[i % concurrency], body, expected), range(count)))
    elapsed = time.perf_counter() - began
    for c in clients:
        c.close()
    return count / elapsed


HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def report(label: str, latencies: list[float]) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[int(len(ms) * 0.95) - 1]
    print(f"{label}: {len(ms) / sum(latencies):.0f} req/s, latency mean {statistics.mean(ms):.1f} ms, "
          f"p50 {statistics.median(ms):.1f} ms, p95 {p95:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="POSTs per case (default 500)")
    parser.add_argument("--starts", type=int, default=3, help="start-ups to time (default 3)")
    parser.add_argument("--concurrency", type=int, default=4, help="clients for the concurrent case")
    args = parser.parse_args()

    starts = measure_start(args.starts)
    print(f"start-up to a warm server answering GET /metadata: median {statistics.median(starts):.1f} s "
          f"(min {min(starts):.1f}, max {max(starts):.1f}, {len(starts)} starts)")

    with ReferenceServer() as server:
        assert server.pid is not None
        print(f"RSS after start: {rss_mib(server.pid) or float('nan'):.0f} MiB")
        with httpx.Client(base_url=server.base_url, headers=HEADERS, timeout=60.0) as client:
            refs = {}
            for rtype in ("Patient", "Practitioner"):  # the official examples (valid to their KT2 profiles)
                example = json.loads(next(FIXTURES_DIR.glob(f"{rtype}-*.json")).read_text(encoding="utf-8"))
                answer = client.post(f"/{rtype}", json=without_resource_origin(example))
                refs[rtype] = f"{rtype}/{answer.json()['id']}"
            valid = {**TASK, "for": {"reference": refs["Patient"]}, "owner": {"reference": refs["Practitioner"]}}
            invalid = {**INVALID_TASK, "for": valid["for"], "owner": valid["owner"]}
            first = post(client, valid, 201)
            print(f"first validation (POST of a valid Task right after start): {first * 1000:.0f} ms")
            measure_posts(client, valid, 201, WARM_UP)
            measure_posts(client, invalid, 422, WARM_UP)
            report(f"POST valid Task -> 201 ({args.requests} sequential)",
                   measure_posts(client, valid, 201, args.requests))
            report(f"POST invalid Task -> 422 ({args.requests} sequential)",
                   measure_posts(client, invalid, 422, args.requests))
            for body, status in ((valid, 201), (invalid, 422)):
                rate = measure_concurrent(server.base_url, body, status, args.requests, args.concurrency)
                print(f"POST -> {status} with {args.concurrency} concurrent clients: {rate:.0f} req/s")
            for i in range(1000):
                assert client.post("/Task", json=valid).status_code == 201, i
            stored = client.get("/Task", params={"_summary": "count"}).json()["total"]
        print(f"RSS after {stored} stored Tasks: {rss_mib(server.pid) or float('nan'):.0f} MiB")


if __name__ == "__main__":
    main()
