"""The options of `run` are one dataclass for both faces: the CLI (`run --NAME`) and the pytest
plugin (`pytest --kt-NAME`) parse the same fields, and `run` hands them on unchanged."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest

from kt2conformance._errors import UsageError
from kt2conformance.cli import build_parser
from kt2conformance.run._options import Options, add_options

ARGS = ["--target", "http://127.0.0.1:1/fhir", "--token", "t0k3n", "--client-id", "c",
        "--private-key", "key.pem", "--alg", "ES384", "--kid", "k1", "--token-url", "http://t/",
        "--profile", "p", "--examples", "7", "--seed", "42", "--strict", "--reports", "out",
        "--keep", "--concurrency", "3", "--timeout", "2.5", "--rate", "10",
        "--allow-production", "--baseline", "old/summary.json", "--no-cover"]


def _cli(args: list[str]) -> Options:
    return Options.from_namespace(build_parser().parse_args(["run", *args]))


def _plugin(args: list[str]) -> Options:
    parser = argparse.ArgumentParser()
    add_options(parser.add_argument, "kt-")
    return Options.from_namespace(parser.parse_args(args), "kt_")


def test_every_field_is_given_by_the_test_arguments() -> None:
    given = _cli(ARGS)
    default = _cli([])
    assert [f.name for f in fields(Options)
            if getattr(given, f.name) == getattr(default, f.name)] == []


def test_the_plugin_parses_what_run_hands_it() -> None:
    options = _cli(ARGS)
    assert _plugin(options.pytest_arguments()) == options
    assert _plugin(_cli([]).pytest_arguments()) == _cli([])


def test_environment_supplies_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT2_TOKEN", "from-env")
    monkeypatch.setenv("KT2_CLIENT_ID", "client-from-env")
    assert _cli([]).token == "from-env" and _plugin([]).client_id == "client-from-env"


@pytest.mark.parametrize("args", [["--examples", "0"], ["--concurrency", "0"],
                                  ["--timeout", "0"], ["--rate", "-1"]])
def test_senseless_counts_are_refused(args: list[str]) -> None:
    with pytest.raises(UsageError, match=args[0]):
        _cli(args).check()
