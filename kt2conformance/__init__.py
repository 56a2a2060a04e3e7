"""kt2conformance: conformance test harness for Koppeltaal 2.0 servers (KT2Task).

The public Python API is what `__all__` lists; everything else (the `_x` modules) is private and
may change. The command line, options, keys, files and exit codes are the public contract,
written down in docs/contract.md.

    from kt2conformance import Oracle, load_profile
    issues = Oracle(load_profile()).validate(task)   # a dict, or a fhir.resources Task

Names are imported on first use, so `import kt2conformance` (and the command line's start) stays
light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the sub-package (or base module) that exports it
_EXPORTS = {
    "UsageError": "kt2conformance._errors",
    "ConstraintKey": "kt2conformance._vocabulary",
    "Expectation": "kt2conformance._vocabulary",
    "Kind": "kt2conformance._vocabulary",
    "Problem": "kt2conformance._vocabulary",
    "Verdict": "kt2conformance._vocabulary",
    "KT2TASK_URL": "kt2conformance._koppeltaal",
    "SERVER_RULES": "kt2conformance._koppeltaal",
    "ServerRule": "kt2conformance._koppeltaal",
    "Constraint": "kt2conformance.spec",
    "Profile": "kt2conformance.spec",
    "derive_constraints": "kt2conformance.spec",
    "load_profile": "kt2conformance.spec",
    "Issue": "kt2conformance.oracle",
    "Oracle": "kt2conformance.oracle",
    "Prerequisites": "kt2conformance.generate",
    "generate_invalid": "kt2conformance.generate",
    "generate_valid": "kt2conformance.generate",
    "invalid_tasks": "kt2conformance.generate",
    "valid_tasks": "kt2conformance.generate",
    "Exchange": "kt2conformance.target",
    "FhirClient": "kt2conformance.target",
    "ReferenceServer": "kt2conformance.target",
    "Options": "kt2conformance.run",
}

__all__ = [
    "KT2TASK_URL", "SERVER_RULES", "Constraint", "ConstraintKey", "Exchange", "Expectation",
    "FhirClient", "Issue", "Kind", "Options", "Oracle", "Prerequisites", "Problem", "Profile",
    "ReferenceServer", "ServerRule", "UsageError", "Verdict", "__version__", "derive_constraints",
    "generate_invalid", "generate_valid", "invalid_tasks", "load_profile", "valid_tasks",
]

if TYPE_CHECKING:
    from kt2conformance._errors import UsageError
    from kt2conformance._koppeltaal import KT2TASK_URL, SERVER_RULES, ServerRule
    from kt2conformance._vocabulary import ConstraintKey, Expectation, Kind, Problem, Verdict
    from kt2conformance.generate import (
        Prerequisites,
        generate_invalid,
        generate_valid,
        invalid_tasks,
        valid_tasks,
    )
    from kt2conformance.oracle import Issue, Oracle
    from kt2conformance.run import Options
    from kt2conformance.spec import Constraint, Profile, derive_constraints, load_profile
    from kt2conformance.target import Exchange, FhirClient, ReferenceServer


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kt2conformance' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
