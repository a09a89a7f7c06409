"""``unthrottle recommend``: the engine on one container's statistics, for what-if analysis.

Input (JSON or YAML, ``-`` for stdin) and output are documented in docs/cli.md. Invalid
input exits with code 2 and a message naming the bad field.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pydantic import ValidationError

from unthrottle.cli.inputs import load_document
from unthrottle.cli.output import OutputFormat, render, render_table
from unthrottle.engine.recommend import recommend
from unthrottle.model.fields import (
    quantities_as_text,
    unknown_fields,
    unknown_keys,
    validation_message,
)
from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.model.recommendation import output_fields
from unthrottle.model.stats import ContainerStats

__all__ = ["InputError", "parse_input", "register", "run"]

EXIT_INVALID_INPUT = 2
# CPU quantities people may write as bare numbers (1 = one core, as in a manifest).
_CONTAINER_CPU = ("cpuRequest", "cpuLimit")
_POLICY_CPU = ("minRequest", "maxRequest", "minLimit", "maxLimit")
# The sections of ContainerStats the input holds.
_STATS = ("container", "cpu", "memory", "nodeAllocatableCpu")


class InputError(ValueError):
    """Input that cannot be used, with a message naming the field."""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "recommend",
        help="recommend resources for one container from its statistics",
        description="Run the recommendation engine on one container's statistics.",
    )
    parser.add_argument(
        "--input", "-i", required=True, metavar="FILE", help="JSON or YAML input; - for stdin"
    )
    parser.add_argument(
        "--output",
        "-o",
        choices=[f.value for f in OutputFormat if f is not OutputFormat.HTML],
        default=OutputFormat.JSON.value,
        help="output format (default json)",
    )
    parser.set_defaults(run=run)


def parse_input(text: str) -> tuple[ThrottlePolicySpec, ContainerStats]:
    """The policy and the container statistics of a recommend input document."""
    try:
        document = load_document(text, "input")
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if not isinstance(document, dict):
        raise InputError("input must be an object with container, cpu (and policy, memory)")
    unknown = unknown_keys(document, ("policy", *_STATS))
    unknown += unknown_fields(ThrottlePolicySpec, document.get("policy"), "policy")
    unknown += unknown_fields(ContainerStats, {k: v for k, v in document.items() if k in _STATS})
    if unknown:
        raise InputError(f"unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    policy_doc = document.get("policy") or {}
    container_doc = document.get("container")
    if isinstance(policy_doc, dict) and isinstance(policy_doc.get("cpu"), dict):
        policy_doc = {**policy_doc, "cpu": quantities_as_text(policy_doc["cpu"], _POLICY_CPU)}
    if isinstance(container_doc, dict):
        document = {**document, "container": quantities_as_text(container_doc, _CONTAINER_CPU)}
    document = quantities_as_text(document, ("nodeAllocatableCpu",))
    try:
        policy = ThrottlePolicySpec.model_validate(policy_doc)
    except ValidationError as exc:
        raise InputError(validation_message(exc, "policy")) from exc
    try:
        stats = ContainerStats.model_validate({k: document.get(k) for k in _STATS if k in document})
    except ValidationError as exc:
        raise InputError(validation_message(exc)) from exc
    return policy, stats


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def run(args: argparse.Namespace) -> int:
    try:
        policy, stats = parse_input(_read(args.input))
    except OSError as exc:
        print(f"unthrottle recommend: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except InputError as exc:
        print(f"unthrottle recommend: invalid input: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    fields = output_fields(recommend(stats, policy))
    table = render_table(
        ["FIELD", "VALUE"],
        [(k, json.dumps(v) if isinstance(v, list) else v) for k, v in fields.items()],
    )
    sys.stdout.write(render(fields, OutputFormat(args.output), table))
    return 0
