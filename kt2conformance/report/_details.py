"""The cases report.html shows in full, kept on disk while the run lasts.

A run may send tens of thousands of cases; report.html shows each constraint's first case (what
was tested) and its first few failures in full, with every other failing case as one line, so
its size grows with the constraints, not with the cases. The chosen cases are written as JSON
lines the moment they are judged, each already cleaned of secrets by the caller's `clean`."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kt2conformance._vocabulary import Expectation, Kind
from kt2conformance.report._explain import (
    Issue,
    diff_lines,
    differing_paths,
    parse_path,
    sentence,
)
from kt2conformance.report._explain import Path as JsonPath
from kt2conformance.report._verdict import Finding, finding_of

DETAILED_FAILURES = 3  # failing cases per constraint shown in full
MAX_BODY = 4_000  # characters of an answer kept (a hostile server may send megabytes)


def _same_json(text: str, value: Any) -> bool:
    try:
        return bool(json.loads(text) == value)
    except ValueError:
        return False


def clip(text: str, limit: int = MAX_BODY) -> str:
    return text if len(text) <= limit else (
        text[:limit] + f"\n… ({len(text) - limit:,} more characters not shown)")


class DetailLog:
    """Chosen cases of a run, one JSON object a line, in a hidden file of the reports folder."""

    def __init__(self, folder: Path, clean: Callable[[str], str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".details-", suffix=".jsonl", dir=folder)
        self.path = Path(name)
        self._file = os.fdopen(handle, "w", encoding="utf-8")
        self._clean = clean
        self._lock = threading.Lock()
        self._seen: dict[str | None, int] = {}
        self._failures: dict[str | None, int] = {}

    def wants(self, key: str | None, passed: bool) -> bool:
        """Whether a case of constraint `key` (None: the valid Tasks) is shown in full: the
        first of each constraint, and the first DETAILED_FAILURES that did not pass."""
        with self._lock:
            first = key not in self._seen
            return first or (not passed and self._failures.get(key, 0) < DETAILED_FAILURES)

    def write(self, detail: dict[str, Any]) -> None:
        key, passed = detail.get("constraint"), detail.get("verdict") == "pass"
        line = self._clean(json.dumps(detail))  # \u escapes: a lone surrogate stays writable
        with self._lock:
            self._seen[key] = self._seen.get(key, 0) + 1
            if not passed and not detail.get("minimal"):
                self._failures[key] = self._failures.get(key, 0) + 1
            self._file.write(line + "\n")
            self._file.flush()

    def by_key(self) -> dict[str | None, list[dict[str, Any]]]:
        """The details, grouped by constraint (bounded: a few a constraint)."""
        with self._lock:
            self._file.flush()
        out: dict[str | None, list[dict[str, Any]]] = {}
        with self.path.open(encoding="utf-8") as lines:
            for line in lines:
                detail = json.loads(line)
                out.setdefault(detail.get("constraint"), []).append(detail)
        return out

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


def case_detail(*, case_id: str, constraint: str | None, expected: str, verdict: str,
                reason: str, status: int | None, body: Any, text: str | None,
                content_type: str, received: str, read_back: Any, curl: str, curl_body: bool,
                issues: list[Issue], profile: str, kind: Kind | None, element: str | None,
                cardinality: tuple[int, str] | None, said: str | None,
                pointed: list[str], rule: str | None = None, resource: str = "Task",
                minimal: bool = False,
                minimal_valid: Any = None) -> dict[str, Any]:
    """Everything report.html shows of one case, as JSON-ready data: the sentence, where the
    offending element is, what was sent and received, the reproducer."""
    finding = finding_of({"verdict": verdict, "expected": expected, "status": status})
    lost: list[JsonPath] = []
    if finding is Finding.DATA_LOSS and read_back is not None:
        lost = differing_paths(body, read_back)
    mine = [i for i in issues if i.key == constraint] or issues
    if finding is Finding.DATA_LOSS:
        marks = lost
    elif expected == Expectation.ACCEPT:  # where the server's refusal points
        marks = [parse_path(p) for p in pointed]
    else:
        marks = [parse_path(i.path) for i in mine]
    text_sentence = sentence(finding, profile=profile, constraint=constraint, kind=kind,
                             element=element, status=status, issues=mine,
                             said=said, lost=lost, reason=reason,
                             cardinality=cardinality, resource=resource, rule=rule,
                             example=case_id if case_id.startswith("example/") else None
                             ) if finding is not None else ""
    if body is not None and text is None and received and _same_json(received, body):
        received = "(the Task as sent, echoed back)"
    diff = diff_lines(minimal_valid, body) if minimal and minimal_valid is not None \
        and isinstance(body, dict) else None
    return {
        "id": case_id, "constraint": constraint, "expected": expected, "verdict": verdict,
        "finding": finding.value if finding else None, "sentence": text_sentence,
        "reason": reason, "status": status, "body": body if text is None else None,
        "text": clip(text) if text is not None else None, "content_type": content_type,
        "marks": [list(m) for m in marks], "received": clip(received),
        "read_back": read_back, "lost": [list(p) for p in lost], "curl": clip(curl),
        "curl_body": curl_body,
        "minimal": minimal, "diff": diff,
        "issues": [[i.key, i.path, i.message] for i in issues[:10]],
    }
