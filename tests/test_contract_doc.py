"""docs/contract.md is where users read the contract, so it must list what the code offers: every
option of `run`, every Koppeltaal server rule, every published schema."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from kt2conformance import SERVER_RULES, Options
from kt2conformance.run._options import option_flag

DOCS = Path(__file__).resolve().parent.parent / "docs"
CONTRACT = (DOCS / "contract.md").read_text(encoding="utf-8")


def test_every_run_option_is_documented() -> None:
    missing = [f"--{option_flag(f.name)}" for f in fields(Options)
               if f"`--{option_flag(f.name)}" not in CONTRACT]
    assert missing == []


def test_every_server_rule_is_documented_with_its_status() -> None:
    for rule in SERVER_RULES:
        row = next((line for line in CONTRACT.splitlines() if line.startswith(f"| `{rule.key}`")),
                   None)
        assert row is not None, rule.key
        if rule.strict_status is not None:
            assert f"({rule.strict_status})" in row, row


def test_every_schema_is_linked() -> None:
    for schema in (DOCS / "schemas").glob("*.schema.json"):
        assert f"(schemas/{schema.name})" in CONTRACT, schema.name
