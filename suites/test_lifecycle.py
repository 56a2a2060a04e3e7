"""A stored Task lives on: updates through valid status transitions with If-Match are accepted
(a new version each time, read back as sent); an update without If-Match, with a stale version
or breaking the profile is refused and leaves the stored Task as it was. Runs when the Task
profile is among those selected."""

import pytest


def test_task_lifecycle(kt, extras):
    if not any(p.type == "Task" for p in kt.profiles):
        pytest.skip("the lifecycle suite updates a Task: KT2Task is not selected")
    kt.expect(extras, kt.lifecycle())
