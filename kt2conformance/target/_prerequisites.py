"""The resources a Task needs on the target, and leaving the target as it was found.

A Koppeltaal server refuses a Task whose references do not resolve, so before any Task is sent
the official example resources in `fixtures/` are created on the target. The server assigns the
ids (POST), so they are created in dependency order and each one's references are rewritten to
what was already created; a reference nothing can satisfy is dropped, with its extension. A
client-set `resource-origin` (some official examples carry one) is stripped: the server sets its
own and refuses the client's. Last, the example Task is created as the parent for sub-Tasks.

Every resource the run creates goes through the `Tracker`, which deletes it: Tasks right after
their check, the prerequisites at the end of the run, also after failures and Ctrl-C.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import httpx

from kt2conformance._errors import UsageError
from kt2conformance._koppeltaal import PREREQUISITE_ORDER
from kt2conformance._paths import FIXTURES_DIR
from kt2conformance.generate._values import Prerequisites
from kt2conformance.target._client import Exchange, FhirClient, outcome_errors
from kt2conformance.target._origin import without_resource_origin

EXAMPLE_TASK = FIXTURES_DIR / "Task-example.json"
# Prerequisites field for each type the Task generators refer to.
FIELDS = {"Patient": "patient", "Practitioner": "practitioner", "CareTeam": "care_team",
          "RelatedPerson": "related_person", "ActivityDefinition": "activity_definition",
          "Device": "device", "Organization": "organization", "Endpoint": "endpoint"}
_LITERAL = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})$")
_LOCATION = re.compile(r"/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?/?$")
_DROP = object()


def load(path: Path) -> dict[str, Any]:
    try:
        return cast(dict[str, Any], json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the fixture {path}: {exc}") from None


def fixture_files() -> list[Path]:
    """The prerequisite fixtures, in creation order (the example Task is not one of them)."""
    files = [p for p in sorted(FIXTURES_DIR.glob("*.json")) if p != EXAMPLE_TASK]

    def rank(path: Path) -> int:
        kind = path.name.split("-", 1)[0]
        return PREREQUISITE_ORDER.index(kind) if kind in PREREQUISITE_ORDER else len(PREREQUISITE_ORDER)

    return sorted(files, key=rank)


def rewrite_references(resource: Any, resolve: Callable[[str, str], str | None]) -> Any:
    """A copy of `resource` with every relative literal reference `Type/id` replaced by
    `resolve(Type, id)`; where that is None the reference is dropped, and with it an extension
    whose value it was (an extension without a value is invalid)."""
    result = _rewrite(resource, resolve)
    return {} if result is _DROP else result


def _rewrite(node: Any, resolve: Callable[[str, str], str | None]) -> Any:
    if isinstance(node, list):
        kept = [item for item in (_rewrite(i, resolve) for i in node) if item is not _DROP]
        return kept if kept else _DROP
    if not isinstance(node, dict):
        return node
    literal = node.get("reference")
    if isinstance(literal, str) and (m := _LITERAL.match(literal)):
        target = resolve(m.group(1), m.group(2))
        return _DROP if target is None else {**node, "reference": target}
    out: dict[str, Any] = {}
    for key, value in node.items():
        new = _rewrite(value, resolve)
        if new is _DROP:
            if key.startswith("value") and "url" in node:
                return _DROP
            continue
        out[key] = new
    return out


_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def created_id(exchange: Exchange, base_url: str | None = None) -> tuple[str, str] | None:
    """(type, id) of what a create made, from the Location header or else the returned body;
    None when nothing was created or the Location cannot be trusted (see `location_problem`)."""
    return _created(exchange, base_url)[0]


def location_problem(exchange: Exchange, base_url: str | None) -> str | None:
    """Why the Location of a successful create cannot be trusted (None when it can, or there is
    none): it must name a resource of the type that was POSTed, under the target's base. A
    Location naming anything else is never deleted on its word."""
    return _created(exchange, base_url)[1]


def _posted_type(exchange: Exchange) -> str | None:
    segment = exchange.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return segment if re.fullmatch(r"[A-Z][A-Za-z]+", segment) else None


def _created(exchange: Exchange, base_url: str | None) -> tuple[tuple[str, str] | None, str | None]:
    if exchange.status is None or not 200 <= exchange.status < 300:
        return None, None
    posted = _posted_type(exchange)
    location = exchange.response_headers.get("location", "").strip()
    if location:
        shown = location if len(location) <= 100 else location[:99] + "…"
        try:
            url = httpx.URL(exchange.url).join(location)
        except (httpx.InvalidURL, ValueError):
            return None, f"its Location {shown!r} is not a URL"
        if base_url is None:
            path = url.path
            m = _LOCATION.search(path)
            return ((m.group(1), m.group(2)) if m else None), None
        base = httpx.URL(base_url.rstrip("/") + "/")
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port) \
                or not url.path.startswith(base.path):
            return None, f"its Location {shown!r} is not under the target's base {base_url}"
        parts = url.path[len(base.path):].strip("/").split("/")
        if not (len(parts) == 2 or (len(parts) == 4 and parts[2] == "_history")) \
                or not _ID.match(parts[1]):
            return None, f"its Location {shown!r} names no resource"
        if posted is not None and parts[0] != posted:
            return None, f"its Location {shown!r} names a {parts[0]}, not the {posted} it created"
        return (parts[0], parts[1]), None
    body = exchange.json
    if isinstance(body, dict) and isinstance(body.get("id"), str) and _ID.match(body["id"]) \
            and isinstance(body.get("resourceType"), str) \
            and (posted is None or body["resourceType"] == posted):
        return (body["resourceType"], body["id"]), None
    return None, None


# The cleanup gives up on a target that answered this many deletes in a row not at all.
UNANSWERED_DELETES = 3


class Tracker:
    """Every resource the run created on the target, until it is deleted. Thread-safe: cases run
    concurrently."""

    def __init__(self, client: FhirClient, keep: bool = False) -> None:
        self.client = client
        self.keep = keep
        self._lock = threading.Lock()
        self._created: list[tuple[str, str]] = []
        self._ever: set[tuple[str, str]] = set()  # everything this run created, deleted or not
        # resources the target answered a DELETE for but still served on reading (server/delete)
        self.kept: dict[tuple[str, str], Exchange] = {}
        self.confirmed = 0  # deletes confirmed by a read

    def created(self, exchange: Exchange) -> tuple[str, str] | None:
        """Remember what this exchange created, if anything; returns its (type, id). A Location
        that names another type or lies outside the target's base is not believed."""
        made = created_id(exchange, self.client.base_url)
        if made:
            with self._lock:
                if made in self._ever:  # the answer names an earlier resource: not believed
                    return None
                self._ever.add(made)
                self._created.append(made)
        return made

    def reused(self, exchange: Exchange) -> str | None:
        """Why the answer to a create cannot be believed because it names a resource this run
        created before (a server that did not create anything, or points at another resource
        to have it deleted); None otherwise. Asked before `created`."""
        made = created_id(exchange, self.client.base_url)
        with self._lock:
            seen = made is not None and made in self._ever
        if made is None or not seen:
            return None
        return (f"its Location names {made[0]}/{made[1]}, which this run created before: the "
                f"server did not create what it says")

    def delete(self, made: tuple[str, str]) -> Exchange | None:
        """Delete one created resource now (unless --keep), confirmed by a read: a 404 or 410
        after the DELETE. A target that still serves it has kept it (`kept`: a finding, and a
        leftover); a failed or unconfirmed delete is retried at the end."""
        if self.keep:
            return None
        answer = self.client.delete(*made)
        if answer.status in (404, 410):
            gone = True
        elif answer.status is not None and 200 <= answer.status < 300:
            check = self.client.read(*made)
            if check.status is not None and 200 <= check.status < 300:
                with self._lock:
                    self.kept[made] = check
                    if made in self._created:
                        self._created.remove(made)
                return answer
            gone = check.status in (404, 410)
            if gone:
                with self._lock:
                    self.confirmed += 1
        else:
            gone = False
        if gone:
            with self._lock:
                if made in self._created:
                    self._created.remove(made)
        return answer

    def delete_all(self) -> list[str]:
        """Delete everything still tracked, newest first (a Task before the Patient it names);
        returns what could not be deleted, as `Type/id`. An interrupt (a second stop signal)
        gives up: what is not deleted yet is returned; so does a target that answered
        UNANSWERED_DELETES deletes in a row not at all (each would wait out the timeout)."""
        if self.keep:
            return []
        with self._lock:
            remaining = list(reversed(self._created))
        unanswered = 0
        for made in remaining:
            try:
                answer = self.delete(made)
            except KeyboardInterrupt:
                break
            unanswered = unanswered + 1 if answer is not None and answer.status is None else 0
            if unanswered >= UNANSWERED_DELETES:
                break
        return self.remaining()

    def remaining(self) -> list[str]:
        """What is still on the target, as `Type/id`, newest first: not deleted yet, or kept by
        the target after its DELETE."""
        if self.keep:
            return []
        with self._lock:
            return [f"{t}/{i}" for t, i in [*reversed(self._created), *self.kept]]


@dataclass
class Created:
    """What set-up made on the target: the references for the Task generators, and every
    creation (fixture file name -> exchange, and the body sent) for the example suite to judge."""

    prereqs: Prerequisites
    exchanges: dict[str, Exchange]
    sent: dict[str, dict[str, Any]]
    example_task: dict[str, Any]


def create_all(client: FhirClient, tracker: Tracker) -> Created:
    """Create the fixtures and the example Task. A resource type the Task generators need that
    cannot be created at all is a set-up error: every Task naming it would be refused."""
    created: dict[str, list[str]] = {}
    renamed: dict[tuple[str, str], str] = {}
    exchanges: dict[str, Exchange] = {}
    sent: dict[str, dict[str, Any]] = {}

    def resolve(rtype: str, rid: str) -> str | None:
        new = renamed.get((rtype, rid)) or next(iter(created.get(rtype) or []), None)
        return f"{rtype}/{new}" if new else None

    for path in fixture_files():
        original = load(path)
        resource = rewrite_references(
            without_resource_origin({k: v for k, v in original.items() if k != "id"}), resolve)
        exchange = client.create(resource)
        exchanges[path.stem], sent[path.stem] = exchange, resource
        _stop_on_refused_credentials(exchange)
        made = tracker.created(exchange)
        if made:
            created.setdefault(made[0], []).append(made[1])
            renamed[(made[0], str(original.get("id")))] = made[1]
    missing = [t for t in FIELDS if t not in created]
    if missing:
        raise UsageError(f"cannot create the prerequisite {', '.join(missing)} on the target "
                         f"({_first_refusal(exchanges, missing)}); the Tasks need it")
    prereqs = Prerequisites(**{field: f"{t}/{created[t][0]}" for t, field in FIELDS.items()})
    example = example_task(prereqs)
    exchange = client.create(example)
    exchanges[EXAMPLE_TASK.stem], sent[EXAMPLE_TASK.stem] = exchange, example
    _stop_on_refused_credentials(exchange)
    made = tracker.created(exchange)
    if made:
        prereqs = replace(prereqs, task=f"Task/{made[1]}")
    return Created(prereqs, exchanges, sent, example)


def example_task(prereqs: Prerequisites) -> dict[str, Any]:
    """The example Task of `fixtures/`, its placeholder references pointing at the prerequisites."""
    by_type = {t: getattr(prereqs, field) for t, field in FIELDS.items()}
    task: dict[str, Any] = rewrite_references(without_resource_origin(load(EXAMPLE_TASK)),
                                              lambda rtype, _id: by_type.get(rtype))
    return task


def _stop_on_refused_credentials(exchange: Exchange) -> None:
    if exchange.status is None:
        raise UsageError(f"cannot create prerequisites: {exchange}")
    if exchange.status in (401, 403):
        raise UsageError(f"{exchange.method} {exchange.url} answered HTTP {exchange.status}: the "
                         f"credentials may not create resources on the target")


def _first_refusal(exchanges: dict[str, Exchange], types: list[str]) -> str:
    for name, exchange in exchanges.items():
        if name.split("-", 1)[0] in types:
            errors = outcome_errors(exchange.json)
            detail = f": {errors[0]}" if errors else ""
            return f"fixtures/{name}.json got HTTP {exchange.status}{detail}"
    return "no fixture of that type in fixtures/"
