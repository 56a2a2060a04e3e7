"""Valid KT2Tasks are accepted: 2xx with a Location header, and read back as they were sent
(apart from what the server manages). A refused valid Task makes the target over-strict."""

from kt2conformance._vocabulary import Expectation
from kt2conformance.generate._strategies import generate_valid, valid_tasks


def test_valid_tasks_are_accepted(kt, extras):
    strategy = valid_tasks(kt.profile, kt.prereqs)
    kt.check_property(extras, "valid", strategy, lambda seed: generate_valid(kt.profile, kt.prereqs, seed),
                      Expectation.ACCEPT, None, "a valid KT2Task: must be accepted and stored as sent")
