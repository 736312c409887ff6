"""Energy timestamp strings (ARCHITECTURE.md section 4): our ISO 8601 reader against pandas'.

Both read the same 1,000,000 strings in the forms the contract accepts (extended and basic
offsets, `Z`, a space for `T`, minutes without seconds, a date alone, 9 fraction digits).
The baseline is pandas' own `to_datetime(format="ISO8601")`, which reads most of them but
cannot check them against the contract and mixes offsets into one column; ours also checks
the contract and keeps every nanosecond. Prints both times and their ratio.

    .venv/bin/python benchmarks/energy_timestamps.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from ons_pipeline.energy.validation import parse_timestamps

FORMS = (
    "%Y-%m-%dT%H:%M:%S.%fZ",
    "%Y-%m-%dT%H:%M:%S+05:30",
    "%Y-%m-%d %H:%M:%S+0530",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
)


def strings(rows: int) -> pd.Series:
    stamps = pd.date_range("2024-01-01", periods=rows, freq="s", tz="UTC")
    forms = np.random.default_rng(1).integers(0, len(FORMS), rows)
    out = np.empty(rows, dtype=object)
    for index, form in enumerate(FORMS):  # one vectorised strftime per form
        chosen = forms == index
        out[chosen] = stamps[chosen].strftime(form)
    return pd.Series(out, dtype=object)


def timed(call: object) -> float:
    started = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    series = strings(rows)
    ours = min(timed(lambda: parse_timestamps(series)) for _ in range(3))
    baseline = min(
        timed(lambda: pd.to_datetime(series, format="ISO8601", utc=True, errors="coerce"))
        for _ in range(3)
    )
    valid = int((parse_timestamps(series) != np.iinfo(np.int64).min).sum())
    print(f"{rows:,} timestamp strings, {valid:,} read as valid")
    print(f"  pandas to_datetime(format='ISO8601'): {baseline:.2f} s (baseline)")
    print(f"  parse_timestamps (contract checked):  {ours:.2f} s ({ours / baseline:.2f}x baseline)")


if __name__ == "__main__":
    main()
