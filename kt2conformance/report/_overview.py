"""The overview of report.html: every constraint, grouped by the element it is about, each with
a status a colour can show; groups with findings first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kt2conformance._vocabulary import ConstraintKey

# Statuses, worst first: the order of the groups, the rows and the filter buttons.
NOT_ENFORCED, OVER_STRICT, DATA_LOSS, ERROR, UNTESTED, ENFORCED, ACCEPTED = (
    "not-enforced", "over-strict", "data-loss", "error", "untested", "enforced", "accepted")
ORDER = [NOT_ENFORCED, OVER_STRICT, DATA_LOSS, ERROR, ENFORCED, ACCEPTED, UNTESTED]
FINDINGS = (NOT_ENFORCED, OVER_STRICT, DATA_LOSS, ERROR)
LABEL = {NOT_ENFORCED: "not enforced", OVER_STRICT: "over-strict", DATA_LOSS: "data loss",
         ERROR: "no answer", UNTESTED: "not tested", ENFORCED: "enforced",
         ACCEPTED: "accepted as sent"}
VALID_GROUP = "valid Tasks and examples"
SERVER_GROUP = "server rules"


@dataclass
class Row:
    key: str
    status: str
    description: str
    cases: int
    failed: int
    note: str = ""
    anchor: str | None = None  # id of the row's failure block, when it has one


@dataclass
class Group:
    element: str
    rows: list[Row] = field(default_factory=list)
    classes: str = ""  # the boundary classes valid Tasks tried at this element (when known)

    @property
    def status(self) -> str:
        """The worst finding among the rows; with none, enforced when any row was tested (a
        constraint no Task can break alone does not make its element look untested)."""
        present = {r.status for r in self.rows}
        return next((s for s in (*FINDINGS, ENFORCED, ACCEPTED) if s in present), UNTESTED)

    @property
    def counts(self) -> list[tuple[str, int]]:
        """(status, rows) for the group's compact status bar, worst first."""
        tally = Counter(r.status for r in self.rows)
        return [(s, tally[s]) for s in ORDER if tally[s]]


def anchor(key: str | None) -> str:
    """A stable HTML id for a constraint's failure block."""
    text = key or "valid"
    return "kt-f-" + "".join(c if c.isalnum() else "-" for c in text)


def element_of(key: ConstraintKey) -> str:
    """The group a constraint's row goes in: its element's, or the server rules'."""
    return SERVER_GROUP if key.is_server_rule else key.element


def build_groups(constraints: Mapping[str, Mapping[str, Any]], descriptions: Mapping[str, str],
                 skipped: Mapping[str, str], valid_cases: int, valid_findings: Mapping[str, int],
                 refused_at: Counter[str], failing: set[str | None],
                 stopped: bool = False, lost: Mapping[str, Any] | None = None,
                 coverage: Mapping[str, Any] | None = None,
                 profiles: Mapping[str, str] | None = None) -> list[Group]:
    """The groups, worst first (then in profile order), their rows worst first.

    With several profiles (`profiles`: resource type -> profile name, in run order) the groups
    are grouped by profile first: each element's group is named `<profile> · <element>`, and a
    profile's groups come together, in the profiles' order, worst first within a profile.

    `constraints` is summary.json's object (key -> cases, failed, enforced, and data_loss where
    the harness counts it per element; each key is read as a `ConstraintKey` here, once);
    `valid_findings` counts the valid resources' findings by status (OVER_STRICT, DATA_LOSS,
    ERROR); `refused_at` the elements refusals of valid Tasks
    pointed at; `failing` the keys that have a failure block; `stopped` whether the run ended
    before every suite ran (a constraint without cases was then perhaps just not reached).
    `lost` and `coverage` are summary.json's `data_loss` (element -> cases, kinds) and `coverage`
    (per side: by_element -> class -> sent/answered/passed, not_sent) when the run wrote them."""
    valid_classes, invalid_classes = _classes(coverage, "valid"), _classes(coverage, "invalid")
    groups: dict[str, Group] = {}
    several = profiles if profiles and len(profiles) > 1 else None
    valid = Group(VALID_GROUP)
    if valid_findings.get(OVER_STRICT):
        pointed = ", ".join(f"{e} ({n})" for e, n in refused_at.most_common(5))
        valid.rows.append(Row("valid resources refused", OVER_STRICT,
                              "valid Tasks and official examples must be accepted",
                              valid_cases, valid_findings[OVER_STRICT],
                              f"refusals point at {pointed}" if pointed else "", anchor(None)))
    if valid_findings.get(DATA_LOSS):
        valid.rows.append(Row("valid resources stored differently", DATA_LOSS,
                              "what is accepted must read back as sent", valid_cases,
                              valid_findings[DATA_LOSS], "", anchor(None)))
    if valid_findings.get(ERROR):
        valid.rows.append(Row("valid resources unanswered", ERROR, "no usable answer",
                              valid_cases, valid_findings[ERROR], ""))
    if not valid.rows:
        valid.rows.append(Row("valid resources", ACCEPTED if valid_cases else UNTESTED,
                              "valid Tasks and official examples: accepted and stored as sent",
                              valid_cases, 0, "" if valid_cases else "no cases"))
    for spelled, tally in constraints.items():
        key = ConstraintKey.parse(spelled)
        enforced = tally.get("enforced")
        cases, failed = int(tally.get("cases") or 0), int(tally.get("failed") or 0)
        if enforced is False:
            status = NOT_ENFORCED
        elif enforced is True:
            status = ENFORCED
        else:
            status = ERROR if cases else UNTESTED
        note = skipped.get(key, "" if cases else
                           "not reached before the run stopped" if stopped else "no cases")
        if key in invalid_classes:
            note = f"{note}; {invalid_classes[key]}" if note else invalid_classes[key]
        lost_here = tally.get("data_loss")
        if isinstance(lost_here, int) and lost_here:
            status = min(status, DATA_LOSS, key=ORDER.index)
            note = f"{lost_here} data-loss finding(s)" + (f"; {note}" if note else "")
        element = element_of(key)
        if several and not key.is_server_rule:  # the element id's root is its resource type
            element = f"{several.get(key.element.split('.')[0], '?')} · {element}"
        group = groups.setdefault(element, Group(element))
        group.rows.append(Row(key, status, descriptions.get(key, ""), cases, failed, note,
                              anchor(key) if key in failing else None))
    for element, info in (lost or {}).items():  # so does data loss
        n = int(info.get("cases") or 0) if isinstance(info, Mapping) else 0
        kinds = ", ".join(sorted(info.get("kinds") or {})) if isinstance(info, Mapping) else ""
        groups.setdefault(element, Group(element)).rows.append(Row(
            f"{element} (stored differently)", DATA_LOSS,
            "valid Tasks were accepted but read back differently here"
            + (f" ({kinds})" if kinds else ""), n, n, "", anchor(None)))
    for element, text in valid_classes.items():
        if element in groups:
            groups[element].classes = text
    for element, n in refused_at.items():  # over-strictness shows at the element, too
        if element in groups:
            groups[element].rows.append(Row(
                f"{element} (valid Tasks refused here)", OVER_STRICT,
                "refusals of valid Tasks pointed at this element", n, n, "", anchor(None)))
    names = list(several.values()) if several else []

    def rank(group: Group) -> tuple[int, int]:
        profile = group.element.split(" · ")[0]
        return (names.index(profile) if profile in names else len(names),
                ORDER.index(group.status))

    ordered = sorted(groups.values(), key=rank)  # stable: snapshot order within a status
    for group in [valid, *ordered]:
        group.rows.sort(key=lambda r: ORDER.index(r.status))
    return [valid, *ordered]


def _classes(coverage: Mapping[str, Any] | None, side: str) -> dict[str, str]:
    """name (element or key) -> the boundary classes tried there, as a line ("class (sent n,
    passed m), …; not tried: …"), from summary.json's `coverage` (absent: nothing)."""
    part = coverage.get(side) if isinstance(coverage, Mapping) else None
    if not isinstance(part, Mapping):
        return {}
    out: dict[str, str] = {}
    by_element = part.get("by_element")
    for name, classes in (by_element.items() if isinstance(by_element, Mapping) else []):
        if isinstance(classes, Mapping):
            out[name] = ", ".join(
                f"{klass} ({c.get('sent', 0)} sent, {c.get('passed', 0)} passed)"
                if isinstance(c, Mapping) else str(klass) for klass, c in classes.items())
    not_sent = part.get("not_sent")
    for name, missing in (not_sent.items() if isinstance(not_sent, Mapping) else []):
        if isinstance(missing, list) and missing:
            tried = out.get(name)
            out[name] = (f"{tried}; " if tried else "") + "not tried: " + ", ".join(map(str, missing))
    return {name: f"classes: {text}" for name, text in out.items()}


def coverage_line(coverage: Mapping[str, Any] | None) -> str | None:
    """"boundary classes tried: valid 40 of 45, invalid 120 of 130" (None without coverage)."""
    if not isinstance(coverage, Mapping):
        return None
    parts = [f"{side} {part['sent']} of {part['classes']}" for side in ("valid", "invalid")
             if isinstance(part := coverage.get(side), Mapping)
             and isinstance(part.get("sent"), int) and isinstance(part.get("classes"), int)]
    return f"boundary classes tried: {', '.join(parts)}" if parts else None
