"""Timestream history into InfluxDB, window by window (ARCHITECTURE.md section 4, Migration).

`export` reads a window through the Timestream Query API, `mapping` turns each page into the
line protocol a direct load writes, `validate` compares the two stores per series, and
`assets` wires them into Dagster (daily partitions, backfills, checks, cutover).
"""
