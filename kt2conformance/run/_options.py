"""The options of a conformance run, one dataclass for both faces: `kt2conformance run --NAME`
(the CLI, `_runner`) and `pytest --kt-NAME` (the plugin, `_plugin`). Each field carries its
command-line help, so the two faces cannot drift apart and neither imports the other.
The options are part of the public contract (docs/contract.md)."""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from kt2conformance._errors import UsageError


def _option(default: Any, help: str, *, env: str | None = None, **argparse_kwargs: Any) -> Any:
    """A field with its command-line face: help, metavar, type, choices, and the environment
    variable that supplies the default (read when the command line is built)."""
    return field(default=default, metadata={"help": help, "env": env, **argparse_kwargs})


@dataclass(frozen=True)
class Options:
    """How to run the suites: which target, with what credentials, and how hard."""

    target: str | None = _option(None, "FHIR base URL of the server under test "
                                       "(default: start the embedded reference server)",
                                 metavar="URL")
    token: str | None = _option(None, "bearer token (KT2_TOKEN)", env="KT2_TOKEN")
    client_id: str | None = _option(None, "SMART Backend Services client id (KT2_CLIENT_ID)",
                                    env="KT2_CLIENT_ID")
    private_key: str | None = _option(None, "PEM private key, RSA or EC (KT2_PRIVATE_KEY)",
                                      env="KT2_PRIVATE_KEY", metavar="PATH")
    alg: str = _option("RS512", "client assertion signing algorithm (default RS512)",
                       choices=["RS512", "RS384", "ES384"])
    kid: str | None = _option(None, "key id for the client assertion header")
    token_url: str | None = _option(None, "default: token_endpoint of "
                                          "TARGET/.well-known/smart-configuration", metavar="URL")
    profile: str | None = _option(None, "StructureDefinition file, folder or package folder "
                                        "(default: the vendored KT2Task 0.16.2)", metavar="P")
    examples: int | None = _option(None, "random examples per property, on top of the covering "
                                         "set (default: as many as make 25 valid Tasks and 5 "
                                         "per constraint)", type=int, metavar="N")
    no_cover: bool = _option(False, "send only the random examples, not the covering set that "
                                    "walks every class of the catalogue (a quick smoke run)")
    seed: int = _option(0, "seed of the generated Tasks (default 0)", type=int)
    strict: bool = _option(False, "demand the documented status (422 for profile violations) "
                                  "and an OperationOutcome with an error issue on every refusal")
    reports: str = _option("reports", "where report.html, junit.xml and summary.json go "
                                      "(default reports/)", metavar="DIR")
    keep: bool = _option(False, "keep the resources the run created on the target")
    concurrency: int = _option(1, "requests in flight at once (default 1)", type=int,
                               metavar="N")
    timeout: float = _option(30.0, "seconds to wait for an answer before a case is an error "
                                   "(default 30)", type=float, metavar="S")
    rate: float | None = _option(None, "at most N requests a second to the target "
                                       "(default: no limit)", type=float, metavar="N")
    baseline: str | None = _option(None, "an earlier run's summary.json: list the constraints "
                                         "that regressed, were fixed or are new since then",
                                   metavar="PATH")
    allow_production: bool = _option(False, "run even against a target that looks like "
                                            "production")

    def check(self) -> None:
        """Counts that make no sense end the run before it starts."""
        if self.examples is not None and self.examples < 1:
            raise UsageError(f"--examples must be at least 1, not {self.examples}")
        if self.concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1, not {self.concurrency}")
        if self.timeout <= 0:
            raise UsageError(f"--timeout must be more than 0 seconds, not {self.timeout}")
        if self.rate is not None and self.rate <= 0:
            raise UsageError(f"--rate must be more than 0 requests a second, not {self.rate}")

    @property
    def client_timeout(self) -> tuple[float, float]:
        """(connect, read) timeouts for `--timeout`: connecting never waits longer than 5 s."""
        return min(5.0, self.timeout), self.timeout

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace, prefix: str = "") -> Options:
        """The options argparse (or pytest, with prefix `kt_`) parsed."""
        return cls(**{f.name: getattr(namespace, prefix + f.name) for f in fields(cls)})

    def pytest_arguments(self) -> list[str]:
        """These options as the plugin's `--kt-` options (`--kt-NAME=VALUE`, flags bare)."""
        out: list[str] = []
        for f in fields(self):
            value, flag = getattr(self, f.name), option_flag(f.name)
            if f.type == "bool":
                if value:
                    out.append(f"--kt-{flag}")
            elif value is not None:
                out.append(f"--kt-{flag}={value}")
        return out


def option_flag(name: str) -> str:
    """The command-line spelling of a field: `client_id` -> `client-id`."""
    return name.replace("_", "-")


def add_options(add: Any, prefix: str = "") -> None:
    """Declare every option through `add(flag, dest=..., **argparse keywords)`: argparse's
    `add_argument` for `run`, pytest's `addoption` (prefix `kt-`) for the plugin. Environment
    defaults are read now, when the command line is built."""
    for f in fields(Options):
        meta = dict(f.metadata)
        env = meta.pop("env")
        default = f.default if f.default is not MISSING else None
        if env is not None:
            default = os.environ.get(env, default)
        kwargs: dict[str, Any] = {"default": default, **meta}
        if f.type == "bool":
            kwargs["action"] = "store_true"
        add(f"--{prefix}{option_flag(f.name)}", dest=prefix.replace("-", "_") + f.name, **kwargs)
