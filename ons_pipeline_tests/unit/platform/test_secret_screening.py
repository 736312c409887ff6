"""Literal secrets anywhere in the instance config are found, however deeply nested."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ons_pipeline.platform.launcher import payload

DEPLOY_INSTANCE = Path(__file__).resolve().parents[3] / "deploy" / "dagster.yaml"


@pytest.mark.parametrize(
    ("config", "found"),
    [
        (
            {"storage": {"postgres": {"postgres_db": {"username": "u", "password": "hunter2"}}}},
            ["storage.postgres.postgres_db.password"],
        ),
        (
            {"a": {"b": [{"c": {"d": {"api_token": "t0k3n"}}}]}},
            ["a.b[0].c.d.api_token"],
        ),
        (
            {"storage": {"postgres": {"postgres_url": "postgresql://u:hunter2@db:5432/d"}}},
            ["storage.postgres.postgres_url"],
        ),
        (
            {"storage": {"postgres": {"postgres_db": {"password": {"env": "PG_PASSWORD"}}}}},
            [],
        ),
    ],
)
def test_nested_literal_secrets_are_found(config: dict[str, object], found: list[str]) -> None:
    assert sorted(payload.literal_secrets(config)) == found


def test_a_literal_password_in_the_production_instance_config_is_found() -> None:
    """The deploy test's `literal_secrets(config) == []` means something only if this holds."""
    config = yaml.safe_load(DEPLOY_INSTANCE.read_text())
    assert list(payload.literal_secrets(config)) == []
    config["storage"]["postgres"]["postgres_db"]["password"] = "hunter2"
    assert list(payload.literal_secrets(config)) == ["storage.postgres.postgres_db.password"]
