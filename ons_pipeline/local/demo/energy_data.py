"""Realistic ONS energy Parquet for the demo: four regions, hourly, a few recent days.

Generation by source (long, MW), consumption by consumer type (wide) and transmission
lines (wide), one file per dataset and day under the processed bucket's layout.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REGIONS = ("N", "NE", "SE/CO", "S")
SOURCES = {
    "N": {"hydro": 9000.0, "thermal": 1200.0, "wind": 300.0},
    "NE": {"hydro": 2500.0, "thermal": 1500.0, "wind": 9000.0, "solar": 2500.0},
    "SE/CO": {"hydro": 22000.0, "thermal": 4000.0, "nuclear": 1900.0, "solar": 3000.0},
    "S": {"hydro": 8000.0, "thermal": 1800.0, "wind": 2000.0},
}
CONSUMERS = {"residential": 0.35, "industrial": 0.40, "commercial": 0.25}
DEMAND_MW = {"N": 7000.0, "NE": 12000.0, "SE/CO": 42000.0, "S": 13000.0}
LINES = {
    "N": ("N-SE_500kV", "N-NE_500kV"),
    "NE": ("NE-SE_500kV",),
    "SE/CO": ("SE-S_765kV", "SE-S_525kV"),
    "S": ("S-SE_525kV",),
}


def demo_days(days: int = 3, today: datetime | None = None) -> list[datetime]:
    """The last `days` whole UTC days (recent, so InfluxDB 1.x retention keeps them)."""
    midnight = (today or datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    return [midnight - timedelta(days=days - i) for i in range(days)]


def _hours(day: datetime) -> pd.DatetimeIndex:
    return pd.date_range(day, periods=24, freq="h", tz="UTC")


def generation_frame(day: datetime, rng: np.random.Generator) -> pd.DataFrame:
    hours = _hours(day)
    frames = []
    for region, sources in SOURCES.items():
        for source, capacity in sources.items():
            hour = hours.hour.to_numpy()
            if source == "solar":
                shape = np.clip(np.sin((hour - 6) / 12 * np.pi), 0, None)
            elif source == "wind":
                shape = 0.45 + 0.25 * np.cos(hour / 24 * 2 * np.pi) + rng.normal(0, 0.05, 24)
            else:
                shape = 0.6 + 0.15 * np.sin((hour - 9) / 24 * 2 * np.pi) + rng.normal(0, 0.02, 24)
            frames.append(
                pd.DataFrame(
                    {
                        "timestamp": hours,
                        "region": region,
                        "energy_source": source,
                        "value": np.round(np.clip(shape, 0, 1) * capacity, 3),
                        "unit": "MW",
                        "measurement_type": "power",
                        "quality_flag": "good",
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def consumption_frame(day: datetime, rng: np.random.Generator) -> pd.DataFrame:
    hours = _hours(day)
    hour = hours.hour.to_numpy()
    frames = []
    for region, demand in DEMAND_MW.items():
        profile = 0.8 + 0.2 * np.sin((hour - 8) / 24 * 2 * np.pi)
        for consumer, share in CONSUMERS.items():
            demand_mw = np.round(demand * share * profile * rng.normal(1, 0.02, 24), 3)
            frames.append(
                pd.DataFrame(
                    {
                        "timestamp": hours,
                        "region": region,
                        "consumer_type": consumer,
                        "consumption_mwh": demand_mw,  # one hour at demand_mw
                        "demand_mw": demand_mw,
                        "load_factor": np.round(profile, 4),
                        "measurement_type": "load",
                        "quality_flag": "good",
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def transmission_frame(day: datetime, rng: np.random.Generator) -> pd.DataFrame:
    hours = _hours(day)
    frames = []
    for region, lines in LINES.items():
        for line in lines:
            kv = float(line.rsplit("_", 1)[1].removesuffix("kV"))
            flow = np.round(rng.normal(2500, 400, 24), 3)
            frames.append(
                pd.DataFrame(
                    {
                        "timestamp": hours,
                        "region": region,
                        "line_id": line,
                        "flow_mw": flow,
                        "losses_mwh": np.round(np.abs(flow) * 0.018, 3),
                        "voltage_kv": np.round(kv * rng.normal(1, 0.005, 24), 2),
                        "quality_flag": "good",
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


BUILDERS = {
    "generation": generation_frame,
    "consumption": consumption_frame,
    "transmission": transmission_frame,
}


def object_key(dataset: str, day: datetime) -> str:
    return f"dataset={dataset}/year={day:%Y}/month={day:%m}/{dataset}_{day:%Y%m%d}.parquet"


def to_parquet(frame: pd.DataFrame, row_group_size: int | None = None) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False),
        buffer,
        compression="snappy",
        row_group_size=row_group_size,
    )
    return buffer.getvalue()


def generate_demo_files(
    days: int = 3, seed: int = 7, last_day: datetime | None = None
) -> dict[str, bytes]:
    """Object key -> Parquet bytes for every dataset and day (the days up to `last_day`)."""
    rng = np.random.default_rng(seed)
    today = None if last_day is None else last_day + timedelta(days=1)
    return {
        object_key(dataset, day): to_parquet(build(day, rng))
        for day in demo_days(days, today)
        for dataset, build in BUILDERS.items()
    }
