"""One conformance run, without pytest: the profile and its constraints, the target (started when
none is given) with its auth, the prerequisites, the thread pool the cases go through, probing
(send, judge, read back, delete, record), shrinking a failing property to its smallest Task,
and at the end cleaning up the target and writing the reports (summary.json here; junit.xml
and report.html's own section through `Reporting`).

Set-up problems (unreachable target, 401/403, prerequisites refused) raise `UsageError`; the
pytest plugin (`_plugin`) turns them into the contract's exit code 2 and presents the outcomes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Any

from hypothesis.strategies import SearchStrategy

from kt2conformance import __version__
from kt2conformance._errors import UsageError
from kt2conformance._koppeltaal import SERVER_RULES, rule
from kt2conformance._signals import SIGNALS
from kt2conformance._vocabulary import Expectation, Problem, StopReason, Verdict
from kt2conformance.generate._covering import Drawn
from kt2conformance.generate._faults import fault_edges
from kt2conformance.generate._strategies import (
    Prerequisites,
    invalid_tasks,
    unviolable,
    valid_tasks,
)
from kt2conformance.generate._values import TaskGenerator, catalogue_for, oracle_for
from kt2conformance.oracle._oracle import Oracle
from kt2conformance.report import BaselineError, RunVerdict, load_baseline
from kt2conformance.run._cases import Case, property_seed, shrink
from kt2conformance.run._options import Options
from kt2conformance.run._progress import Progress
from kt2conformance.run._report import CaseLog, Outcome, Tallies, write_summary
from kt2conformance.run._reporting import Reporting
from kt2conformance.run._verdicts import Judgement, SetupError, judge, judge_read_back
from kt2conformance.spec._constraints import Constraint, derive_constraints
from kt2conformance.spec._profile import Profile, select_profiles
from kt2conformance.target._auth import build_auth
from kt2conformance.target._client import Exchange, FhirClient
from kt2conformance.target._prerequisites import Created, Tracker, create_all, created_id, location_problem
from kt2conformance.target._redact import redact

# Examples per property when --examples is not given: enough to find what a server lets
# through, few enough that a default run against the embedded server takes about a minute.
VALID_EXAMPLES = 25
INVALID_EXAMPLES = 5
# Shrinking a failure to its smallest Task costs requests: against a badly broken server every
# property fails, so each gets at most SHRINK_SECONDS and the whole run SHRINK_RUN_SECONDS;
# failures found after that are shown by their first failing case, without a minimal one.
SHRINK_SECONDS = 15.0
SHRINK_RUN_SECONDS = 120.0
# A target that stops answering would hold a run for cases x --timeout (hours): after this many
# cases in a row without an answer in time (timeouts, a body that never completes, still
# throttled after the retries) the run stops as a set-up error, cleans up and says so.
UNANSWERED_IN_A_ROW = 8
_UNANSWERED = frozenset({Problem.CONNECT_TIMEOUT, Problem.WRITE_TIMEOUT, Problem.READ_TIMEOUT,
                         Problem.BODY_INCOMPLETE, Problem.THROTTLED})
# Rules broken by the request rather than the Task body: the protocol suite covers them.
PROTOCOL_KEYS = frozenset(r.key for r in SERVER_RULES if r.protocol_only)


def budget(items: Iterator[Any], examples: int | None, default: int,
           cover: bool = True) -> Iterator[Drawn]:
    """The covering items of a bulk stream (unless not `cover`), then `examples` random ones
    (without --examples: as many as bring the total to `default`). Plain Tasks count as random
    ones."""
    covering = 0
    for item in items:
        drawn = item if isinstance(item, Drawn) else Drawn(item, (), False)
        if drawn.covering and not cover:
            continue
        if drawn.covering:
            covering += 1
            yield drawn
            continue
        wanted = examples if examples is not None else max(default - covering, 0)
        if wanted <= 0:
            return
        yield drawn
        yield from islice((i if isinstance(i, Drawn) else Drawn(i, (), False) for i in items), wanted - 1)
        return


class Engine:
    """One conformance run: the profiles and their constraints, the target and what was created
    on it, and the record of every case.

    `--profile` may select several profiles (`KT2Device,KT2Task`, `all`): each judgeable one gets
    its valid and invalid properties; KT2Task, when selected, comes first and is `profile`, the
    one summary.json's `profile` names. Constraint keys of different profiles differ (element
    ids start with the type) except the server rules', whose cases of a profile other than
    KT2Task are named `<key>@<profile>` (`server/meta.profile@KT2Device`)."""

    def __init__(self, options: Options) -> None:
        self.options = options
        selected = select_profiles(options.profile)
        # the profiles that cannot be judged, with the one line saying what they would need
        self.not_judged: dict[str, str] = {p.name: p.unjudgeable for p in selected if p.unjudgeable}
        self.profiles: list[Profile] = sorted((p for p in selected if not p.unjudgeable),
                                              key=lambda p: p.type != "Task")
        if not self.profiles:
            raise UsageError(next(iter(self.not_judged.values())))
        self.profile = self.profiles[0]
        self.oracles = {p.type: oracle_for(p) for p in self.profiles}  # the generators' own
        self.oracle = self.oracles[self.profile.type]
        self.constraints: dict[str, Constraint] = {
            c.key: c for p in self.profiles for c in derive_constraints(p)}
        self.reports = Path(options.reports)
        self.log = CaseLog(self.reports)
        baseline = None
        if options.baseline:
            try:
                baseline = (options.baseline, load_baseline(options.baseline))
            except BaselineError as exc:
                raise UsageError(str(exc)) from None
        self.reporting = Reporting(self.profiles, self.oracles, self.constraints, self.reports,
                                   baseline)
        # junit.xml is the engine's own (one testcase per case) unless a caller wants another
        self.junit: Path | None = self.reports / "junit.xml"
        self.skipped: dict[str, str] = {}
        self.outcome: dict[str, Any] | None = None
        self.target: str | None = options.target
        self.client: FhirClient | None = None
        self.tracker: Tracker | None = None
        self.created: Created | None = None
        self.leftovers: list[str] = []
        self._server: Any = None
        self._connected = False
        self._started = datetime.now(UTC)
        self._clock = time.monotonic()
        self._pool = ThreadPoolExecutor(max_workers=options.concurrency)
        self._tallies = Tallies()
        self._shrink_left = SHRINK_RUN_SECONDS
        self.progress: Progress | None = None  # set by whoever knows the expected total
        self._strategies: dict[str, dict[str, SearchStrategy[Any]]] = {}
        self._unanswered = 0  # cases in a row without an answer in time
        self._unanswered_lock = threading.Lock()

    # -- set-up ----------------------------------------------------------------------------------

    def connect(self) -> None:
        """Start the embedded server if needed, check the target, create the prerequisites."""
        if self._connected:
            return
        self._connected = True
        o = self.options
        if self.target is None:
            from kt2conformance.target._server import ReferenceServer, public_key_file

            # The embedded server takes the run's own credentials: the token, or the SMART
            # client (registered with the public half of --private-key), so a run without
            # --target exercises the same authentication as one against a real server.
            smart = o.client_id if o.client_id is not None and o.private_key is not None else None
            key = public_key_file(o.private_key) if smart and o.private_key else None
            # kept before it starts: a stop signal during the start still stops it in finish();
            # the folder the selected profiles come from (a name is not a folder)
            self._server = ReferenceServer(profiles_dir=None if o.profile is None else str(
                self.profile.source.parent), token=o.token or None, smart_client_id=smart, smart_client_key=key)
            self._server.start()
            self.target = self._server.base_url
        auth = build_auth(self.target, o.token, o.client_id, o.private_key, o.alg,
                          o.token_url, o.kid)
        self.client = FhirClient(self.target, auth=auth, allow_production=o.allow_production,
                                 timeout=o.client_timeout, rate=o.rate)
        self.client.check_reachable()
        self.tracker = Tracker(self.client, keep=o.keep)
        self.created = create_all(self.client, self.tracker)

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

    def catalogue(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """What a full run covers: the valid classes by element, the edges by constraint key,
        for every profile judged (empty before the prerequisites exist: nothing was sent)."""
        if self.created is None:
            return {}
        valid: dict[str, tuple[str, ...]] = {}
        left_out: dict[str, tuple[str, ...]] = {}
        invalid: dict[str, tuple[str, ...]] = {}
        generators = {p.url: TaskGenerator(p, self.prereqs) for p in self.profiles}
        for p in self.profiles:
            listed, refused = catalogue_for(p, self.prereqs)
            valid.update(listed)
            left_out.update(refused)
        for p, key in self.invalid_keys():
            edges = tuple(fault_edges(generators[p.url], key))
            if edges:
                invalid[key] = edges
        return {"valid": valid, "invalid": invalid, "valid_left_out": left_out}

    def unviolable_in(self, profile: Profile) -> dict[str, str]:
        """The keys of `profile` no single JSON fault breaks, with the reason."""
        return self.unviolable if profile is self.profile else unviolable(profile)

    def invalid_strategies_of(self, profile: Profile) -> dict[str, SearchStrategy[Any]]:
        if profile is self.profile:
            return self.invalid_strategies
        return self._strategies.setdefault(profile.url, invalid_tasks(profile, self.prereqs))

    def invalid_keys(self) -> list[tuple[Profile, str]]:
        """(profile, key) the invalid suite checks, one test each: all but the protocol faults."""
        return [(p, c.key) for p in self.profiles for c in derive_constraints(p)
                if c.key not in PROTOCOL_KEYS]

    def name_of(self, profile: Profile, key: str | None) -> str:
        """The name a property's test and cases go by: the key (`valid` for the valid
        resources), with `@<profile>` where the key alone does not say the profile: a server
        rule's, or the valid resources of a profile other than the first."""
        if profile is self.profile:
            return key or "valid"
        if key is None:
            return f"valid@{profile.name}"
        return f"{key}@{profile.name}" if rule(key) is not None else key

    def oracle_of(self, body: Any) -> Oracle:
        """The oracle of the profile for the body's resource type (the first profile's else)."""
        kind = body.get("resourceType") if isinstance(body, dict) else None
        return self.oracles.get(kind, self.oracle) if isinstance(kind, str) else self.oracle

    # -- cases -----------------------------------------------------------------------------------

    def check(self, case: Case, exchange: Exchange | None = None) -> Outcome:
        """Judge one case and record it. Without `exchange` the case is sent now (and what it
        creates is deleted right after); with one, that earlier answer (set-up's) is judged."""
        outcome = self._probe(case, exchange)
        self._record(outcome)
        return outcome

    def check_all(self, cases: list[Case]) -> list[Outcome]:
        """Judge the cases, `--concurrency` at a time, and record them in order (so the
        records of a run do not depend on the concurrency)."""
        outcomes = list(self._pool.map(self._probe, cases))
        for outcome in outcomes:
            self._record(outcome)
        return outcomes

    def lifecycle(self) -> list[Outcome]:
        """The Task lifecycle sequence (run/_lifecycle.py): updates with and without If-Match,
        a stale version, updates that break the profile; each step recorded as a case."""
        from kt2conformance.run._lifecycle import Lifecycle

        assert self.client is not None and self.tracker is not None and self.created is not None
        return Lifecycle(self.client, self.tracker, self.options.strict,
                         self._record).run(self.created.example_task)

    def _record(self, outcome: Outcome) -> None:
        """Log the case, and hand it to the reports (which keep a few a constraint in full)."""
        self.log.write(outcome.case, outcome.exchange.status, outcome.verdict)
        self.reporting.record(outcome)
        if self.progress is not None:
            self.progress.add()

    def _probe(self, case: Case, exchange: Exchange | None = None) -> Outcome:
        assert self.client is not None and self.tracker is not None
        sent_now = exchange is None
        if exchange is None:  # to the case's endpoint, whatever resourceType the body claims
            exchange = self.client.post_raw(case.resource_type, case.payload, case.content_type,
                                            authorization=case.authorization)
        base = self.client.base_url
        reused = self.tracker.reused(exchange) if sent_now else None
        made = self.tracker.created(exchange) if sent_now else created_id(exchange, base)
        read_back = None
        try:
            verdict = judge(case, exchange, self.options.strict)
            distrusted = location_problem(exchange, base)
            if distrusted is not None:
                verdict = Judgement(Verdict.ERROR, f"HTTP {exchange.status}, but {distrusted}: "
                                                   f"nothing is deleted on its word")
            elif reused is not None and verdict.verdict is not Verdict.ERROR:
                verdict = Judgement(Verdict.FAIL, f"HTTP {exchange.status}, but {reused} "
                                                  f"(nothing is deleted on its word)")
            if verdict.passed and case.expected is Expectation.ACCEPT and made:
                read_back = self.client.read(*made)
                verdict = judge_read_back(case.body, read_back)
        finally:
            if sent_now and made:
                self.tracker.delete(made)
        if sent_now:
            self._count_unanswered(exchange)
        return Outcome(case, verdict, exchange, self._oracle_keys(case), read_back)

    def _count_unanswered(self, exchange: Exchange) -> None:
        """Stop the run (SetupError: exit 2, incomplete, cleaned up) once UNANSWERED_IN_A_ROW
        cases in a row got no answer in time: a target that hangs or trickles ends the run in
        minutes, not after every case has waited out its timeout."""
        with self._unanswered_lock:
            self._unanswered = self._unanswered + 1 if exchange.problem in _UNANSWERED else 0
            count = self._unanswered
        if count >= UNANSWERED_IN_A_ROW:
            raise SetupError(f"the target stopped answering: {count} requests in a row got no "
                             f"answer in time (the last: {exchange.error}); the run is "
                             f"incomplete")

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
        return sorted({issue.key for issue in self.oracle_of(body).errors(body)})

    def run_property(self, name: str, strategy: SearchStrategy[Any],
                     bulk: Callable[[int], Iterator[Any]], expected: Expectation,
                     constraint: str | None, description: str,
                     resource_type: str = "Task") -> tuple[list[Outcome], Outcome | None]:
        """A property: every Task the strategy draws gets the expected answer. The examples come
        from `bulk` (the same generator driven by a seeded random source: reproducible from
        --seed, and thousands a second, so a large run waits on the server, not on Hypothesis'
        engine), are sent as cases `name#1`..`name#N`, and if any fails, Hypothesis shrinks the
        strategy to a minimal failing Task. When `bulk` yields `Drawn` items, its covering set
        (every class of the catalogue) is always sent and --examples random ones follow (by
        default as many as fill the default budget). Returns the outcomes and that minimal one."""
        default = VALID_EXAMPLES if expected is Expectation.ACCEPT else INVALID_EXAMPLES
        seed = property_seed(self.options.seed, name)
        known = () if constraint is None or rule(constraint) is not None else (constraint,)
        cases = [Case(f"{name}#{i}", expected, constraint, description, drawn.task,
                      resource_type=resource_type, oracle_keys=known, classes=drawn.classes)
                 for i, drawn in enumerate(budget(bulk(seed), self.options.examples, default,
                                                  cover=not self.options.no_cover), 1)]
        count = len(cases)
        outcomes = self.check_all(cases)
        minimal = None
        if any(o.verdict.verdict is Verdict.FAIL for o in outcomes):
            minimal = self._shrink(strategy, count, seed, cases[0])
        if minimal is not None:
            kind = minimal.case.resource_type
            profile = next((p for p in self.profiles if p.type == kind), None)
            if profile is not None and kind not in self.reporting.minimal_valid \
                    and isinstance(minimal.case.body, dict):
                # what report.html shows the minimal failing resource against: the smallest
                # valid one of its profile
                self.reporting.minimal_valid[kind] = shrink(valid_tasks(profile, self.prereqs),
                                                            1, 0, lambda task: True)
            self.reporting.minimal(minimal)
        return outcomes, minimal

    def _shrink(self, strategy: SearchStrategy[Any], count: int, seed: int,
                template: Case) -> Outcome | None:
        """The outcome of the smallest failing Task (not recorded as a case: shrinking probes
        the server many times; the cases are the drawn examples)."""
        if self._shrink_left <= 0:
            return None
        started = time.monotonic()
        deadline = started + min(SHRINK_SECONDS, self._shrink_left)
        last: list[Outcome] = []
        stopped: list[UsageError] = []

        def fails(task: Any) -> bool:
            if stopped:
                return False
            probe = Case(f"{template.id.split('#')[0]}#minimal", template.expected,
                         template.constraint, template.description, task,
                         resource_type=template.resource_type)
            try:
                outcome = self._probe(probe)
            except UsageError as exc:  # not a failure to shrink: stop the run after shrinking
                stopped.append(exc)
                return False
            if outcome.verdict.verdict is Verdict.FAIL:
                last[:] = [outcome]
                return True
            return False

        try:
            found = shrink(strategy, count, seed, fails, deadline)
        finally:
            self._shrink_left -= time.monotonic() - started
        if stopped:
            raise stopped[0]
        return last[0] if found is not None and last else None

    # -- the end ---------------------------------------------------------------------------------

    def finish(self, stopped: str | None = None, reason: StopReason | None = None) -> RunVerdict:
        """Clean up the target, then write summary.json, junit.xml and report.html's section.
        Safe after failures, set-up errors and stop signals: it deletes whatever was created and
        records whatever was judged. `stopped` says why the run ended before every case ran,
        `reason` what kind of stop it was.

        The requests in flight finish within one attempt's timeout (no retries, no rate waits);
        a second stop signal abandons them and the deletes, and what is left is listed in
        summary.json (`leftovers`, full URLs) and on the console. Stopping the embedded server
        and writing the reports are shielded from further signals."""
        leftovers: list[str] | None = None
        try:
            if self.client is not None:
                self.client.hurry()
            try:
                self._pool.shutdown(wait=True, cancel_futures=True)
            except KeyboardInterrupt:  # stopped again: the requests in flight are abandoned
                self._pool.shutdown(wait=False, cancel_futures=True)
                raise
            if self.client is not None:
                self.client.hurry(False)
            if self.tracker is not None and not SIGNALS.repeated:
                leftovers = self.tracker.delete_all()
        except KeyboardInterrupt:
            pass  # a second stop signal: give up the cleanup, say what is left
        with SIGNALS.shielded():
            if leftovers is None:
                leftovers = self.tracker.remaining() if self.tracker is not None else []
            self._record_deletes()
            base = self.client.base_url if self.client is not None else self.target
            self.leftovers = [f"{base}/{made}" for made in leftovers]
            if self.client is not None:
                self.client.close()
            if self._server is not None:
                self._server.stop()
            if reason is None and SIGNALS.first is not None:  # a signal during the cleanup
                reason, stopped = SIGNALS.first, f"stopped by {SIGNALS.first} during the cleanup"
            if SIGNALS.repeated and stopped:
                stopped += f"; stopped again, {len(self.leftovers)} resources left on the target"
            return self._write_reports(stopped, reason)

    def _record_deletes(self) -> None:
        """server/delete: each resource the target still served after answering its DELETE is a
        failing case (and stays listed as left on the target). Confirmed deletes add no case:
        the counts stay those of the Tasks and examples sent."""
        tracker = self.tracker
        if tracker is None or tracker.keep:
            return
        rule_ = rule("server/delete")
        assert rule_ is not None
        key, description = rule_.key, rule_.description
        for n, ((rtype, rid), check) in enumerate(sorted(tracker.kept.items()), 1):
            case = Case(f"{key}#{n}", Expectation.REJECT, key, description, None)
            self._record(Outcome(case, Judgement(
                Verdict.FAIL, f"DELETE {rtype}/{rid} was answered as done, but a read still "
                              f"finds it (HTTP {check.status}): the target kept it"),
                check, []))

    def _write_reports(self, stopped: str | None, reason: StopReason | None) -> RunVerdict:
        if stopped is not None:  # a set-up error may quote what a careless server said
            stopped = redact(stopped)
        self._tallies = Tallies.of(self.log, list(self.constraints))
        duration = round(time.monotonic() - self._clock, 3)
        head = {
            "tool": {"name": "kt2conformance", "version": __version__},
            "target": self.target,
            "profile": {"url": self.profile.url, "version": self.profile.version,
                        "package": self.package()},
            "seed": self.options.seed,
            "started": self._started.isoformat(timespec="seconds"),
            "duration_s": duration,
            "complete": stopped is None,
            "stopped": stopped,
            "stopped_reason": reason.value if reason is not None and stopped else None,
            "leftovers": self.leftovers,
            # beyond the contract's keys: every profile judged, and those that could not be
            "profiles": [{"url": p.url, "version": p.version, "name": p.name}
                         for p in self.profiles],
            "not_judged": self.not_judged,
            "requests": self.client.requests_sent if self.client is not None else 0,
        }
        write_summary(self.reports / "summary.json", head, self._tallies, self.log, self.catalogue())
        verdict = self.reporting.finish(head, self._tallies, self.log, self.skipped, self.junit,
                                        self.options.strict, stopped)
        self.log.close()
        comparison = self.reporting.comparison
        self.outcome = {"target": self.target, "duration_s": duration, "requests": head["requests"],
                        "data_loss": self._tallies.data_loss,
                        "totals": self._tallies.totals, "verdict": verdict.line(),
                        "conforms": verdict.outcome.name == "CONFORMS",
                        "complete": stopped is None, "leftovers": self.leftovers,
                        "baseline": comparison.lines() if comparison else None,
                        "constraints": self._tallies.constraints()}
        return verdict

    def package(self) -> str | None:
        """The profile's package as FHIR writes it, `name#version` (the profile's own version
        says little: KT2Task 0.8.1 ships in koppeltaalv2.00 0.16.2)."""
        name, version = self.profile.package, self.profile.package_version
        return f"{name}#{version}" if name and version else name
