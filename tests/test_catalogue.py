"""The class catalogue and the covering generators (kt2conformance.generate._catalogue,
_covering): classes are derived from the R4 datatype definitions and the profile (a changed
definition changes them), the covering set of a default run takes every class, every covering
Task is valid (or breaks exactly its key) by the oracle, and the edges of the invalid side are
what the definitions reject."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from kt2conformance import _paths as paths
from kt2conformance.generate._catalogue import (
    STORAGE_LIMITS,
    case_variants,
    classes_of,
    invalid_classes,
    valid_classes,
)
from kt2conformance.generate._covering import (
    Drawn,
    covering_invalid,
    covering_valid,
    spread,
)
from kt2conformance.generate._faults import fault_edges
from kt2conformance.generate._values import Prerequisites, RandomChooser, TaskGenerator
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.spec._primitives import primitive
from kt2conformance.spec._profile import load_profile

PROFILE = load_profile()
ORACLE = Oracle(PROFILE)
PREREQS = Prerequisites(task="Task/parent-1")


def names(classes: Any) -> set[str]:
    return {v.name for v in classes}


def covering(profile: Any = PROFILE) -> list[Drawn]:
    out = []
    for drawn in covering_valid(profile, PREREQS, seed=3):
        if not drawn.covering:
            break
        out.append(drawn)
    return out


# -- value classes come from the datatype definitions -------------------------------------------


def test_every_valid_class_is_valid_and_every_invalid_one_is_not() -> None:
    for code in ("string", "markdown", "code", "id", "uri", "url", "canonical", "oid", "uuid",
                 "date", "dateTime", "instant", "boolean", "integer", "positiveInt",
                 "unsignedInt", "decimal", "base64Binary"):
        rule = primitive(code)
        assert rule is not None
        for klass in valid_classes(code):
            assert rule.check(klass.make()) is None, (code, klass.name, klass.make())
        for klass in invalid_classes(code):
            assert rule.check(klass.make()) is not None, (code, klass.name)
            assert rule.check(klass.make())[0] == "format", (code, klass.name)


def test_string_classes_walk_scripts_whitespace_and_storage_limits() -> None:
    valid = names(valid_classes("string"))
    for name in ("dutch-diacritics", "combining-marks", "astral-emoji", "cjk", "rtl-arabic-hebrew",
                 "surrounding-whitespace", "inner-whitespace", "crlf-line-ends"):
        assert name in valid
    ceiling = primitive("string").max_length  # type: ignore[union-attr]
    assert ceiling == 1024 * 1024
    for limit in STORAGE_LIMITS:
        assert f"length-{limit + 1}" in valid
    assert f"length-{ceiling}" in valid
    assert f"length-{ceiling + 1}" in names(invalid_classes("string"))
    long = next(v for v in valid_classes("string") if v.name == "length-256").make()
    assert len(long) == 256 and long.endswith("END")  # a cut shows


def test_temporal_classes_cover_precisions_fractions_offsets_and_calendar_edges() -> None:
    valid = names(valid_classes("dateTime"))
    assert {"precision-year", "precision-month", "precision-day", "precision-seconds"} <= valid
    assert {"fraction-1", "fraction-3", "fraction-6", "fraction-9"} <= valid
    assert {"offsetZ", "offset+00:00", "offset+14:00", "offset-14:00", "offset+05:45"} <= valid
    assert {"leap-day", "year-end", "year-0001", "year-9999"} <= valid
    # an instant must have seconds and a zone: lower precisions are on its invalid side
    instant_valid = names(valid_classes("instant"))
    assert "precision-year" not in instant_valid and "precision-day" not in instant_valid
    assert "day-precision-instant" in names(invalid_classes("instant"))
    invalid = names(invalid_classes("dateTime"))
    assert {"not-a-leap-day", "day-31-of-30", "no-zone", "offset-past-14", "hour-24"} <= invalid
    assert "precision-year" not in invalid


def test_a_changed_definition_changes_the_classes() -> None:
    """The catalogue is read from the definition: another regex bound, another maxLength or a
    regex without year-only dates give other classes."""
    id_rule = primitive("id")
    assert id_rule is not None
    assert {"length-64"} <= names(v for v in classes_of(id_rule) if v.valid)
    shorter = dataclasses.replace(id_rule, pattern=re.compile(r"[A-Za-z0-9\-\.]{1,32}"))
    assert "length-32" in names(v for v in classes_of(shorter) if v.valid)
    assert "length-33" in names(v for v in classes_of(shorter) if not v.valid)
    assert "length-64" not in names(v for v in classes_of(shorter) if v.valid)

    string_rule = primitive("string")
    assert string_rule is not None
    capped = dataclasses.replace(string_rule, max_length=1000)
    capped_valid = names(v for v in classes_of(capped) if v.valid)
    assert "length-1000" in capped_valid and "length-256" in capped_valid
    assert "length-1025" not in capped_valid and "length-1048576" not in capped_valid
    assert "length-1001" in names(v for v in classes_of(capped) if not v.valid)

    dt_rule = primitive("dateTime")
    assert dt_rule is not None
    full_only = dataclasses.replace(dt_rule, pattern=re.compile(dt_rule.pattern.pattern.split("(-(0")[0]  # type: ignore[union-attr]
                                                                  + r"-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T.*"))
    assert "precision-year" not in names(v for v in classes_of(full_only) if v.valid)
    assert "offset+14:00" in names(v for v in classes_of(full_only) if v.valid)


def test_case_variants_differ_only_in_case() -> None:
    assert case_variants("ready") == ["READY", "Ready"]
    assert case_variants("123") == []


# -- element classes come from the profile -------------------------------------------------------


def test_element_catalogue_follows_the_profile() -> None:
    catalogue = TaskGenerator(PROFILE, PREREQS).catalogue()
    assert {f"target:{t}" for t in ("CareTeam", "Patient", "Practitioner", "RelatedPerson")} \
        <= set(catalogue["Task.owner"])
    assert "code:ready" in catalogue["Task.status"]
    assert {"absent", "present"} <= set(catalogue["Task.description"])
    assert "string:astral-emoji" in catalogue["Task.description"]
    assert "dateTime:offset-14:00" in catalogue["Task.authoredOn"]
    assert "uri:urn-oid" in catalogue["Task.identifier.system"]
    assert "type:dateTime" in catalogue["Task.extension.value[x]"]
    assert not any(path.startswith("Task.note") for path in catalogue)  # max 0 in KT2Task


def _edited_profile(tmp_path: Path, edit: Any) -> Any:
    folder = tmp_path / "profile"
    shutil.copytree(paths.DEFAULT_PROFILE_DIR, folder)
    sd_file = folder / "StructureDefinition-KT2Task.json"
    sd = json.loads(sd_file.read_text(encoding="utf-8"))
    for element in sd["snapshot"]["element"]:
        edit(element)
    sd_file.write_text(json.dumps(sd), encoding="utf-8")
    return load_profile(folder)


def test_a_changed_profile_changes_the_element_catalogue(tmp_path: Path) -> None:
    def edit(element: dict[str, Any]) -> None:
        if element["id"] == "Task.description":
            element["max"] = "0"
        if element["id"] == "Task.owner":
            element["type"][0]["targetProfile"] = ["http://koppeltaal.nl/fhir/StructureDefinition/KT2Patient"]
        if element["id"] == "Task.note":
            element["max"] = "*"

    catalogue = TaskGenerator(_edited_profile(tmp_path, edit), PREREQS).catalogue()
    assert "Task.description" not in catalogue
    assert catalogue["Task.owner"] == ("target:Patient",)
    assert "Task.note" in catalogue and "Task.note.text" in catalogue


# -- the covering set ----------------------------------------------------------------------------


def test_spread_gives_each_element_each_class_once() -> None:
    catalogue = {"a": ("1", "2", "3"), "b": ("x",), "c": ("p", "q")}
    plans = spread(catalogue)
    assert len(plans) == 3
    for path, classes in catalogue.items():
        assert sorted(plan[path] for plan in plans if path in plan) == sorted(classes)


def _oracle_cannot_judge(path: str, klass: str) -> bool:
    """Whether every Task planned with this one class is one the oracle cannot evaluate (an
    invariant it fails to compute there): such a class is left out, and shows as not sent."""
    gen = TaskGenerator(PROFILE, PREREQS)
    chooser = RandomChooser(random.Random(0))
    for _ in range(8):
        errors = ORACLE.errors(gen.task(chooser, full=True, plan={path: klass}))
        if not errors or not all("could not be evaluated" in e.message for e in errors):
            return False
    return True


def test_default_covering_set_takes_every_class_with_valid_tasks() -> None:
    catalogue = TaskGenerator(PROFILE, PREREQS).catalogue()
    wanted = {(path, klass) for path, classes in catalogue.items() for klass in classes}
    drawn = covering()
    taken = {klass for d in drawn for klass in d.classes}
    # (fhirpathpy 2.2.4 cannot compare a dateTime that has a `_x` companion: inv-1 and per-1
    # then fail to evaluate, and the oracle calls the Task invalid)
    assert all(_oracle_cannot_judge(*missing) for missing in wanted - taken), wanted - taken
    assert len(wanted - taken) < 8
    # far fewer Tasks than classes: each Task takes one class of every element
    assert len(drawn) < len(wanted) / 4
    for d in drawn:
        assert ORACLE.errors(d.task) == [], d.classes


def test_covering_then_random_variety() -> None:
    items = list(islice(covering_valid(PROFILE, PREREQS, seed=3), len(covering()) + 5))
    assert [d.covering for d in items[-5:]] == [False] * 5
    assert all(ORACLE.is_valid(d.task) for d in items[-5:])


def test_each_invalid_edge_breaks_exactly_its_key() -> None:
    gen = TaskGenerator(PROFILE, PREREQS)
    sent = 0
    for key in ("Task.authoredOn/format", "Task.status/binding", "Task.owner/targetProfile",
                "Task/constraint:inv-1", "Task.identifier/format", "Task.priority/fixed",
                "Task.identifier/type", "Task.status/type", "Task.meta/type"):
        edges = fault_edges(gen, key)
        assert edges, key
        for d in islice(covering_invalid(PROFILE, key, PREREQS, seed=1), len(edges)):
            if not d.covering:
                break
            assert {i.key for i in ORACLE.errors(d.task)} == {key}, (key, d.classes)
            sent += 1
    assert sent > 50


def test_invalid_edges_reach_past_each_edge() -> None:
    gen = TaskGenerator(PROFILE, PREREQS)
    status = fault_edges(gen, "Task.status/binding")
    assert "case:READY" in status and "case:Accepted" in status
    owner = fault_edges(gen, "Task.owner/targetProfile")
    assert {"target:Device", "target:ActivityDefinition"} <= {e for e in owner}
    assert "order:hidden-by-offsets" in fault_edges(gen, "Task/constraint:inv-1")
    # the right value in the wrong JSON shape: what a lenient JSON binding lets through
    assert fault_edges(gen, "Task.identifier/type") == ["json:wrong-type", "json:bare-item"]
    assert fault_edges(gen, "Task.owner/type") == ["json:wrong-type", "json:one-item-array"]
    authored = fault_edges(gen, "Task.authoredOn/format")
    assert {"dateTime:no-zone", "dateTime:not-a-leap-day", "dateTime:offset-past-14"} <= set(authored)


@pytest.mark.parametrize("edge", ["order:hidden-by-offsets", "order:one-millisecond"])
def test_order_edges_look_in_order_to_a_careless_server(edge: str) -> None:
    """Broken by instant, yet the text (hidden-by-offsets) or the whole seconds (one
    millisecond) compare in order."""
    for d in covering_invalid(PROFILE, "Task/constraint:inv-1", PREREQS, seed=2):
        if d.classes == (("Task/constraint:inv-1", edge),):
            authored, modified = d.task["authoredOn"], d.task["lastModified"]
            if edge == "order:hidden-by-offsets":
                assert modified >= authored  # as text
            else:
                assert modified[:19] == authored[:19]  # the same second
            return
        if not d.covering:
            break
    pytest.fail(f"no covering Task for {edge}")


def test_a_changed_primitive_does_not_share_remembered_answers() -> None:
    """A primitive remembers its answers per value; a changed copy must judge afresh."""
    id_rule = primitive("id")
    assert id_rule is not None
    assert id_rule.check("a" * 40) is None
    shorter = dataclasses.replace(id_rule, pattern=re.compile(r"[A-Za-z0-9\-\.]{1,32}"))
    assert shorter.check("a" * 40) is not None
    assert id_rule.check("a" * 40) is None
