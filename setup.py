"""Ships the project's data in the wheel: the vendored profiles, the fixtures and the suites are
copied into the package as `kt2conformance/_data/` when it is built, so an installed harness
(`pip install kt2conformance-*.whl`) runs from any directory. A checkout (`pip install -e .`)
reads them where they are (kt2conformance/_paths.py)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA = ("profiles", "fixtures", "suites")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "kt2conformance" / "_data"
        for name in DATA:
            shutil.rmtree(target / name, ignore_errors=True)
            shutil.copytree(Path(__file__).parent / name, target / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithData})
