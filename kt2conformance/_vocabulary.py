"""The harness's words as values with a kind, never strings joined and split again: constraint
keys, what a case expects, the verdict on it, and why an exchange gave no usable answer.

Each is a `str` underneath (an enum member or a `str` subclass), so it is written to JSON, shown
in reports and compared with the contract's spellings as is (docs/contract.md), while the code
asks for its parts (`key.kind`, `key.element`) instead of parsing text.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ConstraintKey", "Expectation", "Kind", "Problem", "StopReason", "Verdict"]


class Kind(StrEnum):
    """What a constraint key checks (the part after the `/`)."""

    MIN = "min"
    MAX = "max"
    FIXED = "fixed"
    PATTERN = "pattern"
    BINDING = "binding"
    TYPE = "type"
    TARGET_PROFILE = "targetProfile"
    FORMAT = "format"  # primitive syntax or value
    UNKNOWN = "unknown"  # an element the definition does not allow
    CONSTRAINT = "constraint"  # an invariant: `constraint:<invariant key>`
    SERVER = "server"  # a Koppeltaal server rule: `server/<rule>`


class ConstraintKey(str):
    """A constraint's stable key: `<element id>/<kind>`, `<element id>/constraint:<invariant>` or
    `server/<rule>`. A string (so it is a JSON key, a pytest id and equal to its spelling) that
    knows its parts: `element`, `kind` and `detail` (the invariant key or the rule's name)."""

    element: str
    kind: Kind
    detail: str | None

    def __new__(cls, element: str, kind: Kind, detail: str | None = None) -> ConstraintKey:
        if kind is Kind.SERVER:
            element, text = Kind.SERVER.value, f"server/{detail}"
        elif kind is Kind.CONSTRAINT:
            text = f"{element}/constraint:{detail}"
        else:
            text = f"{element}/{kind.value}"
        if (detail is None) is (kind in (Kind.SERVER, Kind.CONSTRAINT)):
            raise ValueError(f"constraint key {text!r}: a detail belongs to server and "
                             f"constraint keys only")
        key = super().__new__(cls, text)
        key.element, key.kind, key.detail = element, kind, detail
        return key

    def __getnewargs__(self) -> tuple[str, Kind, str | None]:  # type: ignore[override]
        return self.element, self.kind, self.detail

    @classmethod
    def parse(cls, text: str) -> ConstraintKey:
        """The key a user or a file spelled out; ValueError when it is not one."""
        if isinstance(text, ConstraintKey):
            return text
        element, slash, rest = text.rpartition("/")
        kind_text, _, detail = rest.partition(":")
        if not slash or not element:
            raise ValueError(f"not a constraint key: {text!r} (expected <element id>/<kind>)")
        if element == Kind.SERVER.value:
            return cls(element, Kind.SERVER, rest)
        try:
            kind = Kind(kind_text)
        except ValueError:
            raise ValueError(f"not a constraint key: {text!r} (unknown kind {kind_text!r})") from None
        return cls(element, kind, detail or None)

    @property
    def is_server_rule(self) -> bool:
        return self.kind is Kind.SERVER


class Expectation(StrEnum):
    """What a case must get from the target."""

    ACCEPT = "accept"
    REJECT = "reject"


class Verdict(StrEnum):
    """The verdict on one case: pass, fail (the target misjudged it) or error (no usable answer,
    so nothing is known about the target)."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"


class Problem(StrEnum):
    """Why an exchange gave no usable answer. Set by the client next to its human message, so a
    verdict is decided by kind, never by matching the message's text."""

    CANNOT_CONNECT = "cannot connect"  # the target is gone: a set-up problem, not a finding
    CONNECT_TIMEOUT = "connect timeout"
    WRITE_TIMEOUT = "write timeout"
    READ_TIMEOUT = "read timeout"
    DROPPED = "connection dropped"
    REQUEST_FAILED = "request failed"
    BODY_TOO_LARGE = "body too large"
    BODY_INCOMPLETE = "body incomplete"
    REDIRECT = "redirect"
    EMPTY_BODY = "empty body"
    NOT_JSON = "not JSON"
    THROTTLED = "throttled"  # still 429/503 after the retries


class StopReason(StrEnum):
    """Why a run ended before every case ran (summary.json `stopped_reason`)."""

    SIGINT = "SIGINT"  # Ctrl-C
    SIGTERM = "SIGTERM"  # what CI systems send when a job is cancelled or times out
    SIGHUP = "SIGHUP"  # the terminal went away
    SETUP_ERROR = "setup-error"  # the target refused or vanished: exit 2
    EARLY = "stopped-early"  # pytest stopped the session (-x, --maxfail)
