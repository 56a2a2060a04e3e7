"""The pytest plugin behind the conformance suites (registered through the `pytest11` entry point):
thin hooks around the run engine (`_engine`).

It adds the `--kt-` options (the options of `kt2conformance run`, docs/contract.md) and, when the
suites in `suites/` are run, a `Harness` for the session: the engine, plus what pytest needs to
present it: report.html through pytest-html (defaulted into the reports folder; the engine's
section on top), a failed test per constraint the target misjudged, skips with their reasons.
junit.xml is the engine's own (one testcase per case) unless --junitxml asks for pytest's. Other
pytest runs in the same environment (the project's own tests) see only the
options: the plugin stays inert.

Set-up problems (unreachable target, 401/403, prerequisites refused) end the run at once through
`pytest.exit` with exit status 2 and one message, which `outcome_of` hands to `run`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis.strategies import SearchStrategy

from kt2conformance import _paths as paths
from kt2conformance._errors import UsageError
from kt2conformance._signals import SIGNALS
from kt2conformance._vocabulary import Expectation, StopReason, Verdict
from kt2conformance.report import anchor
from kt2conformance.run._cases import Case
from kt2conformance.run._engine import INVALID_EXAMPLES, VALID_EXAMPLES, Engine
from kt2conformance.run._options import Options, add_options
from kt2conformance.run._progress import Progress
from kt2conformance.run._report import Outcome
from kt2conformance.target._client import Exchange
from kt2conformance.target._redact import redact

HARNESS = pytest.StashKey["Harness"]()
SETUP_ERROR = pytest.StashKey[str]()
SETUP_EXIT = 2  # the contract's exit code for set-up errors, also under plain pytest
_PREFIX = "kt-"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kt2conformance", "Koppeltaal 2.0 conformance suites")
    add_options(group.addoption, _PREFIX)


def _runs_suites(config: pytest.Config) -> bool:
    """Whether this pytest run collects the conformance suites (an argument is the suites folder,
    inside it, or contains it)."""
    suites = paths.SUITES_DIR.resolve()
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == suites or suites in path.parents or path in suites.parents:
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Set up the harness before pytest-html reads its path, so that report.html lands in the
    reports folder unless --html says otherwise."""
    if not _runs_suites(config):
        return
    options = Options.from_namespace(config.option, _PREFIX.replace("-", "_"))
    _refuse_xdist(config)
    try:
        options.check()
        harness = Harness(config, options)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    SIGNALS.install()  # SIGTERM and SIGHUP stop the run as Ctrl-C does: cleanup, reports
    if not config.option.htmlpath:
        config.option.htmlpath = str(harness.reports / "report.html")
        config.option.self_contained_html = True
    if config.option.xmlpath:  # pytest's own junit.xml was asked for: the engine's is left out
        harness.junit = None
    config.stash[HARNESS] = harness
    config.pluginmanager.register(harness, "kt2conformance-harness")


def _refuse_xdist(config: pytest.Config) -> None:
    """pytest-xdist would run the suites in several processes, each creating its own
    prerequisites and writing its own partial reports over the others': refused in one line.
    Requests are spread with --kt-concurrency instead."""
    workers = getattr(config.option, "numprocesses", None)
    if workers or hasattr(config, "workerinput"):
        raise pytest.UsageError(
            "kt2conformance: the conformance suites do not run under pytest-xdist (-n): one "
            "run needs one process for one summary and a full cleanup; use --kt-concurrency N "
            "to send N requests at a time")


def pytest_unconfigure(config: pytest.Config) -> None:
    if config.stash.get(HARNESS, None) is not None:
        SIGNALS.restore()


@pytest.fixture(scope="session")
def kt(pytestconfig: pytest.Config) -> Harness:
    """The harness, connected to the target with the prerequisites in place."""
    harness = pytestconfig.stash.get(HARNESS, None)
    if harness is None:
        pytest.skip("the conformance suites run as `pytest suites` or `kt2conformance run`")
    harness.connect()
    return harness


def outcome_of(config: pytest.Config) -> tuple[str | None, dict[str, Any] | None]:
    """(set-up error, outcome) of a finished run, for `kt2conformance run`'s closing summary."""
    harness = config.stash.get(HARNESS, None)
    return config.stash.get(SETUP_ERROR, None), harness.outcome if harness else None


class Harness(Engine):
    """The engine as the suites see it (the `kt` fixture) and as pytest hears it (registered as a
    plugin for suite runs): set-up errors end the session, misjudged cases fail their test."""

    def __init__(self, config: pytest.Config, options: Options) -> None:
        super().__init__(options)
        self.config = config

    @contextmanager
    def _setup_errors_stop_the_run(self) -> Iterator[None]:
        try:
            yield
        except UsageError as exc:
            message = redact(str(exc))  # it may quote what a careless server said
            self.config.stash[SETUP_ERROR] = message
            pytest.exit(f"kt2conformance: {message}", returncode=SETUP_EXIT)

    def connect(self) -> None:
        with self._setup_errors_stop_the_run():
            super().connect()

    def check(self, case: Case, exchange: Exchange | None = None) -> Outcome:
        with self._setup_errors_stop_the_run():
            return super().check(case, exchange)

    def check_all(self, cases: list[Case]) -> list[Outcome]:
        with self._setup_errors_stop_the_run():
            return super().check_all(cases)

    def lifecycle(self) -> list[Outcome]:
        with self._setup_errors_stop_the_run():
            return super().lifecycle()

    def check_property(self, extras: list[Any], name: str, strategy: SearchStrategy[Any],
                       bulk: Callable[[int], Iterator[Any]], expected: Expectation,
                       constraint: str | None, description: str,
                       resource_type: str = "Task") -> None:
        """Run the property (`Engine.run_property`) and show it as this test's outcome."""
        with self._setup_errors_stop_the_run():
            outcomes, minimal = self.run_property(name, strategy, bulk, expected, constraint,
                                                  description, resource_type)
        self.expect(extras, outcomes, minimal)

    def skip(self, key: str, reason: str) -> NoReturn:
        """Skip a constraint's test, keeping the reason for the matrix."""
        self.skipped[key] = reason
        pytest.skip(reason)

    def expect(self, extras: list[Any], outcomes: list[Outcome],
               minimal: Outcome | None = None) -> None:
        """Fail the test when any of the cases did not pass, pointing pytest-html's row at the
        explanation in report.html's own section (which shows the cases: pytest-html would hold
        every one in memory until the end)."""
        bad = [o for o in outcomes if o.verdict.verdict is not Verdict.PASS]
        if not bad:
            return
        from pytest_html import extras as html_extras

        first = bad[0].case
        key = None if first.expected is Expectation.ACCEPT else first.constraint
        extras.append(html_extras.html(
            f'<p><a href="#{anchor(key)}">the findings for {key or "valid resources"}, '
            f"explained</a></p>"))
        lines = [f"{o.case.id}: {o.verdict.verdict}: {o.verdict.reason}" for o in bad[:5]]
        if len(bad) > 5:
            lines.append(f"... and {len(bad) - 5} more")
        if minimal is not None:
            lines.append(f"minimal failing example: {json.dumps(minimal.case.body)}")
        # the message goes into junit.xml and report.html as is: a reason may quote what the
        # server said, and a careless server quotes the credentials back
        pytest.fail(redact(f"{len(bad)} of {len(outcomes)} cases did not pass\n"
                           + "\n".join(lines)), pytrace=False)

    # -- pytest hooks ----------------------------------------------------------------------------

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """The expected number of cases, for the progress line on a terminal: each property
        sends --examples Tasks (or the defaults), every other test one case."""
        total = 0
        for item in session.items:
            name = getattr(item, "originalname", item.name)
            if name == "test_valid_tasks_are_accepted":
                total += self.options.examples or VALID_EXAMPLES
            elif name == "test_invalid_task_is_refused":
                total += self.options.examples or INVALID_EXAMPLES
            else:
                total += 1
        self.progress = Progress(total)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Clean up the target, then write the reports (before pytest-html renders, which asks
        for the engine's section). Runs after failures, pytest.exit and Ctrl-C too."""
        if self.progress is not None:
            self.progress.close()
        self.finish(*self._stopped(session, exitstatus))
        if SIGNALS.received:  # the shell's convention, also under plain pytest: 130, 143, 129
            session.exitstatus = SIGNALS.exit_code()
        elif session.exitstatus == pytest.ExitCode.OK and self.outcome is not None \
                and not self.outcome["conforms"]:  # incomplete, or a finding after the tests
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _stopped(self, session: pytest.Session,
                 exitstatus: int) -> tuple[str | None, StopReason | None]:
        """Why the run ended before every suite ran, and what kind of stop it was (None, None
        when it did not)."""
        error = self.config.stash.get(SETUP_ERROR, None)
        if error:
            return f"stopped by a set-up error: {error}", StopReason.SETUP_ERROR
        if SIGNALS.first is not None:
            return f"interrupted by {SIGNALS.first} before every case ran", SIGNALS.first
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            return "interrupted before every case ran", StopReason.SIGINT
        if session.shouldstop:
            return f"stopped early: {session.shouldstop}", StopReason.EARLY
        return None, None

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        """A constraint left out with -k (or another deselection) says so in the report."""
        for item in items:
            key = getattr(item, "callspec", None) and item.callspec.params.get("key")  # type: ignore[attr-defined]
            if isinstance(key, str):
                self.skipped.setdefault(key, "not selected in this run (-k)")

    def pytest_html_report_title(self, report: Any) -> None:
        report.title = "Koppeltaal 2.0 conformance report"

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str],
                                    postfix: list[str], session: pytest.Session) -> None:
        """The engine's section (verdict, overview, findings) goes on top of the report."""
        prefix.append(self.reporting.section)

    def pytest_html_results_table_html(self, report: pytest.TestReport, data: list[str]) -> None:
        """pytest-html's row details: a skip reads as a sentence, not as a Python tuple, and an
        empty log box is left out."""
        if report.skipped and isinstance(report.longrepr, tuple):
            data[:] = [f"Not tested: {str(report.longrepr[2]).removeprefix('Skipped: ')}."]
        elif data == ["No log output captured."]:
            data.clear()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for reason in self.not_judged.values():
            terminalreporter.write_line(f"kt2conformance: not judged: {reason}", yellow=True)
        if self.leftovers:
            shown = ", ".join(self.leftovers[:10])
            more = f" and {len(self.leftovers) - 10} more" if len(self.leftovers) > 10 else ""
            terminalreporter.write_line(
                f"kt2conformance: {len(self.leftovers)} resources left on the target "
                f"(all listed in {self.reports / 'summary.json'} under leftovers): {shown}{more}",
                yellow=True)
        terminalreporter.write_sep("-", f"summary: {self.reports / 'summary.json'}")
        runner = any(getattr(p, "prints_verdict", False)
                     for p in self.config.pluginmanager.get_plugins())
        if self.outcome is not None and not runner:
            terminalreporter.write_line(f"kt2conformance: {self.outcome['verdict']}",
                                        bold=True, green=self.outcome["conforms"],
                                        red=not self.outcome["conforms"])
