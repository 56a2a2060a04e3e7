"""`kt2conformance run`: the product users run. It runs the suites in `suites/` under pytest with
the kt2conformance plugin (which starts the embedded server when no target is given and writes
the three reports), then prints a one-screen summary and maps the outcome to the contract's exit
codes: 0 conforms, 1 conformance failures, 2 set-up or usage error (one line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kt2conformance import _paths as paths
from kt2conformance._errors import UsageError
from kt2conformance._signals import SIGNALS
from kt2conformance.report import BaselineError, load_baseline
from kt2conformance.run._options import Options
from kt2conformance.run._plugin import outcome_of
from kt2conformance.spec._profile import select_profiles
from kt2conformance.target._auth import build_auth
from kt2conformance.target._client import FhirClient

# How many not-enforced constraints the closing summary names before pointing at the report.
_SUMMARY_LINES = 15


class _Observer:
    """Hears, from inside pytest, how the run ended: the plugin's set-up error or its totals.
    The run prints the verdict itself (`prints_verdict`: the plugin then leaves it out)."""

    prints_verdict = True

    def __init__(self) -> None:
        self.setup_error: str | None = None
        self.outcome: dict[str, Any] | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.setup_error, self.outcome = outcome_of(config)


def _precheck(options: Options) -> None:
    """Fail fast, in one line, on what would otherwise stop the run inside pytest: an unreadable
    profile, bad auth options, an unreachable target, refused credentials, a production-looking
    target, a baseline that is not an earlier run's summary.json."""
    profiles = select_profiles(options.profile)
    if all(p.unjudgeable for p in profiles):
        raise UsageError(str(profiles[0].unjudgeable))
    if options.baseline:
        try:
            load_baseline(options.baseline)
        except BaselineError as exc:
            raise UsageError(str(exc)) from None
    if options.target is None:
        return
    auth = build_auth(options.target, options.token, options.client_id, options.private_key,
                      options.alg, options.token_url, options.kid)
    with FhirClient(options.target, auth=auth, allow_production=options.allow_production,
                    max_retries=1, timeout=options.client_timeout) as client:
        client.check_reachable()


def run(options: Options, extra: list[str]) -> int:
    options.check()
    reports = Path(options.reports)
    try:
        reports.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the reports folder {reports}: {exc.strerror}") from None
    _precheck(options)
    observer = _Observer()
    # -W: this process imported kt2conformance before pytest could rewrite its asserts; the
    # suites judge with verdicts, not asserts, so pytest's warning about it is noise here.
    # --assert=plain: the suites judge with verdicts, not assert statements; rewriting the
    # imported modules' asserts would only add seconds to every run's start.
    # -qq: pytest's own count line counts tests (one a constraint), not cases; the verdict line
    # printed below is the run's one set of counts.
    code = pytest.main([str(paths.SUITES_DIR), "-qq", "--tb=no", "--assert=plain", "-p", "no:cacheprovider",
                        "-W", "ignore::pytest.PytestAssertRewriteWarning",
                        *options.pytest_arguments(), *extra], plugins=[observer])
    if observer.setup_error:
        raise UsageError(observer.setup_error)
    if SIGNALS.received or code == pytest.ExitCode.INTERRUPTED:
        if observer.outcome is not None:  # the reports were written: say what they hold
            _print_summary(observer.outcome, reports)
        raise KeyboardInterrupt  # the CLI exits with 128 + the signal's number
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or observer.outcome is None:
        raise UsageError(f"the suites did not run (pytest exit code {int(code)}): "
                         f"see the pytest output above")
    _print_summary(observer.outcome, reports)
    # an incomplete run is never green, even when every test that ran passed; nor is a finding
    # made after the tests (a target that kept what it deleted: server/delete)
    conforms = observer.outcome.get("complete", True) and observer.outcome.get("conforms", True)
    return 0 if code == pytest.ExitCode.OK and conforms else 1
def _print_summary(outcome: dict[str, Any], reports: Path) -> None:
    """The verdict line (the same counts as report.html, junit.xml and summary.json), what the
    verdict rests on, the comparison with the baseline, and where the reports are."""
    print()
    print(f"kt2conformance: {outcome['verdict']}")
    print(f"  target {outcome['target']} ({outcome['duration_s']:.1f} s, "
          f"{outcome.get('requests', 0)} requests)")
    lost = outcome.get("data_loss") or {}
    if lost:
        print(f"  data loss ({len(lost)} elements stored differently from what was sent):")
        for element, seen in list(lost.items())[:_SUMMARY_LINES]:
            print(f"    {element}  ({', '.join(seen['kinds'])})")
    loose = [(key, c) for key, c in outcome["constraints"].items() if c["enforced"] is False]
    if loose:
        print(f"  not enforced ({len(loose)}):")
        for key, c in loose[:_SUMMARY_LINES]:
            print(f"    {key}  ({c['failed']} of {c['cases']} cases failed)")
        if len(loose) > _SUMMARY_LINES:
            print(f"    ... and {len(loose) - _SUMMARY_LINES} more (see report.html)")
    if outcome.get("baseline"):
        print("  since the baseline run:")
        for line in outcome["baseline"]:
            print(f"    {line}")
    leftovers = outcome.get("leftovers") or []
    if leftovers:
        print(f"  left on the target ({len(leftovers)}, all listed in summary.json under "
              f"leftovers): {', '.join(leftovers[:10])}" + (" ..." if len(leftovers) > 10 else ""))
    print(f"  reports: {reports / 'report.html'}, {reports / 'junit.xml'}, "
          f"{reports / 'summary.json'}")
