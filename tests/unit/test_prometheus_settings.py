"""A policy's ``spec.prometheus`` settings reach the client, unless the caller overrides
them (the CLI's flags): reconcile.read.prometheus_config."""

from __future__ import annotations

from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.reconcile.read import prometheus_config

SPEC = ThrottlePolicySpec.model_validate(
    {"prometheus": {"compressAnswers": True, "concurrency": 8, "timeout": "45s"}}
)


def test_the_policys_settings_reach_the_client() -> None:
    config = prometheus_config(SPEC, "http://p")
    assert (config.compress_answers, config.concurrency, config.timeout_seconds) == (True, 8, 45)


def test_the_callers_flags_win() -> None:
    config = prometheus_config(SPEC, "http://p", compress_answers=False, concurrency=1)
    assert (config.compress_answers, config.concurrency) == (False, 1)


def test_defaults_are_uncompressed_and_four_at_once() -> None:
    config = prometheus_config(ThrottlePolicySpec(), "http://p")
    assert (config.compress_answers, config.concurrency) == (False, 4)
