"""The official examples are accepted: each prerequisite resource from fixtures/ and the example
Task (created at set-up, before any other Task) got a 2xx with a Location and reads back as sent."""

import pytest

from kt2conformance._vocabulary import Expectation
from kt2conformance.run._cases import Case
from kt2conformance.target._prerequisites import EXAMPLE_TASK, fixture_files

NAMES = [path.stem for path in fixture_files()] + [EXAMPLE_TASK.stem]


@pytest.mark.parametrize("name", NAMES, ids=NAMES)
def test_example_is_accepted(kt, extras, name):
    exchange = kt.created.exchanges[name]
    body = kt.created.sent[name]
    case = Case(f"example/{name}", Expectation.ACCEPT, None, "official example resource", body,
                resource_type=body["resourceType"])
    kt.expect(extras, [kt.check(case, exchange)])
