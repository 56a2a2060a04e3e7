"""The package layout is a contract: sub-packages in pipeline order, each importing only from its
own layer or the layers below it (profile -> constraints -> oracle, generators -> target ->
reports -> run -> command line), and a declared public API (`__all__`) in the package and each
sub-package. Checked from the source, so a new module or import that breaks it fails here."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import kt2conformance

PACKAGE = Path(kt2conformance.__file__).parent
# Low to high. A module may import from its own layer and from layers below it, never above.
LAYERS: list[tuple[str, ...]] = [
    ("kt2conformance._errors", "kt2conformance._paths", "kt2conformance._vocabulary", "kt2conformance._signals",
     "kt2conformance._koppeltaal"),
    ("kt2conformance.spec",),
    ("kt2conformance.oracle",),
    ("kt2conformance.generate",),
    ("kt2conformance.target",),
    ("kt2conformance.report",),
    ("kt2conformance.run",),
    ("kt2conformance.cli", "kt2conformance._commands", "kt2conformance.__main__"),
]
SUB_PACKAGES = ("spec", "oracle", "generate", "target", "report", "run")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every kt2conformance import in the file, at any depth (also imports
    inside functions); `from kt2conformance import x` counts as importing `kt2conformance.x`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "kt2conformance":
                found += [(node.lineno, f"kt2conformance.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, m) for line, m in found if m.split(".")[0] == "kt2conformance"]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down_the_layers(path: Path) -> None:
    module = _module_name(path)
    layer = _layer(module)
    assert layer is not None, f"{module} belongs to no layer: add it to LAYERS or move it"
    upward = []
    for line, imported in _imports(path):
        if imported == "kt2conformance.__version__":
            continue
        target = _layer(imported)
        assert target is not None, f"{module}:{line} imports {imported}, which is in no layer"
        if target > layer:
            upward.append(f"{module}:{line} imports {imported} (layer {target} > {layer})")
    assert upward == []


def test_the_tree_reads_as_the_pipeline() -> None:
    packages = sorted(p.name for p in PACKAGE.iterdir()
                      if p.is_dir() and (p / "__init__.py").exists())
    assert packages == sorted(SUB_PACKAGES)
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "_commands.py", "_errors.py", "_koppeltaal.py",
                   "_paths.py", "_signals.py", "_vocabulary.py", "cli.py"]
    for package in SUB_PACKAGES:  # modules inside sub-packages are private
        public = [p.name for p in (PACKAGE / package).glob("*.py")
                  if not p.name.startswith("_")]
        assert public == [], f"{package}/ has public modules {public}: name them _x.py"


@pytest.mark.parametrize("name", ["kt2conformance", *(f"kt2conformance.{p}" for p in SUB_PACKAGES)])
def test_public_api_is_declared_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported and len(set(exported)) == len(exported)
    for attribute in exported:
        assert getattr(module, attribute) is not None, f"{name}.{attribute}"
    assert "__version__" in exported or name != "kt2conformance"


def test_top_level_api_is_the_sub_packages_api() -> None:
    """Each name `kt2conformance` exports is the object the layer it comes from exports."""
    assert set(kt2conformance.__all__) == {"__version__", *kt2conformance._EXPORTS}
    for attribute, home in kt2conformance._EXPORTS.items():
        module = importlib.import_module(home)
        assert attribute in module.__all__, f"{home} does not export {attribute}"
        assert getattr(kt2conformance, attribute) is getattr(module, attribute)


def test_readme_layout_names_every_module() -> None:
    """The README's layout section is the map newcomers read: every module is on it."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    missing = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py") and p.stem not in section]
    assert missing == []
