"""Moved to `ons_pipeline.local.demo.energy_data`; re-exported until the branches are merged."""

from ons_pipeline.local.demo.energy_data import *  # noqa: F403
