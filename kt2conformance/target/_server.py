"""Starts and stops the embedded reference Koppeltaal server (`reference_server/server.js`, Node).

The harness needs a server that behaves like the production Koppeltaal HAPI server to test itself
and to give `kt2conformance run` a default target. No Java FHIR server installs here, so the
reference server is a small Node process; this module owns its life cycle: it starts node in its
own process group, waits until it listens, and kills the whole group when done, also when the
interpreter exits, so no server outlives a test run.
"""

from __future__ import annotations

import atexit
import collections
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType

import httpx

from kt2conformance._errors import UsageError
from kt2conformance._paths import REFERENCE_SERVER_DIR

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
MIN_NODE = (20, 19)
_FIRST_LINE = re.compile(r"^Serving FHIR R4 at (http://\S+/fhir)$")
_ERROR_PREFIX = "reference server: "


class ReferenceServer:
    """One reference server process. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        profiles_dir: str | Path | None = None,
        echo_stderr: bool = False,
    ) -> None:
        """port 0 lets the server pick a free port; profiles_dir (a folder, or a file whose
        folder is loaded) replaces the vendored KT2 profile; echo_stderr passes the server's
        diagnostics through to our stderr once it runs (for `serve`) instead of only keeping the
        last lines."""
        self.host = host
        self.port = port
        self.token = token
        self.profiles_dir = Path(profiles_dir) if profiles_dir is not None else None
        self.echo_stderr = echo_stderr
        self._process: subprocess.Popen[str] | None = None
        self._base_url: str | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._threads: list[threading.Thread] = []
        self._echo = False

    @property
    def base_url(self) -> str:
        """FHIR base, e.g. http://127.0.0.1:PORT/fhir (with the port the server really got)."""
        if self._base_url is None:
            raise UsageError("reference server is not running: call start() first")
        return self._base_url

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> ReferenceServer:
        """Launches node and returns once GET /metadata answers; raises UsageError otherwise."""
        if self._process is not None:
            return self
        command = self._command()
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            start_new_session=True,  # own process group: stop() can kill node and anything it spawns
        )
        atexit.register(self.stop)
        first_line: queue.Queue[str] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._drain_stdout, args=(first_line,), daemon=True),
            threading.Thread(target=self._drain_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        try:
            line = first_line.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            self.stop()
            raise UsageError(
                f"reference server did not start within {START_TIMEOUT_S:.0f} s{self._why()}"
            ) from None
        match = _FIRST_LINE.match(line)
        if match is None:
            self.stop()  # also waits for stderr to be read, so the server's reason is known
            raise UsageError(f"reference server failed to start{self._why()}")
        self._base_url = match.group(1)
        self._check_metadata()
        if self.echo_stderr:  # from now on; start-up trouble is already in the UsageError
            sys.stderr.writelines(f"{line}\n" for line in self.stderr_tail())
            self._echo = True
        return self

    def stop(self) -> None:
        """Terminates the process group (SIGTERM, then SIGKILL); safe to call more than once."""
        process, self._process = self._process, None
        self._base_url = None
        atexit.unregister(self.stop)
        if process is None:
            return
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        for thread in self._threads:  # they end at EOF, now that the whole group is gone
            thread.join(timeout=STOP_TIMEOUT_S)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def wait(self) -> int:
        """Blocks until the server process ends; returns its exit code."""
        if self._process is None:
            raise UsageError("reference server is not running: call start() first")
        return self._process.wait()

    def stderr_tail(self) -> list[str]:
        """The server's last stderr lines (start-up errors, internal errors)."""
        return list(self._stderr_tail)

    def __enter__(self) -> ReferenceServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self) -> list[str]:
        node = shutil.which("node")
        if node is None:
            raise UsageError("Node.js not found: install Node 20")
        _check_node_version(node)
        if not (REFERENCE_SERVER_DIR / "node_modules" / "@medplum" / "fhir-router").is_dir():
            raise UsageError(
                "reference server modules not installed: run npm ci --prefix reference_server"
            )
        command = [node, str(REFERENCE_SERVER_DIR / "server.js"), "--host", self.host,
                   "--port", str(self.port)]
        if self.token is not None:
            command += ["--token", self.token]
        if self.profiles_dir is not None:
            if not self.profiles_dir.exists():
                raise UsageError(f"profile not found: {self.profiles_dir}")
            command += ["--profiles", str(self.profiles_dir.resolve())]
        return command

    def _drain_stdout(self, first_line: queue.Queue[str]) -> None:
        """Hands over the first line, then keeps the pipe empty so node never blocks on it."""
        assert self._process is not None and self._process.stdout is not None
        stream = self._process.stdout
        first_line.put(stream.readline().rstrip("\n"))
        for _ in stream:
            pass

    def _drain_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            self._stderr_tail.append(line.rstrip("\n"))
            if self._echo:
                sys.stderr.write(line)

    def _why(self) -> str:
        """The server's own one-line reason, e.g. 'port 8080 is in use: choose another --port'."""
        lines = [line for line in self._stderr_tail if line.strip()]
        if not lines:
            return ""
        return ": " + lines[-1].removeprefix(_ERROR_PREFIX)

    def _check_metadata(self) -> None:
        headers = {"Accept": "application/fhir+json"}
        try:
            response = httpx.get(f"{self.base_url}/metadata", headers=headers, timeout=10.0)
        except httpx.HTTPError as exc:
            self.stop()
            raise UsageError(f"reference server does not answer GET /metadata: {exc}") from exc
        if response.status_code != 200:
            self.stop()
            raise UsageError(f"reference server answered GET /metadata with {response.status_code}")


def _check_node_version(node: str) -> None:
    """Medplum 4.5 needs Node ^20.19 or >=22.12; an older node fails with obscure errors."""
    result = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
    match = re.match(r"v(\d+)\.(\d+)", result.stdout.strip())
    if match is None or (int(match.group(1)), int(match.group(2))) < MIN_NODE:
        found = result.stdout.strip() or "unknown version"
        raise UsageError(f"Node.js {found} is too old: install Node 20 (20.19 or newer)")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def serve(host: str, port: int, token: str | None, profile: str | None) -> int:
    """`kt2conformance serve`: runs the server in the foreground until SIGINT or SIGTERM (exit 0).

    Prints the server's own first line so scripts can read the URL, exactly as from node."""
    server = ReferenceServer(host=host, port=port, token=token, profiles_dir=profile,
                             echo_stderr=True)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()
        if server.pid is not None:
            _signal_group(server.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(f"Serving FHIR R4 at {server.base_url}", flush=True)
        code = server.wait()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopping.is_set():
        return 0
    print(f"kt2conformance: reference server stopped unexpectedly (exit {code})", file=sys.stderr)
    return 1
