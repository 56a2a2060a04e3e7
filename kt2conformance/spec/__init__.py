"""The profile layer: loading StructureDefinitions (`_profile`), the element tree (`_tree`), the
constraint keys derived from it (`_constraints`), and what checking them needs: FHIR primitives
(`_primitives`), terminology bindings (`_terminology`) and a FHIRPath evaluator (`_fhirpath`).
Knows nothing of servers or generation."""

from kt2conformance.spec._constraints import Constraint, derive_constraints
from kt2conformance.spec._profile import Profile, load_profile

__all__ = ["Constraint", "Profile", "derive_constraints", "load_profile"]
