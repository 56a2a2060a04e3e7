"""BCP 47 language codes as HAPI FHIR's validator looks them up.

A Coding under `urn:ietf:bcp:47` that no value set judges is looked up by HAPI FHIR 8.2's
CommonCodeSystemsTerminologyService (lookupLanguageCode): the code is split at its first `-` or
`_`; the part before must be a language subtag (any case), the whole rest one region subtag (any
case); a code without a separator must be a language. Anything else ("zh-Hant", "nl-NL-x-foo",
"x-klingon") is not found, which the validator reports as an error. The subtags are vendored from
the registry HAPI ships (profiles/r4/bcp47-subtags.json).
"""

from __future__ import annotations

import json
import re
from functools import cache, lru_cache

from kt2conformance import _paths as paths

__all__ = ["SYSTEM", "language_problem"]

SYSTEM = "urn:ietf:bcp:47"
_SEPARATOR = re.compile(r"[-_]")


@cache
def _subtags() -> tuple[frozenset[str], frozenset[str]]:
    data = json.loads(paths.BCP47_SUBTAGS.read_text(encoding="utf-8"))
    return frozenset(data["languages"]), frozenset(data["regions"])


@lru_cache(maxsize=2048)
def language_problem(code: str) -> str | None:
    """Why the validator does not find `code` as a BCP 47 language, or None."""
    languages, regions = _subtags()
    found = _SEPARATOR.search(code)
    if found is not None and found.start() > 0:
        ok = code[:found.start()].lower() in languages and code[found.start() + 1:].upper() in regions
    else:
        ok = code.lower() in languages
    return None if ok else f"{code!r} is not a language (and region) of the BCP 47 registry"
