"""A Task's life after creation, as module applications live it: a stored Task is updated through
its statuses, and a Koppeltaal server guards every update with If-Match.

One sequence on one Task (created here from the example Task, deleted at the end):
- valid status transitions (`TRANSITIONS`), each a PUT with `If-Match: W/"<current version>"`:
  accepted, the version increases, and the Task reads back as sent;
- the same kind of update without If-Match: refused (`server/if-match`, production 412);
- one whose If-Match names the version before (stale): refused (`server/stale-version`, 409);
- updates with the current If-Match that break the profile (no status; a status outside its
  required ValueSet): refused (the broken key, 422);
after every refusal the stored version must be the one before it. Each step is a case in the
run's records and reports like any other (ids `lifecycle/...`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kt2conformance._koppeltaal import RESOURCE_ORIGIN_URL
from kt2conformance._vocabulary import Expectation, Verdict
from kt2conformance.run._cases import Case
from kt2conformance.run._report import Outcome
from kt2conformance.run._verdicts import Judgement, judge, judge_read_back
from kt2conformance.target._client import Exchange, FhirClient
from kt2conformance.target._prerequisites import Tracker

# ready -> in-progress -> completed: how a module application moves the Task it was given
TRANSITIONS = ("ready", "in-progress", "completed")
_ETAG = re.compile(r'^(?:W/)?"?([^"]+)"?$')


def version_of(exchange: Exchange) -> str | None:
    """The version an answer names: its ETag (`W/"3"`), else the body's meta.versionId."""
    etag = exchange.response_headers.get("etag", "").strip()
    if etag and (m := _ETAG.match(etag)):
        return m.group(1)
    body = exchange.json
    meta = body.get("meta") if isinstance(body, dict) else None
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return str(version) if version is not None else None


def _newer(after: str | None, before: str | None) -> bool:
    """Whether version `after` comes later than `before` (numbers compared as numbers)."""
    if after is None or before is None:
        return False
    if after.isdigit() and before.isdigit():
        return int(after) > int(before)
    return after != before


class Lifecycle:
    """The sequence on one Task. `record` gets every outcome as it is judged (the engine's)."""

    def __init__(self, client: FhirClient, tracker: Tracker, strict: bool,
                 record: Callable[[Outcome], None]) -> None:
        self.client, self.tracker, self.strict, self.record = client, tracker, strict, record
        self.outcomes: list[Outcome] = []

    def run(self, example_task: dict[str, Any]) -> list[Outcome]:
        start = _without_origin({**example_task, "status": "requested"})
        created = self.client.create(start)
        made = self.tracker.created(created)
        if made is None:
            case = Case("lifecycle/create", Expectation.ACCEPT, None,
                        "create the Task the lifecycle updates", start)
            # a valid Task refused (4xx) or failing the server (5xx) is a finding like any
            # other valid Task's; only an unusable answer leaves the sequence unjudged
            verdict = judge(case, created, self.strict)
            if verdict.passed:
                verdict = Judgement(Verdict.ERROR, f"HTTP {created.status}, but nothing to "
                                    f"update: the answer names no Task it created")
            elif verdict.verdict is Verdict.ERROR:
                verdict = Judgement(Verdict.ERROR, f"could not create the Task to update: "
                                    f"{verdict.reason}")
            self._finish(case, created, verdict)
            return self.outcomes
        task_id = made[1]
        try:
            self._sequence(start, task_id, version_of(created) or version_of(self._read(task_id)))
        finally:
            self.tracker.delete(made)
        return self.outcomes

    def _sequence(self, start: dict[str, Any], task_id: str, version: str | None) -> None:
        first = version
        current = {**start, "id": task_id}
        for status in TRANSITIONS:
            body = {**current, "status": status}
            case = Case(f"lifecycle/{status}", Expectation.ACCEPT, None,
                        f"update the Task's status to {status} with If-Match: accepted, a new "
                        f"version, read back as sent", body)
            version = self._accepted(case, task_id, version)
            current = body
        changed = {**current, "description": "updated without the right If-Match"}
        version = self._refused(Case("lifecycle/no-if-match", Expectation.REJECT, "server/if-match",
                                     "an update without If-Match", changed), task_id, None, version)
        version = self._refused(Case("lifecycle/stale-version", Expectation.REJECT,
                                     "server/stale-version",
                                     f"an update with If-Match of version {first} (stale)", changed),
                                task_id, _etag(first), version)
        no_status = {k: v for k, v in current.items() if k != "status"}
        version = self._refused(Case("lifecycle/breaks-Task.status/min", Expectation.REJECT,
                                     "Task.status/min", "an update without status (If-Match current)",
                                     no_status), task_id, _etag(version), version)
        bad_status = {**current, "status": "not-a-task-status"}
        self._refused(Case("lifecycle/breaks-Task.status/binding", Expectation.REJECT,
                           "Task.status/binding", "an update with a status outside task-status "
                           "(If-Match current)", bad_status), task_id, _etag(version), version)

    def _accepted(self, case: Case, task_id: str, version: str | None) -> str | None:
        """PUT a valid update with the current version; returns the new version."""
        exchange = self.client.update(case.body, if_match=_etag(version))
        verdict = _judge_update(exchange)
        read_back = None
        new = version_of(exchange)
        if verdict.passed:
            read_back = self._read(task_id)
            new = version_of(read_back) or new
            verdict = judge_read_back(case.body, read_back)
            if verdict.passed and not _newer(new, version):
                verdict = Judgement(Verdict.FAIL, f"accepted the update, but the version did not "
                                    f"increase ({version} -> {new})")
        self._finish(case, exchange, verdict, read_back)
        # the next step's baseline is what is stored, also when this step was judged a failure
        # (stored differently, version not increased): else every later step would be stale
        stored = exchange.status is not None and 200 <= exchange.status < 300
        return (new or version) if stored else version

    def _refused(self, case: Case, task_id: str, if_match: str | None,
                 version: str | None) -> str | None:
        """PUT an update that must be refused; the stored version must stay `version`. Returns
        the stored version after it (the next step's baseline, even when this one failed)."""
        exchange = self.client.update(case.body, if_match=if_match)
        verdict = judge(case, exchange, self.strict)
        read_back = self._read(task_id)
        after = version_of(read_back)
        if verdict.verdict is not Verdict.ERROR and after != version:
            verdict = Judgement(Verdict.FAIL, f"{verdict.reason}; the stored Task changed "
                                f"(version {version} -> {after})")
        self._finish(case, exchange, verdict, read_back)
        return after or version

    def _read(self, task_id: str) -> Exchange:
        return self.client.read("Task", task_id)

    def _finish(self, case: Case, exchange: Exchange, verdict: Judgement,
                read_back: Exchange | None = None) -> None:
        outcome = Outcome(case, verdict, exchange, [], read_back)
        self.record(outcome)
        self.outcomes.append(outcome)


def _etag(version: str | None) -> str | None:
    return f'W/"{version}"' if version is not None else None


def _judge_update(exchange: Exchange) -> Judgement:
    """A valid update is accepted with a 2xx (no Location needed, unlike a create)."""
    status = exchange.status
    if status is None or exchange.problem is not None:
        return Judgement(Verdict.ERROR, f"no usable answer: {exchange.error}")
    if 200 <= status < 300:
        return Judgement(Verdict.PASS, f"accepted (HTTP {status})")
    if status >= 500:
        return Judgement(Verdict.FAIL, f"server defect: HTTP {status} (5xx) on a valid update")
    return Judgement(Verdict.FAIL, f"refused a valid update: HTTP {status}")


def _without_origin(task: dict[str, Any]) -> dict[str, Any]:
    """The Task without a resource-origin extension: the server sets its own, and refuses one a
    client sets."""
    extensions = [e for e in task.get("extension", []) if e.get("url") != RESOURCE_ORIGIN_URL]
    rest = {k: v for k, v in task.items() if k != "extension"}
    return {**rest, "extension": extensions} if extensions else rest
