"""The one place that knows the secrets of a run, so that no report, log or reproducer line ever
shows them (docs/contract.md: tokens, private keys and client assertions never appear anywhere).

Two layers, because either alone leaks:
- exact secrets registered as they come into being (the `--token`, each access token obtained,
  each client assertion, the private key PEM text), replaced wherever they occur;
- generic patterns that need no registration: the value of any `Authorization` header, any
  `client_assertion=` / `access_token` value, any JWT-shaped string and any PEM private key block.
"""

from __future__ import annotations

import io
import re
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TextIO

REDACTED = "<redacted>"

# Shorter strings are not searched for in free text: replacing a 3-letter token everywhere would
# mangle reports. Such tokens still only travel in the Authorization header, which is always
# redacted by pattern.
_MIN_SECRET_LEN = 6

_lock = threading.Lock()
_secrets: set[str] = set()

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # "Authorization: Bearer xyz" in curl lines and logs: keep the scheme, hide the credentials
    (re.compile(r"(?i)(authorization\s*:\s*(?:(?:bearer|basic|dpop)\s+)?)[^\s'\"]+"),
     r"\1" + REDACTED),
    # the same header inside a printed dict or JSON: {'Authorization': 'Bearer xyz'}
    (re.compile(r"(?i)([\"']authorization[\"']\s*:\s*[\"'](?:(?:bearer|basic|dpop)\s+)?)"
                r"[^\"']+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(client_assertion=)[^&\s'\"]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(\"(?:access_token|refresh_token|id_token|client_assertion)\"\s*:\s*\")"
                r"[^\"]*"), r"\1" + REDACTED),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
     REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
]


def register_secret(secret: str | bytes | None) -> None:
    """Remember a secret of this run; every later `redact()` hides it."""
    if secret is None:
        return
    text = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
    text = text.strip()
    if len(text) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(text)


def redact(text: str) -> str:
    """`text` with every registered secret and every generically recognised secret replaced."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # longest first: a PEM before its parts
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """A copy of `headers` safe to keep: `Authorization` keeps only its scheme, other values are
    scrubbed of registered secrets."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    safe: dict[str, str] = {}
    for name, value in items:
        if name.lower() in ("authorization", "proxy-authorization"):
            scheme = value.split(" ", 1)[0] if " " in value else ""
            safe[name] = f"{scheme} {REDACTED}".strip()
        else:
            safe[name] = redact(value)
    return safe


class RedactingStream(io.TextIOBase):
    """A text stream (stdout, stderr) that writes everything through `redact`, whole lines at a
    time so a secret is seen in one piece; what `flush()` finds pending goes out redacted too.
    The CLI puts one in front of stdout and stderr, so no message of any path (a set-up error
    quoting the server, pytest's own output) can show a registered secret."""

    def __init__(self, inner: TextIO) -> None:
        super().__init__()
        self.inner = inner
        self._pending = ""
        self._write_lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._write_lock:
            self._pending += text
            if "\n" in self._pending:
                done, _, self._pending = self._pending.rpartition("\n")
                self.inner.write(redact(done + "\n"))
        return len(text)

    def flush(self) -> None:
        with self._write_lock:
            if self._pending:
                self.inner.write(redact(self._pending))
                self._pending = ""
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", None) or "utf-8"

    def writable(self) -> bool:
        return True


@contextmanager
def redacted_output() -> Iterator[None]:
    """stdout and stderr through `RedactingStream` for the duration (flushed at the end)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed pipe: nothing more to say
        sys.stdout, sys.stderr = out, err
