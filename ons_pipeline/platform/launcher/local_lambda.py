"""Moved to `ons_pipeline.local.lambda_endpoint`; re-exported until the branches are merged."""

from ons_pipeline.local.lambda_endpoint import *  # noqa: F403
