"""Detection table: which subtly defective servers a default run catches, with how many requests.

    .venv/bin/python benchmarks/bench_detection.py [--only NAME,...] [--examples N] [--out FILE]

For each defect of tests/defective_servers.py (lossy, strict, lenient), one embedded reference
server with that defect in front of it gets a default `kt2conformance run --target PROXY`, in a
subprocess as a user runs it. A defect is caught when the run exits 1 with a finding of the
defect's kind: data loss for a lossy server, refused valid Tasks (over-strict) for a strict one,
a constraint not enforced for a lenient one. Prints a Markdown table (defect, kind, caught, the
findings, the run's requests and cases, the requests the proxy saw, seconds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from defective_servers import DEFECTS, DefectiveServer  # noqa: E402

from kt2conformance.target._server import ReferenceServer  # noqa: E402


def findings(summary: dict, kind: str) -> tuple[bool, str]:
    """(caught, what the run said) for a defect of `kind`."""
    totals = summary["totals"]
    refused = sum(1 for c in summary["cases"] if c["expected"] == "accept"
                  and c["verdict"] == "fail" and not c.get("data_loss"))
    loose = sorted(k for k, c in summary["constraints"].items() if c["enforced"] is False)
    said = []
    if totals.get("data_loss"):
        said.append(f"data loss {totals['data_loss']} ({', '.join(list(summary.get('data_loss', {}))[:3])})")
    if refused:
        said.append(f"over-strict {refused}")
    if loose:
        said.append(f"not enforced: {', '.join(loose[:3])}{' …' if len(loose) > 3 else ''}")
    caught = {"lossy": bool(totals.get("data_loss")), "strict": refused > 0,
              "lenient": bool(loose)}[kind]
    return caught, "; ".join(said) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated defect names")
    parser.add_argument("--examples", type=int, default=None)
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    chosen = [d for d in DEFECTS if not args.only or d.name in args.only.split(",")]
    rows = ["| defect | kind | caught | findings | requests (run) | cases | requests (proxy) | s |",
            "|---|---|---|---|---|---|---|---|"]
    with ReferenceServer() as server:
        for defect in chosen:
            with DefectiveServer(server.base_url, defect) as proxy, \
                    tempfile.TemporaryDirectory() as tmp:
                command = [sys.executable, "-m", "kt2conformance", "run", "--target", proxy.url,
                           "--reports", f"{tmp}/reports"]
                if args.examples:
                    command += ["--examples", str(args.examples)]
                started = time.monotonic()
                result = subprocess.run(command, capture_output=True, text=True, cwd=tmp, check=False)
                seconds = time.monotonic() - started
                summary_file = Path(tmp) / "reports" / "summary.json"
                if not summary_file.is_file():
                    rows.append(f"| {defect.name} | {defect.kind} | error | exit {result.returncode}: "
                                f"{result.stderr.strip()[-120:]} | | | {proxy.requests} | {seconds:.0f} |")
                    continue
                summary = json.loads(summary_file.read_text(encoding="utf-8"))
                caught, said = findings(summary, defect.kind)
                caught = caught and result.returncode == 1
                rows.append(f"| {defect.name} | {defect.kind} | {'yes' if caught else 'NO'} | {said} | "
                            f"{summary.get('requests', '?')} | {summary['totals']['cases']} | "
                            f"{proxy.requests} | {seconds:.0f} |")
            print(rows[-1], flush=True)
    table = "\n".join(rows)
    print()
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
