"""The code location's one entry point: each asset group's definitions plus shared resources."""

from __future__ import annotations

from dagster import Definitions

from ons_pipeline.energy import definitions as energy
from ons_pipeline.platform import definitions as platform
from ons_pipeline.resources import default_resources
from ons_pipeline.sales import definitions as sales
from ons_pipeline.visits import definitions as visits


def build_defs() -> Definitions:
    """The code location, with resources read from the environment as it is now."""
    return Definitions.merge(
        sales.defs,
        energy.defs,
        visits.defs,
        platform.defs,
        Definitions(resources=default_resources()),
    )


defs = build_defs()
