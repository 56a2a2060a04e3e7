"""The profile layer: loading StructureDefinitions (`_profile`), the element tree (`_tree`), the constraint keys
derived from it (`_constraints`), and what they need to be checked: FHIR primitives, terminology
bindings and a FHIRPath evaluator."""
