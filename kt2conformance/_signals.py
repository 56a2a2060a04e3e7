"""Stop signals during a run: SIGTERM (a cancelled or timed-out CI job) and SIGHUP (a closed
terminal) are handled like SIGINT (Ctrl-C), so every way a run is stopped ends the same way: the
requests in flight finish or are abandoned, what the run created is deleted, the embedded server
is stopped and the reports say the run is incomplete. The exit code is 128 + the signal's number
(130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).

The first signal raises `Stopped` (a KeyboardInterrupt, which pytest and the engine already treat
as Ctrl-C) in the main thread. A further signal during the cleanup raises `Stopped` again, which
the cleanup takes as "give up": it stops deleting and reports what is left and where. Inside a
`shielded()` block (stopping the embedded server, writing the reports) signals are only noted,
so the last steps always complete.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from kt2conformance._vocabulary import StopReason

__all__ = ["SIGNALS", "Stopped", "StopSignals"]

_HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_REASONS = {signal.SIGINT: StopReason.SIGINT, signal.SIGTERM: StopReason.SIGTERM,
            signal.SIGHUP: StopReason.SIGHUP}


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; `again` when it is not the first."""

    def __init__(self, signum: int, again: bool) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.again = again


class StopSignals:
    """The handlers for one process. `install()` and `restore()` bracket a run (nested calls
    count, so the CLI and the pytest plugin can both install them)."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, object] = {}
        self._depth = 0
        self._shielded = 0

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        if self._depth == 0:
            self.received.clear()
            for signum in _HANDLED:
                self._previous[signum] = signal.signal(signum, self._handle)
        self._depth += 1

    def restore(self) -> None:
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)  # type: ignore[arg-type]
            self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._shielded:
            return
        raise Stopped(signum, again=len(self.received) > 1)

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """Signals arriving inside the block are noted, not raised."""
        self._shielded += 1
        try:
            yield
        finally:
            self._shielded -= 1

    @property
    def first(self) -> StopReason | None:
        """What stopped the run first, if a signal did."""
        return _REASONS[signal.Signals(self.received[0])] if self.received else None

    @property
    def repeated(self) -> bool:
        """Whether a second signal came (the cleanup was given up)."""
        return len(self.received) > 1

    def exit_code(self, default: int = 130) -> int:
        """128 + the first signal's number (the shell's convention), `default` without one."""
        return 128 + self.received[0] if self.received else default


SIGNALS = StopSignals()
