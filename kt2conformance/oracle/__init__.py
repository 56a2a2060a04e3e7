"""The oracle: decides locally, constraint by constraint, whether a Task conforms to the profile."""
