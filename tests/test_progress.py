"""The progress line of a long run: cases done / expected and the rate, on a terminal only."""

from __future__ import annotations

import io

import pytest

from kt2conformance.run import _progress
from kt2conformance.run._progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_line_is_redrawn_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(_progress, "_EVERY_S", 0.0)
    screen = Terminal()
    progress = Progress(10, screen)
    for _ in range(3):
        progress.add()
    drawn = screen.getvalue().split("\r")
    assert drawn[-1].startswith("kt2conformance: 3/10 cases, ") and drawn[-1].endswith("/s")
    progress.close()
    assert screen.getvalue().endswith("\r")
    assert progress.line().startswith("kt2conformance: 3/10 cases")


def test_quiet_in_ci_and_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "_EVERY_S", 0.0)
    monkeypatch.setenv("CI", "true")
    screen = Terminal()
    Progress(5, screen).add(5)
    assert screen.getvalue() == ""
    monkeypatch.delenv("CI")
    log = io.StringIO()  # a pipe or a file
    Progress(5, log).add(5)
    assert log.getvalue() == ""


def test_more_cases_than_expected_raise_the_total() -> None:
    progress = Progress(2, io.StringIO(), enabled=False)
    progress.add(5)
    assert progress.line().startswith("kt2conformance: 5/5 cases")
