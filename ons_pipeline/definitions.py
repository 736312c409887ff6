"""The code location's one entry point: each asset group's definitions plus shared resources."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dagster import Definitions

from ons_pipeline.energy import definitions as energy
from ons_pipeline.platform import definitions as platform
from ons_pipeline.resources import default_resources
from ons_pipeline.sales import definitions as sales
from ons_pipeline.visits import definitions as visits

if TYPE_CHECKING:
    from collections.abc import Mapping


def build_defs(resources: Mapping[str, Any] | None = None) -> Definitions:
    """The code location, with `resources` or those the environment as it is now describes.

    The local demo passes resources built from the stack's environment, explicitly.
    """
    return Definitions.merge(
        sales.defs,
        energy.defs,
        visits.defs,
        platform.defs,
        Definitions(resources=dict(resources) if resources is not None else default_resources()),
    )


defs = build_defs()
