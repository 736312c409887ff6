"""The test session's own rules: fail rather than skip, and retry without waiting."""

from __future__ import annotations

import os

import pytest
from _pytest.outcomes import Failed, Skipped
from dagster import Backoff, Jitter

from ons_pipeline.platform import metadata
from ons_pipeline_tests.servers import server_unavailable, skip_allowed


@pytest.mark.parametrize(
    "environ",
    [{}, {"CI": "true"}, {"CI": "1"}, {"CI": "True"}, {"CI": "false"}, {"ONS_ALLOW_SKIP": "0"}]
    + [{"ONS_ALLOW_SKIP": value} for value in ("", "true", "yes", "2")],
)
def test_a_server_that_will_not_start_fails_by_default(environ: dict[str, str]) -> None:
    assert not skip_allowed(environ)
    with pytest.raises(Failed, match=r"influxd not found.*ONS_ALLOW_SKIP=1"):
        server_unavailable("influxd not found", environ)


@pytest.mark.parametrize("environ", [{"ONS_ALLOW_SKIP": "1"}, {"ONS_ALLOW_SKIP": "1", "CI": "1"}])
def test_skipping_only_when_asked_for(environ: dict[str, str]) -> None:
    assert skip_allowed(environ)
    with pytest.raises(Skipped, match="influxd not found"):
        server_unavailable("influxd not found", environ)


def test_production_retry_policy_is_unchanged() -> None:
    policy = metadata.aws_retry_policy({})
    assert (policy.max_retries, policy.delay) == (3, 30)
    assert (policy.backoff, policy.jitter) == (Backoff.EXPONENTIAL, Jitter.PLUS_MINUS)
    assert metadata.aws_retry_policy({"ONS_RETRY_DELAY_SECONDS": "2.5"}).delay == 2.5


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_a_bad_retry_delay_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="ONS_RETRY_DELAY_SECONDS"):
        metadata.aws_retry_policy({"ONS_RETRY_DELAY_SECONDS": value})


def test_the_test_session_retries_without_waiting() -> None:
    """conftest sets the delay before any definitions load; every asset group uses it."""
    from ons_pipeline.energy.assets import ENERGY_RETRY_POLICY
    from ons_pipeline.resources import default_resources
    from ons_pipeline.sales.assets import SALES_RETRY_POLICY
    from ons_pipeline.visits.assets import VISITS_RETRY_POLICY

    assert os.environ["ONS_RETRY_DELAY_SECONDS"] == "0"
    for policy in (metadata.AWS_RETRY_POLICY, ENERGY_RETRY_POLICY, SALES_RETRY_POLICY):
        assert policy.delay == 0
    assert VISITS_RETRY_POLICY.delay == 0
    resources = default_resources()
    assert resources["timestream"].backoff_seconds == 0
    assert resources["influxdb"].backoff_seconds == 0


def test_every_test_has_a_timeout(pytestconfig: pytest.Config) -> None:
    assert 0 < float(pytestconfig.getini("timeout")) <= 600
    assert pytestconfig.getini("timeout_method") == "signal"  # fails the test, not the session
