"""`python -m kt2conformance` runs the CLI."""

from kt2conformance.cli import main

raise SystemExit(main())
