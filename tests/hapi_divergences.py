"""Constraint keys on which HAPI FHIR 8.2 with production's configuration (the embedded reference
server) does not refuse a Task the profile forbids. Each is HAPI's own behaviour, explained with
the spec rule in docs/hapi-divergences.md (a test keeps that page and this table in step); the
differential test and the end-to-end run of the suites accept exactly these, no others."""

# key -> what HAPI does (the docs give the spec rule and who is right)
HAPI_NOT_ENFORCED: dict[str, str] = {
    "Task.meta/type": "a non-object meta crashes HAPI's ValidatorWrapper (Gson ClassCastException): 500",
    "Task.for/targetProfile": "reference target types are not validated (local reference policy IGNORE); "
                              "the search parameter on Task.for takes any type",
    "Task.owner/targetProfile": "reference target types are not validated; JPA's search-parameter check "
                                "only refuses types outside R4's owner targets (400)",
    "Task.requester/targetProfile": "reference target types are not validated; JPA's search-parameter check "
                                    "only refuses types outside R4's requester targets (400)",
    "Task.contained/targetProfile": "a contained resource is validated against its R4 definition, not against "
                                    "the KT2 profile the referencing element's targetProfile names",
    "Task.instantiatesCanonical/targetProfile": "canonical targets are not resolved or type-checked",
    "Task.extension:instantiates.value[x]/targetProfile": "an extension's reference target type is not "
                                                          "validated and no search parameter indexes it",
}
