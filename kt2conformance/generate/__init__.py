"""Generation: valid Tasks built from the profile (`_values`), one fault per constraint kind
(`_faults`), and both offered as Hypothesis strategies and seeded bulk generators
(`_strategies`)."""

from kt2conformance.generate._strategies import (
    Prerequisites,
    fault_strategy,
    generate_invalid,
    generate_valid,
    invalid_tasks,
    minimal_tasks,
    unviolable,
    valid_tasks,
)

__all__ = ["Prerequisites", "fault_strategy", "generate_invalid", "generate_valid",
           "invalid_tasks", "minimal_tasks", "unviolable", "valid_tasks"]
