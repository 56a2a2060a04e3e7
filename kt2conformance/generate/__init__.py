"""Generation: valid Tasks built from the profile (`_values`), one fault per constraint kind
(`_faults`), and both offered as Hypothesis strategies and seeded bulk generators (`_strategies`)."""
