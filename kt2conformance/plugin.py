"""The pytest plugin behind the conformance suites (registered through the `pytest11` entry
point). It stays inert unless the suites in `suites/` are run."""
