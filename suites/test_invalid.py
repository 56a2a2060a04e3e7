"""Every constraint of each selected profile is enforced: resources that break exactly that one
constraint are refused with a 4xx (with --strict: 422 and an OperationOutcome). One test per
(profile, constraint key), so the reports have a row per constraint; a key no JSON resource can
break alone is skipped with the reason."""

from kt2conformance._vocabulary import Expectation
from kt2conformance.generate._covering import covering_invalid
from kt2conformance.run._plugin import HARNESS


def pytest_generate_tests(metafunc):
    if "key" in metafunc.fixturenames:
        harness = metafunc.config.stash.get(HARNESS, None)
        pairs = harness.invalid_keys() if harness else []
        metafunc.parametrize(("profile", "key"), pairs,
                             ids=[harness.name_of(p, k) for p, k in pairs] if harness else [])


def test_invalid_task_is_refused(kt, extras, profile, key):
    constraint = kt.constraints[key]
    name = kt.name_of(profile, key)
    if constraint.severity != "error":
        kt.skip(key, "a warning (SHOULD): a server may accept a resource that breaks it")
    unviolable = kt.unviolable_in(profile)
    if key in unviolable:
        kt.skip(key, unviolable[key])
    strategy = kt.invalid_strategies_of(profile).get(key)
    if strategy is None:
        kt.skip(key, "no generator breaks it alone")
    kt.check_property(extras, name, strategy,
                      lambda seed: covering_invalid(profile, key, kt.prereqs, seed),
                      Expectation.REJECT, key, constraint.description, profile.type)
