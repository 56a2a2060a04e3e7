"""`kt2conformance run`: the product users run. Parses the run options (CONTRACT.md) and runs the
suites under pytest with the kt2conformance plugin."""

from __future__ import annotations

import argparse
import os

from kt2conformance.errors import UsageError


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `run`; each is also a pytest option with a `--kt-` prefix (plugin.py)."""
    p.add_argument("--target", help="FHIR base URL of the server under test "
                   "(default: start the embedded reference server)")
    p.add_argument("--token", default=os.environ.get("KT2_TOKEN"), help="bearer token (KT2_TOKEN)")
    p.add_argument("--client-id", default=os.environ.get("KT2_CLIENT_ID"),
                   help="SMART Backend Services client id (KT2_CLIENT_ID)")
    p.add_argument("--private-key", default=os.environ.get("KT2_PRIVATE_KEY"),
                   help="PEM private key, RSA or EC (KT2_PRIVATE_KEY)")
    p.add_argument("--alg", default="RS512", choices=["RS512", "RS384", "ES384"])
    p.add_argument("--kid", default=None, help="key id for the client assertion header")
    p.add_argument("--token-url", default=None,
                   help="default: token_endpoint of TARGET/.well-known/smart-configuration")
    p.add_argument("--profile", default=None)
    p.add_argument("--examples", type=int, default=None, help="Hypothesis examples per property")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strict", action="store_true", help="demand 422 + OperationOutcome on refusal")
    p.add_argument("--reports", default="reports", metavar="DIR")
    p.add_argument("--keep", action="store_true", help="keep created resources on the server")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--allow-production", action="store_true")


def run(args: argparse.Namespace, extra: list[str]) -> int:
    raise UsageError("run is not built yet")
