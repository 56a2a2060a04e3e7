"""`kt2conformance profiles fetch`: take a KT2Task profile from a FHIR package registry.

Profiles move with the Koppeltaal IG; this downloads a published package (npm-style tgz) so a
run can be pinned to the exact version a server claims, without hand-copying files. Everything
in the package is distrusted until checked: a real gzip tar, its package.json naming the package
and version asked for, a matching checksum when the registry states one, no member escaping the
package or linking elsewhere, bounded sizes, and a KT2Task StructureDefinition with a snapshot
(the oracle needs the snapshot).

Hostile registries are expected too: checksums come from the registry's package metadata
(`REGISTRY/NAME`) also when the version URL answers the tgz itself, as Simplifier's does; the gzip
CRC is verified; every tar header and member size is bounded while the archive is read, so a
huge pax or long-name record cannot grow the process; one deadline covers all the downloads, so
a registry trickling a byte at a time cannot hang the command; and a package is stored only once
its profile loads as `--profile` would load it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from kt2conformance import _paths as paths
from kt2conformance._errors import UsageError
from kt2conformance._koppeltaal import KT2TASK_URL

MAX_DOWNLOAD_BYTES = 100 * 1024 * 1024
MAX_METADATA_BYTES = 20 * 1024 * 1024
MAX_UNPACKED_BYTES = 300 * 1024 * 1024
MAX_MEMBERS = 20_000
# A pax or GNU long-name record holds a path and a few attributes: kilobytes, not megabytes.
MAX_HEADER_BYTES = 64 * 1024
MAX_ALL_HEADERS_BYTES = 8 * 1024 * 1024
# The largest file of hl7.fhir.r4.core is a few MB; only top-level JSON files are ever read.
MAX_MEMBER_BYTES = 64 * 1024 * 1024
DEFAULT_DEADLINE_S = 300.0
CONFORMANCE_TYPES = frozenset({"StructureDefinition", "ValueSet", "CodeSystem"})
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.json$")
_GZIP_MAGIC = b"\x1f\x8b"


_SHA1_HEX = re.compile(r"^[0-9a-fA-F]{40}$")
_SRI = re.compile(r"^(sha1|sha256|sha384|sha512)-([A-Za-z0-9+/]+={0,2})$")
_EXTENDED_HEADERS = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                               tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})


@dataclass
class Download:
    """The tgz and where it came from, for PROVENANCE.md."""

    url: str
    data: bytes
    shasum: str | None  # sha1 hex the registry's metadata states, if any
    integrity: str | None  # SRI string ("sha512-...") the metadata states, if any
    stated_by: str | None = None  # the metadata URL that stated them


@dataclass
class Package:
    """What a checked package holds: its package.json and the conformance resources at its top
    level, by file name, both parsed and as the exact bytes to store."""

    manifest: dict[str, Any]
    resources: dict[str, dict[str, Any]]
    raw: dict[str, bytes]


def fetch_command(package: str, version: str, registry: str, dest: str | Path | None,
                  deadline: float = DEFAULT_DEADLINE_S) -> int:
    """Download, check and store NAME@VERSION under DEST/NAME-VERSION (default: profiles/),
    all downloads together within `deadline` seconds."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", package) or ".." in package:
        raise UsageError(f"not a package name: {package!r}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+-]*", version):
        raise UsageError(f"not a package version: {version!r}")
    target = Path(dest) if dest is not None else paths.USER_PROFILES_DIR
    folder = target / f"{package}-{version}"
    if folder.exists():
        raise UsageError(f"{folder} already exists: remove it first, or pass another --dest")
    if not deadline > 0:
        raise UsageError(f"--timeout must be more than 0 seconds, not {deadline}")
    download = within_deadline(deadline, registry,
                               lambda stop: download_package(registry, package, version, stop))
    sums = verify_checksums(download)
    contents = read_package(download.data, package, version)
    completed = complete_from_vendored(contents)
    _store(folder, contents, _provenance(registry, package, version, download, sums, contents,
                                         completed))
    kt2task = next(n for n, r in contents.resources.items() if r.get("url") == KT2TASK_URL)
    print(f"stored {len(contents.resources)} definitions of {package} {version} in {folder} "
          f"(KT2Task: {folder / kt2task})")
    return 0


def within_deadline(seconds: float, registry: str,
                    work: Callable[[threading.Event], Download]) -> Download:
    """`work(stop)` in a worker thread, given up after `seconds`: a registry that trickles its
    headers or body a byte at a time never trips a per-read timeout, so only a clock outside
    the transfer can end it. The worker sees `stop` set and quits at its next chunk."""
    stop = threading.Event()
    result: list[Download] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(work(stop))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread as is
            failure.append(exc)

    worker = threading.Thread(target=target, name="kt2-registry-download", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        stop.set()
        raise UsageError(f"the registry at {registry} did not deliver the package within "
                         f"{seconds:g} s (--timeout)")
    if failure:
        raise failure[0]
    return result[0]


def download_package(registry: str, package: str, version: str,
                     stop: threading.Event | None = None) -> Download:
    """GET REGISTRY/NAME/VERSION: Simplifier answers with the tgz itself, npm-style registries
    with version metadata whose dist.tarball is then fetched. For a tgz answered directly the
    checksums come from the package metadata, REGISTRY/NAME (`versions[VERSION].dist`)."""
    stop = stop or threading.Event()
    url = f"{registry.rstrip('/')}/{package}/{version}"
    with httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True,
                      headers={"Accept": "application/tar+gzip, application/gzip, "
                               "application/json;q=0.9, */*;q=0.1"}) as http:
        data = _get(http, url, package, version, stop)
        if data.startswith(_GZIP_MAGIC):
            metadata_url = f"{registry.rstrip('/')}/{package}"
            dist = _package_dist(http, metadata_url, package, version, stop)
            if dist is None:
                return Download(url, data, None, None)
            shasum, integrity = _dist_checksums(dist, metadata_url)
            return Download(url, data, shasum, integrity, metadata_url)
        metadata = _json_object(data, url, "neither a package tgz nor package metadata with "
                                           "dist.tarball")
        dist = metadata.get("dist")
        if not isinstance(dist, dict) or not isinstance(dist.get("tarball"), str) \
                or not dist["tarball"].strip():
            raise UsageError(f"{url} answered neither a package tgz nor package metadata "
                             f"with dist.tarball")
        shasum, integrity = _dist_checksums(dist, url)
        try:
            tarball = str(httpx.URL(url).join(dist["tarball"].strip()))
        except (httpx.InvalidURL, ValueError):
            raise UsageError(f"{url}: dist.tarball is not a URL") from None
        if httpx.URL(tarball).scheme not in ("http", "https"):
            raise UsageError(f"{url}: dist.tarball is not an http(s) URL")
        data = _get(http, tarball, package, version, stop)
        if not data.startswith(_GZIP_MAGIC):
            raise UsageError(f"{tarball} is not a gzip file (package {package} {version})")
        return Download(tarball, data, shasum, integrity, url)


def _package_dist(http: httpx.Client, url: str, package: str, version: str,
                  stop: threading.Event) -> dict[str, Any] | None:
    """`versions[VERSION].dist` of the package metadata at `url`; None when the registry has no
    package metadata (404) or does not list the version (nothing stated to check against).
    Metadata that is there but malformed is a usage error: it cannot vouch for anything."""
    try:
        raw = _get(http, url, package, version, stop, limit=MAX_METADATA_BYTES)
    except _NotFound:
        return None
    metadata = _json_object(raw, url, "not package metadata (a JSON object)")
    versions = metadata.get("versions")
    if versions is None:
        return None
    if not isinstance(versions, dict):
        raise UsageError(f"{url}: malformed package metadata (versions is not an object)")
    entry = versions.get(version)
    if entry is None:
        return None
    dist = entry.get("dist") if isinstance(entry, dict) else None
    if not isinstance(entry, dict) or not isinstance(dist, (dict, type(None))):
        raise UsageError(f"{url}: malformed package metadata (versions[{version!r}].dist is "
                         f"not an object)")
    return dist


def _dist_checksums(dist: dict[str, Any], url: str) -> tuple[str | None, str | None]:
    """dist.shasum and dist.integrity, checked for shape: a registry stating a checksum it
    cannot write is not one to trust."""
    shasum, integrity = dist.get("shasum"), dist.get("integrity")
    if shasum is not None and not (isinstance(shasum, str) and _SHA1_HEX.match(shasum)):
        raise UsageError(f"{url}: malformed package metadata (dist.shasum is not a sha1 in hex)")
    if integrity is not None and not (isinstance(integrity, str)
                                      and _SRI.match(integrity.strip())):
        raise UsageError(f"{url}: malformed package metadata (dist.integrity is not "
                         f"ALGORITHM-BASE64)")
    return shasum, integrity.strip() if isinstance(integrity, str) else None


def _json_object(raw: bytes, url: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict):
        raise UsageError(f"{url} answered {what}")
    return value


class _NotFound(UsageError):
    """HTTP 404 from the registry."""


def _get(http: httpx.Client, url: str, package: str, version: str, stop: threading.Event,
         limit: int = MAX_DOWNLOAD_BYTES) -> bytes:
    """The body of GET url, bounded; registry failures become one-line usage errors."""
    try:
        with http.stream("GET", url) as response:
            if response.status_code == 404:
                raise _NotFound(f"package {package} {version} not found at {url} (HTTP 404)")
            if response.status_code != 200:
                raise UsageError(f"{url} answered HTTP {response.status_code}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                if stop.is_set():
                    raise UsageError(f"{url}: download given up")
                size += len(chunk)
                if size > limit:
                    raise UsageError(f"{url} is larger than {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise UsageError(f"cannot reach registry at {url}: {detail}") from None


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar header that refuses, before anything is read, an extended header (pax record, GNU
    long name) or a member larger than the bounds: tarfile itself would read a pax record of
    any announced size into memory."""

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_HEADERS:
            if self.size > MAX_HEADER_BYTES:
                raise _Unsafe(f"a tar header record of {self.size} bytes (at most "
                              f"{MAX_HEADER_BYTES})")
            seen = getattr(tar, "kt2_header_bytes", 0) + self.size
            if seen > MAX_ALL_HEADERS_BYTES:
                raise _Unsafe(f"more than {MAX_ALL_HEADERS_BYTES} bytes of tar header records")
            tar.kt2_header_bytes = seen  # type: ignore[attr-defined]
        member: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        if member.size > MAX_MEMBER_BYTES:
            raise _Unsafe(f"member {member.name!r} of {member.size} bytes (at most "
                          f"{MAX_MEMBER_BYTES})")
        return member


class _Unsafe(Exception):
    """A package that breaks a bound; the message says which."""


def read_package(data: bytes, package: str, version: str) -> Package:
    """The conformance resources at the package's top level (file name -> resource) and its
    package.json, after checking the archive member by member, and the gzip stream to its end
    (its CRC and length)."""
    files: dict[str, bytes] = {}
    unpacked = 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as stream, \
                tarfile.open(fileobj=stream, mode="r:", tarinfo=_BoundedTarInfo) as tar:
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
            _read_to_end(stream, package, version)
    except _Unsafe as exc:
        raise UsageError(f"package {package} {version} is unsafe: {exc}") from None
    except gzip.BadGzipFile as exc:
        raise UsageError(f"package {package} {version} is corrupt: {_gzip_problem(exc)}") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise UsageError(f"package {package} {version} is not a valid tgz: {detail}") from None

    manifest = _parse(files.pop("package.json", None), "package/package.json", package, version)
    if manifest.get("name") != package or manifest.get("version") != version:
        raise UsageError(f"package.json says {_shown(manifest.get('name'))} "
                         f"{_shown(manifest.get('version'))}, not {package} {version}")
    contents = Package(manifest, {}, {})
    for name, raw in sorted(files.items()):
        try:
            resource = json.loads(raw)
        except (ValueError, RecursionError):
            continue  # not every .json in a package is a resource; only the KT2Task must parse
        if isinstance(resource, dict) and resource.get("resourceType") in CONFORMANCE_TYPES:
            contents.resources[_safe_name(name)] = resource
            contents.raw[_safe_name(name)] = raw
    _check_kt2task(contents.resources, package, version)
    return contents


def _read_to_end(stream: gzip.GzipFile, package: str, version: str) -> None:
    """Decompress what follows the tar's end marker, bounded, so the gzip module reaches the
    stream's end and checks its CRC and length (tarfile stops reading at the marker)."""
    while stream.read(1024 * 1024):
        if stream.tell() > MAX_UNPACKED_BYTES:
            raise UsageError(f"package {package} {version} unpacks to more than "
                             f"{MAX_UNPACKED_BYTES} bytes")


def _gzip_problem(exc: gzip.BadGzipFile) -> str:
    text = str(exc)
    if text.startswith("CRC check failed"):
        return "its gzip CRC does not match its contents"
    if text.startswith("Incorrect length"):
        return "its gzip length field does not match its contents"
    return " ".join(text.split()) or "bad gzip data"


def _shown(value: Any) -> str:
    """A value from a package, short enough for a one-line message."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:59] + "…"


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
                         f"dist.shasum {download.shasum} ({download.stated_by})")
    if download.integrity:
        algorithm, expected = download.integrity.split("-", 1)
        actual = base64.b64encode(hashlib.new(algorithm, download.data).digest()).decode()
        if actual != expected:
            raise UsageError(f"{download.url}: {algorithm} does not match the registry's "
                             f"dist.integrity ({download.stated_by})")
    return {"sha1": sha1, "sha256": hashlib.sha256(download.data).hexdigest()}


def complete_from_vendored(contents: Package) -> list[str]:
    """Add the FHIR R4 core definitions the KT2Task builds on (its base Task, the ValueSets it
    binds and their CodeSystems) that the package leaves to its hl7.fhir.r4.core dependency,
    copied from the vendored default profile folder, which holds them for 4.0.1. Without them
    the oracle could not check the required bindings. Returns the file names added."""
    if "4.0.1" not in (_strings(contents.manifest.get("fhirVersions")) or ["4.0.1"]):
        return []
    vendored = _vendored_by_url()
    present = {r.get("url") for r in contents.resources.values()}
    kt2task = next(r for r in contents.resources.values() if r.get("url") == KT2TASK_URL)
    wanted: list[Any] = [kt2task.get("baseDefinition")]
    for element in kt2task["snapshot"]["element"]:
        binding = element.get("binding") if isinstance(element, dict) else None
        if isinstance(binding, dict):
            wanted.append(binding.get("valueSet"))
    added: list[str] = []
    while wanted:
        url = wanted.pop()
        url = url.split("|")[0] if isinstance(url, str) else ""
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


def _strings(value: Any) -> list[str]:
    """A package.json list of strings as such; anything else (a hostile manifest) as []."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _provenance(registry: str, package: str, version: str, download: Download,
                sums: dict[str, str], contents: Package, completed: list[str]) -> str:
    dependencies = contents.manifest.get("dependencies")
    if not isinstance(dependencies, dict):
        dependencies = {}
    if download.shasum or download.integrity:
        stated = " and ".join(name for name, value in (("dist.shasum", download.shasum),
                                                       ("dist.integrity", download.integrity))
                              if value)
        checked = f"- checked against: {stated} of {download.stated_by}"
    else:
        checked = "- checked against: nothing (the registry states no checksum for it)"
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
        checked,
        f"- size: {len(download.data)} bytes",
        f"- fetched: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- FHIR version: {', '.join(_strings(contents.manifest.get('fhirVersions'))) or 'not stated'}",
        "- dependencies (not fetched): "
        + (", ".join(f"{_shown(n)} {_shown(v)}" for n, v in dependencies.items()) or "none"),
        "",
        "Files: the StructureDefinitions, ValueSets and CodeSystems at the package's top level,",
        "byte for byte, and its package.json.",
        "",
    ]
    lines += [f"- {name}: {r['resourceType']} {r.get('url', '')}"
              for name, r in contents.resources.items() if name not in completed]
    if completed:
        lines += ["", (f"Added from the vendored {paths.DEFAULT_PROFILE_DIR.name} folder (FHIR R4 "
                       "4.0.1 core definitions the KT2Task uses, normally in hl7.fhir.r4.core):"),
                  ""]
        lines += [f"- {name}: {contents.resources[name].get('url', '')}" for name in completed]
    return "\n".join(lines) + "\n"


def _store(folder: Path, contents: Package, provenance: str) -> None:
    """Write into a temporary sibling first, so a failure leaves no half-filled folder, and
    keep it only once the profile loads from it as `--profile` will load it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the profiles from other users
        for name, raw in contents.raw.items():
            (staging / name).write_bytes(raw)
        (staging / "package.json").write_text(json.dumps(contents.manifest, indent=2) + "\n",
                                              encoding="utf-8")
        (staging / "PROVENANCE.md").write_text(provenance, encoding="utf-8")
        _check_loads(staging, folder.name)
        staging.rename(folder)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise UsageError(f"cannot write {folder}: {exc.strerror or exc}") from None
    except UsageError:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check_loads(folder: Path, name: str) -> None:
    """The profile in `folder` loads, its constraints derive and the oracle builds: what every
    command does first with `--profile`. A package that passes the archive checks but not this
    is not stored."""
    from kt2conformance.oracle import Oracle
    from kt2conformance.spec import derive_constraints, load_profile

    try:
        profile = load_profile(folder)
        derive_constraints(profile)
        Oracle(profile)
    except UsageError as exc:
        raise UsageError(f"package {name} not stored: its profile does not load: {exc}") from None
