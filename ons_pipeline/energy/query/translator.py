"""Deterministic question -> (template, parameters, confidence).

Keyword rules, no model: the same question always maps to the same query, which is what
tests and the local stack need. Words pick the template, dataset and field; region names
(codes and spoken forms, English and Portuguese), energy sources and dates fill the
parameters. A question no rule matches raises `UntranslatableQuestionError`, which lists
questions that can be answered.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ons_pipeline.energy.query.templates import TEMPLATES, TemplateParams

EXAMPLE_QUESTIONS: Final = (
    "What was the hourly hydro generation trend in the southeast over the last 7 days?",
    "When was the peak demand in the northeast in March 2024?",
    "What were the total transmission losses in the south between 2024-01-01 and 2024-01-31?",
    "What is the latest wind generation in the northeast?",
    "Show the raw consumption series for the north yesterday",
)

# Longest spoken forms first so "northeast" is not read as "north".
REGIONS: Final = (
    (r"north[\s-]?east(?:ern)?|nordeste", "NE"),
    (r"south[\s-]?east(?:ern)?|sudeste|cent(?:er|re)[\s-]?west|centro[\s-]?oeste", "SE/CO"),
    (r"north(?:ern)?|norte", "N"),
    (r"south(?:ern)?|sul", "S"),
)
_REGION_CODES: Final = re.compile(r"(?<![\w/])(SE/CO|SE|NE|N|S)(?![\w/])")
SOURCES: Final = ("hydro", "thermal", "wind", "solar", "nuclear")
CONSUMERS: Final = ("residential", "industrial", "commercial")
WINDOW_WORDS: Final = {
    "minute": "1m",
    "per minute": "1m",
    "hourly": "1h",
    "per hour": "1h",
    "daily": "1d",
    "per day": "1d",
}
FIELD_WORDS: Final = (
    ("capacity factor", "capacity_factor"),
    ("efficiency", "efficiency"),
    ("load factor", "load_factor"),
    ("voltage", "voltage_kv"),
    ("flow", "flow_mw"),
)
MONTHS: Final = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_DATE: Final = r"(\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?Z?)"
_UNITS: Final = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}


class UntranslatableQuestionError(ValueError):
    """No rule maps the question; `examples` are questions that can be answered."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.examples = list(EXAMPLE_QUESTIONS)


@dataclass
class Translation:
    template: str
    params: dict[str, Any]
    confidence: float
    matched: list[str] = field(default_factory=list)

    def validated(self) -> TemplateParams:
        return TEMPLATES[self.template].model_validate(self.params)


def _words(question: str, *patterns: str) -> bool:
    return any(re.search(rf"\b(?:{p})\b", question) for p in patterns)


def _template(text: str) -> tuple[str, str | None]:
    """(template, dataset when the template does not fix it)."""
    dataset = None
    if _words(text, "consumption", "consumed", "demand", "load"):
        dataset = "consumption"
    elif _words(text, "transmission", "transmitted", "lines?", "losses", "loss", "flow"):
        dataset = "transmission"
    elif _words(text, "generation", "generated", "generating", "power", "output", *SOURCES):
        dataset = "generation"
    if _words(text, "raw", "points", "series"):
        return "series", dataset or "generation"
    if _words(text, "latest", "current", "currently", "now", "last value", "most recent"):
        return "latest", dataset or "generation"
    if _words(text, "losses", "loss", "lost"):
        return "transmission_losses", None
    if _words(text, "peak", "maximum", "max", "highest") and dataset in (None, "consumption"):
        return "consumption_peak", None
    if dataset == "generation" or _words(text, "trend", "average", "mean"):
        if dataset not in (None, "generation"):
            raise UntranslatableQuestionError(
                f"a trend is answered for generation only, not {dataset}"
            )
        return "generation_trend", None
    raise UntranslatableQuestionError("no template matches the question's words")


def _region(question: str, text: str) -> str | None:
    for pattern, code in REGIONS:
        if re.search(rf"\b(?:{pattern})\b", text):
            return code
    found = _REGION_CODES.search(question)
    return found.group(1) if found else None


def _parse_date(text: str) -> datetime:
    moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _range(text: str, now: datetime) -> tuple[datetime, datetime] | None:
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if m := re.search(rf"\bbetween {_DATE} and {_DATE}", text):
        start, stop = _parse_date(m.group(1)), _parse_date(m.group(2))
        if len(m.group(2)) == 10:  # a date alone includes that whole day
            stop += timedelta(days=1)
        return start, stop
    if m := re.search(rf"\bfrom {_DATE} to {_DATE}", text):
        return _parse_date(m.group(1)), _parse_date(m.group(2))
    if m := re.search(rf"\b(?:on|for) {_DATE}\b", text):
        day = _parse_date(m.group(1))
        return day, day + timedelta(days=1)
    if m := re.search(rf"\bsince {_DATE}", text):
        return _parse_date(m.group(1)), now
    if m := re.search(r"\b(?:last|past) (\d{1,4}) (minute|hour|day|week)s?\b", text):
        return now - timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)]), now
    if m := re.search(r"\b(?:last|past) (minute|hour|day|week)\b", text):
        return now - timedelta(seconds=_UNITS[m.group(1)]), now
    if m := re.search(rf"\b({'|'.join(MONTHS)})(?: of)? (\d{{4}})\b", text):
        month, year = MONTHS[m.group(1)], int(m.group(2))
        start = datetime(year, month, 1, tzinfo=UTC)
        days = calendar.monthrange(year, month)[1]
        return start, start + timedelta(days=days)
    if re.search(r"\btoday\b", text):
        return today, now
    if re.search(r"\byesterday\b", text):
        return today - timedelta(days=1), today
    return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def translate(question: str, now: datetime | None = None) -> Translation:
    """The template and parameters a question asks for, with a confidence in [0, 1].

    Confidence starts at 0.6 for a matched template and rises with each parameter the
    question states rather than leaves to a default (range, region, tag, window).

    Raises:
        UntranslatableQuestionError: nothing maps; carries answerable examples.
    """
    if not isinstance(question, str) or not question.strip():
        raise UntranslatableQuestionError("the question is empty")
    now = (now or datetime.now(UTC)).astimezone(UTC)
    text = " ".join(question.lower().split())
    template, dataset = _template(text)
    matched = [template]
    params: dict[str, Any] = {}
    if dataset is not None:
        params["dataset"] = dataset
    found_range = _range(text, now)
    if found_range is None:
        found_range = (now - timedelta(days=7), now)
    else:
        matched.append("range")
    params["start"], params["stop"] = (_iso(found_range[0]), _iso(found_range[1]))
    region = _region(question, text)
    if region is not None:
        params["region"] = region
        matched.append("region")
    effective = dataset or TEMPLATES[template].fixed_dataset
    names = {"generation": SOURCES, "consumption": CONSUMERS}.get(effective or "", ())
    for name in names:
        if _words(text, name):
            params["dimension"] = name
            matched.append("dimension")
            break
    for words, name in FIELD_WORDS:
        if _words(text, words):
            params["field"] = name
            matched.append("field")
            break
    if effective == "consumption" and template != "consumption_peak" and "field" not in params:
        params["field"] = "demand_mw" if _words(text, "demand") else "consumption_mwh"
    if effective == "transmission" and template != "transmission_losses":
        params.setdefault("field", "losses_mwh" if _words(text, "loss|losses") else "flow_mw")
    if template == "generation_trend":
        for words, window in WINDOW_WORDS.items():
            if _words(text, words):
                params["window"] = window
                matched.append("window")
                break
    confidence = min(0.6 + 0.1 * (len(matched) - 1), 0.95)
    return Translation(template, params, round(confidence, 2), matched)
