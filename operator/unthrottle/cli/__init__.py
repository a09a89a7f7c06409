"""The ``unthrottle`` command line: one subcommand per module, parsed with argparse.

Subcommands are imported lazily: ``unthrottle report`` and ``recommend`` load only their
own module (never the operator's kopf, ~60 MiB and 0.2 s), ``unthrottle --help`` all.

:func:`kubectl_main` is the kubectl plugin (the ``kubectl-unthrottle`` entry point):
``kubectl unthrottle report|export|explain`` with kubectl's kubeconfig, context and
namespace defaults (:mod:`unthrottle.cli.reading`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from unthrottle import __version__

__all__ = ["COMMANDS", "KUBECTL_COMMANDS", "kubectl_main", "main"]

# Subcommand → its module, in the order ``--help`` lists them.
COMMANDS = {
    "recommend": "unthrottle.cli.recommend",
    "report": "unthrottle.cli.report",
    "export": "unthrottle.cli.export",
    "explain": "unthrottle.cli.explain",
    "run": "unthrottle.cli.run",
    "agent": "unthrottle.cli.agent",
    "demo": "unthrottle.cli.demo",
}

# The subcommands of ``kubectl unthrottle``: the ones that read a cluster and change nothing.
KUBECTL_COMMANDS = ("report", "export", "explain")


def build_parser(
    argv: Sequence[str] | None = None, *, kubectl: bool = False
) -> argparse.ArgumentParser:
    """The parser; with ``argv`` naming a subcommand, only that one's module is imported."""
    parser = argparse.ArgumentParser(
        prog="kubectl unthrottle" if kubectl else "unthrottle",
        description="Right-size CPU requests, limits and burst from CFS throttling.",
    )
    parser.add_argument("--version", action="version", version=f"unthrottle {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv or () if not a.startswith("-")), None)
    names = KUBECTL_COMMANDS if kubectl else tuple(COMMANDS)
    for name in names:
        module = COMMANDS[name]
        if wanted not in names or wanted == name:
            importlib.import_module(module).register(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, kubectl: bool = False) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(args_list, kubectl=kubectl)
    if not args_list:
        parser.print_help(sys.stderr)  # the commands, not argparse's "arguments required"
        return 2
    args = parser.parse_args(args_list)
    args.kubectl = kubectl
    code: int = args.run(args)
    return code


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    """``kubectl unthrottle``: kubectl runs ``kubectl-unthrottle`` with the words after it."""
    return main(argv, kubectl=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
