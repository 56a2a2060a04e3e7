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


def _descendants(concepts: list[dict[str, Any]], code: str, inside: bool = False) -> list[str] | None:
    """The codes below `code` in a concept tree (None when `code` is not in it)."""
    for c in concepts:
        if c["code"] == code:
            return _all_codes(c.get("concept", []))
        below = _descendants(c.get("concept", []), code)
        if below is not None:
            return below
    return None


def _filtered(cs: dict[str, Any], filters: list[dict[str, Any]]) -> set[str] | None:
    """Codes of a CodeSystem passing `is-a` / `descendent-of` / `=` concept filters on its own
    hierarchy; None for any other filter (it needs properties or a terminology server)."""
    codes: set[str] = set(_all_codes(cs.get("concept", [])))
    for f in filters:
        if f.get("property") != "concept" or f.get("op") not in ("is-a", "descendent-of", "="):
            return None
        below = _descendants(cs.get("concept", []), f.get("value", ""))
        if below is None:
            return set()
        codes &= set(below) | ({f["value"]} if f["op"] in ("is-a", "=") else set())
        if f["op"] == "=":
            codes &= {f["value"]}
    return codes


def known_system(profile: Profile, system: str) -> frozenset[str] | None:
    """Every code of a CodeSystem the profile or R4 core defines in full (content `complete`);
    None for any other system (unknown, a fragment, or defined elsewhere)."""
    cs = profile.code_system(system)
    if cs is None or cs.get("content") != "complete" or not cs.get("concept"):
        return None
    return _complete_codes(id(cs), cs)


_COMPLETE: dict[int, frozenset[str]] = {}


def _complete_codes(key: int, cs: dict[str, Any]) -> frozenset[str]:
    if key not in _COMPLETE:
        _COMPLETE[key] = frozenset(_all_codes(cs.get("concept", [])))
    return _COMPLETE[key]


def _part(profile: Profile, part: dict[str, Any], seen: set[str]) -> set[tuple[str, str]] | None:
    codes: set[tuple[str, str]] | None = None
    system = part.get("system")
    if part.get("filter"):
        cs = profile.code_system(system) if isinstance(system, str) else None
        if cs is None or cs.get("content") not in (None, "complete"):
            return None
        found = _filtered(cs, part["filter"])
        if found is None:
            return None
        codes = {(str(system), c) for c in found}
    elif system is not None:
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
