"""Starts and stops the embedded reference Koppeltaal server (`reference_server/`, Java).

The harness needs a server that behaves like the production Koppeltaal server to test itself and
to give `kt2conformance run` a default target: production's own stack, HAPI FHIR 8.2 with the
Koppeltaal server's layers, built with Maven into `reference_server/target/`. This module finds
(or builds) the jar and owns the server's life cycle: it starts java in its own process group,
waits until it listens, and kills the whole group when done, also when the interpreter exits, so
no server outlives a test run.
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
import tempfile
import threading
from pathlib import Path
from types import TracebackType

import httpx

from kt2conformance._errors import UsageError
from kt2conformance._paths import DEFAULT_PROFILE_DIR, REFERENCE_SERVER_DIR

START_TIMEOUT_S = 90.0  # a JVM on a busy 2-core machine; a healthy start takes seconds
STOP_TIMEOUT_S = 5.0
BUILD_TIMEOUT_S = 900.0
MIN_JAVA = 17
JAR = REFERENCE_SERVER_DIR / "target" / "kt2-reference-server.jar"
CLASS_ARCHIVE = REFERENCE_SERVER_DIR / "target" / "kt2-reference-server.jsa"
# C1 only and the serial collector: the server starts and validates sooner, and a few hundred
# MiB of heap hold R4 core and the KT2 definitions with room to spare.
JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx768m", "-Xss1m")
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
        smart_client_id: str | None = None,
        smart_client_key: str | Path | None = None,
        token_lifetime: int | None = None,
    ) -> None:
        """port 0 lets the server pick a free port; profiles_dir (a folder, or a file whose
        folder is loaded) replaces the vendored KT2 profile; echo_stderr passes the server's
        diagnostics through to our stderr once it runs (for `serve`) instead of only keeping the
        last lines. SMART mode: smart_client_id registers one client whose public key (PEM or
        JWKS file) is smart_client_key; its access tokens live token_lifetime seconds."""
        self.host = host
        self.port = port
        self.token = token
        self.smart_client_id = smart_client_id
        self.smart_client_key = Path(smart_client_key) if smart_client_key is not None else None
        self.token_lifetime = token_lifetime
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
        """Launches java and returns once GET /metadata answers; raises UsageError otherwise."""
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
            start_new_session=True,  # own process group: stop() can kill java and anything it spawns
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
        java = find_java()
        jar = ensure_jar()
        command = [java, *JVM_OPTIONS]
        if CLASS_ARCHIVE.is_file():
            command += [f"-XX:SharedArchiveFile={CLASS_ARCHIVE}", "-Xshare:auto"]
        command += ["-jar", str(jar), "--host", self.host, "--port", str(self.port)]
        if self.token is not None:
            command += ["--token", self.token]
        if self.smart_client_id is not None:
            if self.smart_client_key is None or not self.smart_client_key.is_file():
                raise UsageError(f"SMART client key not found: {self.smart_client_key}")
            command += ["--smart-client-id", self.smart_client_id,
                        "--smart-client-key", str(self.smart_client_key.resolve())]
        if self.token_lifetime is not None:
            command += ["--token-lifetime", str(self.token_lifetime)]
        profiles = self.profiles_dir if self.profiles_dir is not None else DEFAULT_PROFILE_DIR
        if not profiles.exists():
            raise UsageError(f"profile not found: {profiles}")
        command += ["--profiles", str(profiles.resolve())]
        return command

    def _drain_stdout(self, first_line: queue.Queue[str]) -> None:
        """Hands over the first line, then keeps the pipe empty so java never blocks on it."""
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


def find_java() -> str:
    """The java executable (JAVA_HOME first, then PATH), version 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    candidates = [str(Path(home) / "bin" / "java")] if home else []
    found = shutil.which("java")
    candidates += [found] if found else []
    for java in candidates:
        if Path(java).is_file() and _java_major(java) >= MIN_JAVA:
            return java
    raise UsageError("Java 17 or newer not found: install a JDK 17 (e.g. apt-get install "
                     "openjdk-17-jdk-headless) or set JAVA_HOME")


def _java_major(java: str) -> int:
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30,
                                check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if match is None:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def ensure_jar() -> Path:
    """The server's jar, built with Maven first when it is missing or older than its sources."""
    if JAR.is_file() and JAR.stat().st_mtime >= _newest_source():
        return JAR
    build()
    os.utime(JAR)  # Maven may leave an unchanged jar's time alone: mark it as built now
    return JAR


def _newest_source() -> float:
    sources = [REFERENCE_SERVER_DIR / "pom.xml", *(REFERENCE_SERVER_DIR / "src").rglob("*")]
    return max((p.stat().st_mtime for p in sources if p.is_file()), default=0.0)


def build() -> None:
    """`reference_server/build.sh`: Maven builds the jar (the first build downloads HAPI FHIR
    from Maven Central, ~150 MB, into ~/.m2), then a class-data archive for a faster start; a
    failure is one line naming the fix."""
    if not (REFERENCE_SERVER_DIR / "build.sh").is_file():
        # An installed wheel ships the harness, not the Java sources of its embedded server.
        raise UsageError("the embedded reference server is not part of this installation (it is "
                         "built from a kt2conformance source checkout: bash .ci/setup there); "
                         "give --target URL to test a running server")
    if shutil.which("mvn") is None:
        raise UsageError("Maven not found: install Maven 3.8+ (apt-get install maven) to build "
                         "the reference server, or run bash .ci/setup")
    find_java()
    print("kt2conformance: building the reference server with Maven (once)...", file=sys.stderr,
          flush=True)
    try:
        result = subprocess.run(["bash", str(REFERENCE_SERVER_DIR / "build.sh")],
                                capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                                stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise UsageError("reference server build took too long: run bash reference_server/build.sh "
                         "to see why") from None
    if result.returncode != 0 or not JAR.is_file():
        lines = [ln for ln in (result.stdout + result.stderr).splitlines() if "ERROR" in ln]
        why = lines[0].strip() if lines else f"exit {result.returncode}"
        raise UsageError(f"reference server build failed ({why[:200]}): run bash "
                         "reference_server/build.sh to see the whole error")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def public_key_file(path: str | Path) -> Path:
    """A key file the server can read: a public key PEM or JWKS as is; for a private key PEM
    (the one the client signs with) its public half, written next to nothing secret in a
    private temporary file."""
    if isinstance(path, str) and "-----BEGIN" in path:  # KT2_PRIVATE_KEY may hold the PEM itself
        pem = path.encode()
    else:
        source = Path(path)
        try:
            pem = source.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read SMART client key {path}: {exc.strerror or exc}") from None
        if b"PRIVATE KEY" not in pem:
            return source
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot read SMART client key {path}: not an unencrypted PEM key") from exc
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    handle, name = tempfile.mkstemp(prefix="kt2-client-", suffix=".pub.pem")
    with os.fdopen(handle, "wb") as out:
        out.write(public)
    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    return Path(name)


def serve(host: str, port: int, token: str | None, profile: str | None,
          smart_client_id: str | None = None, smart_client_key: str | None = None,
          token_lifetime: int | None = None) -> int:
    """`kt2conformance serve`: runs the server in the foreground until SIGINT or SIGTERM (exit 0).

    Prints the server's own first line so scripts can read the URL, exactly as from java."""
    if (smart_client_id is None) != (smart_client_key is None):
        raise UsageError("SMART mode needs both --smart-client-id and --smart-client-key")
    if token is not None and smart_client_id is not None:
        raise UsageError("use either --token or the SMART options, not both")
    key = public_key_file(smart_client_key) if smart_client_key is not None else None
    server = ReferenceServer(host=host, port=port, token=token, profiles_dir=profile,
                             echo_stderr=True, smart_client_id=smart_client_id,
                             smart_client_key=key, token_lifetime=token_lifetime)
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
