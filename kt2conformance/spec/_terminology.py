"""ValueSet expansion from the bundled ValueSets and CodeSystems, for required bindings.

Only what a profile's bindings need: `compose.include` by whole system or by listed concepts,
`compose.exclude` likewise, and `valueSet` imports. A ValueSet that cannot be expanded offline
(a filter, a missing CodeSystem) yields None: the binding is then reported as not checkable
rather than guessed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kt2conformance.spec._profile import Profile

Codes = frozenset[tuple[str, str]]


def _all_codes(concepts: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for c in concepts:
        out.append(c["code"])
        out.extend(_all_codes(c.get("concept", [])))
    return out


def _part(profile: Profile, part: dict[str, Any], seen: set[str]) -> set[tuple[str, str]] | None:
    if part.get("filter"):
        return None
    codes: set[tuple[str, str]] | None = None
    system = part.get("system")
    if system is not None:
        if part.get("concept"):
            codes = {(system, c["code"]) for c in part["concept"]}
        else:
            cs = profile.code_system(system)
            if cs is None or cs.get("content") not in (None, "complete"):
                return None
            codes = {(system, code) for code in _all_codes(cs.get("concept", []))}
    for vs_url in part.get("valueSet", []):
        imported = expand(profile, vs_url, seen)
        if imported is None:
            return None
        codes = set(imported) if codes is None else codes & imported
    return codes if codes is not None else set()


def expand(profile: Profile, url: str, _seen: set[str] | None = None) -> Codes | None:
    """The (system, code) pairs of a ValueSet, or None when it can't be expanded offline."""
    seen = set() if _seen is None else _seen
    base = url.split("|")[0]
    if base in seen:
        return None
    seen.add(base)
    vs = profile.value_set(base)
    if vs is None:
        return None
    if "expansion" in vs and "compose" not in vs:
        return frozenset((c["system"], c["code"]) for c in vs["expansion"].get("contains", []))
    compose = vs.get("compose", {})
    included: set[tuple[str, str]] = set()
    for part in compose.get("include", []):
        codes = _part(profile, part, seen)
        if codes is None:
            return None
        included |= codes
    for part in compose.get("exclude", []):
        codes = _part(profile, part, seen)
        if codes is None:
            return None
        included -= codes
    return frozenset(included)
