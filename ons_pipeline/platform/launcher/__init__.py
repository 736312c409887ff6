"""Run launchers for the production instance: runs on AWS Lambda, long runs routed elsewhere."""

from __future__ import annotations

from ons_pipeline.platform.launcher.lambda_launcher import LambdaRunLauncher
from ons_pipeline.platform.launcher.routing import RoutingRunLauncher

__all__ = ["LambdaRunLauncher", "RoutingRunLauncher"]
