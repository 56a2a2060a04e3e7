"""`kt2conformance profiles fetch`: take a KT2Task profile from a FHIR package registry.

Profiles move with the Koppeltaal IG; this downloads a published package (npm-style tgz) so a
run can be pinned to the exact version a server claims, without hand-copying files. Everything
in the package is distrusted until checked: a real gzip tar, its package.json naming the package
and version asked for, a matching checksum when the registry states one, no member escaping the
package or linking elsewhere, bounded sizes, and a KT2Task StructureDefinition with a snapshot
(the oracle needs the snapshot).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from kt2conformance import _paths as paths
from kt2conformance._errors import UsageError
from kt2conformance._koppeltaal import KT2TASK_URL

MAX_DOWNLOAD_BYTES = 100 * 1024 * 1024
MAX_UNPACKED_BYTES = 300 * 1024 * 1024
MAX_MEMBERS = 20_000
CONFORMANCE_TYPES = frozenset({"StructureDefinition", "ValueSet", "CodeSystem"})
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.json$")
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Download:
    """The tgz and where it came from, for PROVENANCE.md."""

    url: str
    data: bytes
    shasum: str | None  # sha1 hex the registry's metadata states, if any
    integrity: str | None  # SRI string ("sha512-...") the metadata states, if any


@dataclass
class Package:
    """What a checked package holds: its package.json and the conformance resources at its top
    level, by file name, both parsed and as the exact bytes to store."""

    manifest: dict[str, Any]
    resources: dict[str, dict[str, Any]]
    raw: dict[str, bytes]


def fetch_command(package: str, version: str, registry: str, dest: str | Path | None) -> int:
    """Download, check and store NAME@VERSION under DEST/NAME-VERSION (default: profiles/)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", package) or ".." in package:
        raise UsageError(f"not a package name: {package!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+-]*", version):
        raise UsageError(f"not a package version: {version!r}")
    target = Path(dest) if dest is not None else paths.PROFILES_DIR
    folder = target / f"{package}-{version}"
    if folder.exists():
        raise UsageError(f"{folder} already exists: remove it first, or pass another --dest")
    download = download_package(registry, package, version)
    sums = verify_checksums(download)
    contents = read_package(download.data, package, version)
    completed = complete_from_vendored(contents)
    _store(folder, contents, _provenance(registry, package, version, download, sums, contents,
                                         completed))
    kt2task = next(n for n, r in contents.resources.items() if r.get("url") == KT2TASK_URL)
    print(f"stored {len(contents.resources)} definitions of {package} {version} in {folder} "
          f"(KT2Task: {folder / kt2task})")
    return 0


def download_package(registry: str, package: str, version: str) -> Download:
    """GET REGISTRY/NAME/VERSION: Simplifier answers with the tgz itself, npm-style registries
    with version metadata whose dist.tarball is then fetched."""
    url = f"{registry.rstrip('/')}/{package}/{version}"
    with httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True,
                      headers={"Accept": "application/tar+gzip, application/gzip, "
                               "application/json;q=0.9, */*;q=0.1"}) as http:
        data = _get(http, url, package, version)
        if data.startswith(_GZIP_MAGIC):
            return Download(url, data, None, None)
        try:
            metadata = json.loads(data)
            dist = metadata["dist"]
            tarball = dist["tarball"]
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{url} answered neither a package tgz nor package metadata "
                             f"with dist.tarball") from None
        if not isinstance(tarball, str):
            raise UsageError(f"{url}: dist.tarball is not a URL")
        tarball = str(httpx.URL(url).join(tarball))
        data = _get(http, tarball, package, version)
        if not data.startswith(_GZIP_MAGIC):
            raise UsageError(f"{tarball} is not a gzip file (package {package} {version})")
        return Download(tarball, data, dist.get("shasum"), dist.get("integrity"))


def _get(http: httpx.Client, url: str, package: str, version: str) -> bytes:
    """The body of GET url, bounded; registry failures become one-line usage errors."""
    try:
        with http.stream("GET", url) as response:
            if response.status_code == 404:
                raise UsageError(f"package {package} {version} not found at {url} (HTTP 404)")
            if response.status_code != 200:
                raise UsageError(f"{url} answered HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise UsageError(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise UsageError(f"cannot reach registry at {url}: {detail}") from None


def read_package(data: bytes, package: str, version: str) -> Package:
    """The conformance resources at the package's top level (file name -> resource) and its
    package.json, after checking the archive member by member."""
    files: dict[str, bytes] = {}
    unpacked = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise UsageError(f"package {package} {version} has more than "
                                     f"{MAX_MEMBERS} files")
                _check_member(member, package, version)
                if not member.isfile():
                    continue
                unpacked += member.size
                if unpacked > MAX_UNPACKED_BYTES:
                    raise UsageError(f"package {package} {version} unpacks to more than "
                                     f"{MAX_UNPACKED_BYTES} bytes")
                parts = PurePosixPath(member.name).parts
                if len(parts) == 2 and parts[0] == "package" and parts[1].endswith(".json"):
                    extracted = tar.extractfile(member)
                    files[parts[1]] = extracted.read() if extracted else b""
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UsageError(f"package {package} {version} is not a valid tgz: {exc}") from None

    manifest = _parse(files.pop("package.json", None), "package/package.json", package, version)
    if manifest.get("name") != package or manifest.get("version") != version:
        raise UsageError(f"package.json says {manifest.get('name')} {manifest.get('version')}, "
                         f"not {package} {version}")
    contents = Package(manifest, {}, {})
    for name, raw in sorted(files.items()):
        try:
            resource = json.loads(raw)
        except ValueError:
            continue  # not every .json in a package is a resource; only the KT2Task must parse
        if isinstance(resource, dict) and resource.get("resourceType") in CONFORMANCE_TYPES:
            contents.resources[_safe_name(name)] = resource
            contents.raw[_safe_name(name)] = raw
    _check_kt2task(contents.resources, package, version)
    return contents


def _safe_name(name: str) -> str:
    """A plain file name for storing (the tar member name is already free of path parts)."""
    return name if _SAFE_NAME.match(name) else re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip("._")


def _check_member(member: tarfile.TarInfo, package: str, version: str) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or "\\" in member.name:
        raise UsageError(f"package {package} {version} is unsafe: member {member.name!r} "
                         f"escapes the package")
    if not (member.isfile() or member.isdir()):
        raise UsageError(f"package {package} {version} is unsafe: member {member.name!r} is a "
                         f"link or special file")


def _parse(raw: bytes | None, name: str, package: str, version: str) -> dict[str, Any]:
    if raw is None:
        raise UsageError(f"package {package} {version} has no {name}")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{name} in {package} {version} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{name} in {package} {version} is not a JSON object")
    return value


def _check_kt2task(resources: dict[str, dict[str, Any]], package: str, version: str) -> None:
    kt2task = [r for r in resources.values() if r.get("resourceType") == "StructureDefinition"
               and r.get("url") == KT2TASK_URL]
    if not kt2task:
        raise UsageError(f"package {package} {version} has no KT2Task profile "
                         f"({KT2TASK_URL})")
    snapshot = kt2task[0].get("snapshot")
    if not isinstance(snapshot, dict) or not snapshot.get("element"):
        raise UsageError(f"KT2Task in {package} {version} has no snapshot: the harness needs "
                         f"one; use a package published with snapshots")


def verify_checksums(download: Download) -> dict[str, str]:
    """sha1 and sha256 of the tgz, after checking them against what the registry stated."""
    sha1 = hashlib.sha1(download.data).hexdigest()
    if download.shasum and download.shasum.lower() != sha1:
        raise UsageError(f"{download.url}: sha1 {sha1} does not match the registry's "
                         f"dist.shasum {download.shasum}")
    if download.integrity and "-" in download.integrity:
        algorithm, expected = download.integrity.split("-", 1)
        if algorithm in ("sha256", "sha384", "sha512"):
            actual = base64.b64encode(hashlib.new(algorithm, download.data).digest()).decode()
            if actual != expected:
                raise UsageError(f"{download.url}: {algorithm} does not match the registry's "
                                 f"dist.integrity")
    return {"sha1": sha1, "sha256": hashlib.sha256(download.data).hexdigest()}


def complete_from_vendored(contents: Package) -> list[str]:
    """Add the FHIR R4 core definitions the KT2Task builds on (its base Task, the ValueSets it
    binds and their CodeSystems) that the package leaves to its hl7.fhir.r4.core dependency,
    copied from the vendored default profile folder, which holds them for 4.0.1. Without them
    the oracle could not check the required bindings. Returns the file names added."""
    if "4.0.1" not in (contents.manifest.get("fhirVersions") or ["4.0.1"]):
        return []
    vendored = _vendored_by_url()
    present = {r.get("url") for r in contents.resources.values()}
    kt2task = next(r for r in contents.resources.values() if r.get("url") == KT2TASK_URL)
    wanted = [kt2task.get("baseDefinition")]
    wanted += [e.get("binding", {}).get("valueSet") for e in kt2task["snapshot"]["element"]]
    added: list[str] = []
    while wanted:
        url = (wanted.pop() or "").split("|")[0]
        if not url.startswith("http://hl7.org/fhir/") or url in present or url not in vendored:
            continue
        name, resource, raw = vendored[url]
        if name in contents.resources:
            continue
        present.add(url)
        contents.resources[name], contents.raw[name] = resource, raw
        added.append(name)
        wanted += [inc.get("system") for inc in resource.get("compose", {}).get("include", [])]
    return added


def _vendored_by_url() -> dict[str, tuple[str, dict[str, Any], bytes]]:
    found: dict[str, tuple[str, dict[str, Any], bytes]] = {}
    for path in sorted(paths.DEFAULT_PROFILE_DIR.glob("*.json")):
        raw = path.read_bytes()
        try:
            resource = json.loads(raw)
        except ValueError:
            continue
        if isinstance(resource, dict) and resource.get("resourceType") in CONFORMANCE_TYPES:
            found[str(resource.get("url"))] = (path.name, resource, raw)
    return found


def _provenance(registry: str, package: str, version: str, download: Download,
                sums: dict[str, str], contents: Package, completed: list[str]) -> str:
    dependencies = contents.manifest.get("dependencies") or {}
    lines = [
        f"# {package} {version}",
        "",
        "Fetched by `kt2conformance profiles fetch`; do not edit these files by hand.",
        "",
        f"- registry: {registry}",
        f"- package: {package}",
        f"- version: {version}",
        f"- downloaded from: {download.url}",
        f"- sha1: {sums['sha1']}" + (" (matches the registry's dist.shasum)"
                                     if download.shasum else ""),
        f"- sha256: {sums['sha256']}",
        f"- size: {len(download.data)} bytes",
        f"- fetched: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- FHIR version: {', '.join(contents.manifest.get('fhirVersions') or []) or 'not stated'}",
        "- dependencies (not fetched): "
        + (", ".join(f"{n} {v}" for n, v in dependencies.items()) or "none"),
        "",
        "Files: the StructureDefinitions, ValueSets and CodeSystems at the package's top level,",
        "byte for byte, and its package.json.",
        "",
    ]
    lines += [f"- {name}: {r['resourceType']} {r.get('url', '')}"
              for name, r in contents.resources.items() if name not in completed]
    if completed:
        lines += ["", f"Added from the vendored {paths.DEFAULT_PROFILE_DIR.name} folder (FHIR R4 "
                  "4.0.1 core definitions the KT2Task uses, normally in hl7.fhir.r4.core):", ""]
        lines += [f"- {name}: {contents.resources[name].get('url', '')}" for name in completed]
    return "\n".join(lines) + "\n"


def _store(folder: Path, contents: Package, provenance: str) -> None:
    """Write into a temporary sibling first, so a failure leaves no half-filled folder."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the profiles from other users
        for name, raw in contents.raw.items():
            (staging / name).write_bytes(raw)
        (staging / "package.json").write_text(json.dumps(contents.manifest, indent=2) + "\n",
                                              encoding="utf-8")
        (staging / "PROVENANCE.md").write_text(provenance, encoding="utf-8")
        staging.rename(folder)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UsageError(f"cannot write {folder}: {exc.strerror or exc}") from None
