"""The audit corpus: hard Tasks (narrative XHTML, primitive lexical forms, codes, contained
resources, dom-3, extensions with known definitions, meta claims, dates), each recorded with the
verdict of HAPI FHIR 8.2.0's validator in production's configuration (tests/referee_corpus.json,
from the embedded reference server's `$validate`). The oracle must reach the same verdict on every
one, except the divergences docs/differential.md lists: this keeps the differential's findings
without a running server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._profile import load_profile

CORPUS = json.loads((Path(__file__).parent / "referee_corpus.json").read_text(encoding="utf-8"))["cases"]

# name -> why the oracle's verdict differs from HAPI's (docs/differential.md, "Justified
# divergences" and "Not modelled")
DIVERGENCES: dict[str, str] = {
    "Base64Binary 'AA AA'": "base64 regex (R4): HAPI only counts characters",
    "Base64Binary '!!!!'": "base64 regex (R4): HAPI only counts characters",
    "att hash bad": "base64 regex (R4): HAPI only counts characters",
    "abstract Resource": "an abstract type is not a resource (R4 §2.3): HAPI accepts it contained",
    "abstract DomainResource": "an abstract type is not a resource (R4 §2.3): HAPI accepts it contained",
    "ext coding snomed bad": "SNOMED CT Codings fail in the offline validator ('Validation failed')",
}


@pytest.fixture(scope="module")
def oracle() -> Oracle:
    return Oracle(load_profile())


def test_corpus_is_recorded() -> None:
    assert len(CORPUS) > 500
    assert {c["valid"] for c in CORPUS} == {True, False}
    assert set(DIVERGENCES) <= {c["name"] for c in CORPUS}


@pytest.mark.parametrize("case", CORPUS, ids=[f"{c['class']}:{c['name']}" for c in CORPUS])
def test_oracle_agrees_with_the_recorded_validator(oracle: Oracle, case: dict[str, Any]) -> None:
    valid = oracle.is_valid(case["task"])
    if case["name"] in DIVERGENCES:
        assert valid != case["valid"], f"no longer a divergence: {DIVERGENCES[case['name']]}"
    else:
        assert valid == case["valid"], (case["hapi_errors"], [(i.key, i.path, i.message)
                                                               for i in oracle.errors(case["task"])])
