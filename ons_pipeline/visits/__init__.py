"""Visits asset group: visit-event JSON files -> checkpoint Parquet -> analytics."""

from __future__ import annotations
