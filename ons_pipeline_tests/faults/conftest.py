"""The fault suite: crashes, concurrent runs and injected network faults, over the wire."""

from __future__ import annotations

import pytest

from ons_pipeline_tests.faults.harness import SalesState


@pytest.fixture
def sales_state(stack_env: dict[str, str]) -> SalesState:
    return SalesState.create()
