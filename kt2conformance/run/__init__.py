"""The run: cases (`_cases`), verdicts (`_verdicts`), reports (`_report`), the pytest plugin
(`_plugin`, registered through the `pytest11` entry point) and the `run` command (`_runner`)."""
