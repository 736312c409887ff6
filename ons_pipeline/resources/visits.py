"""Moved to `ons_pipeline.resources.storage`; kept importable here until every caller moves."""

from ons_pipeline.resources.storage import VisitsStorageResource

__all__ = ["VisitsStorageResource"]
