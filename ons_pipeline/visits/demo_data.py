"""Moved to `ons_pipeline.local.demo.visits_data`; re-exported until the branches are merged."""

from ons_pipeline.local.demo.visits_data import *  # noqa: F403
