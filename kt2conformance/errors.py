"""Errors that end a command with exit code 2 and a one-line message (never a traceback)."""


class UsageError(Exception):
    """Unusable input or set-up: a missing file, non-JSON, an unreadable profile, an unreachable
    target. The message is shown as one line; the exit code is 2 (CONTRACT.md)."""
