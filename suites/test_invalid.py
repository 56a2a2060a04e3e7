"""Every constraint of the profile is enforced: Tasks that break exactly that one constraint are
refused with a 4xx (with --strict: 422 and an OperationOutcome). One test per constraint key, so
the JUnit and HTML reports have a row per constraint; a key no JSON Task can break alone is
skipped with the reason."""

from kt2conformance._vocabulary import Expectation
from kt2conformance.generate._strategies import generate_invalid
from kt2conformance.run._plugin import HARNESS


def pytest_generate_tests(metafunc):
    if "key" in metafunc.fixturenames:
        harness = metafunc.config.stash.get(HARNESS, None)
        keys = harness.invalid_keys() if harness else []
        metafunc.parametrize("key", keys, ids=keys)


def test_invalid_task_is_refused(kt, extras, key):
    constraint = kt.constraints[key]
    if constraint.severity != "error":
        kt.skip(key, "a warning (SHOULD): a server may accept a Task that breaks it")
    if key in kt.unviolable:
        kt.skip(key, kt.unviolable[key])
    strategy = kt.invalid_strategies.get(key)
    if strategy is None:
        kt.skip(key, "no generator breaks it alone")
    kt.check_property(extras, key, strategy, lambda seed: generate_invalid(kt.profile, key, kt.prereqs, seed),
                      Expectation.REJECT, key, constraint.description)
