"""The ``unthrottle`` command line: one subcommand per module, parsed with argparse.

Subcommands are imported lazily: ``unthrottle report`` and ``recommend`` load only their
own module (never the operator's kopf, ~60 MiB and 0.2 s), ``unthrottle --help`` all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from unthrottle import __version__

__all__ = ["main"]

# Subcommand → its module, in the order ``--help`` lists them.
COMMANDS = {
    "recommend": "unthrottle.cli.recommend",
    "report": "unthrottle.cli.report",
    "run": "unthrottle.cli.run",
    "agent": "unthrottle.cli.agent",
    "demo": "unthrottle.cli.demo",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` naming a subcommand, only that one's module is imported."""
    parser = argparse.ArgumentParser(
        prog="unthrottle",
        description="Right-size CPU requests, limits and burst from CFS throttling.",
    )
    parser.add_argument("--version", action="version", version=f"unthrottle {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv or () if not a.startswith("-")), None)
    for name, module in COMMANDS.items():
        if wanted not in COMMANDS or wanted == name:
            importlib.import_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(args_list)
    if not args_list:
        parser.print_help(sys.stderr)  # the commands, not argparse's "arguments required"
        return 2
    args = parser.parse_args(args_list)
    code: int = args.run(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
