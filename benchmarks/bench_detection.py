"""Detection table: which subtly defective and hostile servers a default run catches.

    .venv/bin/python benchmarks/bench_detection.py [--set generator|redteam|all] [--only NAME,...]
                                                    [--examples N] [--out FILE]

Two catalogues of defects, each a loopback proxy in front of one embedded reference server:
`generator` (tests/defective_servers.py: lossy, strict, lenient; written with the generator's
catalogue in mind) and `redteam` (tests/redteam_servers.py: an independent second catalogue,
written from a server vendor's point of view, adding protocol defects, auth defects and hostile
transports). Each gets a default `kt2conformance run --target PROXY` in a subprocess, as a user
runs it (auth defects with `--token`).

The reference server itself is not perfect (docs/hapi-divergences.md), so a baseline run without
a defect comes first, and a finding counts only beyond it. Caught means the run exits non-zero
with a finding of the defect's kind beyond the baseline: a data-loss case (lossy), a refused
valid Task (strict), a constraint not enforced (lenient); for protocol defects any of those or
an incomplete run; for hostile ones the run ends (within the timeout) with exit 1 or 2, no
traceback, and the token nowhere in the output or reports. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from defective_servers import DEFECTS, DefectiveServer  # noqa: E402
from redteam_servers import BEHAVIOURS, TOKEN, RedTeamServer  # noqa: E402

from kt2conformance.target._server import ReferenceServer  # noqa: E402

RUN_TIMEOUT_S = 900


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str
    catalogue: str
    token: bool = False


def entries(which: str) -> list[Entry]:
    out = []
    if which in ("generator", "all"):
        out += [Entry(d.name, d.kind, "generator") for d in DEFECTS]
    if which in ("redteam", "all"):
        out += [Entry(b.name, b.kind, "redteam", b.needs_token) for b in BEHAVIOURS]
    return out


def proxy_for(entry: Entry, upstream: str) -> Any:
    if entry.catalogue == "generator":
        return DefectiveServer(upstream, next(d for d in DEFECTS if d.name == entry.name))
    return RedTeamServer(upstream, next(b for b in BEHAVIOURS if b.name == entry.name))


@dataclass
class Result:
    returncode: int | str
    seconds: float
    summary: dict[str, Any] | None
    output: str  # stdout + stderr + every report


def run(target: str, examples: int | None, token: bool) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "kt2conformance", "run", "--target", target,
                   "--reports", f"{tmp}/reports"]
        if examples:
            command += ["--examples", str(examples)]
        if token:
            command += ["--token", TOKEN]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KT2_")}
        started = time.monotonic()
        try:
            done = subprocess.run(command, capture_output=True, text=True, cwd=tmp, check=False,
                                  timeout=RUN_TIMEOUT_S, env=env)
            code: int | str = done.returncode
            output = done.stdout + done.stderr
        except subprocess.TimeoutExpired:
            code, output = "timeout", ""
        seconds = time.monotonic() - started
        reports = Path(tmp) / "reports"
        summary_file = reports / "summary.json"
        summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else None
        if reports.is_dir():
            output += "".join(p.read_text(encoding="utf-8", errors="replace")
                              for p in reports.iterdir() if p.is_file())
        return Result(code, seconds, summary, output)


def counts(summary: dict[str, Any]) -> tuple[set[str], int, int]:
    """(constraints not enforced, refused valid cases, data-loss cases) of a run."""
    loose = {k for k, c in summary["constraints"].items() if c["enforced"] is False}
    refused = sum(1 for c in summary["cases"] if c["expected"] == "accept"
                  and c["verdict"] == "fail" and not c.get("data_loss"))
    return loose, refused, int(summary["totals"].get("data_loss", 0))


def judge(entry: Entry, result: Result, baseline: dict[str, Any]) -> tuple[bool, str]:
    """(caught, what the run said) beyond the baseline run."""
    if result.returncode == "timeout":
        return False, f"no end within {RUN_TIMEOUT_S} s"
    clean = "Traceback" not in result.output and TOKEN not in result.output
    if result.summary is None:
        line = result.output.strip().splitlines()[-1:] or [""]
        said = f"exit {result.returncode}: {line[0][:120]}"
        return entry.kind == "hostile" and result.returncode in (1, 2) and clean, said
    loose, refused, lost = counts(result.summary)
    base_loose, base_refused, base_lost = counts(baseline)
    new_loose = sorted(loose - base_loose)
    said = []
    if lost > base_lost:
        said.append(f"data loss {lost}")
    if refused > base_refused:
        said.append(f"over-strict {refused}")
    if new_loose:
        said.append(f"not enforced: {', '.join(new_loose[:3])}{' …' if len(new_loose) > 3 else ''}")
    totals = result.summary["totals"]
    if not result.summary.get("complete", True) or totals.get("errors"):
        said.append(f"incomplete ({totals.get('errors', 0)} errors)")
    if not clean:
        said.append("TRACEBACK OR LEAK")
    finding = {"lossy": lost > base_lost, "strict": refused > base_refused,
               "lenient": bool(new_loose)}.get(entry.kind)
    if finding is None:  # protocol, hostile: a finding or an incomplete run, never green
        finding = bool(said) and clean
    return bool(finding) and result.returncode in (1, 2) and clean, "; ".join(said) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="which", default="all", choices=("generator", "redteam", "all"))
    parser.add_argument("--only", default="", help="comma-separated defect names")
    parser.add_argument("--examples", type=int, default=None)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    chosen = [e for e in entries(args.which) if not args.only or e.name in args.only.split(",")]
    rows = ["| defect | catalogue | kind | caught | findings (beyond the baseline) | exit | s |",
            "|---|---|---|---|---|---|---|"]
    caught_total = 0
    with ReferenceServer() as server:
        base = run(server.base_url, args.examples, False)
        assert base.summary is not None, base.output[-2000:]
        for entry in chosen:
            with proxy_for(entry, server.base_url) as proxy:
                result = run(proxy.url, args.examples, entry.token)
            caught, said = judge(entry, result, base.summary)
            caught_total += caught
            rows.append(f"| {entry.name} | {entry.catalogue} | {entry.kind} | "
                        f"{'yes' if caught else 'NO'} | {said} | {result.returncode} | "
                        f"{result.seconds:.0f} |")
            print(rows[-1], flush=True)
    rows.append(f"\ncaught {caught_total} of {len(chosen)}")
    table = "\n".join(rows)
    print()
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
