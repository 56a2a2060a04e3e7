"""Authentication against the server under test, as httpx.Auth objects the FhirClient carries.

Koppeltaal 2.0 servers take SMART on FHIR Backend Services tokens: the client signs a short-lived
JWT (the client assertion) with its private key and trades it at the token endpoint for an access
token (client_credentials grant). A static `--token` is the simple alternative for test servers.
Every secret is registered with `redact` the moment it exists, so it never reaches a report.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from kt2conformance._errors import UsageError
from kt2conformance.target._redact import redact, register_secret

SUPPORTED_ALGS = ("RS512", "RS384", "ES384")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# SMART Backend Services allows at most 5 minutes; a little less leaves room for clock skew.
ASSERTION_LIFETIME_S = 240
_DEFAULT_EXPIRES_IN = 300


class AuthError(UsageError):
    """The harness cannot authenticate: a set-up problem (exit 2), not a conformance failure."""


class BearerAuth(httpx.Auth):
    """A fixed bearer token (`--token`)."""

    def __init__(self, token: str) -> None:
        register_secret(token)
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def current_token(self) -> str:
        """The token every request carries."""
        return self._token


_PEM_TEXT = "-----BEGIN"


def load_private_key(source: str | Path, alg: str) -> RSAKey | ECKey:
    """The signing key in `source` (a PEM file's path, or the PEM text itself, as CI secrets
    usually arrive in KT2_PRIVATE_KEY), checked against `alg` now so a wrong key is a clear
    usage error at start-up rather than a puzzling refusal by the token endpoint later. No
    message ever shows the key: PEM text is named as such, never quoted."""
    if alg not in SUPPORTED_ALGS:
        raise UsageError(f"unsupported --alg {alg}: use one of {', '.join(SUPPORTED_ALGS)}")
    text = str(source)
    if _PEM_TEXT in text:
        # a secret pasted with escaped line breaks ("\\n") is the same PEM
        pem = (text if "\n" in text else text.replace("\\n", "\n")).encode()
        register_secret(text)
        register_secret(pem.decode())
        name = "the private key given as PEM text (--private-key / KT2_PRIVATE_KEY)"
    elif "\n" in text or len(text) > 1024:
        register_secret(text)  # not a path and not PEM: perhaps a key in another encoding
        raise UsageError("--private-key / KT2_PRIVATE_KEY is neither a file nor PEM text "
                         "(-----BEGIN ... PRIVATE KEY-----)")
    else:
        name = f"private key {text}"
        try:
            pem = Path(text).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror or exc}") from None
        register_secret(pem.decode("utf-8", "replace"))
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise UsageError(f"{name} is encrypted: give an unencrypted PEM key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UsageError(f"{name} is not a PEM private key (RSA or EC)") from None
    if alg.startswith("RS"):
        if not isinstance(key, rsa.RSAPrivateKey):
            raise UsageError(f"--alg {alg} needs an RSA private key, but {name} is "
                             f"{_key_kind(key)}")
        return RSAKey.import_key(pem)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
        raise UsageError(f"--alg {alg} needs an EC P-384 private key, but {name} is "
                         f"{_key_kind(key)}")
    return ECKey.import_key(pem)


def _key_kind(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "an RSA key"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC {key.curve.name} key"
    return f"a {type(key).__name__}"


class SmartBackendAuth(httpx.Auth):
    """SMART Backend Services (client_credentials with a signed JWT client assertion).

    The access token is cached until shortly before `expires_in` runs out. A 401 from the FHIR
    server gets one fresh token and one retry; a second 401 means the client is not allowed in,
    which is an `AuthError`, as is any refusal by the token endpoint. Thread-safe, so one
    instance can serve concurrent requests.
    """

    def __init__(
        self,
        client_id: str,
        private_key_pem_path: str | Path,
        alg: str = "RS512",
        token_url: str | None = None,
        kid: str | None = None,
        fhir_base: str | None = None,
        scope: str | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
    ) -> None:
        if token_url is None and fhir_base is None:
            raise UsageError("SMART backend auth needs --token-url or a target to discover it from")
        self.client_id = client_id
        self.alg = alg
        self.kid = kid
        self.scope = scope
        self._key = load_private_key(private_key_pem_path, alg)
        self._token_url = token_url
        self._fhir_base = fhir_base.rstrip("/") if fhir_base else None
        self._http = httpx.Client(timeout=httpx.Timeout(timeout[1], connect=timeout[0]),
                                  follow_redirects=False)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    # -- httpx.Auth ------------------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        request.headers["Authorization"] = f"Bearer {self._access_token(stale=token)}"
        response = yield request
        if response.status_code == 401:
            raise AuthError(f"{request.url.host} answered 401 even with a fresh access token: "
                            f"check that client {self.client_id} is registered and allowed on "
                            f"the target")

    # -- token handling --------------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        """The token endpoint: given, or discovered once from the target's smart-configuration."""
        if self._token_url is None:
            self._token_url = self._discover_token_url()
        return self._token_url

    def _access_token(self, stale: str | None = None) -> str:
        """A valid access token; `stale` is one the server just refused, so it is not reused
        (unless another thread already replaced it, in which case that newer one is returned)."""
        with self._lock:
            if self._token and self._token != stale and time.monotonic() < self._refresh_at:
                return self._token
            self._token, expires_in = self._fetch_token()
            # refresh a little early: 10% of the lifetime, at most 30 s
            self._refresh_at = time.monotonic() + expires_in - min(30.0, expires_in / 10)
            return self._token

    def current_token(self) -> str:
        """The access token requests carry now (fetched when there is none yet)."""
        return self._access_token()

    def client_assertion(self) -> str:
        """A freshly signed client assertion for the token endpoint (unique jti each time)."""
        now = int(time.time())
        header = {"alg": self.alg, "typ": "JWT"}
        if self.kid:
            header["kid"] = self.kid
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
            "jti": uuid.uuid4().hex,
        }
        assertion = jwt.encode(header, claims, self._key, algorithms=[self.alg])
        register_secret(assertion)
        return assertion

    def _fetch_token(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }
        if self.scope:
            form["scope"] = self.scope
        url = self.token_url
        try:
            response = self._http.post(url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise AuthError(f"cannot reach token endpoint {url}: {_describe(exc)}") from None
        body = _json_object(response)
        if response.status_code != 200:
            if response.status_code in (400, 401) and "error" in body:
                detail = str(body["error"])
                if body.get("error_description"):
                    detail += f": {body['error_description']}"
                # redacted before it is cut short: a server may quote the assertion back
                raise AuthError(f"token endpoint refused the client assertion "
                                f"({_one_line(redact(detail))}): check --client-id and "
                                f"--private-key")
            raise AuthError(f"token endpoint {url} answered HTTP {response.status_code}")
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthError(f"token endpoint {url} answered without an access_token")
        register_secret(token)
        expires_in = body.get("expires_in", _DEFAULT_EXPIRES_IN)
        if not isinstance(expires_in, (int, float)) or expires_in <= 0:
            expires_in = _DEFAULT_EXPIRES_IN
        return token, float(expires_in)

    def _discover_token_url(self) -> str:
        url = f"{self._fhir_base}/.well-known/smart-configuration"
        try:
            response = self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise AuthError(f"cannot discover the token endpoint at {url}: {_describe(exc)}; "
                            f"pass --token-url") from None
        endpoint = _json_object(response).get("token_endpoint")
        if response.status_code != 200 or not isinstance(endpoint, str) or not endpoint:
            raise AuthError(f"{url} (HTTP {response.status_code}) names no token_endpoint; "
                            f"pass --token-url")
        return endpoint

    def close(self) -> None:
        self._http.close()


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _describe(exc: Exception) -> str:
    return _one_line(str(exc)) or type(exc).__name__


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_auth(
    target: str | None,
    token: str | None,
    client_id: str | None,
    private_key: str | None,
    alg: str = "RS512",
    token_url: str | None = None,
    kid: str | None = None,
    scope: str | None = None,
) -> httpx.Auth | None:
    """The auth the run options ask for, or None for an open server; conflicting or incomplete
    options are usage errors."""
    if token and (client_id or private_key):
        raise UsageError("give either --token or --client-id with --private-key, not both")
    if token:
        return BearerAuth(token)
    if client_id and not private_key:
        raise UsageError("--client-id needs --private-key (PEM, RSA or EC)")
    if private_key and not client_id:
        raise UsageError("--private-key needs --client-id")
    if not (client_id and private_key):
        return None
    if token_url is None and target is None:
        raise UsageError("SMART backend auth needs --target or --token-url")
    return SmartBackendAuth(client_id, private_key, alg=alg, token_url=token_url, kid=kid,
                            fhir_base=target, scope=scope)


def counterfeits(token: str) -> list[tuple[str, str]]:
    """Bearer tokens a server must refuse, made from the run's own `token`: (what it is, the
    token). One the server never issued; the run's token with its signature altered (for a JWT)
    or one character changed (an opaque token); for a JWT also its claims re-sent unsigned with
    `alg: none`. Each is registered as a secret: the claims are the run's."""
    made = [("a bearer token the server never issued", "kt2c-" + secrets.token_urlsafe(32))]
    parts = token.split(".")
    if len(parts) == 3 and all(parts[:2]):
        signature = parts[2]
        at = len(signature) // 2
        if signature:
            flipped = "A" if signature[at] != "A" else "B"
            made.append(("the run's token with its signature altered",
                         ".".join([*parts[:2], signature[:at] + flipped + signature[at + 1:]])))
        none = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        made.append(("the run's token re-sent unsigned (alg: none)", f"{none}.{parts[1]}."))
    elif token:
        at = len(token) // 2
        made.append(("the run's token with one character changed",
                     token[:at] + ("x" if token[at] != "x" else "y") + token[at + 1:]))
    for _, forged in made:
        register_secret(forged)
    return made
