"""The seed's three analytical queries over the checkpoint, vectorised in pandas."""

from __future__ import annotations

import pandas as pd

from ons_pipeline.visits.schema import QC_ACTIONS

VISIT_KEY = ["ptid", "visit_date", "visit_number"]


def latest_event_per_visit(events: pd.DataFrame) -> pd.DataFrame:
    """The newest event of each (ptid, visit_date, visit_number): its most complete state.

    Ties on timestamp are broken by the other columns so the answer does not depend on row
    order.
    """
    if events.empty:
        return events.copy()
    ordered = events.sort_values(
        [
            *VISIT_KEY,
            "timestamp",
            *[c for c in events.columns if c not in (*VISIT_KEY, "timestamp")],
        ],
        kind="stable",
        na_position="first",
    )
    latest = ordered.drop_duplicates(subset=VISIT_KEY, keep="last")
    return latest.sort_values(VISIT_KEY, kind="stable", ignore_index=True)


def monthly_not_pass_qc_by_center(events: pd.DataFrame) -> pd.DataFrame:
    """Count of not-pass-qc events per center and visit month (`YYYY-MM` of visit_date)."""
    failed = events.loc[events["action"] == "not-pass-qc", ["center_label", "visit_date"]]
    month = pd.to_datetime(failed["visit_date"]).dt.strftime("%Y-%m")
    counts = (
        failed.assign(visit_month=month)
        .groupby(["visit_month", "center_label"], as_index=False)
        .size()
        .rename(columns={"size": "not_pass_qc_count"})
    )
    counts["not_pass_qc_count"] = counts["not_pass_qc_count"].astype("int64")
    return counts.sort_values(["visit_month", "center_label"], ignore_index=True)


def average_days_to_qc_by_center(events: pd.DataFrame) -> pd.DataFrame:
    """Mean calendar days from visit_date to the QC event's UTC date, per center.

    DATEDIFF semantics: whole days between the two dates, not elapsed hours / 24.
    """
    qc = events.loc[events["action"].isin(QC_ACTIONS), ["center_label", "visit_date", "timestamp"]]
    qc_date = pd.to_datetime(qc["timestamp"], utc=True).dt.tz_localize(None).dt.normalize()
    days = (qc_date - pd.to_datetime(qc["visit_date"])).dt.days
    result = (
        qc.assign(days=days)
        .groupby("center_label", as_index=False)
        .agg(avg_qc_days=("days", "mean"), qc_events=("days", "size"))
    )
    result["avg_qc_days"] = result["avg_qc_days"].astype("float64")
    result["qc_events"] = result["qc_events"].astype("int64")
    return result.sort_values("center_label", ignore_index=True)
