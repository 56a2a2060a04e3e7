"""What Koppeltaal adds to the KT2Task profile, in one place: the rules a Koppeltaal server enforces
beyond the profile (one table) and the Koppeltaal constants. Everything else is derived from
here: the `server/<rule>` constraint keys and their descriptions (`spec`), which rules the
generated Task bodies break and how (`generate`), which ones only hand-made requests can break
(the protocol suite), and the statuses `--strict` demands (`run`).

The facts are production's (GitHub Koppeltaal/Koppeltaal-2.0-FHIR-HAPI-Server, HAPI FHIR 8.2.0):
in request order it answers 415/406 (media types), 401 (no bearer token on a write), 400 (JSON
syntax), 422 (HAPI validator at ERROR), 412 (no KT2Task in meta.profile), 400 (reference to a
missing resource), 422 (code `view` without partOf), 400 (client-set resource-origin), 412
(update without If-Match), 409 (delete of a referenced resource). The public contract lists the
rule keys (docs/contract.md).

To add a rule: one `ServerRule` row in `SERVER_RULES`. A rule a Task body breaks gets a `fault`
(a function of a minimal valid Task); a rule only a request can break (a header, the bytes, an
update or delete sequence) is `protocol_only`, checked by its own suite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from kt2conformance._vocabulary import ConstraintKey, Kind

__all__ = [
    "BASE_TASK_URL",
    "KT2TASK_URL",
    "PREREQUISITE_ORDER",
    "PRODUCTION_DOMAIN",
    "PROFILE_CLAIMS",
    "PROFILE_VIOLATION_STATUS",
    "RESOURCE_ORIGIN_URL",
    "SERVER_RULES",
    "SUBTASK_CODE",
    "TASK_CODE_SYSTEM",
    "ServerRule",
    "rule",
    "rules_for",
]

KT2TASK_URL = "http://koppeltaal.nl/fhir/StructureDefinition/KT2Task"
# The KT2 profile a resource of each type must claim in meta.profile, else production refuses it
# with 412 (its RepositoryValidationInterceptorFactoryR4: requireAtLeastProfile per type).
PROFILE_CLAIMS = {t: f"http://koppeltaal.nl/fhir/StructureDefinition/KT2{t}" for t in (
    "ActivityDefinition", "AuditEvent", "CareTeam", "Device", "Endpoint", "Organization",
    "Patient", "Practitioner", "RelatedPerson", "Subscription", "Task")}
BASE_TASK_URL = "http://hl7.org/fhir/StructureDefinition/Task"
RESOURCE_ORIGIN_URL = "http://koppeltaal.nl/fhir/StructureDefinition/resource-origin"
TASK_CODE_SYSTEM = "http://vzvz.nl/fhir/CodeSystem/koppeltaal-task-code"
SUBTASK_CODE = "view"  # a Task with this code is a sub-Task: it needs partOf
# The status production gives a profile violation (its RequestValidatingInterceptor, at ERROR).
PROFILE_VIOLATION_STATUS = 422
# The resources a Task refers to, in the order they can be created: every type refers only to
# types before it (or to nothing a client can create).
PREREQUISITE_ORDER = ("Endpoint", "Organization", "Patient", "Practitioner", "RelatedPerson",
                      "CareTeam", "Device", "ActivityDefinition")
# Production's domain: a host under it without a test-like label is production.
PRODUCTION_DOMAIN = "koppeltaal.nl"

_T = TypeVar("_T")
Task = dict[str, Any]


class Choices(Protocol):
    """The choices a fault makes (the generators' `Chooser` is one)."""

    def choose(self, options: Sequence[_T]) -> _T: ...

    def uuid(self) -> str: ...


@dataclass(frozen=True)
class ServerRule:
    """One rule a Koppeltaal server enforces beyond the profile."""

    name: str  # the key is `server/<name>`
    description: str
    strict_status: int | None  # what production answers; None: not a refusal of a request
    protocol_only: bool  # broken by the request (header, bytes, sequence), not by a Task body
    how: str  # how the harness breaks it, for people
    fault: Callable[[Choices, Task], Task | None] | None = None  # a minimal valid resource, broken
    types: frozenset[str] | None = None  # the resource types it applies to; None: every type

    @property
    def key(self) -> ConstraintKey:
        return ConstraintKey(Kind.SERVER.value, Kind.SERVER, self.name)

    @property
    def summary(self) -> str:
        """The description with production's status, as `constraints` lists it."""
        if self.strict_status is None:
            return self.description
        return f"{self.description} ({self.strict_status})"


def _no_kt2_claim(c: Choices, task: Task) -> Task:
    base = f"http://hl7.org/fhir/StructureDefinition/{task.get('resourceType')}"
    return {**task, "meta": c.choose([{}, {"profile": [base]}])}


def _view_without_part_of(c: Choices, task: Task) -> Task:
    rest = {k: v for k, v in task.items() if k != "partOf"}
    return {**rest, "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": SUBTASK_CODE}]}}


def _missing_reference(c: Choices, task: Task) -> Task | None:
    """A Task's `for`, else the first literal reference of the resource, pointing nowhere."""
    if task.get("resourceType") == "Task":
        return {**task, "for": {"reference": f"Patient/missing-{c.uuid()}"}}
    for name, value in task.items():
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if isinstance(item, dict) and isinstance(item.get("reference"), str) and "/" in item["reference"]:
                broken = {**item, "reference": f"{item['reference'].split('/')[0]}/missing-{c.uuid()}"}
                new = [*items[:i], broken, *items[i + 1:]] if isinstance(value, list) else broken
                return {**task, name: new}
    return None


SERVER_RULES: tuple[ServerRule, ...] = (
    ServerRule("meta.profile", "a resource of a KT2 type must declare its KT2 profile in "
               "meta.profile", 412, False,
               "no meta, or meta.profile naming only the base resource", _no_kt2_claim),
    ServerRule("content-type", "a resource must be sent as application/fhir+json", 415, True,
               "a transport fault (the Content-Type header), not a Task body"),
    ServerRule("bearer-token", "a write without a valid bearer token is refused: none, one the "
               "server never issued, or the run's own with its signature broken", 401, True,
               "a write without a token, with an unknown token, and with the run's token "
               "forged (signature altered, `alg: none`) (the protocol suite; needs the run's "
               "credentials)"),
    ServerRule("json-syntax", "a body that is not JSON is refused", 400, True,
               "a transport fault (a body that is not JSON), not a Task body"),
    ServerRule("subtask-partOf", "a Task with code `view` needs partOf", 422, False,
               "code `view` without partOf", _view_without_part_of, frozenset({"Task"})),
    ServerRule("reference-integrity", "references must resolve to existing resources", 400,
               False, "a reference to a resource that does not exist", _missing_reference),
    ServerRule("resource-origin", "a client-set resource-origin extension is refused; the "
               "server sets its own, naming the client's Device", 400, True,
               "a Task carrying its own resource-origin extension (the protocol suite)"),
    ServerRule("if-match", "an update needs an If-Match header", 412, True,
               "an update without If-Match (the lifecycle suite)"),
    ServerRule("stale-version", "an update whose If-Match names an earlier version is refused",
               409, True, "an update with the version the resource had before (the lifecycle "
               "suite)"),
    ServerRule("delete", "a deleted resource is gone (a read answers 404 or 410)", None, True,
               "a delete confirmed by a read (a sequence, not a request body)"),
)

_BY_KEY: dict[str, ServerRule] = {r.key: r for r in SERVER_RULES}


def rules_for(resource_type: str) -> tuple[ServerRule, ...]:
    """The server rules that apply to resources of this type (meta.profile only to KT2 types)."""
    return tuple(r for r in SERVER_RULES if (r.types is None or resource_type in r.types)
                 and (r.name != "meta.profile" or resource_type in PROFILE_CLAIMS))


def rule(key: str) -> ServerRule | None:
    """The server rule with this key (`server/<name>`), None for any other key."""
    return _BY_KEY.get(key)
