"""Timestream history into InfluxDB, window by window (ARCHITECTURE.md section 4, Migration).

`unload` exports a window with UNLOAD to S3 as Parquet (the default) and `export` reads it
through Query pages (the fallback; also the validation's aggregates), `mapping` turns each
batch into the line protocol a direct load writes, `validate` compares the two stores per
series, and `assets` wires them into Dagster (daily partitions, backfills, checks, cutover).
"""

from __future__ import annotations
