"""Subtly defective Koppeltaal servers, for measuring what a default run catches.

Each `Defect` is one plausible fault of a real server, written without looking at what the
harness sends: a VARCHAR column, a date parser, a JSON binding, a code lookup, a target list.
A `DefectiveServer` is a loopback proxy in front of the real reference server that applies the
defect to every POSTed Task and forwards the rest untouched. Three kinds:

- lossy: the Task is validated and stored as sent, but what the server keeps, and answers on a
  read, is altered (truncated, re-encoded, precision cut, instants normalised, elements
  dropped), as by a storage layer after validation;
- strict: some valid Tasks are refused with 422 (non-ASCII text, long strings, offsets, lower
  precisions, URNs, extensions…);
- lenient: some invalid Tasks are repaired before validation and so accepted (a case-insensitive
  code lookup, a forgiving date parser, a text comparison of dateTimes, a wrong target list…).

`requests` counts what the proxy received, for the detection table.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faulty_targets import ForwardingProxy, Incoming, _ForwardingHandler

Json = Any
_TEMPORAL = re.compile(r"^-?\d{4}(-\d{2}(-\d{2}(T.*)?)?)?$")
_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_KEEP = frozenset({"resourceType", "reference", "url", "profile"})  # what any store keeps intact
_CODED = ("status", "intent", "priority")
_SLICES = frozenset({"http://koppeltaal.nl/fhir/StructureDefinition/resource-origin",
                     "http://vzvz.nl/fhir/StructureDefinition/instantiates"})
_TASK_ELEMENTS = frozenset({
    "resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension",
    "modifierExtension", "identifier", "instantiatesCanonical", "instantiatesUri", "basedOn",
    "groupIdentifier", "partOf", "status", "statusReason", "businessStatus", "intent", "priority",
    "code", "description", "focus", "for", "encounter", "executionPeriod", "authoredOn",
    "lastModified", "requester", "performerType", "owner", "location", "reasonCode",
    "reasonReference", "insurance", "note", "relevantHistory", "restriction", "input", "output"})


def map_strings(value: Json, fn: Callable[[str], str], key: str = "") -> Json:
    """`value` with `fn` applied to every string, except references, urls and meta."""
    if isinstance(value, dict):
        return {k: (v if k in _KEEP or k == "meta" else map_strings(v, fn, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [map_strings(v, fn, key) for v in value]
    if isinstance(value, str):
        return fn(value)
    return value


def map_times(value: Json, fn: Callable[[str], str]) -> Json:
    """`value` with `fn` applied to every date/dateTime-looking string."""
    return map_strings(value, lambda s: fn(s) if _TEMPORAL.match(s) else s)


def has_string(value: Json, test: Callable[[str], bool]) -> bool:
    found: list[bool] = []
    map_strings(value, lambda s: found.append(test(s)) or s)
    return any(found)


def _utc(text: str) -> str:
    m = _DATETIME.match(text)
    if not m or m.group(8) == "Z":
        return text
    try:
        local = dt.datetime.fromisoformat(text[:19])
    except ValueError:
        return text
    sign = 1 if m.group(8)[0] == "+" else -1
    moment = local - sign * dt.timedelta(hours=int(m.group(8)[1:3]), minutes=int(m.group(8)[4:6]))
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (m.group(7) or "") + "Z"


def _roll_date(text: str) -> str:
    """Java's lenient calendar: 2023-02-29 is 2023-03-01, month 13 is next January."""
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})(.*)$", text)
    if not m:
        return text
    year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    try:
        date = dt.date(year, month, 1) + dt.timedelta(days=day - 1)
    except ValueError:
        return text
    return date.isoformat() + m.group(4)


def _forgiving_parse(text: str) -> str:
    """A date parser that takes what it can: lower case, a space for T, no seconds, no zone."""
    fixed = text.upper().replace(" ", "T")
    fixed = re.sub(r"T(\d{2}):(\d{2})(Z|[+-]|$)", r"T\1:\2:00\3", fixed)
    fixed = re.sub(r"\.(?=Z|[+-]|$)", "", fixed)
    fixed = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", fixed)
    if "T" in fixed and not re.search(r"(Z|[+-]\d{2}:\d{2})$", fixed):
        fixed += "Z"
    return fixed if _TEMPORAL.match(fixed) else text


def _clamp_offset(text: str) -> str:
    m = re.search(r"([+-])(\d{2}):(\d{2})$", text)
    if not m or (int(m.group(2)), int(m.group(3))) <= (14, 0):
        return text
    return text[: m.start()] + m.group(1) + "14:00"


def _order_by_text(task: Json, strict_seconds: bool = False) -> Json:
    """Make inv-1 and per-1 hold where a text (or whole-second) comparison says they do."""
    def fixed(early: str | None, late: str | None) -> bool:
        if not isinstance(early, str) or not isinstance(late, str):
            return False
        return late[:19] == early[:19] if strict_seconds else late >= early
    if fixed(task.get("authoredOn"), task.get("lastModified")):
        task["lastModified"] = task["authoredOn"]
    for holder in _periods(task):
        if fixed(holder.get("start"), holder.get("end")):
            holder["end"] = holder["start"]
    return task


def _periods(value: Json) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        own = [value] if "start" in value and "end" in value else []
        return own + [p for v in value.values() for p in _periods(v)]
    if isinstance(value, list):
        return [p for v in value for p in _periods(v)]
    return []


def _drop_keys(value: Json, drop: Callable[[str, Any], bool]) -> Json:
    if isinstance(value, dict):
        return {k: _drop_keys(v, drop) for k, v in value.items() if not drop(k, v)}
    if isinstance(value, list):
        return [_drop_keys(v, drop) for v in value]
    return value


def _cut_lists(value: Json, keep: int) -> Json:
    if isinstance(value, dict):
        return {k: _cut_lists(v, keep) for k, v in value.items()}
    if isinstance(value, list):
        return [_cut_lists(v, keep) for v in value[:keep]]
    return value


def _cut_bytes(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def _years(task: Json) -> list[int]:
    years: list[int] = []
    map_times(task, lambda s: years.append(int(s[:4])) or s)
    return years


def _owner_from_for(task: Json) -> Json:
    owner = (task.get("owner") or {}).get("reference", "")
    if owner.split("/")[0] in ("Device", "ActivityDefinition", "Task") and isinstance(task.get("for"), dict):
        task["owner"] = {"reference": task["for"]["reference"]}
    return task


def _near_intent(task: Json) -> Json:
    allowed = {"unknown", "proposal", "plan", "order", "original-order", "reflex-order",
               "filler-order", "instance-order", "option"}
    if isinstance(task.get("intent"), str) and task["intent"] not in allowed:
        task["intent"] = "order"
    return task


@dataclass(frozen=True)
class Defect:
    name: str
    kind: str  # "lossy", "strict" or "lenient"
    description: str
    transform: Callable[[Json], Json] | None = None  # the body stored / validated instead
    refuses: Callable[[Json], bool] | None = None  # a valid Task it refuses

    def refuse(self, task: Json) -> bool:
        return self.refuses is not None and self.refuses(task)


def _codes(fn: Callable[[str], str]) -> Callable[[Json], Json]:
    def apply(task: Json) -> Json:
        for key in _CODED:
            if isinstance(task.get(key), str):
                task[key] = fn(task[key])
        return task
    return apply


DEFECTS: tuple[Defect, ...] = (
    # -- lossy: stored differently ----------------------------------------------------------------
    Defect("varchar-255", "lossy", "strings cut at 255 characters (VARCHAR(255))",
           lambda t: map_strings(t, lambda s: s[:255])),
    Defect("varchar2-4000-bytes", "lossy", "strings cut at 4000 UTF-8 bytes (Oracle VARCHAR2)",
           lambda t: map_strings(t, lambda s: _cut_bytes(s, 4000))),
    Defect("text-65535-bytes", "lossy", "strings cut at 65535 bytes (MySQL TEXT)",
           lambda t: map_strings(t, lambda s: _cut_bytes(s, 65535))),
    Defect("utf8mb3", "lossy", "characters outside the BMP stored as '?' (MySQL utf8)",
           lambda t: map_strings(t, lambda s: "".join("?" if ord(ch) > 0xFFFF else ch for ch in s))),
    Defect("latin1", "lossy", "text stored as ISO-8859-1 ('?' for the rest)",
           lambda t: map_strings(t, lambda s: s.encode("latin-1", "replace").decode("latin-1"))),
    Defect("nfc-normalises", "lossy", "text normalised to Unicode NFC",
           lambda t: map_strings(t, lambda s: unicodedata.normalize("NFC", s))),
    Defect("trims-strings", "lossy", "leading and trailing whitespace trimmed",
           lambda t: map_strings(t, str.strip)),
    Defect("crlf-to-lf", "lossy", "line ends normalised to LF",
           lambda t: map_strings(t, lambda s: s.replace("\r\n", "\n"))),
    Defect("html-escapes", "lossy", "text HTML-escaped on the way in",
           lambda t: map_strings(t, lambda s: s if _TEMPORAL.match(s) else html.escape(s, quote=False))),
    Defect("millis-only", "lossy", "fractional seconds cut to milliseconds",
           lambda t: map_times(t, lambda s: re.sub(r"(\.\d{3})\d+", r"\1", s))),
    Defect("whole-seconds", "lossy", "fractional seconds dropped",
           lambda t: map_times(t, lambda s: re.sub(r"\.\d+", "", s))),
    Defect("utc-normalises", "lossy", "dateTimes converted to UTC (Z), the offset lost",
           lambda t: map_times(t, _utc)),
    Defect("local-as-utc", "lossy", "the local time kept, the offset replaced by Z (moves the instant)",
           lambda t: map_times(t, lambda s: re.sub(r"([+-]\d{2}:\d{2})$", "Z", s) if "T" in s else s)),
    Defect("pads-dates", "lossy", "a year or year-month stored as a full date",
           lambda t: map_times(t, lambda s: s + "-01-01" if len(s) == 4 else s + "-01" if len(s) == 7 else s)),
    Defect("drops-primitive-extensions", "lossy", "_x companions (extensions on primitives) not stored",
           lambda t: _drop_keys(t, lambda k, v: k.startswith("_"))),
    Defect("drops-unknown-extensions", "lossy", "extensions it has no column for not stored",
           lambda t: {**t, "extension": [e for e in t.get("extension", []) if e.get("url") in _SLICES]}
           if "extension" in t else t),
    Defect("keeps-two-repeats", "lossy", "repeating elements cut after two",
           lambda t: _cut_lists(t, 2)),
    Defect("drops-identifier-parts", "lossy", "Identifier.type and .period not stored",
           lambda t: {**t, "identifier": [{k: v for k, v in i.items() if k not in ("type", "period")}
                                          for i in t.get("identifier", [])]}),
    # -- strict: valid Tasks refused -------------------------------------------------------------
    Defect("ascii-only", "strict", "refuses text outside ASCII",
           refuses=lambda t: has_string(t, lambda s: any(ord(ch) > 127 for ch in s))),
    Defect("no-astral", "strict", "refuses characters outside the BMP (emoji)",
           refuses=lambda t: has_string(t, lambda s: any(ord(ch) > 0xFFFF for ch in s))),
    Defect("max-1000", "strict", "refuses strings over 1000 characters",
           refuses=lambda t: has_string(t, lambda s: len(s) > 1000)),
    Defect("max-64k", "strict", "refuses strings over 65535 characters",
           refuses=lambda t: has_string(t, lambda s: len(s) > 65535)),
    Defect("utc-only", "strict", "refuses dateTimes with an offset other than Z",
           refuses=lambda t: has_string(t, lambda s: bool(_DATETIME.match(s)) and not s.endswith("Z"))),
    Defect("needs-time", "strict", "refuses dateTimes without a time (lower precision)",
           refuses=lambda t: any(isinstance(t.get(k), str) and "T" not in t[k]
                                 for k in ("authoredOn", "lastModified"))
           or any("T" not in str(v) for p in _periods(t) for v in (p.get("start"), p.get("end")) if v)),
    Defect("max-millis", "strict", "refuses more than 3 fraction digits",
           refuses=lambda t: has_string(t, lambda s: bool(re.search(r"T.*\.\d{4,}", s)))),
    Defect("real-zones-only", "strict", "refuses offsets past -12:00/+14:00 or of odd minutes",
           refuses=lambda t: has_string(t, lambda s: bool(re.search(r"T.*(-1[3-4]:\d\d|[+-]\d\d:(?!00|30)\d\d)$", s)))),
    Defect("years-1900-2100", "strict", "refuses years before 1900 or after 2100",
           refuses=lambda t: any(y < 1900 or y > 2100 for y in _years(t))),
    Defect("http-systems-only", "strict", "refuses identifier systems that are not http(s) URLs",
           refuses=lambda t: any(not str(i.get("system", "http")).startswith("http")
                                 for i in t.get("identifier", []))),
    Defect("one-identifier", "strict", "refuses more than one identifier",
           refuses=lambda t: len(t.get("identifier", [])) > 1),
    Defect("no-primitive-extensions", "strict", "refuses _x companions",
           refuses=lambda t: "_" in json.dumps(list(_keys(t)))),
    Defect("no-unknown-extensions", "strict", "refuses extensions the profile does not slice",
           refuses=lambda t: any(e.get("url") not in _SLICES for e in t.get("extension", []))),
    Defect("no-repeated-slices", "strict", "refuses more than one instantiates extension",
           refuses=lambda t: sum(e.get("url") == "http://vzvz.nl/fhir/StructureDefinition/instantiates"
                                 for e in t.get("extension", [])) > 1),
    # -- lenient: invalid Tasks accepted ---------------------------------------------------------
    Defect("case-insensitive-codes", "lenient", "looks codes up case-insensitively",
           _codes(str.lower)),
    Defect("forgiving-date-parser", "lenient", "parses dates leniently (no zone, no seconds, a space, lower case)",
           lambda t: map_strings(t, lambda s: _forgiving_parse(s) if re.match(r"^\d{4}-\d", s) else s)),
    Defect("rolls-invalid-dates", "lenient", "rolls impossible dates over (Java lenient calendar)",
           lambda t: map_times(t, _roll_date)),
    Defect("clamps-offsets", "lenient", "clamps offsets past 14:00",
           lambda t: map_times(t, _clamp_offset)),
    Defect("text-order", "lenient", "compares dateTimes as text in inv-1/per-1",
           _order_by_text),
    Defect("whole-second-order", "lenient", "compares dateTimes to the second in inv-1/per-1",
           lambda t: _order_by_text(t, strict_seconds=True)),
    Defect("owner-target-list", "lenient", "a wrong copy of Task.owner's target list (Device, ActivityDefinition, Task allowed)",
           _owner_from_for),
    Defect("near-intent-codes", "lenient", "takes any request-intent code for Task.intent",
           _near_intent),
    Defect("drops-empty-strings", "lenient", "drops empty strings instead of refusing them",
           lambda t: _drop_keys(t, lambda k, v: v == "")),
    Defect("no-length-ceiling", "lenient", "no 1 MiB ceiling on strings (cuts silently)",
           lambda t: map_strings(t, lambda s: s[:1024 * 1024])),
    Defect("trims-before-validating", "lenient", "trims codes and URIs before validating them",
           lambda t: map_strings(t, lambda s: s.strip() if s.strip() and " " not in s.strip() else s)),
    Defect("ignores-unknown-elements", "lenient", "a JSON binding that ignores unknown top-level elements",
           lambda t: {k: v for k, v in t.items() if k in _TASK_ELEMENTS or k.startswith("_")}),
)
BY_NAME = {d.name: d for d in DEFECTS}


def _keys(value: Json) -> list[str]:
    if isinstance(value, dict):
        return [k for k, v in value.items() for k in [k, *_keys(v)]]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


class DefectiveServer(ForwardingProxy):
    """The reference server with one defect on every POSTed Task. The first POST /Task (the
    run's example Task at set-up) passes unaltered, so a run gets going."""

    def __init__(self, upstream: str, defect: Defect) -> None:
        super().__init__(upstream)
        self.defect = defect
        self.requests = 0
        self.applied = 0
        self._task_posts = 0
        self._altered: dict[str, Json] = {}  # lossy: Task id -> what this server "stored"

    def intercept(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        with self.lock:
            self.requests += 1
        if self._read_altered(handler, request):
            return True
        if request.method != "POST" or request.path != "/fhir/Task":
            return False
        try:
            task = json.loads(request.body)
        except ValueError:
            return False
        with self.lock:
            self._task_posts += 1
            first = self._task_posts == 1
        if not isinstance(task, dict) or first:
            return False
        try:  # a defect meets the harness' malformed Tasks too: where it cannot apply, it does not
            refused = self.defect.refuse(task)
            changed = self.defect.transform(json.loads(request.body)) if self.defect.transform else task
        except (AttributeError, TypeError, KeyError, IndexError, ValueError):
            return False
        if refused:
            with self.lock:
                self.applied += 1
            handler.answer(422, {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "processing", "diagnostics": self.defect.description}]})
            return True
        if changed == task:
            return False
        with self.lock:
            self.applied += 1
        if self.defect.kind == "lossy":
            self._store_altered(handler, request, changed)
            return True
        body = json.dumps(changed).encode()  # lenient: repaired before validation
        self.forward(handler, Incoming(request.method, request.target, request.path,
                                       {**request.headers, "Content-Length": str(len(body))}, body))
        return True

    def _store_altered(self, handler: _ForwardingHandler, request: Incoming, altered: Json) -> None:
        """Validate and store what was sent (the upstream), but keep the altered copy as what
        this server stored: a read of the Task answers it (a column cut after validation)."""
        response = self._http.request("POST", self.upstream + "/Task", content=request.body, headers={
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")})
        location = response.headers.get("location", "")
        if response.status_code == 201 and "/Task/" in location:
            task_id = location.split("/Task/")[1].split("/")[0]
            with self.lock:
                self._altered[task_id] = altered
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() in ("content-type", "etag", "last-modified")}
        if location:  # as a reverse proxy does: the Location names this server
            headers["Location"] = location.replace(self.upstream, self.url)
        handler.answer(response.status_code, response.content, headers)

    def _read_altered(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        task_id = request.path.split("/fhir/Task/")[1] if request.path.startswith("/fhir/Task/") else ""
        with self.lock:
            altered = self._altered.get(task_id)
        if request.method != "GET" or altered is None or "/" in task_id:
            return False
        response = self._http.get(self.upstream + f"/Task/{task_id}", headers={
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")})
        if response.status_code != 200:
            return False
        stored = response.json()
        handler.answer(200, {**altered, "id": stored.get("id"), "meta": stored.get("meta", {})},
                       {"Content-Type": "application/fhir+json"})
        return True
