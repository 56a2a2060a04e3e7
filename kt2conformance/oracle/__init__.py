"""The oracle: decides locally, constraint by constraint, whether a Task conforms to the profile
(`Oracle(profile).validate(task)`: every issue with its constraint key)."""

from kt2conformance.oracle._oracle import Issue, Oracle

__all__ = ["Issue", "Oracle"]
