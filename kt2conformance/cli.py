"""The `kt2conformance` command line (docs/contract.md). Each sub-command parses its options here and
hands them to the module that does the work; unusable input ends with one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kt2conformance import __version__
from kt2conformance._errors import UsageError
from kt2conformance._signals import SIGNALS
from kt2conformance.target._redact import redacted_output


def _add_profile(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        help="StructureDefinition file, folder of definitions or package folder "
        "(default: the vendored KT2Task of koppeltaalv2.00 0.16.2)",
    )


def _add_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["text", "json"], default="text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kt2conformance", description="Conformance test harness for Koppeltaal 2.0 servers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check Task JSON files against the profile (local oracle)")
    _add_profile(p)
    _add_format(p)
    p.add_argument("--referee", action="store_true",
                   help="also run the files through the HL7 validator ($validate of the embedded HAPI "
                   "reference server, started for this) and show where it and the oracle differ")
    p.add_argument("--referee-url", metavar="URL",
                   help="as --referee, with the HAPI FHIR server at this FHIR base URL instead")
    p.add_argument("files", nargs="+", metavar="FILE")

    p = sub.add_parser("constraints", help="list every constraint derived from the profile")
    _add_profile(p)
    _add_format(p)

    p = sub.add_parser("generate", help="write generated valid or invalid Tasks")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--valid", type=int, metavar="N", help="write N valid Tasks")
    group.add_argument("--invalid", action="store_true", help="write invalid Tasks, per constraint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="DIR")
    _add_profile(p)

    p = sub.add_parser("serve", help="run the embedded reference Koppeltaal server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token", help="require this bearer token")
    p.add_argument("--smart-client-id", metavar="ID",
                   help="SMART Backend Services mode: register this client (also its Device id)")
    p.add_argument("--smart-client-key", metavar="FILE",
                   help="the client's key: public key PEM, JWKS, or the private key PEM it signs with")
    p.add_argument("--token-lifetime", type=int, metavar="S",
                   help="seconds an access token lives in SMART mode (default 300)")
    _add_profile(p)

    p = sub.add_parser("run", help="run the conformance suites against a target")
    from kt2conformance.run._options import add_options

    add_options(p.add_argument)

    p = sub.add_parser("profiles", help="manage profile packages")
    psub = p.add_subparsers(dest="profiles_command", required=True)
    f = psub.add_parser("fetch", help="download a FHIR package from a package registry")
    f.add_argument("--package", required=True, metavar="NAME")
    f.add_argument("--version", required=True, metavar="V")
    f.add_argument("--registry", default="https://packages.simplifier.net", metavar="URL")
    f.add_argument("--dest", default=None, metavar="DIR", help="default: the project's profiles/")
    f.add_argument("--timeout", type=float, default=300.0, metavar="S",
                   help="give up when the downloads take longer than S seconds in all "
                        "(default 300)")
    return parser


def _dispatch(args: argparse.Namespace, extra: list[str]) -> int:
    if args.command == "validate":
        from kt2conformance._commands import validate_command

        referee = args.referee_url or ("embedded" if args.referee else None)
        return validate_command(args.files, args.profile, args.format, referee)
    if args.command == "constraints":
        from kt2conformance._commands import constraints_command

        return constraints_command(args.profile, args.format)
    if args.command == "generate":
        from kt2conformance._commands import generate_command

        return generate_command(args.valid, args.invalid, args.seed, args.out, args.profile)
    if args.command == "serve":
        from kt2conformance.target._server import serve

        return serve(args.host, args.port, args.token, args.profile, args.smart_client_id,
                     args.smart_client_key, args.token_lifetime)
    if args.command == "run":
        from kt2conformance.run._options import Options
        from kt2conformance.run._runner import run

        return run(Options.from_namespace(args), extra)
    if args.command == "profiles":
        from kt2conformance.target._registry import fetch_command

        return fetch_command(args.package, args.version, args.registry, args.dest, args.timeout)
    raise UsageError(f"unknown command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    if args.command == "run":  # SIGTERM and SIGHUP stop a run as Ctrl-C does (exit 143, 129)
        SIGNALS.install()
    try:
        with redacted_output():  # no message of any path shows a token, assertion or key
            return _command(args, extra)
    finally:
        if args.command == "run":
            SIGNALS.restore()


def _command(args: argparse.Namespace, extra: list[str]) -> int:
    """The command's exit code; its usage errors and interrupts as one line on stderr."""
    try:
        return _dispatch(args, extra)
    except UsageError as exc:
        print(f"kt2conformance: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head`: not an error of ours
        return 0
    except KeyboardInterrupt:
        print(f"kt2conformance: stopped by {SIGNALS.first or 'SIGINT'}", file=sys.stderr)
        return SIGNALS.exit_code()
