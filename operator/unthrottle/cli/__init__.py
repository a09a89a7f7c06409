"""The ``unthrottle`` command line: one subcommand per module, parsed with argparse."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from unthrottle import __version__
from unthrottle.cli import agent, demo, recommend, report, run

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unthrottle",
        description="Right-size CPU requests, limits and burst from CFS throttling.",
    )
    parser.add_argument("--version", action="version", version=f"unthrottle {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    recommend.register(commands)
    report.register(commands)
    run.register(commands)
    agent.register(commands)
    demo.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
