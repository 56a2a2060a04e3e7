"""`kt2conformance run`: the product users run. It runs the suites in `suites/` under pytest with
the kt2conformance plugin (which starts the embedded server when no target is given and writes
the three reports), then prints a one-screen summary and maps the outcome to the contract's exit
codes: 0 conforms, 1 conformance failures, 2 set-up or usage error (one line)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pytest

from kt2conformance import _paths as paths
from kt2conformance.target._auth import build_auth
from kt2conformance.target._client import FhirClient
from kt2conformance._errors import UsageError
from kt2conformance.spec._profile import load_profile

# How many not-enforced constraints the closing summary names before pointing at the report.
_SUMMARY_LINES = 15


def run_options() -> list[tuple[str, dict[str, Any]]]:
    """The options of `run` (name without dashes, argparse keywords). One table for both faces:
    `run --NAME` here and `pytest --kt-NAME` in the plugin, so they cannot drift apart.
    A function, so that the environment defaults are read when the options are built."""
    env = os.environ.get
    return [
        ("target", {"default": None, "metavar": "URL",
                    "help": "FHIR base URL of the server under test "
                            "(default: start the embedded reference server)"}),
        ("token", {"default": env("KT2_TOKEN"), "help": "bearer token (KT2_TOKEN)"}),
        ("client-id", {"default": env("KT2_CLIENT_ID"),
                       "help": "SMART Backend Services client id (KT2_CLIENT_ID)"}),
        ("private-key", {"default": env("KT2_PRIVATE_KEY"), "metavar": "PATH",
                         "help": "PEM private key, RSA or EC (KT2_PRIVATE_KEY)"}),
        ("alg", {"default": "RS512", "choices": ["RS512", "RS384", "ES384"],
                 "help": "client assertion signing algorithm (default RS512)"}),
        ("kid", {"default": None, "help": "key id for the client assertion header"}),
        ("token-url", {"default": None, "metavar": "URL",
                       "help": "default: token_endpoint of TARGET/.well-known/smart-configuration"}),
        ("profile", {"default": None, "metavar": "P",
                     "help": "StructureDefinition file, folder or package folder "
                             "(default: the vendored KT2Task 0.16.2)"}),
        ("examples", {"type": int, "default": None, "metavar": "N",
                      "help": "Hypothesis examples per property (default: 25 valid Tasks, "
                              "5 per constraint)"}),
        ("seed", {"type": int, "default": 0, "help": "seed of the generated Tasks (default 0)"}),
        ("strict", {"action": "store_true", "default": False,
                    "help": "demand the documented status (422 for profile violations) and an "
                            "OperationOutcome with an error issue on every refusal"}),
        ("reports", {"default": "reports", "metavar": "DIR",
                     "help": "where report.html, junit.xml and summary.json go (default reports/)"}),
        ("keep", {"action": "store_true", "default": False,
                  "help": "keep the resources the run created on the target"}),
        ("concurrency", {"type": int, "default": 1, "metavar": "N",
                         "help": "requests in flight at once (default 1)"}),
        ("timeout", {"type": float, "default": 30.0, "metavar": "S",
                     "help": "seconds to wait for an answer before a case is an error (default 30)"}),
        ("rate", {"type": float, "default": None, "metavar": "N",
                  "help": "at most N requests a second to the target (default: no limit)"}),
        ("allow-production", {"action": "store_true", "default": False,
                              "help": "run even against a target that looks like production"}),
    ]


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `run`; each is also a pytest option with a `--kt-` prefix (_plugin.py)."""
    for name, kwargs in run_options():
        p.add_argument(f"--{name}", **kwargs)


def client_timeout(read: float) -> tuple[float, float]:
    """(connect, read) timeouts for `--timeout`: connecting never waits longer than 5 s."""
    return min(5.0, read), read


def check_counts(examples: int | None, concurrency: int, timeout: float, rate: float | None) -> None:
    """Counts that make no sense end the run before it starts."""
    if examples is not None and examples < 1:
        raise UsageError(f"--examples must be at least 1, not {examples}")
    if concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, not {concurrency}")
    if timeout <= 0:
        raise UsageError(f"--timeout must be more than 0 seconds, not {timeout}")
    if rate is not None and rate <= 0:
        raise UsageError(f"--rate must be more than 0 requests a second, not {rate}")


def pytest_arguments(args: argparse.Namespace) -> list[str]:
    """The `run` options as the plugin's `--kt-` options (`--kt-NAME=VALUE`, flags bare)."""
    out: list[str] = []
    for name, kwargs in run_options():
        value = getattr(args, name.replace("-", "_"))
        if kwargs.get("action") == "store_true":
            if value:
                out.append(f"--kt-{name}")
        elif value is not None:
            out.append(f"--kt-{name}={value}")
    return out


class _Observer:
    """Hears, from inside pytest, how the run ended: the plugin's set-up error or its totals."""

    def __init__(self) -> None:
        self.setup_error: str | None = None
        self.outcome: dict[str, Any] | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        from kt2conformance.run._plugin import outcome_of

        self.setup_error, self.outcome = outcome_of(config)


def _precheck(args: argparse.Namespace) -> None:
    """Fail fast, in one line, on what would otherwise stop the run inside pytest: an unreadable
    profile, bad auth options, an unreachable target, refused credentials, a production-looking
    target."""
    load_profile(args.profile)
    if args.target is None:
        return
    auth = build_auth(args.target, args.token, args.client_id, args.private_key, args.alg,
                      args.token_url, args.kid)
    with FhirClient(args.target, auth=auth, allow_production=args.allow_production,
                    max_retries=1, timeout=client_timeout(args.timeout)) as client:
        client.check_reachable()


def run(args: argparse.Namespace, extra: list[str]) -> int:
    check_counts(args.examples, args.concurrency, args.timeout, args.rate)
    reports = Path(args.reports)
    try:
        reports.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the reports folder {reports}: {exc.strerror}") from None
    _precheck(args)
    observer = _Observer()
    # -W: this process imported kt2conformance before pytest could rewrite its asserts; the
    # suites judge with verdicts, not asserts, so pytest's warning about it is noise here.
    # --assert=plain: the suites judge with verdicts, not assert statements; rewriting the
    # imported modules' asserts would only add seconds to every run's start.
    code = pytest.main([str(paths.SUITES_DIR), "-q", "--tb=no", "--assert=plain", "-p", "no:cacheprovider",
                        "-W", "ignore::pytest.PytestAssertRewriteWarning",
                        *pytest_arguments(args), *extra], plugins=[observer])
    if observer.setup_error:
        raise UsageError(observer.setup_error)
    if code == pytest.ExitCode.INTERRUPTED:
        raise KeyboardInterrupt
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or observer.outcome is None:
        raise UsageError(f"the suites did not run (pytest exit code {int(code)}): "
                         f"see the pytest output above")
    _print_summary(observer.outcome, reports)
    return 0 if code == pytest.ExitCode.OK else 1


def _print_summary(outcome: dict[str, Any], reports: Path) -> None:
    totals = outcome["totals"]
    print()
    print(f"kt2conformance: {outcome['target']}: {totals['cases']} cases, {totals['passed']} "
          f"passed, {totals['failed']} failed, {totals['errors']} errors "
          f"({outcome['duration_s']:.1f} s)")
    refused = outcome["valid_refused"]
    if refused:
        print(f"  over-strict: {refused} valid resource(s) refused")
    loose = [(key, c) for key, c in outcome["constraints"].items() if c["enforced"] is False]
    if loose:
        print(f"  not enforced ({len(loose)}):")
        for key, c in loose[:_SUMMARY_LINES]:
            print(f"    {key}  ({c['failed']} of {c['cases']} cases failed)")
        if len(loose) > _SUMMARY_LINES:
            print(f"    ... and {len(loose) - _SUMMARY_LINES} more (see report.html)")
    print(f"  reports: {reports / 'report.html'}, {reports / 'junit.xml'}, "
          f"{reports / 'summary.json'}")
