"""What a failing case means, in words and pictures: a plain-language sentence, the constraint's
own text from the profile, the JSON sent with the offending element marked, and a diff against
a minimal valid Task. Pure functions of plain data, so the HTML template only lays them out."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kt2conformance._vocabulary import ConstraintKey, Kind
from kt2conformance.report._verdict import Finding

Path = tuple[str | int, ...]
_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")
# Elements a server manages (not compared on read-back, not data loss).
_MANAGED = frozenset({"id", "text", "meta"})
_MAX_INLINE = 80  # longest value quoted in a sentence


@dataclass(frozen=True)
class Issue:
    """One thing the oracle finds wrong with a Task: constraint key, JSON path, message."""

    key: str
    path: str
    message: str


def parse_path(path: str) -> Path:
    """`Task.extension[0].valueReference` -> ('extension', 0, 'valueReference'); the leading
    resource type is dropped, a segment without an index matches any index (see `under`)."""
    parts: list[str | int] = []
    for i, (name, indexes) in enumerate(_SEGMENT.findall(path)):
        if i or not name[:1].isupper():
            parts.append(name)
        parts += [int(n) for n in _INDEX.findall(indexes)]
    return tuple(parts)


def under(path: Path, mark: Path) -> bool:
    """Whether `path` (in the JSON) lies within `mark`; list indexes the mark leaves out match
    any index."""
    if not mark:
        return False
    i = 0
    for part in path:
        if i == len(mark):
            return True
        if part == mark[i]:
            i += 1
        elif not isinstance(part, int):
            return False
    return i == len(mark)


def json_lines(value: Any, marks: Sequence[Path]) -> list[tuple[str, bool]]:
    """`value` pretty-printed as json.dumps(indent=2) would, one (text, marked) pair a line:
    marked when the line belongs to one of the marked elements."""
    out: list[tuple[str, bool]] = []

    def marked(path: Path) -> bool:
        return any(under(path, m) for m in marks)

    def emit(v: Any, path: Path, indent: str, prefix: str, comma: str) -> None:
        hit = marked(path)
        if isinstance(v, dict) and v:
            out.append((f"{indent}{prefix}{{", hit))
            items = list(v.items())
            for n, (k, child) in enumerate(items):
                emit(child, (*path, k), indent + "  ", f"{json.dumps(k)}: ",
                     "," if n < len(items) - 1 else "")
            out.append((f"{indent}}}{comma}", hit))
        elif isinstance(v, list) and v:
            out.append((f"{indent}{prefix}[", hit))
            for n, child in enumerate(v):
                emit(child, (*path, n), indent + "  ", "", "," if n < len(v) - 1 else "")
            out.append((f"{indent}]{comma}", hit))
        else:
            out.append((f"{indent}{prefix}{json.dumps(v, ensure_ascii=False)}{comma}", hit))

    emit(value, (), "", "", "")
    return out


def segments(lines: Sequence[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Consecutive lines with the same mark joined into one (text, marked) segment: a few
    elements a Task instead of one a line keep a report of thousands of cases light."""
    out: list[tuple[str, bool]] = []
    for text, hit in lines:
        if out and out[-1][1] == hit:
            out[-1] = (out[-1][0] + "\n" + text, hit)
        else:
            out.append((text, hit))
    return out


def diff_lines(valid: Any, sent: Any) -> list[tuple[str, str]] | None:
    """(op, lines) of a line diff from a minimal valid Task to the Task sent ('+' added, '-'
    removed, ' ' same; consecutive lines of one op joined, each prefixed with its op); None
    when the two have too little in common for a diff to help."""
    a = json.dumps(valid, indent=2, ensure_ascii=False).splitlines()
    b = json.dumps(sent, indent=2, ensure_ascii=False).splitlines()
    ops = [(line[0], line[2:]) for line in difflib.ndiff(a, b) if line[:1] in "+- "]
    changed = sum(op != " " for op, _ in ops)
    if not changed or changed > max(len(a), len(b)) // 2:
        return None
    joined: list[tuple[str, str]] = []
    for op, line in ops:
        if joined and joined[-1][0] == op:
            joined[-1] = (op, f"{joined[-1][1]}\n{op} {line}")
        else:
            joined.append((op, f"{op} {line}"))
    return joined


def differing_paths(sent: Any, stored: Any, path: Path = ()) -> list[Path]:
    """Where a stored resource differs from the one sent (server-managed elements left out)."""
    if isinstance(sent, dict) and isinstance(stored, dict):
        out: list[Path] = []
        for key in sent.keys() | stored.keys():
            if not path and key in _MANAGED:
                continue
            if key not in sent or key not in stored:
                out.append((*path, key))
            else:
                out += differing_paths(sent[key], stored[key], (*path, key))
        return out
    if isinstance(sent, list) and isinstance(stored, list) and len(sent) == len(stored):
        return [p for n, (a, b) in enumerate(zip(sent, stored, strict=True))
                for p in differing_paths(a, b, (*path, n))]
    return [] if sent == stored else [path]


def show_path(path: Path) -> str:
    """('note', 0, 'text') -> 'note[0].text'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(the whole resource)"


def _quote(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _MAX_INLINE else text[:_MAX_INLINE - 1] + "…"


def sentence(finding: Finding, *, profile: str, constraint: str | None, kind: Kind | None,
             element: str | None, status: int | None, issues: Iterable[Issue],
             said: str | None, lost: Sequence[Path], reason: str,
             cardinality: tuple[int, str] | None = None, resource: str = "Task",
             rule: str | None = None, example: str | None = None) -> str:
    """The one sentence a tester reads first: what the server did and why that is wrong.
    `resource` is the type the case was sent as; `example` names an official example."""
    issue = next(iter(issues), None)
    where = show_path(parse_path(issue.path)) if issue else None
    answer = f"HTTP {status}" if status is not None else "no answer"
    if finding is Finding.NOT_ENFORCED:
        if kind is Kind.MAX and cardinality and cardinality[1] == "0" and where:
            return (f"The server stored a {resource} with `{where}`; {profile} forbids `{element}` "
                    f"(max 0).")
        if kind is Kind.MAX and cardinality and where:
            return (f"The server stored a {resource} with too many `{where}`; {profile} allows "
                    f"`{element}` at most {cardinality[1]} time(s).")
        if kind is Kind.MIN and issue and issue.path == element:
            return (f"The server stored a {resource} without `{where}`; {profile} requires "
                    f"`{element}` (min {cardinality[0] if cardinality else 1}).")
        if issue and kind is Kind.UNKNOWN:
            return (f"The server stored a {resource} with `{where}`, an element {profile} does not "
                    f"define ({issue.message}).")
        if issue and kind in (Kind.BINDING, Kind.FIXED, Kind.PATTERN, Kind.FORMAT, Kind.TYPE,
                              Kind.TARGET_PROFILE):
            return (f"The server stored a {resource} whose `{where}` breaks {profile}'s "
                    f"`{constraint}`: {issue.message}.")
        if issue and kind is Kind.CONSTRAINT:
            return (f"The server stored a {resource} that breaks the invariant `{constraint}`: "
                    f"{issue.message}.")
        if issue:
            return (f"The server stored a {resource} that breaks `{constraint}` ({answer}): "
                    f"{issue.message} at `{where}`.")
        because = f": {rule}" if rule else ""
        return f"The server accepted ({answer}) a request that breaks `{constraint}`{because}."
    if finding is Finding.SERVER_DEFECT:
        subject = f"a valid {resource}" if constraint is None else f"a {resource} that breaks `{constraint}`"
        return (f"The server failed with {answer} on {subject}: a server error, where "
                f"{'a 2xx' if constraint is None else 'a 4xx refusal'} was due.")
    if finding is Finding.WRONG_REFUSAL:
        return f"The server refused a {resource} that breaks `{constraint}`, but not as required: {reason}."
    if finding is Finding.OVER_STRICT:
        because = f": “{said}”" if said else ""
        what = profile if example is None else f"{resource} (an official example)"
        return f"The server refused a valid {what} with {answer}{because}."
    if finding is Finding.DATA_LOSS:
        if lost:
            shown = ", ".join(f"`{show_path(p)}`" for p in lost[:3])
            more = f" and {len(lost) - 3} more" if len(lost) > 3 else ""
            return (f"The server accepted a valid {resource} ({answer}) but stored it differently: "
                    f"{shown}{more} read back not as sent.")
        return f"The server accepted a valid {resource} ({answer}), but: {reason}."
    return f"No usable answer, so nothing is known about this case: {reason}."


def profile_texts(elements: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """element id -> its ElementDefinition (for the constraint's own text)."""
    return {e["id"]: e for e in elements if isinstance(e, Mapping) and isinstance(e.get("id"), str)}


def constraint_text(key: ConstraintKey, element: Mapping[str, Any] | None
                    ) -> tuple[str, str | None] | None:
    """(text, FHIRPath expression or None) the profile itself gives for a constraint: the
    invariant's human text, the element's cardinality, fixed value, pattern or binding."""
    if element is None:
        return None
    kind = key.kind
    short = element.get("short") or element.get("definition") or ""
    card = f"{element.get('path', element.get('id'))} {element.get('min', '?')}..{element.get('max', '?')}"
    if kind is Kind.CONSTRAINT:
        for c in element.get("constraint") or []:
            if isinstance(c, Mapping) and c.get("key") == key.detail:
                return f"{key.detail} ({c.get('severity', 'error')}): {c.get('human', '')}", c.get("expression")
        return None
    if kind in (Kind.MIN, Kind.MAX):
        return f"{card} — {short}", None
    if kind in (Kind.FIXED, Kind.PATTERN):
        for name, value in element.items():
            if name.startswith(kind.value) and name != kind.value:  # fixedCode, patternCoding…
                return f"{card}: {name} = {_quote(value)}", None
    if kind is Kind.BINDING and isinstance(element.get("binding"), Mapping):
        b = element["binding"]
        return f"binding ({b.get('strength')}): {b.get('valueSet')} — {b.get('description', short)}", None
    if kind is Kind.TARGET_PROFILE:
        targets = [p for t in element.get("type") or [] if isinstance(t, Mapping)
                   for p in t.get("targetProfile") or []]
        return f"{card}: Reference({' | '.join(targets)})", None
    return (f"{card} — {short}", None) if short else None
