"""Loading a profile: a resource profile's StructureDefinition (KT2Task by default) and the
conformance resources it depends on (extension definitions, ValueSets, CodeSystems), plus the R4
datatype definitions.

A profile is given as a StructureDefinition file, a folder of definitions, or a package folder
(an npm-style FHIR package: `package/package.json` next to the resources). Dependencies are looked
up in the same folder; nothing about KT2Task is assumed beyond its canonical URL being the
default choice when a folder holds several Task profiles. A profile can also be named (`KT2Device`,
its StructureDefinition's name, id or the last part of its URL) and several selected at once
(`KT2Device,KT2Task`, or `all`): `select_profiles`, looked up in the vendored package folder.

A profile whose base profile is neither core FHIR nor in its folder (the KT2 profiles built on
the Dutch nl-core profiles) cannot be judged: its snapshot was built without what the base adds.
`Profile.unjudgeable` says so in one line, naming the packages it would need.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from kt2conformance import _paths as paths
from kt2conformance._errors import UsageError, read_json_file
from kt2conformance._koppeltaal import KT2TASK_URL
from kt2conformance.spec._sdcheck import check_structure_definition, check_terminology

Json = dict[str, Any]

CORE_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
ALL = "all"  # `--profile all`: every resource profile of the vendored package


@dataclass(eq=False)
class Profile:
    """A loaded profile: the main StructureDefinition and everything it can resolve (hashed by
    identity, so caches can key on it)."""

    sd: Json
    source: Path
    structure_definitions: dict[str, Json] = field(default_factory=dict)
    value_sets: dict[str, Json] = field(default_factory=dict)
    code_systems: dict[str, Json] = field(default_factory=dict)
    package: str | None = None
    package_version: str | None = None
    dependencies: dict[str, str] = field(default_factory=dict)  # package name -> version

    @property
    def url(self) -> str:
        return cast(str, self.sd["url"])

    @property
    def version(self) -> str | None:
        return self.sd.get("version")

    @property
    def type(self) -> str:
        return cast(str, self.sd["type"])

    @property
    def elements(self) -> list[Json]:
        return cast(list[Json], self.sd["snapshot"]["element"])

    def structure_definition(self, url: str) -> Json | None:
        """The StructureDefinition with this canonical (a `|version` suffix is ignored)."""
        base = url.split("|")[0]
        return self.structure_definitions.get(base) or r4_datatypes().get(base) or r4_core_extensions().get(base)

    def value_set(self, url: str) -> Json | None:
        """The ValueSet with this canonical: the profile's own, else R4 core's."""
        base = url.split("|")[0]
        return self.value_sets.get(base) or r4_core_terminology()[0].get(base)

    def code_system(self, url: str) -> Json | None:
        """The CodeSystem with this canonical: the profile's own, else R4 core's."""
        base = url.split("|")[0]
        return self.code_systems.get(base) or r4_core_terminology()[1].get(base)

    @property
    def name(self) -> str:
        """The short name a user selects it by (`KT2Task`): the last part of its URL."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def unjudgeable(self) -> str | None:
        """None when the profile can be judged; else one line saying why not and what it needs:
        a base profile that is neither core FHIR nor loaded (nl-core, for five KT2 profiles)."""
        sd, seen = self.sd, set()
        while (base := str(sd.get("baseDefinition") or "").split("|")[0]) \
                and not base.startswith(CORE_PREFIX) and base not in seen:
            seen.add(base)
            parent = self.structure_definitions.get(base)
            if parent is None:
                needs = ", ".join(f"{n}#{v}" for n, v in self.dependencies.items()
                                  if not n.startswith("hl7.fhir.")) or "the package defining it"
                return (f"{self.name} builds on {base}, which is not in {self.source.parent.name}: "
                        f"judging it needs {needs} (not served by any registry reachable here); "
                        f"only its official examples are created and read back")
            sd = parent
        return None


def _read_json(path: Path) -> Json:
    data = read_json_file(path, "profile")
    if not isinstance(data, dict):
        raise UsageError(f"profile {path} is not a FHIR resource (JSON object expected)")
    return data


def _resources_in(folder: Path) -> list[tuple[Path, Json]]:
    """Every JSON conformance resource in a folder (or its `package/` subfolder). Files that are not
    JSON objects are skipped: packages carry other files (index.json, examples)."""
    root = folder / "package" if (folder / "package").is_dir() else folder
    found: list[tuple[Path, Json]] = []
    for path in sorted(root.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and "resourceType" in data:
            found.append((path, data))
    return found


def _dependencies(folder: Path) -> dict[str, str]:
    """The packages the folder's profiles build on: package.json's `dependencies`, or for the
    vendored build BUILD-INFO.json's."""
    for candidate in (folder / "package" / "package.json", folder / "package.json",
                      folder / "BUILD-INFO.json"):
        if candidate.is_file():
            try:
                deps = json.loads(candidate.read_text(encoding="utf-8")).get("dependencies")
            except (OSError, ValueError, AttributeError):
                return {}
            return {str(k): str(v) for k, v in deps.items()} if isinstance(deps, dict) else {}
    return {}


def _package_info(folder: Path) -> tuple[str | None, str | None]:
    for candidate in (folder / "package" / "package.json", folder / "package.json"):
        if candidate.is_file():
            try:
                meta = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
                break
            if not isinstance(meta, dict):
                break
            return _text(meta.get("name")), _text(meta.get("version"))
    build = folder / "BUILD-INFO.json"
    name, _, version = folder.name.rpartition("-")
    if build.is_file():
        try:
            info = json.loads(build.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            info = None
        if isinstance(info, dict) and isinstance(info.get("igVersion"), str):
            version = info["igVersion"]
    return (name or None), (version or None)


def _text(value: Any) -> str | None:
    """A package.json field that should be a string; anything else counts as absent."""
    return value if isinstance(value, str) and value else None


def _check_profile(sd: Json, path: Path) -> None:
    if sd.get("resourceType") != "StructureDefinition":
        raise UsageError(f"{path} is not a StructureDefinition (resourceType {sd.get('resourceType')!r})")
    if sd.get("kind") != "resource" or not isinstance(sd.get("type"), str) or not isinstance(sd.get("url"), str):
        raise UsageError(f"{path}: StructureDefinition {sd.get('url')} is not a resource profile "
                         f"(kind {sd.get('kind')!r}, type {sd.get('type')!r})")
    snapshot = sd.get("snapshot")
    elements = snapshot.get("element") if isinstance(snapshot, dict) else None
    if not isinstance(elements, list) or not elements:
        raise UsageError(f"{path}: StructureDefinition {sd.get('url')} has no snapshot "
                         f"(generate one with SUSHI --snapshot or the IG Publisher)")
    if isinstance(elements[0], dict) and elements[0].get("path") != sd["type"]:
        raise UsageError(f"{path}: StructureDefinition {sd['url']} profiles {sd['type']!r} but its "
                         f"snapshot describes {elements[0].get('path')!r}")
    check_structure_definition(sd, path)


def _check_reachable(profile: Profile, sources: dict[int, Path]) -> None:
    """Check what the profile's elements reach: the extension definitions its slices name (they
    are grafted into the element tree) and the ValueSets and CodeSystems of required bindings,
    following ValueSet imports."""
    definitions = [profile.sd]
    seen_sd: set[str] = {profile.url}
    value_sets: list[str] = []
    while definitions:
        sd = definitions.pop()
        for element in sd["snapshot"]["element"]:
            for type_ in element.get("type") or []:
                for url in type_.get("profile") or []:
                    extension = profile.structure_definitions.get(url.split("|")[0])
                    if extension is None or url.split("|")[0] in seen_sd \
                            or "snapshot" not in extension:
                        continue
                    seen_sd.add(url.split("|")[0])
                    check_structure_definition(extension, sources.get(id(extension), profile.source),
                                               root_type="Extension")
                    definitions.append(extension)
            binding = element.get("binding") or {}
            if binding.get("strength") == "required" and binding.get("valueSet"):
                value_sets.append(binding["valueSet"])
    seen_vs: set[str] = set()
    while value_sets:
        url = value_sets.pop().split("|")[0]
        vs = profile.value_set(url)
        if url in seen_vs or vs is None:
            continue
        seen_vs.add(url)
        check_terminology(vs, sources.get(id(vs), profile.source))
        compose = vs.get("compose") or {}
        for part in (compose.get("include") or []) + (compose.get("exclude") or []):
            value_sets.extend(part.get("valueSet") or [])
            cs = profile.code_system(part["system"]) if part.get("system") else None
            if cs is not None:
                check_terminology(cs, sources.get(id(cs), profile.source))


def load_profile(location: str | Path | None = None) -> Profile:
    """Load a profile from a StructureDefinition file, a folder of definitions, or a package folder.

    With a folder, the Task profile is the KT2Task canonical if present, else the only Task
    constraint in the folder. Raises UsageError with a one-line message when unusable."""
    path = Path(location) if location is not None else paths.DEFAULT_PROFILE_DIR
    if not path.exists():
        # A bare package name under profiles/ (e.g. `koppeltaalv2.00-0.16.2`), or a profile's name.
        candidates = [folder / str(location) for folder in (paths.USER_PROFILES_DIR, paths.PROFILES_DIR)]
        if location is not None and any(p.exists() for p in candidates):
            path = next(p for p in candidates if p.exists())
        elif location is not None and (named := _named(str(location))) is not None:
            path = named
        elif "/" in str(location) or str(location).endswith(".json"):
            raise UsageError(f"profile not found: {path}")
        else:
            raise UsageError(f"profile not found: {path} (not a file or folder, nor the name of a "
                             f"profile in {paths.DEFAULT_PROFILE_DIR.name}: "
                             f"{', '.join(profile_names())})")
    if path.is_dir():
        folder = path
        resources = _resources_in(folder)
        tasks = [(p, r) for p, r in resources if r.get("resourceType") == "StructureDefinition"
                 and r.get("type") == "Task" and r.get("derivation") == "constraint"]
        chosen = [t for t in tasks if t[1].get("url") == KT2TASK_URL] or tasks
        if not chosen:
            raise UsageError(f"no Task profile (StructureDefinition of type Task) in {folder}")
        if len(chosen) > 1:
            names = ", ".join(r.get("url", "?") for _, r in chosen)
            raise UsageError(f"several Task profiles in {folder} ({names}): pass the file with --profile")
        sd_path, sd = chosen[0]
    else:
        sd_path, sd = path, _read_json(path)
        folder = path.parent
        resources = _resources_in(folder)
    _check_profile(sd, sd_path)
    profile = Profile(sd=sd, source=sd_path)
    profile.package, profile.package_version = _package_info(folder)
    profile.dependencies = _dependencies(folder)
    sources: dict[int, Path] = {}
    for source, res in resources:
        url = res.get("url")
        if not isinstance(url, str) or not url:
            continue
        sources[id(res)] = source
        kind = res.get("resourceType")
        if kind == "StructureDefinition":
            profile.structure_definitions[url] = res
        elif kind == "ValueSet":
            profile.value_sets[url] = res
        elif kind == "CodeSystem":
            profile.code_systems[url] = res
    profile.structure_definitions[sd["url"]] = sd
    _check_reachable(profile, sources)
    return profile


def _key(text: str) -> str:
    return text.replace("_", "").replace("-", "").lower()


def _resource_profiles(folder: Path) -> list[tuple[Path, Json]]:
    return [(p, r) for p, r in _resources_in(folder) if r.get("resourceType") == "StructureDefinition"
            and r.get("kind") == "resource" and r.get("derivation") == "constraint"]


def profile_names(folder: Path | None = None) -> list[str]:
    """The names of the resource profiles in a folder (the vendored package by default)."""
    return sorted(str(r.get("url", "")).rsplit("/", 1)[-1]
                  for _, r in _resource_profiles(folder or paths.DEFAULT_PROFILE_DIR))


def _named(name: str) -> Path | None:
    """The file of the vendored package's resource profile with this name, id or URL tail
    (case, `_` and `-` ignored: `KT2Device`, `KT2_Device`, `kt2device`)."""
    wanted = _key(name)
    for path, sd in _resource_profiles(paths.DEFAULT_PROFILE_DIR):
        names = {sd.get("name"), sd.get("id"), str(sd.get("url", "")).rsplit("/", 1)[-1]}
        if wanted in {_key(str(n)) for n in names if n}:
            return path
    return None


def select_profiles(selection: str | Path | None = None) -> list[Profile]:
    """The profiles `--profile` selects: one location or name as `load_profile` takes it,
    several names separated by commas, or `all` (every resource profile of the vendored
    package, in name order). Judgeable or not: callers ask `Profile.unjudgeable`."""
    if selection is None or isinstance(selection, Path) or Path(selection).exists():
        return [load_profile(selection)]
    parts = [p.strip() for p in str(selection).split(",") if p.strip()]
    if not parts:
        raise UsageError("--profile names no profile")
    if any(p.lower() == ALL for p in parts):
        parts = [str(p) for p, _ in sorted(_resource_profiles(paths.DEFAULT_PROFILE_DIR),
                                           key=lambda item: str(item[1].get("url")))]
    chosen: dict[str, Profile] = {}
    for part in parts:
        profile = load_profile(part)
        chosen.setdefault(profile.url, profile)
    return list(chosen.values())


@lru_cache(maxsize=1)
def r4_datatypes() -> dict[str, Json]:
    """The R4 datatype StructureDefinitions by canonical URL (vendored, see profiles/r4)."""
    bundle = json.loads(paths.R4_TYPES.read_text(encoding="utf-8"))
    return {e["resource"]["url"]: e["resource"] for e in bundle["entry"]}


def _bundle(path: Path) -> list[Json]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [e["resource"] for e in json.load(f)["entry"]]


@lru_cache(maxsize=1)
def r4_resources() -> dict[str, Json]:
    """The R4 resource StructureDefinitions by resource type (vendored, see profiles/r4): what a
    contained resource is validated against."""
    return {sd["type"]: sd for sd in _bundle(paths.R4_CORE_RESOURCES)}


@lru_cache(maxsize=1)
def r4_core_extensions() -> dict[str, Json]:
    """The extensions R4 core defines, by canonical URL (their context and value types)."""
    return {sd["url"]: sd for sd in _bundle(paths.R4_CORE_EXTENSIONS)}


@lru_cache(maxsize=1)
def r4_core_terminology() -> tuple[dict[str, Json], dict[str, Json]]:
    """R4 core's ValueSets and CodeSystems (FHIR, v2, v3), each by canonical URL, and the code
    systems HAPI's validator knows in full without a terminology server (ISO 3166 countries,
    ISO 4217 currencies, USPS states: its CommonCodeSystemsTerminologyService)."""
    value_sets: dict[str, Json] = {}
    code_systems: dict[str, Json] = {}
    common = json.loads(paths.COMMON_CODE_SYSTEMS.read_text(encoding="utf-8"))["entry"]
    for res in _bundle(paths.R4_CORE_TERMINOLOGY) + [e["resource"] for e in common]:
        (value_sets if res["resourceType"] == "ValueSet" else code_systems)[res["url"]] = res
    return value_sets, code_systems


def datatype_definition(code: str) -> Json | None:
    """The R4 StructureDefinition of a datatype by its type code (`Identifier`, `dateTime`)."""
    return r4_datatypes().get(f"http://hl7.org/fhir/StructureDefinition/{code}")
