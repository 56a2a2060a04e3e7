"""The target side: the FHIR client (`_client`) with its auth (`_auth`) and secret redaction
(`_redact`), the prerequisite resources a run creates and deletes (`_prerequisites`), the
embedded reference server's launcher (`_server`) and the package registry client
(`_registry`)."""

from kt2conformance.target._auth import AuthError, BearerAuth, SmartBackendAuth, build_auth
from kt2conformance.target._client import FHIR_JSON, Exchange, FhirClient
from kt2conformance.target._redact import REDACTED, redact, register_secret
from kt2conformance.target._server import ReferenceServer

__all__ = ["FHIR_JSON", "REDACTED", "AuthError", "BearerAuth", "Exchange", "FhirClient",
           "ReferenceServer", "SmartBackendAuth", "build_auth", "redact", "register_secret"]
