"""Comparison with an earlier run (`run --baseline PATH/summary.json`): which constraints
regressed, were fixed, or are new since then — what a nightly job wants to see first.

Both sides are read from summary.json's contract fields, so any earlier run's summary works,
whatever version of the harness wrote it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kt2conformance._vocabulary import Expectation
from kt2conformance.report._verdict import Finding, FindingCounts

VALID = "valid resources"  # the pseudo-key of the valid Tasks and official examples
ENFORCED, NOT_ENFORCED, UNTESTED = "enforced", "not enforced", "untested"
ACCEPTED, OVER_STRICT, DATA_LOSS = "accepted as sent", "over-strict", "data loss"
_BAD = frozenset({NOT_ENFORCED, OVER_STRICT, DATA_LOSS})
_GOOD = frozenset({ENFORCED, ACCEPTED})


class BaselineError(ValueError):
    """The baseline file cannot be used (message names the file and why, in one line)."""


@dataclass(frozen=True)
class Change:
    key: str
    before: str | None  # status in the baseline (None: not in it)
    now: str | None  # status in this run (None: not in it)


@dataclass
class Comparison:
    baseline: str  # the file compared with
    started: str | None  # when the baseline run started
    regressed: list[Change] = field(default_factory=list)
    fixed: list[Change] = field(default_factory=list)
    new: list[Change] = field(default_factory=list)
    gone: list[Change] = field(default_factory=list)
    untested: list[Change] = field(default_factory=list)  # judged then, not now

    @property
    def unchanged(self) -> bool:
        return not (self.regressed or self.fixed or self.new or self.gone or self.untested)

    def lines(self) -> list[str]:
        """The comparison for the console, one line a list."""
        out = []
        for label, changes in (("regressed", self.regressed), ("fixed", self.fixed),
                               ("new", self.new), ("no longer tested", self.untested),
                               ("gone", self.gone)):
            if changes:
                shown = ", ".join(c.key for c in changes[:10])
                more = f" and {len(changes) - 10} more" if len(changes) > 10 else ""
                out.append(f"{label} ({len(changes)}): {shown}{more}")
        return out or ["no constraint changed status"]


def load_baseline(path: str | Path) -> dict[str, Any]:
    """An earlier run's summary.json, checked enough to compare with."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"baseline {file}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"baseline {file}: cannot read it ({exc})") from None
    except ValueError as exc:
        raise BaselineError(f"baseline {file}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("constraints"), dict) \
            or not isinstance(data.get("cases", []), list):
        raise BaselineError(f"baseline {file}: not a kt2conformance summary.json "
                            f"(no constraints object)")
    return data


def _status(enforced: Any) -> str:
    return ENFORCED if enforced is True else NOT_ENFORCED if enforced is False else UNTESTED


def statuses(constraints: Mapping[str, Mapping[str, Any]],
             findings: FindingCounts, valid_cases: int) -> dict[str, str]:
    """key -> status of one run, the valid resources under VALID."""
    out = {key: _status(c.get("enforced")) for key, c in constraints.items()
           if isinstance(c, Mapping)}
    if findings.by_kind[Finding.OVER_STRICT]:
        out[VALID] = OVER_STRICT
    elif findings.by_kind[Finding.DATA_LOSS]:
        out[VALID] = DATA_LOSS
    elif valid_cases:
        out[VALID] = ACCEPTED
    else:
        out[VALID] = UNTESTED
    return out


def summary_statuses(summary: Mapping[str, Any]) -> dict[str, str]:
    """Statuses of a whole summary.json (case list included)."""
    cases = [c for c in summary.get("cases") or [] if isinstance(c, Mapping)]
    valid = sum(1 for c in cases if c.get("expected") == Expectation.ACCEPT)
    return statuses(summary.get("constraints") or {}, FindingCounts.of(cases), valid)


def compare(now: Mapping[str, str], baseline: Mapping[str, Any], name: str) -> Comparison:
    """How this run's statuses differ from the baseline summary's."""
    before = summary_statuses(baseline)
    result = Comparison(name, baseline.get("started"))
    for key, status in now.items():
        old = before.get(key)
        change = Change(key, old, status)
        if old is None:
            result.new.append(change)
        elif status in _BAD and old not in _BAD:
            result.regressed.append(change)
        elif old in _BAD and status in _GOOD:
            result.fixed.append(change)
        elif old != UNTESTED and status == UNTESTED:
            result.untested.append(change)
    result.gone = [Change(key, old, None) for key, old in before.items() if key not in now]
    return result
