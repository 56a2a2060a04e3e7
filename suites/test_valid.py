"""Valid resources of each selected profile (KT2Task by default) are accepted: 2xx with a Location
header, and read back as they were sent (apart from what the server manages). A refused valid
resource makes the target over-strict."""

from kt2conformance._vocabulary import Expectation
from kt2conformance.generate._covering import covering_valid
from kt2conformance.generate._strategies import valid_tasks
from kt2conformance.run._plugin import HARNESS


def pytest_generate_tests(metafunc):
    if "profile" in metafunc.fixturenames:
        harness = metafunc.config.stash.get(HARNESS, None)
        profiles = harness.profiles if harness else []
        metafunc.parametrize("profile", profiles, ids=[p.name for p in profiles])


def test_valid_tasks_are_accepted(kt, extras, profile):
    strategy = valid_tasks(profile, kt.prereqs)
    kt.check_property(extras, kt.name_of(profile, None), strategy,
                      lambda seed: covering_valid(profile, kt.prereqs, seed),
                      Expectation.ACCEPT, None,
                      f"a valid {profile.name}: must be accepted and stored as sent", profile.type)
