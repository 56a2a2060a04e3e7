"""The run: cases (`_cases`), verdicts (`_verdicts`), reports (`_report`), the options shared by
the command line and the plugin (`_options`), the run engine without pytest (`_engine`), the
pytest plugin as thin hooks (`_plugin`, registered through the `pytest11` entry point) and the
`run` command (`_runner`)."""

from kt2conformance.run._cases import Case
from kt2conformance.run._engine import Engine
from kt2conformance.run._options import Options
from kt2conformance.run._report import Outcome
from kt2conformance.run._verdicts import Judgement, judge, judge_read_back

__all__ = ["Case", "Engine", "Judgement", "Options", "Outcome", "judge", "judge_read_back"]
