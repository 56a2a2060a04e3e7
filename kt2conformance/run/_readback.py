"""Comparing what the server stored with what was sent: each difference with its kind, so a
report can say *how* data was lost, not only that it was.

What FHIR lets a server change is not a difference: the server-managed elements (id, text,
meta.versionId/lastUpdated/source, meta lists that only grow), an extension the server injects
itself (Koppeltaal's resource-origin), and equivalent JSON (1 and 1.0 are one number).
Everything else is, classified by what happened to the value:

- `truncated`: the stored string is a cut-off start of the sent one (a VARCHAR column);
- `re-encoded`: the same text in another encoding (Unicode normalisation, trimmed or folded
  whitespace, line ends, case, HTML escapes);
- `precision-lost`: a date/time with fewer digits or a lower precision than sent;
- `offset-changed`: the same instant written with another offset (normalised to UTC);
- `instant-moved`: a date/time naming another instant;
- `dropped`: an element (or a repetition) sent and not stored;
- `added`: an element stored that was not sent;
- `changed`: any other difference.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kt2conformance.spec._primitives import primitive

# Elements a server fills in or may rewrite on create; not compared when a Task is read back.
SERVER_MANAGED = frozenset({"id", "text"})
SERVER_MANAGED_META = frozenset({"versionId", "lastUpdated", "source"})
# Extensions a Koppeltaal server adds itself (the client's Device as resource-origin): ignored in
# what was stored when the client did not send one.
SERVER_INJECTED_EXTENSIONS = frozenset({"http://koppeltaal.nl/fhir/StructureDefinition/resource-origin"})
_INDEX = re.compile(r"\[\d+\]")
_SHOWN = 60


class LossKind(StrEnum):
    TRUNCATED = "truncated"
    RE_ENCODED = "re-encoded"
    PRECISION_LOST = "precision-lost"
    OFFSET_CHANGED = "offset-changed"
    INSTANT_MOVED = "instant-moved"
    DROPPED = "dropped"
    ADDED = "added"
    CHANGED = "changed"


@dataclass(frozen=True)
class Difference:
    """One place where the stored resource is not what was sent."""

    path: str  # with list indexes: Task.identifier[0].value
    kind: LossKind
    sent: Any = None
    stored: Any = None
    how: str = ""  # for re-encoded: what changed (trimmed, normalised Unicode…)

    @property
    def element(self) -> str:
        """The path without list indexes, to group differences by element."""
        return _INDEX.sub("", self.path)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "element": self.element, "kind": self.kind.value}
        if self.kind is not LossKind.ADDED:
            out["sent"] = _abbreviated(self.sent)
        if self.kind is not LossKind.DROPPED:
            out["stored"] = _abbreviated(self.stored)
        if self.how:
            out["how"] = self.how
        return out

    def __str__(self) -> str:
        what = self.kind.value + (f" ({self.how})" if self.how else "")
        if self.kind is LossKind.DROPPED:
            return f"{self.path}: {what}: sent {_show(self.sent)}, not stored"
        if self.kind is LossKind.ADDED:
            return f"{self.path}: {what}: stored {_show(self.stored)}, not sent"
        return f"{self.path}: {what}: sent {_show(self.sent)}, stored {_show(self.stored)}"


def stored_differences(sent: dict[str, Any], stored: dict[str, Any]) -> list[Difference]:
    """Where the stored resource differs from the sent one, ignoring what the server manages.
    Of `meta` only what the client sent is compared (servers add their own bookkeeping), and
    meta lists (profile, tag, security) need only contain what was sent."""
    root = str(sent.get("resourceType", "Resource"))
    ignored = SERVER_MANAGED | {"meta"}
    kept = {k: v for k, v in stored.items() if k not in ignored}
    if isinstance(kept.get("extension"), list):
        sent_urls = {e.get("url") for e in sent.get("extension") or [] if isinstance(e, dict)}
        kept["extension"] = [e for e in kept["extension"] if not (
            isinstance(e, dict) and e.get("url") in SERVER_INJECTED_EXTENSIONS and e.get("url") not in sent_urls)]
        if not kept["extension"] and "extension" not in sent:
            kept.pop("extension")
    out = _differences({k: v for k, v in sent.items() if k not in ignored}, kept, root)
    sent_meta: dict[str, Any] = sent["meta"] if isinstance(sent.get("meta"), dict) else {}
    stored_meta: dict[str, Any] = stored["meta"] if isinstance(stored.get("meta"), dict) else {}
    for key, value in sent_meta.items():
        if key in SERVER_MANAGED_META:
            continue
        have = stored_meta.get(key)
        if isinstance(value, list) and isinstance(have, list):
            out += [Difference(f"{root}.meta.{key}", LossKind.DROPPED, item) for item in value if item not in have]
        elif value != have:
            out += _differences(value, have, f"{root}.meta.{key}") if have is not None \
                else [Difference(f"{root}.meta.{key}", LossKind.DROPPED, value)]
    return out


def _differences(sent: Any, stored: Any, path: str) -> list[Difference]:
    if isinstance(sent, dict) and isinstance(stored, dict):
        out: list[Difference] = []
        for key in sorted(sent.keys() | stored.keys()):
            where = f"{path}.{key}"
            if key not in stored:
                out.append(Difference(where, LossKind.DROPPED, sent[key]))
            elif key not in sent:
                out.append(Difference(where, LossKind.ADDED, stored=stored[key]))
            else:
                out += _differences(sent[key], stored[key], where)
        return out
    if isinstance(sent, list) and isinstance(stored, list):
        out = []
        for i, (a, b) in enumerate(zip(sent, stored, strict=False)):
            out += _differences(a, b, f"{path}[{i}]")
        out += [Difference(f"{path}[{i}]", LossKind.DROPPED, item) for i, item in enumerate(sent[len(stored):], len(stored))]
        out += [Difference(f"{path}[{i}]", LossKind.ADDED, stored=item) for i, item in enumerate(stored[len(sent):], len(sent))]
        return out
    if sent == stored and type(sent) is type(stored):
        return []
    if _number(sent) and _number(stored) and sent == stored:
        return []  # 1 and 1.0 are the same JSON number
    if isinstance(sent, str) and isinstance(stored, str):
        return [_string_difference(sent, stored, path)]
    return [Difference(path, LossKind.CHANGED, sent, stored)]


def _string_difference(sent: str, stored: str, path: str) -> Difference:
    sent_time, stored_time = _temporal(sent), _temporal(stored)
    if sent_time is not None and stored_time is not None:
        return Difference(path, _temporal_kind(sent_time, stored_time), sent, stored)
    if stored and len(stored) < len(sent) and sent.startswith(stored):
        return Difference(path, LossKind.TRUNCATED, sent, stored, f"{len(sent)} -> {len(stored)} characters")
    for how, same in _RE_ENCODINGS:
        if same(sent) == same(stored):
            return Difference(path, LossKind.RE_ENCODED, sent, stored, how)
    return Difference(path, LossKind.CHANGED, sent, stored)


_RE_ENCODINGS = (
    ("Unicode normalised", lambda s: unicodedata.normalize("NFC", s)),
    ("line ends changed", lambda s: s.replace("\r\n", "\n")),
    ("trimmed", str.strip),
    ("whitespace folded", lambda s: " ".join(s.split())),
    ("HTML-escaped", html.unescape),
    ("case changed", str.casefold),
    ("re-encoded", lambda s: " ".join(html.unescape(unicodedata.normalize("NFKC", s)).casefold().split())),
)


@dataclass(frozen=True)
class _Time:
    precision: int  # 1 year … 4 seconds, 5+ fraction digits
    instant: dt.datetime | None  # UTC, for values with a time
    offset: str
    digits: str  # the date and time digits as written


_DATED = ("dateTime", "instant", "date")


def _temporal(text: str) -> _Time | None:
    """A date/dateTime/instant's precision, instant and offset; None if `text` is not one."""
    if not any((p := primitive(code)) is not None and p.check(text) is None for code in _DATED):
        return None
    if "T" not in text:
        return _Time(len(text.split("-")), None, "", text)
    body, offset = (text[:-1], "Z") if text.endswith("Z") else (text[:-6], text[-6:])
    seconds, _, fraction = body.partition(".")
    try:
        base = dt.datetime.fromisoformat(seconds)
        shift = dt.timedelta() if offset == "Z" else (1 if offset[0] == "+" else -1) * dt.timedelta(
            hours=int(offset[1:3]), minutes=int(offset[4:6]))
        micros = int((fraction + "000000")[:6]) if fraction else 0
        instant = base - shift + dt.timedelta(microseconds=micros)
    except (ValueError, OverflowError):
        instant = None
    return _Time(4 + len(fraction), instant, offset, body)


def _temporal_kind(sent: _Time, stored: _Time) -> LossKind:
    if stored.precision < sent.precision:
        return LossKind.PRECISION_LOST
    if stored.precision > sent.precision and (sent.instant is None or stored.instant is None):
        return LossKind.CHANGED  # a lower precision padded out: not the value sent
    if sent.instant is not None and stored.instant is not None:
        if sent.instant == stored.instant:
            return LossKind.OFFSET_CHANGED if sent.offset != stored.offset else LossKind.CHANGED
        return LossKind.INSTANT_MOVED
    return LossKind.INSTANT_MOVED


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + f"…({len(text)} characters)"


def _abbreviated(value: Any) -> Any:
    """A value for summary.json: long strings cut, with their length (a 1 MiB string is not
    repeated per case)."""
    if isinstance(value, str) and len(value) > 200:
        return f"{value[:100]}…[{len(value)} characters, ending {value[-20:]!r}]"
    if isinstance(value, (dict, list)):
        text = repr(value)
        return value if len(text) <= 400 else text[:200] + f"…[{len(text)} characters]"
    return value
