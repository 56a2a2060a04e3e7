"""Progress of a long run on a terminal: one line, rewritten in place at most twice a second,
with the cases judged, the expected total and the rate (`412/935 cases, 38.2/s`). Quiet when
stderr is not a terminal or a CI system is detected (`CI` set, as GitHub Actions, GitLab CI and
most others do): logs stay clean."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress"]

_EVERY_S = 0.5


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None,
                 enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = self.stream.isatty() and not os.environ.get("CI")
        self.enabled = enabled
        self.total = total
        self.done = 0
        self._started = time.monotonic()
        self._shown = 0.0
        self._lock = threading.Lock()
        self._width = 0

    def add(self, cases: int = 1) -> None:
        """Count judged cases; redraw the line when it is due."""
        with self._lock:
            self.done += cases
            now = time.monotonic()
            if not self.enabled or now - self._shown < _EVERY_S:
                return
            self._shown = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self._started, 1e-9)
        total = max(self.total, self.done)
        return f"kt2conformance: {self.done}/{total} cases, {self.done / elapsed:.1f}/s"

    def _draw(self, now: float) -> None:
        text = self.line(now)
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        """Clear the line, so the run's own output starts on a clean one."""
        with self._lock:
            if self.enabled and self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
                self._width = 0
