"""Red-team Koppeltaal servers: an independent second catalogue of defective and hostile servers,
written from a server vendor's point of view (what a real implementation gets wrong), not from
the harness's catalogue. Each `Behaviour` is one loopback proxy in front of the real reference
server (`ForwardingProxy` of faulty_targets). Kinds:

- lenient: an invalid Task is accepted because the server does not check one rule; the proxy
  validates a repaired copy upstream and keeps the Task as sent (what an unchecking server
  stores), answering reads of it with the Task as sent;
- strict: some valid Tasks (an unusual but valid shape) are refused with 422;
- lossy: a Task is validated and stored, but a read answers it altered;
- protocol: the FHIR/HTTP protocol is broken (statuses, Location, ETag, delete, auth);
- hostile: the transport misbehaves (hangs, bombs, loops, leaks), the run must end cleanly.

The first POST /Task (the run's example at set-up) passes unaltered for the Task-shaped kinds, so
a run gets going and the findings are about the cases.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faulty_targets import ForwardingProxy, Incoming, _ForwardingHandler

Json = Any
_COMMON_STATUSES = frozenset({"requested", "ready", "in-progress", "completed", "cancelled"})
# every element name of the R4 datatypes a Task uses (Identifier, Reference, CodeableConcept,
# Coding, Period, Meta, Extension, Annotation, Narrative, Element): a JSON binding that knows
# these and silently drops any other key below the top level
_DATATYPE_KEYS = frozenset({
    "id", "extension", "modifierExtension", "use", "type", "system", "value", "period",
    "assigner", "reference", "identifier", "display", "coding", "text", "version", "code",
    "userSelected", "start", "end", "versionId", "lastUpdated", "source", "profile", "security",
    "tag", "url", "status", "div", "authorString", "authorReference", "time", "resourceType",
    "valueReference", "valueString", "valueCanonical", "valueCode", "valueBoolean",
    "valueDateTime", "valueCodeableConcept", "valueIdentifier", "valueUri", "valueUrl",
    "valueInteger", "valueDecimal", "valuePeriod", "valueCoding", "valueInstant", "valueDate",
    "valueId", "valueOid", "valueUuid", "valueMarkdown", "valuePositiveInt", "valueUnsignedInt",
    "valueTime", "valueBase64Binary"})


def _walk(value: Json, fn: Callable[[str, Json], Json], key: str = "") -> Json:
    """Bottom-up rewrite: `fn(key, value)` on every value after its children."""
    if isinstance(value, dict):
        value = {k: _walk(v, fn, k) for k, v in value.items()}
    elif isinstance(value, list):
        value = [_walk(v, fn, key) for v in value]
    return fn(key, value)


def _any(value: Json, test: Callable[[str, Json], bool], key: str = "") -> bool:
    if test(key, value):
        return True
    if isinstance(value, dict):
        return any(_any(v, test, k) for k, v in value.items())
    if isinstance(value, list):
        return any(_any(v, test, key) for v in value)
    return False


def _drop_nested_unknown(task: Json) -> Json:
    out = {}
    for k, v in task.items():
        out[k] = _walk(v, lambda key, val: {kk: vv for kk, vv in val.items()
                                            if kk in _DATATYPE_KEYS or kk.startswith("_")}
                       if isinstance(val, dict) else val)
    return out


def _drop_empties(task: Json) -> Json:
    def fix(key: str, value: Json) -> Json:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if v not in (None, [], {})}
        if isinstance(value, list):
            return [v for v in value if v is not None]
        return value
    return _walk(task, fix)


_REPEATING = ("identifier", "extension", "partOf", "basedOn", "note", "input", "output",
              "contained", "performerType", "insurance", "relevantHistory")
_SINGLE = ("for", "owner", "reasonReference", "requester", "code", "executionPeriod", "meta", "focus", "status",
           "intent", "priority", "authoredOn", "lastModified", "description")


def _coerce_arrays(task: Json) -> Json:
    out = dict(task)
    for k in _REPEATING:
        if isinstance(out.get(k), dict):
            out[k] = [out[k]]
    for k in _SINGLE:
        if isinstance(out.get(k), list) and len(out[k]) == 1:
            out[k] = out[k][0]
    return out


def _ext_lenient(task: Json) -> Json:
    def fix(key: str, value: Json) -> Json:
        if key in ("extension", "modifierExtension") and isinstance(value, list):
            kept = []
            for e in value:
                if not isinstance(e, dict) or not isinstance(e.get("url"), str) or not e["url"]:
                    continue
                if e.get("extension") and any(k.startswith("value") for k in e):
                    e = {k: v for k, v in e.items() if k != "extension"}
                kept.append(e)
            return kept
        return value
    return _walk(task, fix)


def _drop_key_everywhere(name: str) -> Callable[[Json], Json]:
    return lambda task: _walk(task, lambda k, v: {kk: vv for kk, vv in v.items() if kk != name}
                              if isinstance(v, dict) else v)


def _add_profile(task: Json) -> Json:
    meta = task.get("meta") if isinstance(task.get("meta"), dict) else {}
    profiles = meta.get("profile") if isinstance(meta.get("profile"), list) else []
    kt2 = "http://koppeltaal.nl/fhir/StructureDefinition/KT2Task"
    if kt2 in profiles:
        return task
    return {**task, "meta": {**meta, "profile": [*profiles, kt2]}}


def _strip_origin(task: Json) -> Json:
    ext = task.get("extension")
    if not isinstance(ext, list):
        return task
    return {**task, "extension": [e for e in ext if not (isinstance(e, dict) and str(
        e.get("url", "")).endswith("/resource-origin"))]}


def _view_ok(task: Json) -> Json:
    code = json.dumps(task.get("code", ""))
    if '"view"' in code and "partOf" not in task:
        return {k: v for k, v in task.items() if k != "code"}
    return task


# -- lossy transforms ------------------------------------------------------------------------------

def _sort_identifiers(task: Json) -> Json:
    ids = task.get("identifier")
    if isinstance(ids, list) and all(isinstance(i, dict) for i in ids):
        return {**task, "identifier": sorted(ids, key=lambda i: (str(i.get("system")), str(i.get("value"))))}
    return task


def _sort_extensions(task: Json) -> Json:
    ext = task.get("extension")
    if isinstance(ext, list) and all(isinstance(e, dict) for e in ext):
        return {**task, "extension": sorted(ext, key=lambda e: str(e.get("url")))}
    return task


def _ref_field_dropped(name: str) -> Callable[[Json], Json]:
    return lambda task: _walk(task, lambda k, v: {kk: vv for kk, vv in v.items() if kk != name}
                              if isinstance(v, dict) and "reference" in v else v)


def _absolute_refs(base: str) -> Callable[[Json], Json]:
    def fix(key: str, value: Json) -> Json:
        if isinstance(value, dict) and isinstance(value.get("reference"), str) \
                and re.match(r"^[A-Z][A-Za-z]+/[^/]+$", value["reference"]):
            return {**value, "reference": f"{base}/{value['reference']}"}
        return value
    return lambda task: _walk(task, fix)


_FRACTION = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\.(\d+)(Z|[+-]\d{2}:\d{2})$")


def _java_fraction(text: str) -> str:
    m = _FRACTION.match(text)
    if not m:
        return text
    digits = m.group(2).rstrip("0")
    return m.group(1) + ("." + digits if digits else "") + m.group(3)


def _strings(fn: Callable[[str], str]) -> Callable[[Json], Json]:
    def apply(task: Json) -> Json:
        return {k: (v if k in ("resourceType", "meta", "id") else
                    _walk(v, lambda kk, vv: fn(vv) if isinstance(vv, str) and kk not in (
                        "reference", "url", "system") else vv, k)) for k, v in task.items()}
    return apply


def _nested_extensions_dropped(task: Json) -> Json:
    return {k: (v if k == "extension" else _drop_key_everywhere("extension")(v)
                if isinstance(v, (dict, list)) else v) for k, v in task.items()}


# -- the catalogue ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Behaviour:
    name: str
    kind: str  # lenient, strict, lossy, protocol, hostile
    description: str
    repair: Callable[[Json], Json] | None = None  # lenient: what is validated instead
    refuses: Callable[[Json], bool] | None = None  # strict: which valid Tasks are refused
    alter: Callable[[Json], Json] | None = None  # lossy: what a read answers
    needs_token: bool = False  # run with --token (auth behaviours)


BEHAVIOURS: tuple[Behaviour, ...] = (
    # lenient
    Behaviour("no-profile-check", "lenient", "does not check meta.profile claims KT2Task",
              repair=_add_profile),
    Behaviour("keeps-client-origin", "lenient", "accepts a client-set resource-origin",
              repair=_strip_origin),
    Behaviour("view-without-partof", "lenient", "no check that code view needs partOf",
              repair=_view_ok),
    Behaviour("nested-unknown-elements", "lenient", "ignores unknown keys inside datatypes",
              repair=_drop_nested_unknown),
    Behaviour("nulls-and-empties", "lenient", "drops null, [] and {} instead of refusing them",
              repair=_drop_empties),
    Behaviour("array-coercion", "lenient", "wraps single objects in arrays and vice versa",
              repair=_coerce_arrays),
    Behaviour("extension-rules", "lenient", "drops extensions without url, ext-1 not checked",
              repair=_ext_lenient),
    Behaviour("ignores-modifier-extensions", "lenient", "modifierExtension dropped unchecked",
              repair=_drop_key_everywhere("modifierExtension")),
    Behaviour("contained-unchecked", "lenient", "contained resources not validated",
              repair=lambda t: {k: v for k, v in t.items() if k != "contained"}),
    Behaviour("dangling-references", "lenient", "no referential integrity check"),
    Behaviour("any-content-type", "lenient", "takes any Content-Type as FHIR JSON"),
    Behaviour("stale-if-match", "lenient", "updates with a stale If-Match go through"),
    # strict
    Behaviour("common-statuses-only", "strict", "refuses statuses outside the common five",
              refuses=lambda t: isinstance(t.get("status"), str) and t["status"] not in _COMMON_STATUSES),
    Behaviour("routine-only", "strict", "refuses priorities other than routine",
              refuses=lambda t: t.get("priority", "routine") != "routine"),
    Behaviour("no-meta-extras", "strict", "refuses meta other than profile",
              refuses=lambda t: isinstance(t.get("meta"), dict) and set(t["meta"]) - {"profile"} != set()),
    Behaviour("no-narrative", "strict", "refuses Task.text", refuses=lambda t: "text" in t),
    Behaviour("no-nested-extensions", "strict", "refuses extensions inside datatypes",
              refuses=lambda t: any(_any(v, lambda k, x: k == "extension") for k, v in t.items()
                                    if k != "extension")),
    Behaviour("max-five-repeats", "strict", "refuses any list longer than five",
              refuses=lambda t: _any(t, lambda k, x: isinstance(x, list) and len(x) > 5)),
    Behaviour("no-id-on-create", "strict", "refuses a POSTed Task that has an id",
              refuses=lambda t: "id" in t),
    Behaviour("no-subtasks", "strict", "refuses Tasks with partOf (sub-Tasks unsupported)",
              refuses=lambda t: "partOf" in t),
    Behaviour("no-language", "strict", "refuses language and implicitRules",
              refuses=lambda t: "language" in t or "implicitRules" in t),
    Behaviour("no-updates", "strict", "refuses every update (PUT) with 405"),
    # lossy
    Behaviour("sorts-identifiers", "lossy", "identifiers stored sorted", alter=_sort_identifiers),
    Behaviour("sorts-extensions", "lossy", "extensions stored sorted by url", alter=_sort_extensions),
    Behaviour("drops-reference-display", "lossy", "Reference.display not stored",
              alter=_ref_field_dropped("display")),
    Behaviour("drops-reference-type", "lossy", "Reference.type not stored",
              alter=_ref_field_dropped("type")),
    Behaviour("java-fractions", "lossy", "trailing zeros of fractional seconds dropped",
              alter=_strings(_java_fraction)),
    Behaviour("zero-offset-as-z", "lossy", "+00:00 stored as Z",
              alter=_strings(lambda s: s[:-6] + "Z" if re.match(r"^\d{4}-.*T.*[+-]00:00$", s) else s)),
    Behaviour("collapses-whitespace", "lossy", "runs of whitespace collapsed to one space",
              alter=_strings(lambda s: re.sub(r"\s{2,}", " ", s))),
    Behaviour("drops-narrative", "lossy", "Task.text not stored",
              alter=lambda t: {k: v for k, v in t.items() if k != "text"}),
    Behaviour("drops-nested-extensions", "lossy", "extensions inside datatypes not stored",
              alter=_nested_extensions_dropped),
    Behaviour("drops-meta-profile", "lossy", "meta.profile not stored"),
    Behaviour("uppercases-identifier-values", "lossy", "identifier values upper-cased",
              alter=lambda t: {**t, "identifier": [{**i, "value": i["value"].upper()}
                                                   if isinstance(i, dict) and isinstance(i.get("value"), str) else i
                                                   for i in t.get("identifier", [])]}
              if isinstance(t.get("identifier"), list) else t),
    Behaviour("absolute-references", "lossy", "relative references stored as absolute URLs"),
    Behaviour("ignores-updates", "lossy", "an update answers 200 but the old content stays"),
    # protocol
    Behaviour("create-200", "protocol", "a create answers 200, not 201"),
    Behaviour("no-location", "protocol", "a create answers 201 without Location"),
    Behaviour("location-other-id", "protocol", "Location names another Task"),
    Behaviour("location-upstream", "protocol", "Location names the backend host"),
    Behaviour("constant-etag", "protocol", "ETag and versionId never change"),
    Behaviour("500-on-invalid", "protocol", "refusals of invalid Tasks come as 500"),
    Behaviour("html-refusals", "protocol", "refusals carry an HTML page, no OperationOutcome"),
    Behaviour("delete-keeps", "protocol", "DELETE answers 204 but keeps the Task"),
    Behaviour("delete-refused", "protocol", "DELETE of a Task answers 405"),
    Behaviour("writes-without-token", "protocol", "writes without a bearer token accepted",
              needs_token=True),
    Behaviour("any-token", "protocol", "any bearer token accepted", needs_token=True),
    # hostile
    Behaviour("hang-after-setup", "hostile", "every POST /Task after set-up hangs"),
    Behaviour("slow-everything", "hostile", "every answer takes 1.5 s"),
    Behaviour("gzip-bomb", "hostile", "Task answers are a gzip bomb"),
    Behaviour("redirect-loop", "hostile", "Task POSTs redirect to themselves"),
    Behaviour("deep-json", "hostile", "Task answers are JSON nested 100,000 deep"),
    Behaviour("invalid-utf8", "hostile", "Task answers are not UTF-8"),
    Behaviour("bad-headers", "hostile", "Task answers have a header with control characters"),
    Behaviour("huge-headers", "hostile", "Task answers carry 200 KB of headers"),
    Behaviour("echo-token", "hostile", "the bearer token echoed in Location, a header and body",
              needs_token=True),
    Behaviour("absurd-retry-after", "hostile", "503 with Retry-After: 999999999 on every write"),
    Behaviour("bad-chunking", "hostile", "Task answers with broken chunked encoding"),
)
BY_NAME = {b.name: b for b in BEHAVIOURS}
TOKEN = "redteam-secret-token-3f9a"


class RedTeamServer(ForwardingProxy):
    """The reference server with one `Behaviour`. `requests` counts what it received."""

    def __init__(self, upstream: str, behaviour: Behaviour) -> None:
        super().__init__(upstream)
        self.behaviour = behaviour
        self.requests = 0
        self.applied = 0
        self._task_posts = 0
        self._kept: dict[str, Json] = {}  # Task id -> what a read answers
        self._first_task_id = ""
        self._refs: dict[str, str] = {}  # type -> a reference that exists
        self.hidden: list[str] = []  # what it created upstream but named otherwise

    # -- plumbing ----------------------------------------------------------------------------------

    def _upstream(self, method: str, path: str, body: bytes | None = None,
                  headers: dict[str, str] | None = None) -> Any:
        return self._http.request(method, self.upstream + path, content=body, headers={
            k: v for k, v in (headers or {}).items()
            if k.lower() not in ("host", "content-length", "authorization", "transfer-encoding")})

    def _relay(self, handler: _ForwardingHandler, response: Any, body: bytes | None = None,
               status: int | None = None, location: str | None = None) -> None:
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() in ("content-type", "etag", "last-modified")}
        loc = response.headers.get("location")
        if location is not None:
            if location:
                headers["Location"] = location
        elif loc:
            headers["Location"] = loc.replace(self.upstream, self.url)
        handler.answer(status or response.status_code,
                       response.content if body is None else body, headers)

    def _store(self, handler: _ForwardingHandler, request: Incoming, validated: Json,
               kept: Json) -> None:
        """POST `validated` upstream; when it is created, reads of it answer `kept`."""
        response = self._upstream("POST", "/Task", json.dumps(validated).encode(), request.headers)
        location = response.headers.get("location", "")
        body = None
        if response.status_code == 201 and "/Task/" in location:
            task_id = location.split("/Task/")[1].split("/")[0]
            with self.lock:
                self._kept[task_id] = kept
            stored = response.json()
            body = json.dumps({**kept, "id": stored.get("id"), "meta": stored.get("meta", {})}).encode()
        self._relay(handler, response, body)

    def _read_kept(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        if request.method != "GET" or not request.path.startswith("/fhir/Task/"):
            return False
        task_id = request.path.split("/fhir/Task/")[1]
        with self.lock:
            kept = self._kept.get(task_id)
        if kept is None or "/" in task_id:
            return False
        response = self._upstream("GET", f"/Task/{task_id}", headers=request.headers)
        if response.status_code != 200:
            return False
        stored = response.json()
        meta = stored.get("meta", {})
        if self.behaviour.name == "drops-meta-profile":
            meta = {k: v for k, v in meta.items() if k != "profile"}
        out = {**kept, "id": stored.get("id"), "meta": meta}
        handler.answer(200, out, {"Content-Type": "application/fhir+json",
                                  **({"ETag": response.headers["etag"]} if "etag" in response.headers else {})})
        return True

    # -- dispatch ----------------------------------------------------------------------------------

    def intercept(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        with self.lock:
            self.requests += 1
        b = self.behaviour
        special = getattr(self, "_" + b.name.replace("-", "_"), None)
        if b.needs_token:
            return bool(special(handler, request)) if special else False
        if self._read_kept(handler, request):
            return True
        task = None
        first = False
        if request.method == "POST" and request.path == "/fhir/Task":
            try:
                task = json.loads(request.body)
            except ValueError:
                task = None
            with self.lock:
                self._task_posts += 1
                first = self._task_posts == 1
            if first:
                response = self._upstream("POST", "/Task", request.body, request.headers)
                if response.status_code == 201:
                    self._first_task_id = response.headers["location"].split("/Task/")[1].split("/")[0]
                    for k in ("for", "owner", "requester"):
                        ref = task.get(k, {}).get("reference") if isinstance(task, dict) else None
                        if isinstance(ref, str):
                            self._refs[ref.split("/")[0]] = ref
                self._relay(handler, response)
                return True
        if special is not None:
            return bool(special(handler, request, task))
        if not isinstance(task, dict):
            return False
        try:
            if b.kind == "strict" and b.refuses is not None and b.refuses(task):
                self.applied += 1
                handler.answer(422, {"resourceType": "OperationOutcome", "issue": [
                    {"severity": "error", "code": "processing", "diagnostics": b.description}]})
                return True
            if b.kind == "lenient" and b.repair is not None:
                repaired = b.repair(json.loads(request.body))
                if repaired != task:
                    self.applied += 1
                    self._store(handler, request, repaired, task)
                    return True
            if b.kind == "lossy" and b.alter is not None:
                altered = b.alter(json.loads(request.body))
                if altered != task:
                    self.applied += 1
                    self._store(handler, request, task, altered)
                    return True
        except (AttributeError, TypeError, KeyError, IndexError, ValueError):
            return False
        return False

    # -- lenient specials ----------------------------------------------------------------------------

    def _dangling_references(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if not isinstance(task, dict):
            return False
        changed = False

        def fix(key: str, value: Json) -> Json:
            nonlocal changed
            if isinstance(value, dict) and isinstance(value.get("reference"), str) \
                    and re.match(r"^[A-Z][A-Za-z]+/[^/]+$", value["reference"]):
                kind = value["reference"].split("/")[0]
                if kind in self._refs and self._upstream("GET", "/" + value["reference"], headers={
                        "Accept": "application/fhir+json"}).status_code == 404:
                    changed = True
                    return {**value, "reference": self._refs[kind]}
            return value
        repaired = _walk(json.loads(request.body), fix)
        if not changed:
            return False
        self.applied += 1
        self._store(handler, request, repaired, task)
        return True

    def _any_content_type(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method in ("POST", "PUT"):
            ctype = request.headers.get("Content-Type", "")
            if "fhir+json" not in ctype:
                self.applied += 1
                self.forward(handler, Incoming(request.method, request.target, request.path, {
                    **{k: v for k, v in request.headers.items() if k.lower() != "content-type"},
                    "Content-Type": "application/fhir+json"}, request.body))
                return True
        return False

    def _stale_if_match(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method == "PUT" and request.headers.get("If-Match"):
            current = self._upstream("GET", request.path.removeprefix("/fhir"),
                                     headers={"Accept": "application/fhir+json"})
            if current.headers.get("etag") and current.headers["etag"] != request.headers["If-Match"]:
                self.applied += 1
                headers = {**{k: v for k, v in request.headers.items() if k.lower() != "if-match"},
                           "If-Match": current.headers["etag"]}
                self.forward(handler, Incoming(request.method, request.target, request.path,
                                               headers, request.body))
                return True
        return False

    # -- strict specials ----------------------------------------------------------------------------

    def _no_updates(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method == "PUT" and request.path.startswith("/fhir/Task/"):
            self.applied += 1
            handler.answer(405, {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "not-supported", "diagnostics": "no updates"}]})
            return True
        return False

    # -- lossy specials ------------------------------------------------------------------------------

    def _drops_meta_profile(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if isinstance(task, dict):
            self.applied += 1
            self._store(handler, request, task, task)
            return True
        return False

    def _absolute_references(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if isinstance(task, dict):
            altered = _absolute_refs(self.url)(task)
            if altered != task:
                self.applied += 1
                self._store(handler, request, task, altered)
                return True
        return False

    def _ignores_updates(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method == "PUT" and request.path.startswith("/fhir/Task/"):
            current = self._upstream("GET", request.path.removeprefix("/fhir"),
                                     headers={"Accept": "application/fhir+json"})
            if current.status_code == 200 and request.headers.get("If-Match"):
                self.applied += 1
                handler.answer(200, current.content, {"Content-Type": "application/fhir+json",
                                                      "ETag": current.headers.get("etag", "")})
                return True
        return False

    # -- protocol specials -----------------------------------------------------------------------------

    def _create_200(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method == "POST" and isinstance(task, dict):
            response = self._upstream("POST", request.path.removeprefix("/fhir"), request.body, request.headers)
            self.applied += response.status_code == 201
            self._relay(handler, response, status=200 if response.status_code == 201 else None)
            return True
        return False

    def _no_location(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method == "POST" and isinstance(task, dict):
            response = self._upstream("POST", request.path.removeprefix("/fhir"), request.body, request.headers)
            self.applied += response.status_code == 201
            self._relay(handler, response, location="")
            return True
        return False

    def _location_other_id(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method == "POST" and isinstance(task, dict) and self._first_task_id:
            response = self._upstream("POST", request.path.removeprefix("/fhir"), request.body, request.headers)
            if response.status_code == 201:
                self.applied += 1
                body = response.json()
                self.hidden.append(f"Task/{body['id']}")  # created, and never named
                body["id"] = self._first_task_id
                self._relay(handler, response, json.dumps(body).encode(),
                            location=f"{self.url}/Task/{self._first_task_id}/_history/1")
            else:
                self._relay(handler, response)
            return True
        return False

    def _location_upstream(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method == "POST" and isinstance(task, dict):
            response = self._upstream("POST", request.path.removeprefix("/fhir"), request.body, request.headers)
            self.applied += response.status_code == 201
            self._relay(handler, response, location=response.headers.get("location", ""))
            return True
        return False

    def _constant_etag(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.path.startswith("/fhir/Task") and request.method in ("GET", "PUT", "POST"):
            headers = {k: v for k, v in request.headers.items() if k.lower() != "if-match"}
            if request.method == "PUT":  # the server checks nothing and keeps version 1
                current = self._upstream("GET", request.path.removeprefix("/fhir"),
                                         headers={"Accept": "application/fhir+json"})
                if "etag" in current.headers and request.headers.get("If-Match"):
                    headers["If-Match"] = current.headers["etag"]
                elif request.headers.get("If-Match"):
                    headers["If-Match"] = request.headers["If-Match"]
            response = self._upstream(request.method, request.target.removeprefix("/fhir"),
                                      request.body if request.method != "GET" else None, headers)
            body = response.content
            try:
                data = response.json()
                if isinstance(data, dict) and isinstance(data.get("meta"), dict) and "versionId" in data["meta"]:
                    data["meta"]["versionId"] = "1"
                    body = json.dumps(data).encode()
            except ValueError:
                pass
            hdrs = {k: v for k, v in response.headers.items() if k.lower() in ("content-type",)}
            if "etag" in response.headers:
                hdrs["ETag"] = 'W/"1"'
                self.applied += 1
            if response.headers.get("location"):
                hdrs["Location"] = re.sub(r"/_history/\d+", "/_history/1",
                                          response.headers["location"].replace(self.upstream, self.url))
            handler.answer(response.status_code, body, hdrs)
            return True
        return False

    def _500_on_invalid(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method == "POST" and request.path == "/fhir/Task":
            response = self._upstream("POST", "/Task", request.body, request.headers)
            if 400 <= response.status_code < 500:
                self.applied += 1
                handler.answer(500, response.content, {"Content-Type": "application/fhir+json"})
            else:
                self._relay(handler, response)
            return True
        return False

    def _html_refusals(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method in ("POST", "PUT") and request.path.startswith("/fhir/Task"):
            response = self._upstream(request.method, request.target.removeprefix("/fhir"),
                                      request.body, request.headers)
            if 400 <= response.status_code < 500:
                self.applied += 1
                handler.answer(response.status_code,
                               b"<html><body><h1>Bad Request</h1></body></html>",
                               {"Content-Type": "text/html"})
            else:
                self._relay(handler, response)
            return True
        return False

    def _delete_keeps(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method == "DELETE" and request.path.startswith("/fhir/Task/"):
            self.applied += 1
            handler.answer(204, b"", {})
            return True
        return False

    def _delete_refused(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method == "DELETE" and request.path.startswith("/fhir/Task/"):
            self.applied += 1
            handler.answer(405, {"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "not-supported", "diagnostics": "no deletes"}]})
            return True
        return False

    def _bearer(self, request: Incoming) -> str:
        auth = request.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""

    def _unauthorised(self, handler: _ForwardingHandler) -> None:
        handler.answer(401, {"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "login", "diagnostics": "invalid token"}]},
            {"Content-Type": "application/fhir+json", "WWW-Authenticate": "Bearer"})

    def _writes_without_token(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        token = self._bearer(request)
        if token == TOKEN or (request.method != "GET" and not token):
            if not token:
                self.applied += 1
            self.forward(handler, request, drop_headers=frozenset({"authorization"}))
        else:
            self._unauthorised(handler)
        return True

    def _any_token(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        token = self._bearer(request)
        if token:
            self.applied += token != TOKEN
            self.forward(handler, request, drop_headers=frozenset({"authorization"}))
        else:
            self._unauthorised(handler)
        return True

    # -- hostile specials ---------------------------------------------------------------------------

    def _hang_after_setup(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if request.method == "POST" and request.path == "/fhir/Task":
            self.applied += 1
            self.stopping.wait(3600)
            return True
        return False

    def _slow_everything(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        self.applied += 1
        if self.stopping.wait(1.5):
            return True
        return False

    def _raw(self, handler: _ForwardingHandler, status: int, headers: list[tuple[str, str]],
             body: bytes) -> None:
        handler.close_connection = True
        handler.wfile.write(f"HTTP/1.1 {status} X\r\n".encode())
        for name, value in headers:
            handler.wfile.write(f"{name}: {value}\r\n".encode("latin-1"))
        handler.wfile.write(b"\r\n" + body)

    def _task_write(self, request: Incoming) -> bool:
        return request.method in ("POST", "PUT") and request.path.startswith("/fhir/Task")

    def _gzip_bomb(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if not self._task_write(request):
            return False
        self.applied += 1
        bomb = _bomb()
        self._raw(handler, 201, [("Content-Type", "application/fhir+json"),
                                 ("Content-Encoding", "gzip"), ("Content-Length", str(len(bomb)))], bomb)
        return True

    def _redirect_loop(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if not self._task_write(request):
            return False
        self.applied += 1
        handler.answer(307, b"", {"Location": self.url + request.target.removeprefix("/fhir")})
        return True

    def _deep_json(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if not self._task_write(request):
            return False
        self.applied += 1
        handler.answer(201, b"[" * 100000 + b"]" * 100000, {"Content-Type": "application/fhir+json"})
        return True

    def _invalid_utf8(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if not self._task_write(request):
            return False
        self.applied += 1
        handler.answer(422, b'{"resourceType": "OperationOutcome", "issue": [{"severity": "error", '
                            b'"code": "invalid", "diagnostics": "\xff\xfe\xc0\xaf bad"}]}',
                       {"Content-Type": "application/fhir+json"})
        return True

    def _bad_headers(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if not self._task_write(request):
            return False
        self.applied += 1
        self._raw(handler, 422, [("Content-Type", "application/fhir+json"),
                                 ("X-Debug", "a\x01b\x7fc"), ("Content-Length", "2")], b"{}")
        return True

    def _huge_headers(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if not self._task_write(request):
            return False
        self.applied += 1
        self._raw(handler, 422, [("Content-Type", "application/fhir+json"),
                                 *[(f"X-Pad-{i}", "x" * 1000) for i in range(200)],
                                 ("Content-Length", "2")], b"{}")
        return True

    def _echo_token(self, handler: _ForwardingHandler, request: Incoming) -> bool:
        token = self._bearer(request)
        if token != TOKEN:
            self._unauthorised(handler)
            return True
        if request.method == "POST" and request.path == "/fhir/Task":
            response = self._upstream("POST", "/Task", request.body, request.headers)
            headers = {"Content-Type": "application/fhir+json", "X-Echo-Authorization": f"Bearer {token}"}
            if response.headers.get("location"):
                headers["Location"] = response.headers["location"].replace(self.upstream, self.url) \
                    + f"?access_token={token}"
            body = response.json() if response.content else {}
            if isinstance(body, dict):
                body.setdefault("issue", [])
                if body.get("resourceType") == "OperationOutcome":
                    body["issue"].append({"severity": "error", "code": "security",
                                          "diagnostics": f"token {token} may not"})
                else:
                    body["note"] = [{"text": f"created with {token}"}]
                    body.pop("issue")
            self.applied += 1
            handler.answer(response.status_code, json.dumps(body).encode(), headers)
            return True
        self.forward(handler, request, drop_headers=frozenset({"authorization"}))
        return True

    def _absurd_retry_after(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if not self._task_write(request) or self._task_posts < 2:
            return False
        self.applied += 1
        handler.answer(503, b"", {"Retry-After": "999999999"})
        return True

    def _bad_chunking(self, handler: _ForwardingHandler, request: Incoming, task: Json) -> bool:
        if not self._task_write(request):
            return False
        self.applied += 1
        self._raw(handler, 201, [("Content-Type", "application/fhir+json"),
                                 ("Transfer-Encoding", "chunked")], b"zz\r\n{}\r\n0\r\n\r\n")
        return True


@functools.cache
def _bomb() -> bytes:
    """200 MB of zeros, gzipped to about 200 KB: built once, when first needed."""
    return gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=6)
