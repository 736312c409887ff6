"""The fault suite: crashes, concurrent runs and injected network faults, over the wire."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ons_pipeline_tests.faults.harness import (
    SalesState,
    VisitsState,
    batches,
    deliveries,
    forget_raw_state,
    land,
    order_updates,
    run_sales,
    run_visits,
)

if TYPE_CHECKING:
    from ons_pipeline.local.stack import LocalStack


@pytest.fixture
def sales_state(stack_env: dict[str, str]) -> SalesState:
    return SalesState.create()


@pytest.fixture(scope="session")
def runs(local_stack: LocalStack) -> dict[str, SalesState]:
    """After batch 1 (the start of every test), and uninterrupted runs to compare with."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in local_stack.env.items():
            patch.setenv(key, value)
        first, second, third = batches()
        start = SalesState.create()
        land(start, first)
        assert run_sales(start).success
        found = {"start": start}
        for name, delivered in (("same-input", [second]), ("new-packet", [second, third])):
            state = start.clone()
            for batch in delivered:
                land(state, batch)
                assert run_sales(state).success
            found[name] = state
        for name, forget in (("increment", False), ("increment-full", True)):
            state = found["new-packet"].clone()
            if forget:
                forget_raw_state(state)
            land(state, [order_updates()])
            assert run_sales(state).success
            found[name] = state
        return found


@pytest.fixture(scope="session")
def uninterrupted(local_stack: LocalStack) -> dict[bool, VisitsState]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in local_stack.env.items():
            patch.setenv(key, value)
        found = {}
        for new_input in (False, True):
            state = VisitsState.create()
            for files in deliveries()[: 3 if new_input else 2]:
                state.land(files)
                assert run_visits(state).success
            found[new_input] = state
        return found
