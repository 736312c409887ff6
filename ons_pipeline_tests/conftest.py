"""Session-wide fixtures: no test reaches real AWS; integration tests share one local stack."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from ons_pipeline_tests.servers import server_unavailable

# Before any definitions are imported: asset retries wait 0 s in tests, so a regression that
# makes a step fail over and over fails the test at once instead of minutes later (the
# production policy waits 30 s, then 60 s, then 120 s). Runs in subprocesses inherit it.
os.environ["ONS_RETRY_DELAY_SECONDS"] = "0"
os.environ["ONS_RETRY_BACKOFF_SECONDS"] = "0"

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ons_pipeline.local.stack import LocalStack


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and no profile, so a missed endpoint fails instead of reaching AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The local stack on free ports for the whole session; failing to start fails."""
    from ons_pipeline.local.stack import LocalStack, StackError

    stack = LocalStack(tmp_path_factory.mktemp("local_stack"))
    try:
        stack.start()
    except StackError as err:
        server_unavailable(f"local stack could not start: {err}")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack_env(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The stack's environment applied for one test (boto3 then honours AWS_ENDPOINT_URL)."""
    env = local_stack.env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
