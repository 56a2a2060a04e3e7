"""junit.xml for CI: one testcase per case, so CI shows the same counts as the console,
report.html and summary.json (tests = cases, failures = failed, errors = errors). The testcase's
classname is the constraint key, which CI tools use to group; the run's verdict, target,
profile and seed are properties. Written record by record: memory stays flat."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from kt2conformance.report._verdict import RunVerdict

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
VALID_CLASS = "valid resources"


def _text(value: Any) -> str:
    return _NOT_XML.sub("\ufffd", str(value))


def write_junit(path: Path, verdict: RunVerdict, properties: Mapping[str, Any],
                records: Iterable[Mapping[str, Any]], duration: float,
                stopped: str | None = None) -> None:
    """Write junit.xml (via a temporary file: a reader never sees half of it). A run that
    stopped before every case ran (`stopped`: why) carries one more testcase, `run complete`,
    with an error: CI shows an incomplete run red even when every case that ran passed."""
    t = verdict.totals
    partial = path.with_name(path.name + ".part")
    extra = 1 if stopped else 0
    head = (f'tests="{t.get("cases", 0) + extra}" failures="{t.get("failed", 0)}" '
            f'errors="{t.get("errors", 0) + extra}" skipped="0" time="{duration:.3f}"')
    with partial.open("w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?>\n')
        out.write(f'<testsuites name="kt2conformance" {head}>\n')
        out.write(f'  <testsuite name="kt2conformance" {head}>\n    <properties>\n')
        props = {"verdict": verdict.outcome.value, "verdict.detail": verdict.why,
                 "counts": verdict.counts, **properties}
        for name, value in props.items():
            if value is not None:
                out.write(f"      <property name={quoteattr(_text(name))} "
                          f"value={quoteattr(_text(value))}/>\n")
        out.write("    </properties>\n")
        if stopped:
            why = _text(stopped)
            out.write(f'    <testcase classname="kt2conformance" name="run complete" time="0">\n'
                      f'      <error message={quoteattr(why)} type="incomplete">{escape(why)}'
                      f"</error>\n    </testcase>\n")
        for record in records:
            classname = record.get("constraint") or VALID_CLASS
            out.write(f"    <testcase classname={quoteattr(_text(classname))} "
                      f"name={quoteattr(_text(record.get('id')))} time=\"0\"")
            verdict_ = record.get("verdict")
            if verdict_ in ("fail", "error"):
                tag = "failure" if verdict_ == "fail" else "error"
                reason = _text(record.get("reason") or "")
                status = record.get("status")
                out.write(f">\n      <{tag} message={quoteattr(reason)} "
                          f"type={quoteattr(f'HTTP {status}' if status else 'no answer')}>"
                          f"{escape(reason)}</{tag}>\n    </testcase>\n")
            else:
                out.write("/>\n")
        out.write("  </testsuite>\n</testsuites>\n")
    partial.replace(path)
