"""The pytest plugin behind the conformance suites (registered through the `pytest11` entry point).

It adds the `--kt-` options (the options of `kt2conformance run`, CONTRACT.md) and, when the
suites in `suites/` are run, a `Harness` for the session: it starts the embedded reference server
when no `--kt-target` is given, creates the prerequisite resources, runs cases for the suites
(send, judge, read back, delete, record), and at the end deletes what it made and writes the
reports: report.html and junit.xml through pytest-html and pytest's JUnit writer (defaulted into
the reports folder), summary.json itself. Other pytest runs in the same environment (the
project's own tests) see only the options: the plugin stays inert.

Set-up problems (unreachable target, 401/403, prerequisites refused) end the run at once through
`pytest.exit` with exit status 2 and one message, which `outcome_of` hands to `run`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import cached_property
from itertools import islice
from html import escape
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis.strategies import SearchStrategy

from kt2conformance import __version__
from kt2conformance import _paths as paths
from kt2conformance.target._auth import build_auth
from kt2conformance.run._cases import ACCEPT, Case, property_seed, shrink
from kt2conformance.target._client import Exchange, FhirClient
from kt2conformance.spec._constraints import Constraint, derive_constraints
from kt2conformance._errors import UsageError
from kt2conformance.generate._values import oracle_for
from kt2conformance.target._prerequisites import Created, Tracker, create_all, created_id
from kt2conformance.spec._profile import load_profile
from kt2conformance.target._redact import redact
from kt2conformance.run._report import CaseLog, Outcome, Tallies, case_html, matrix_html, write_summary
from kt2conformance.run._runner import check_counts, client_timeout, run_options
from kt2conformance.generate._strategies import Prerequisites, invalid_tasks, unviolable
from kt2conformance.run._verdicts import FAIL, PASS, judge, judge_read_back, outcome_elements

HARNESS = pytest.StashKey["Harness"]()
SETUP_ERROR = pytest.StashKey[str]()
SETUP_EXIT = 2  # the contract's exit code for set-up errors, also under plain pytest
# Examples per property when --kt-examples is not given: enough to find what a server lets
# through, few enough that a default run against the embedded server takes about a minute.
VALID_EXAMPLES = 25
INVALID_EXAMPLES = 5
# Rules broken by the request rather than the Task body: the protocol suite covers them.
# Passing cases a test shows in full in report.html (failures are always shown).
DETAILED_PASSES = 3
PROTOCOL_KEYS = frozenset({"server/content-type", "server/json-syntax"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kt2conformance", "Koppeltaal 2.0 conformance suites")
    for name, kwargs in run_options():
        group.addoption(f"--kt-{name}", dest=_dest(name), **kwargs)


def _dest(name: str) -> str:
    return "kt_" + name.replace("-", "_")


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
    """Set up the harness before pytest-html and the JUnit writer read their paths, so that both
    reports land in the reports folder unless --html / --junitxml say otherwise."""
    if not _runs_suites(config):
        return
    options = argparse.Namespace(**{name.replace("-", "_"): config.getoption(_dest(name))
                                    for name, _ in run_options()})
    try:
        check_counts(options.examples, options.concurrency, options.timeout, options.rate)
        harness = Harness(config, options)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from None
    if not config.option.htmlpath:
        config.option.htmlpath = str(harness.reports / "report.html")
        config.option.self_contained_html = True
    if not config.option.xmlpath:
        config.option.xmlpath = str(harness.reports / "junit.xml")
    config.stash[HARNESS] = harness
    config.pluginmanager.register(harness, "kt2conformance-harness")


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


class Harness:
    """One conformance run: the profile and its constraints, the target and what was created on
    it, and the record of every case. Also a pytest plugin (registered only for suite runs)."""

    def __init__(self, config: pytest.Config, options: argparse.Namespace) -> None:
        self.config = config
        self.options = options
        self.profile = load_profile(options.profile)
        self.oracle = oracle_for(self.profile)  # the one the generators use too
        self.constraints: dict[str, Constraint] = {
            c.key: c for c in derive_constraints(self.profile)}
        self.reports = Path(options.reports)
        self.log = CaseLog(self.reports)
        self.skipped: dict[str, str] = {}
        self.outcome: dict[str, Any] | None = None
        self.target: str | None = options.target
        self.client: FhirClient | None = None
        self.tracker: Tracker | None = None
        self.created: Created | None = None
        self._server: Any = None
        self._connected = False
        self._started = datetime.now(timezone.utc)
        self._clock = time.monotonic()
        self._pool = ThreadPoolExecutor(max_workers=options.concurrency)
        self._tallies = Tallies()
        self._leftovers: list[str] = []
        self._refused_at: Counter[str] = Counter()

    # -- set-up ----------------------------------------------------------------------------------

    def connect(self) -> None:
        """Start the embedded server if needed, check the target, create the prerequisites."""
        if self._connected:
            return
        self._connected = True
        o = self.options
        with self._setup_errors_stop_the_run():
            if self.target is None:
                from kt2conformance.target._server import ReferenceServer

                self._server = ReferenceServer(profiles_dir=o.profile).start()
                self.target = self._server.base_url
            auth = build_auth(self.target, o.token, o.client_id, o.private_key, o.alg,
                              o.token_url, o.kid)
            self.client = FhirClient(self.target, auth=auth, allow_production=o.allow_production,
                                     timeout=client_timeout(o.timeout), rate=o.rate)
            self.client.check_reachable()
            self.tracker = Tracker(self.client, keep=o.keep)
            self.created = create_all(self.client, self.tracker)

    @contextmanager
    def _setup_errors_stop_the_run(self) -> Iterator[None]:
        try:
            yield
        except UsageError as exc:
            self.config.stash[SETUP_ERROR] = str(exc)
            pytest.exit(f"kt2conformance: {exc}", returncode=SETUP_EXIT)

    @property
    def prereqs(self) -> Prerequisites:
        assert self.created is not None
        return self.created.prereqs

    @cached_property
    def unviolable(self) -> dict[str, str]:
        return unviolable(self.profile)

    @cached_property
    def invalid_strategies(self) -> dict[str, SearchStrategy[Any]]:
        return invalid_tasks(self.profile, self.prereqs)

    def invalid_keys(self) -> list[str]:
        """The keys the invalid suite checks, one test each: all but the protocol faults."""
        return [key for key in self.constraints if key not in PROTOCOL_KEYS]

    def skip(self, key: str, reason: str) -> NoReturn:
        """Skip a constraint's test, keeping the reason for the matrix."""
        self.skipped[key] = reason
        pytest.skip(reason)

    # -- cases -----------------------------------------------------------------------------------

    def check(self, case: Case, exchange: Exchange | None = None) -> Outcome:
        """Judge one case and record it. Without `exchange` the case is sent now (and what it
        creates is deleted right after); with one, that earlier answer (set-up's) is judged."""
        with self._setup_errors_stop_the_run():
            outcome = self._probe(case, exchange)
        self._record(outcome)
        return outcome

    def check_all(self, cases: list[Case]) -> list[Outcome]:
        """Judge the cases, `--kt-concurrency` at a time, and record them in order (so the
        records of a run do not depend on the concurrency)."""
        with self._setup_errors_stop_the_run():
            outcomes = list(self._pool.map(self._probe, cases))
        for outcome in outcomes:
            self._record(outcome)
        return outcomes

    def _record(self, outcome: Outcome) -> None:
        """Log the case; for a refused valid resource also count where the server's
        OperationOutcome points, so the matrix can say what the target is over-strict about."""
        self.log.write(outcome.case, outcome.exchange.status, outcome.verdict)
        if outcome.case.expected == ACCEPT and outcome.verdict.verdict == FAIL:
            self._refused_at.update(outcome_elements(outcome.exchange.json))

    def _probe(self, case: Case, exchange: Exchange | None = None) -> Outcome:
        assert self.client is not None and self.tracker is not None
        sent_now = exchange is None
        if sent_now:  # to the case's endpoint, whatever resourceType the body claims
            exchange = self.client.post_raw(case.resource_type, case.payload, case.content_type)
        made = self.tracker.created(exchange) if sent_now else created_id(exchange)
        read_back = None
        try:
            verdict = judge(case, exchange, self.options.strict)
            if verdict.passed and case.expected == ACCEPT and made:
                read_back = self.client.read(*made)
                verdict = judge_read_back(case.body, read_back)
        finally:
            if sent_now and made:
                self.tracker.delete(made)
        return Outcome(case, verdict, exchange, self._oracle_keys(case), read_back)

    def _oracle_keys(self, case: Case) -> list[str]:
        """What the local oracle finds wrong with what was sent (the constraint keys it breaks)."""
        if case.oracle_keys is not None:
            return list(case.oracle_keys)
        body = case.body
        if case.text is not None:
            try:
                body = json.loads(case.text)
            except ValueError:
                return ["not JSON"]
        return sorted({issue.key for issue in self.oracle.errors(body)})

    def check_property(self, extras: list[Any], name: str, strategy: SearchStrategy[Any],
                       bulk: Callable[[int], Iterator[Any]], expected: str, constraint: str | None,
                       description: str) -> None:
        """A property: every Task the strategy draws gets the expected answer. The examples come
        from `bulk` (the same generator driven by a seeded random source: reproducible from
        --kt-seed, and thousands a second, so a large run waits on the server, not on Hypothesis'
        engine), are sent as cases `name#1`..`name#N`, and if any fails, Hypothesis shrinks the
        strategy to a minimal failing Task, shown in the report."""
        count = self.options.examples or (VALID_EXAMPLES if expected == ACCEPT
                                          else INVALID_EXAMPLES)
        seed = property_seed(self.options.seed, name)
        known = () if constraint is None or constraint.startswith("server/") else (constraint,)
        cases = [Case(f"{name}#{i}", expected, constraint, description, task, oracle_keys=known)
                 for i, task in enumerate(islice(bulk(seed), count), 1)]
        outcomes = self.check_all(cases)
        minimal = None
        if any(o.verdict.verdict == FAIL for o in outcomes):
            minimal = self._shrink(strategy, count, seed, cases[0])
        self.expect(extras, outcomes, minimal)

    def _shrink(self, strategy: SearchStrategy[Any], count: int, seed: int,
                template: Case) -> Outcome | None:
        """The outcome of the smallest failing Task (not recorded as a case: shrinking probes
        the server many times; the cases are the drawn examples)."""
        last: list[Outcome] = []
        stopped: list[UsageError] = []

        def fails(task: Any) -> bool:
            if stopped:
                return False
            probe = Case(f"{template.id.split('#')[0]}#minimal", template.expected,
                         template.constraint, template.description, task)
            try:
                outcome = self._probe(probe)
            except UsageError as exc:  # not a failure to shrink: stop the run after shrinking
                stopped.append(exc)
                return False
            if outcome.verdict.verdict == FAIL:
                last[:] = [outcome]
                return True
            return False

        found = shrink(strategy, count, seed, fails)
        if stopped:
            with self._setup_errors_stop_the_run():
                raise stopped[0]
        return last[0] if found is not None and last else None

    def expect(self, extras: list[Any], outcomes: list[Outcome],
               minimal: Outcome | None = None) -> None:
        """Show the cases in the report and fail the test when any of them did not pass.

        The report details every case that did not pass, but only the first few that did
        (DETAILED_PASSES a test): pytest-html holds every detail in memory until the end, and a
        nightly run sends tens of thousands of cases. summary.json lists them all."""
        from pytest_html import extras as html_extras

        passed = 0
        for outcome in outcomes:
            passed += outcome.verdict.verdict == PASS
            if outcome.verdict.verdict != PASS or passed <= DETAILED_PASSES:
                extras.append(html_extras.html(case_html(outcome)))
        if passed > DETAILED_PASSES:
            extras.append(html_extras.html(
                f"<p>{passed - DETAILED_PASSES} more passing cases, not shown: "
                f"see summary.json.</p>"))
        if minimal is not None:
            extras.append(html_extras.html(case_html(minimal, "minimal failing example")))
        bad = [o for o in outcomes if o.verdict.verdict != PASS]
        if not bad:
            return
        lines = [f"{o.case.id}: {o.verdict.verdict}: {o.verdict.reason}" for o in bad[:5]]
        if len(bad) > 5:
            lines.append(f"... and {len(bad) - 5} more")
        if minimal is not None:
            lines.append(f"minimal failing example: {json.dumps(minimal.case.body)}")
        # the message goes into junit.xml and report.html as is: a reason may quote what the
        # server said, and a careless server quotes the credentials back
        pytest.fail(redact(f"{len(bad)} of {len(outcomes)} cases did not pass\n"
                           + "\n".join(lines)), pytrace=False)

    # -- the end ---------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Clean up the target, then write summary.json (before pytest-html renders, which asks
        for the matrix). Runs after failures, pytest.exit and Ctrl-C too."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._leftovers = self.tracker.delete_all() if self.tracker else []
        if self.client is not None:
            self.client.close()
        if self._server is not None:
            self._server.stop()
        self._tallies = Tallies.of(self.log, list(self.constraints))
        duration = round(time.monotonic() - self._clock, 3)
        head = {
            "tool": {"name": "kt2conformance", "version": __version__},
            "target": self.target,
            "profile": {"url": self.profile.url, "version": self.profile.version,
                        "package": self._package()},
            "seed": self.options.seed,
            "started": self._started.isoformat(timespec="seconds"),
            "duration_s": duration,
        }
        write_summary(self.reports / "summary.json", head, self._tallies, self.log)
        self.log.close()
        self.outcome = {"target": self.target, "duration_s": duration,
                        "totals": self._tallies.totals, "valid_refused": self._tallies.valid.failed,
                        "constraints": self._tallies.constraints()}

    def _package(self) -> str | None:
        """The profile's package as FHIR writes it, `name#version` (the profile's own version
        says little: KT2Task 0.8.1 ships in koppeltaalv2.00 0.16.2)."""
        name, version = self.profile.package, self.profile.package_version
        return f"{name}#{version}" if name and version else name

    def pytest_html_report_title(self, report: Any) -> None:
        report.title = "Koppeltaal 2.0 conformance report"

    def pytest_html_results_summary(self, prefix: list[str], summary: list[str],
                                    postfix: list[str], session: pytest.Session) -> None:
        """The constraint matrix goes on top of the report."""
        profile = f"{self.profile.url}|{self.profile.version} ({self._package()})"
        prefix.append(f"<p>target <code>{escape(str(self.target))}</code>, profile "
                      f"<code>{escape(profile)}</code>, seed {self.options.seed}"
                      f"{', strict' if self.options.strict else ''}</p>")
        descriptions = {key: c.description for key, c in self.constraints.items()}
        prefix.append(matrix_html(self._tallies, descriptions, self.skipped, self._refused_at))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self._leftovers:
            terminalreporter.write_line(
                f"kt2conformance: could not delete {len(self._leftovers)} resources from the "
                f"target: {', '.join(self._leftovers[:10])}", yellow=True)
        terminalreporter.write_sep("-", f"summary: {self.reports / 'summary.json'}")

