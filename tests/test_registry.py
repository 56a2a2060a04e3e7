"""`kt2conformance profiles fetch` against a real loopback package registry, with a package tgz
built at test time from the vendored koppeltaalv2.00 0.16.2 folder."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes import RegistryServer, build_tgz

from kt2conformance import _paths as paths
from kt2conformance.cli import main
from kt2conformance.target import _registry as registry_module
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


# -- checksums from the package metadata, also for a tgz answered directly -----------------------


def _serve_direct(registry: RegistryServer, tgz: bytes, dist: object) -> None:
    """The version URL answers the tgz itself (as Simplifier does); REGISTRY/NAME lists the
    version's dist."""
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/tar+gzip", tgz)
    registry.routes[f"/{NAME}"] = ("application/json", {
        "_id": NAME, "name": NAME, "versions": {VERSION: {"name": NAME, "version": VERSION,
                                                          "dist": dist}}})


def test_direct_tgz_is_checked_against_the_package_metadata(registry: RegistryServer,
                                                            tmp_path: Path) -> None:
    tgz = build_tgz(_package_files())
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
    _serve_direct(registry, tgz, {"shasum": hashlib.sha1(tgz).hexdigest(),
                                  "integrity": integrity})
    assert _fetch(registry, tmp_path) == 0
    assert registry.requests[f"/{NAME}"] == 1
    provenance = (tmp_path / f"{NAME}-{VERSION}" / "PROVENANCE.md").read_text()
    assert (f"- checked against: dist.shasum and dist.integrity of {registry.url}/{NAME}"
            in provenance)


@pytest.mark.parametrize("dist", [
    {"shasum": "0" * 40},
    {"integrity": "sha512-" + base64.b64encode(b"\0" * 64).decode()},
    {"integrity": "sha256-" + base64.b64encode(b"\0" * 32).decode()},
])
def test_direct_tgz_checksum_mismatch_is_refused(registry: RegistryServer, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 dist: dict[str, str]) -> None:
    _serve_direct(registry, build_tgz(_package_files()), dist)
    assert _fetch(registry, tmp_path) == 2
    err = _one_line_error(capsys)
    assert "does not match the registry's dist." in err and f"{registry.url}/{NAME}" in err
    assert not list(tmp_path.iterdir())


def test_direct_tgz_without_stated_checksum_says_so(registry: RegistryServer,
                                                     tmp_path: Path) -> None:
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/gzip", build_tgz(_package_files()))
    assert _fetch(registry, tmp_path) == 0  # REGISTRY/NAME answers 404: nothing stated
    assert registry.requests[f"/{NAME}"] == 1
    provenance = (tmp_path / f"{NAME}-{VERSION}" / "PROVENANCE.md").read_text()
    assert "- checked against: nothing (the registry states no checksum for it)" in provenance


@pytest.mark.parametrize("metadata", [
    b"<html>not json</html>",
    [1, 2],
    {"versions": [VERSION]},
    {"versions": {VERSION: "latest"}},
    {"versions": {VERSION: {"dist": ["x"]}}},
    {"versions": {VERSION: {"dist": {"shasum": 12345}}}},
    {"versions": {VERSION: {"dist": {"shasum": "not-hex"}}}},
    {"versions": {VERSION: {"dist": {"integrity": "md5-abc"}}}},
    {"versions": {VERSION: {"dist": {"integrity": {"sha512": "x"}}}}},
])
def test_malformed_package_metadata_is_a_one_line_error(
        registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        metadata: object) -> None:
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/gzip", build_tgz(_package_files()))
    registry.routes[f"/{NAME}"] = ("application/json", metadata)  # type: ignore[assignment]
    assert _fetch(registry, tmp_path) == 2
    assert f"{registry.url}/{NAME}" in _one_line_error(capsys)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("version_metadata", [
    {"dist": "x.tgz"},
    {"dist": {"tarball": 42}},
    {"dist": {"tarball": "/t.tgz", "shasum": ["a"]}},
    {"dist": {"tarball": "file:///etc/passwd"}},
    {"dist": {"tarball": "/t.tgz", "integrity": "sha512-***"}},
])
def test_malformed_version_metadata_is_a_one_line_error(
        registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        version_metadata: dict[str, object]) -> None:
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/json", version_metadata)
    registry.routes["/t.tgz"] = ("application/gzip", build_tgz(_package_files()))
    assert _fetch(registry, tmp_path) == 2
    assert f"{registry.url}/{NAME}/{VERSION}" in _one_line_error(capsys)


# -- the gzip stream is checked to its end -------------------------------------------------------


@pytest.mark.parametrize(("trailer_offset", "problem"), [
    (-8, "its gzip CRC does not match its contents"),
    (-4, "its gzip length field does not match its contents"),
])
def test_gzip_trailer_is_verified(registry: RegistryServer, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str], trailer_offset: int,
                                  problem: str) -> None:
    tgz = bytearray(build_tgz(_package_files()))
    tgz[trailer_offset] ^= 0xFF  # the CRC32 or ISIZE field of the gzip trailer
    _serve_direct(registry, bytes(tgz), {"shasum": hashlib.sha1(tgz).hexdigest()})
    assert _fetch(registry, tmp_path) == 2
    assert f"package {NAME} {VERSION} is corrupt: {problem}" in _one_line_error(capsys)
    assert not list(tmp_path.iterdir())


# -- bombs: sizes are bounded while reading --------------------------------------------------------


def _tar_header(name: str, size: int, typeflag: bytes) -> bytes:
    """One ustar header block announcing `size` bytes of `typeflag` content."""
    header = bytearray(512)
    header[0:len(name)] = name.encode()
    header[100:108] = b"0000644\0"
    header[108:116] = header[116:124] = b"0000000\0"
    header[124:136] = f"{size:011o}\0".encode()
    header[136:148] = b"00000000000\0"
    header[156:157] = typeflag
    header[257:263], header[263:265] = b"ustar\0", b"00"
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\0 ".encode()
    return bytes(header)


def _bomb(name: str, size: int, typeflag: bytes) -> bytes:
    """A tgz of a few hundred KB: a header announcing `size` bytes, that many zero bytes (they
    compress a thousandfold), then the genuine package."""
    genuine = io.BytesIO()
    with tarfile.open(fileobj=genuine, mode="w") as tar:
        for member, data in _package_files().items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip wrapper
    out = [packer.compress(_tar_header(name, size, typeflag))]
    zeros = b"\0" * (1024 * 1024)
    left = -(-size // 512) * 512
    while left:
        step = min(left, len(zeros))
        out.append(packer.compress(zeros[:step]))
        left -= step
    out += [packer.compress(genuine.getvalue()), packer.flush()]
    return b"".join(out)


BOMB_BYTES = 200 * 1024 * 1024


@pytest.mark.parametrize(("name", "typeflag"), [
    ("././@PaxHeader", b"x"),  # a pax extended header of 200 MB
    ("././@LongLink", b"L"),  # a GNU long name of 200 MB
    ("package/big.json", b"0"),  # a top-level JSON file of 200 MB
])
def test_bombs_are_refused_without_reading_them(registry: RegistryServer, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str], name: str,
                                                typeflag: bytes) -> None:
    tgz = _bomb(name, BOMB_BYTES, typeflag)
    assert len(tgz) < 2 * 1024 * 1024
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/gzip", tgz)
    tracemalloc.start()
    try:
        code = _fetch(registry, tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert code == 2
    assert f"package {NAME} {VERSION} is unsafe: " in _one_line_error(capsys)
    assert peak < 32 * 1024 * 1024, f"{peak} bytes allocated while refusing a bomb"
    assert not list(tmp_path.iterdir())


def test_unpacked_size_is_bounded_to_the_end_of_the_stream(
        registry: RegistryServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes after the tar's end marker are decompressed too (to reach the CRC), and counted."""
    monkeypatch.setattr(registry_module, "MAX_UNPACKED_BYTES", 4 * 1024 * 1024)
    tgz = build_tgz(_package_files())
    trailing = zlib.compressobj(9, zlib.DEFLATED, 31)
    tgz += trailing.compress(b"\0" * (8 * 1024 * 1024)) + trailing.flush()  # a second member
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/gzip", tgz)
    assert _fetch(registry, tmp_path) == 2
    assert "unpacks to more than 4194304 bytes" in _one_line_error(capsys)


# -- one deadline for all the downloads ------------------------------------------------------------


def test_trickling_registry_is_given_up_at_the_deadline(tmp_path: Path) -> None:
    """A byte every 0.2 s never trips a read timeout; the overall deadline ends it. Run as a
    user runs it, in a subprocess, whose own timeout catches a hang."""
    with RegistryServer() as registry:
        registry.trickle[f"/{NAME}/{VERSION}"] = 0.2
        result = subprocess.run(
            [sys.executable, "-m", "kt2conformance", "profiles", "fetch", "--package", NAME,
             "--version", VERSION, "--registry", registry.url, "--dest", str(tmp_path),
             "--timeout", "2"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"kt2conformance: error: the registry at {registry.url} did not "
                             f"deliver the package within 2 s (--timeout)\n")
    assert not list(tmp_path.iterdir())


# -- only a profile that loads is stored -----------------------------------------------------------


def test_profile_that_does_not_load_is_not_stored(registry: RegistryServer, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    sd = json.loads((VENDORED / KT2TASK_FILE).read_text())
    sd["snapshot"]["element"][3]["min"] = "one"
    files = _package_files(replace={KT2TASK_FILE: json.dumps(sd).encode()})
    registry.routes[f"/{NAME}/{VERSION}"] = ("application/gzip", build_tgz(files))
    assert _fetch(registry, tmp_path) == 2
    err = _one_line_error(capsys)
    assert f"package {NAME}-{VERSION} not stored: its profile does not load: " in err
    assert list(tmp_path.iterdir()) == []  # no folder, no staging left behind
