"""The target side: the FHIR client (`_client`) with its auth (`_auth`) and secret redaction
(`_redact`), the prerequisite resources a run creates (`_prerequisites`), the embedded reference
server's launcher (`_server`) and the package registry client (`_registry`)."""
