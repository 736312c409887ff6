"""Moved to `ons_pipeline.local.demo.sales_data`; re-exported until the branches are merged."""

from ons_pipeline.local.demo.sales_data import *  # noqa: F403
