"""Visits asset group: visit-event JSON files -> checkpoint Parquet -> analytics."""
