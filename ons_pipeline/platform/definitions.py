"""Platform pieces shared by every asset group."""

from __future__ import annotations

from dagster import Definitions

from ons_pipeline.platform.alerts import run_failure_alert, run_success_metrics

defs = Definitions(sensors=[run_failure_alert, run_success_metrics])
