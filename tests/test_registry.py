"""`kt2conformance profiles fetch` against a real loopback package registry, with a package tgz
built at test time from the vendored koppeltaalv2.00 0.16.2 folder."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import RegistryServer, build_tgz

from kt2conformance import _paths as paths
from kt2conformance.cli import main
from kt2conformance.target._registry import CONFORMANCE_TYPES

NAME, VERSION = "koppeltaalv2.00", "0.16.2"
VENDORED = paths.DEFAULT_PROFILE_DIR
KT2TASK_FILE = "StructureDefinition-KT2Task.json"


def _package_files(version: str = VERSION, drop: tuple[str, ...] = (),
                   replace: dict[str, bytes] | None = None) -> dict[str, bytes]:
    """package/... members: package.json plus the vendored definitions (minus `drop`)."""
    manifest = {"name": NAME, "version": version, "fhirVersions": ["4.0.1"],
                "dependencies": {"hl7.fhir.r4.core": "4.0.1"}}
    files = {"package/package.json": json.dumps(manifest).encode()}
    for path in sorted(VENDORED.glob("*.json")):
        if path.name != "BUILD-INFO.json" and path.name not in drop:
            files[f"package/{path.name}"] = path.read_bytes()
    files["package/other/spec.internals"] = b"{}"  # below the top level: ignored
    for name, data in (replace or {}).items():
        files[f"package/{name}"] = data
    return files


@pytest.fixture
def registry() -> Iterator[RegistryServer]:
    with RegistryServer() as fake:
        yield fake


def _fetch(registry: RegistryServer, dest: Path, name: str = NAME,
           version: str = VERSION) -> int:
    return main(["profiles", "fetch", "--package", name, "--version", version,
                 "--registry", registry.url, "--dest", str(dest)])


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("kt2conformance: error: ") and err.count("\n") == 1, err
    return err


def test_fetch_direct_tgz(registry: RegistryServer, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    tgz = build_tgz(_package_files())
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/tar+gzip", tgz)
    assert _fetch(registry, tmp_path) == 0
    folder = tmp_path / f"{NAME}-{VERSION}"
    assert str(folder) in capsys.readouterr().out
    fetched = json.loads((folder / KT2TASK_FILE).read_text())
    assert fetched == json.loads((VENDORED / KT2TASK_FILE).read_text())
    expected = {p.name for p in VENDORED.glob("*.json")  # fetch keeps the conformance resources
                if json.loads(p.read_bytes()).get("resourceType") in CONFORMANCE_TYPES}
    stored = {p.name for p in folder.iterdir()}
    assert stored == expected | {"package.json", "PROVENANCE.md"}
    for name in expected:  # byte for byte
        assert (folder / name).read_bytes() == (VENDORED / name).read_bytes()
    provenance = (folder / "PROVENANCE.md").read_text()
    assert registry.url in provenance and f"- version: {VERSION}" in provenance
    assert hashlib.sha256(tgz).hexdigest() in provenance
    assert hashlib.sha1(tgz).hexdigest() in provenance
    assert "hl7.fhir.r4.core 4.0.1" in provenance and "- fetched: 20" in provenance


def test_fetch_via_metadata_with_dist_tarball(registry: RegistryServer, tmp_path: Path) -> None:
    tgz = build_tgz(_package_files())
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/json", {
        "name": NAME, "version": VERSION,
        "dist": {"tarball": f"{registry.url}/tarballs/kt2.tgz",
                 "shasum": hashlib.sha1(tgz).hexdigest()}})
    registry.routes["/tarballs/kt2.tgz"] = ("application/octet-stream", tgz)
    assert _fetch(registry, tmp_path) == 0
    assert registry.requests["/tarballs/kt2.tgz"] == 1
    assert (tmp_path / f"{NAME}-{VERSION}" / KT2TASK_FILE).is_file()
    assert "matches the registry's dist.shasum" in (
        tmp_path / f"{NAME}-{VERSION}" / "PROVENANCE.md").read_text()


def test_wrong_shasum_is_refused(registry: RegistryServer, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/json", {
        "dist": {"tarball": "/t.tgz", "shasum": "0" * 40}})
    registry.routes["/t.tgz"] = ("application/gzip", build_tgz(_package_files()))
    assert _fetch(registry, tmp_path) == 2
    assert "does not match the registry's dist.shasum" in _one_line_error(capsys)
    assert not list(tmp_path.iterdir())


def test_core_definitions_left_to_the_dependency_are_completed(registry: RegistryServer,
                                                               tmp_path: Path) -> None:
    core = ("base-StructureDefinition-Task-r4.json", "ValueSet-task-status.json",
            "CodeSystem-task-status.json")
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/gzip",
                                              build_tgz(_package_files(drop=core)))
    assert _fetch(registry, tmp_path) == 0
    folder = tmp_path / f"{NAME}-{VERSION}"
    for name in core:
        assert (folder / name).read_bytes() == (VENDORED / name).read_bytes()
    added = (folder / "PROVENANCE.md").read_text().split("Added from the vendored")[1]
    assert all(name in added for name in core)


def test_unknown_package_is_a_one_line_error(registry: RegistryServer, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert _fetch(registry, tmp_path, version="9.9.9") == 2
    assert f"package {NAME} 9.9.9 not found" in _one_line_error(capsys)


def test_unreachable_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with RegistryServer() as gone:
        url = gone.url
    code = main(["profiles", "fetch", "--package", NAME, "--version", VERSION,
                 "--registry", url, "--dest", str(tmp_path)])
    assert code == 2
    assert "cannot reach registry" in _one_line_error(capsys)


def test_package_without_kt2task(registry: RegistryServer, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    registry.routes[f"/{NAME}/{VERSION}"] = (
        "application/gzip", build_tgz(_package_files(drop=(KT2TASK_FILE,))))
    assert _fetch(registry, tmp_path) == 2
    assert f"package {NAME} {VERSION} has no KT2Task profile" in _one_line_error(capsys)


def test_kt2task_without_snapshot(registry: RegistryServer, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    sd = json.loads((VENDORED / KT2TASK_FILE).read_text())
    del sd["snapshot"]
    files = _package_files(replace={KT2TASK_FILE: json.dumps(sd).encode()})
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/gzip", build_tgz(files))
    assert _fetch(registry, tmp_path) == 2
    assert f"KT2Task in {NAME} {VERSION} has no snapshot: " in _one_line_error(capsys)


def test_not_a_gzip(registry: RegistryServer, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    registry.routes[f"/{NAME}/{VERSION}"] = ("text/html", b"<html>maintenance</html>")
    assert _fetch(registry, tmp_path) == 2
    assert "neither a package tgz nor package metadata" in _one_line_error(capsys)


def test_truncated_gzip(registry: RegistryServer, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/gzip",
                                              build_tgz(_package_files())[:5000])
    assert _fetch(registry, tmp_path) == 2
    assert "is not a valid tgz" in _one_line_error(capsys)


def test_version_mismatch_in_package_json(registry: RegistryServer, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/gzip",
                                              build_tgz(_package_files(version="0.15.0")))
    assert _fetch(registry, tmp_path) == 2
    assert f"package.json says {NAME} 0.15.0, not {NAME} {VERSION}" in _one_line_error(capsys)


@pytest.mark.parametrize(("files", "symlinks"), [
    ({"package/../../escape.json": b"{}"}, None),
    ({"/etc/escape.json": b"{}"}, None),
    ({}, {"package/link.json": "/etc/passwd"}),
])
def test_unsafe_members_are_refused(registry: RegistryServer, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str],
                                    files: dict[str, bytes], symlinks: dict[str, str] | None
                                    ) -> None:
    tgz = build_tgz({**_package_files(), **files}, symlinks)
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/gzip", tgz)
    dest = tmp_path / "dest"
    assert _fetch(registry, dest) == 2
    assert "is unsafe" in _one_line_error(capsys)
    assert not (tmp_path / "escape.json").exists() and not dest.exists()


def test_existing_folder_is_not_overwritten(registry: RegistryServer, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / f"{NAME}-{VERSION}").mkdir()
    assert _fetch(registry, tmp_path) == 2
    assert "already exists" in _one_line_error(capsys)
    assert not registry.requests  # refused before downloading anything
