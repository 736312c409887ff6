"""Realistic ToteSys source packets for the README demo, integration tests and benchmarks.

The generator writes the ingestion side's contract (one JSON-lines object per source table and
packet, ids sequential per table from 1) so the sales pipeline can be exercised end to end without
the real ToteSys database. Everything is drawn from one seed, so the bytes are reproducible, and
columns are built with numpy and serialised by pandas, because the benchmark asks for a million
order versions.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np
import pandas as pd

from ons_pipeline.resources.defaults import SOURCE_TABLES
from ons_pipeline.sales.schema import PRIMARY_KEYS, SOURCE_COLUMNS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    table: tuple(SOURCE_COLUMNS[table]) for table in SOURCE_TABLES
}
"""ToteSys columns per source table, from the source contract (`sales/schema.py`)."""

BAD_ROW_REASONS: Final = (
    "malformed_json",
    "missing_required_key",
    "negative_units_sold",
    "unknown_currency_code",
    "missing_dimension",
    "staff_without_department",
)
DUPLICATE_REDELIVERY: Final = "duplicate_redelivery"
"""Not a bad row: an identical line delivered twice, which the pipeline must deduplicate."""

UNKNOWN_CURRENCY_CODE: Final = "XYZ"

# Every base dimension row in ToteSys was created at this instant.
_BASE_MS: Final = int(np.datetime64("2022-11-03T14:20:49.962", "ms").astype(np.int64))
# Sales windows start on a whole second after the base rows, so flooring a timestamp to the
# second (the fraction-less text) never moves it into an earlier packet's window.
_SALES_START_MS: Final = int(np.datetime64("2022-11-03T14:21:00", "ms").astype(np.int64))
_SALES_SPAN_MS: Final = 730 * 86_400_000
_MS_PER_S: Final = 1_000
_MS_PER_DAY: Final = 86_400_000
_WHOLE_SECOND_SHARE: Final = 0.05
_UPDATE_SHARE: Final = 0.30
_DIMENSION_UPDATE_SHARE: Final = 0.05
_INT_PRICE_SHARE: Final = 0.5
_MISSING_ID_OFFSET: Final = 1_000
_EMAIL_DOMAIN: Final = "@terrifictotes.com"

_CURRENCY_CODES: Final = ("GBP", "USD", "EUR")
_DEPARTMENTS: Final = (
    ("Sales", "Manchester"),
    ("Purchasing", "Manchester"),
    ("Production", "Leeds"),
    ("Dispatch", "Leeds"),
    ("Finance", "Manchester"),
    ("Facilities", "Manchester"),
    ("Communications", "Leeds"),
    ("HR", "Leeds"),
)
_FIRST_NAMES: Final = (
    "Jeremie", "Deron", "Jeanette", "Ana", "Magdalena", "Korey", "Raphael", "Oswaldo",
    "Brody", "Jazmyn", "Meda", "Imani", "Stan", "Rigoberto", "Tom", "Pierre", "Flavio",
    "Irving", "Mariela", "Eveline", "Ollie", "Lukas", "Zoë", "Łukasz", "Émile", "Siân",
    "José", "Björn", "Aoife", "Chloé", "Søren", "Nuño",
)  # fmt: skip
_LAST_NAMES: Final = (
    "Franey", "Beier", "Rosenbaum", "Reinger", "Bergnaum", "Hahn", "Herzog", "Kuhic",
    "Zieme", "Stark", "Lind", "Walsh", "O'Reilly", "Müller", "Núñez", "Kowalski", "Dvořák",
    "Søndergaard", "Lefèvre", "Hughes", "Patel", "Okafor", "Nakamura", "Brown",
)  # fmt: skip
_STREETS: Final = (
    "Khalil Grove", "Beier Cliffs", "Harmony Court", "Station Road", "Rua Augusta",
    "Avenida Paulista", "Ulica Długa", "Chemin des Étangs", "Bahnhofstraße", "Mill Lane",
    "Kirkgate", "Calle Mayor",
)  # fmt: skip
_ADDRESS_LINE_2: Final = ("Flat 3", "Suite 12", "Apt. 7", "Unit 2", "Floor 4", "Bâtiment B")
_DISTRICTS: Final = (
    "Avon", "Bedfordshire", "Cheshire", "Buckinghamshire", "Île-de-France", "Mazowieckie",
    "Bayern", "West Yorkshire",
)  # fmt: skip
_CITIES: Final = (
    "Manchester", "Leeds", "New Patienceburgh", "Aliso Viejo", "São Paulo", "Kraków",
    "Zürich", "Reykjavík", "Montréal", "Lagos", "Osaka", "Kendall",
)  # fmt: skip
_COUNTRIES: Final = (
    "United Kingdom", "Brazil", "Poland", "Switzerland", "Iceland", "Canada", "Nigeria",
    "Japan", "Côte d'Ivoire", "Türkiye", "Portugal", "Austria",
)  # fmt: skip
_DESIGN_NAMES: Final = (
    "Wooden", "Bronze", "Granite", "Soft", "Rubber", "Frozen", "Steel", "Concrete",
    "Cotton", "Plastic", "Fresh", "Metal", "Bespoke", "Handcrafted", "Ergonomic", "Rustic",
    "Refined", "Sleek", "Practical", "Recycled", "Café", "Crème", "Naïve", "Façade",
)  # fmt: skip
_FILE_LOCATIONS: Final = (
    "/usr/share", "/private", "/System", "/usr/ports", "/home/user/dir", "/lost+found",
    "/Users", "/opt/lib",
)  # fmt: skip
_COMPANY_SUFFIXES: Final = (" Inc", " LLC", " and Sons", " Group", " - Ltd")


class S3Putter(Protocol):
    """The one boto3 S3 client method :func:`land_packets` needs."""

    def put_object(self, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Packet:
    """One ingestion object: a table's JSON lines for one packet id."""

    table: str
    packet_id: int
    body: bytes = field(repr=False)

    @property
    def key(self) -> str:
        return packet_key(self.table, self.packet_id)


@dataclass(frozen=True)
class DemoCorpus:
    """Packets plus what was planted in them, so tests can check the pipeline's accounting.

    Attributes:
        packets: Every packet, ordered by (table, packet_id).
        bad_rows: Reason -> lines planted for it. ``unknown_currency_code`` and
            ``staff_without_department`` count two lines each (the bad dimension row and the
            sales order that references it); ``duplicate_redelivery`` is not bad, only repeated.
        rows_per_table: Lines written per table, bad and duplicate lines included.
        bad_rows_per_table: Table -> bad lines planted there (the duplicate not included).
    """

    packets: list[Packet]
    bad_rows: dict[str, int]
    rows_per_table: dict[str, int]
    bad_rows_per_table: dict[str, int] = field(default_factory=dict)


def packet_key(table: str, packet_id: int) -> str:
    """The S3 key the ingestion side writes a packet to."""
    return f"{table}/{table}-packet-{packet_id:08d}.jsonl"


def land_packets(s3_client: S3Putter, bucket: str, packets: Iterable[Packet]) -> list[str]:
    """Put each packet into ``bucket`` and return the keys in the order written."""
    keys = []
    for packet in packets:
        s3_client.put_object(
            Bucket=bucket, Key=packet.key, Body=packet.body, ContentType="application/x-ndjson"
        )
        keys.append(packet.key)
    return keys


def later_versions(
    table: str,
    body: bytes,
    rows: int,
    packet_id: int,
    *,
    day: int = 1,
    changes: dict[str, Any] | None = None,
    bad: dict[str, Any] | None = None,
) -> Packet:
    """A packet of `rows` later versions of distinct `table` rows from the packet `body`.

    Every version is updated on `day` of January 2031, after anything the generator writes
    (one second apart, from midnight): the usual delivery, which the sales assets take
    without reading the history. Orders sell one more unit; `changes` is merged into every
    row and `bad`, if given, into the last one (e.g. `{"units_sold": -1}`).
    """
    key = PRIMARY_KEYS[table]
    picked: dict[int, dict[str, Any]] = {}
    for line in body.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get(key), int):
            picked.setdefault(record[key], record)
            if len(picked) == rows:
                break
    out = []
    for offset, record in enumerate(picked.values()):
        hours, minutes, seconds = offset // 3600 % 24, offset // 60 % 60, offset % 60
        record["last_updated"] = f"2031-01-{day:02d}T{hours:02d}:{minutes:02d}:{seconds:02d}.000000"
        if table == "sales_order":
            record["units_sold"] = int(record.get("units_sold") or 0) + 1
        out.append({**record, **(changes or {})})
    if bad and out:
        out[-1].update(bad)
    return Packet(table, packet_id, b"".join(_line(record) for record in out))


def generate_totesys(
    n_order_versions: int = 2_000,
    *,
    packets_per_table: int = 3,
    seed: int = 7,
    bad_rows: bool = True,
) -> DemoCorpus:
    """Generate ToteSys packets for every source table.

    Args:
        n_order_versions: sales_order lines in total, planted bad and duplicate lines included.
            About 70% of the good lines are new orders; the rest are later versions of orders
            from earlier packets.
        packets_per_table: Packets per table. The first packet of each dimension holds all its
            base rows; later packets hold updated versions. With one packet there are no
            updates.
        seed: Seed of every random draw; the same arguments give byte-identical packets.
        bad_rows: Plant one case of each reason in :data:`BAD_ROW_REASONS` and one duplicate
            re-delivery in the last packets.

    Returns:
        The packets and what was planted in them.

    Raises:
        ValueError: If there are too few order versions for the planted lines or no packets.
    """
    planted = len(BAD_ROW_REASONS) + 1 if bad_rows else 0
    if n_order_versions < planted + 1:
        raise ValueError(f"n_order_versions must be at least {planted + 1}, not {n_order_versions}")
    if packets_per_table < 1:
        raise ValueError(f"packets_per_table must be at least 1, not {packets_per_table}")

    n = n_order_versions
    rngs = dict(
        zip(
            SOURCE_TABLES,
            (
                np.random.default_rng(s)
                for s in np.random.SeedSequence(seed).spawn(len(SOURCE_TABLES))
            ),
            strict=True,
        )
    )
    timeline = _Timeline(packets_per_table)
    sizes = {
        "department": len(_DEPARTMENTS),
        "currency": len(_CURRENCY_CODES),
        "staff": max(20, n // 2_000),
        "address": max(30, n // 1_000),
        "counterparty": max(20, n // 2_000),
        "design": max(50, n // 500),
    }
    bases = {
        "department": _departments(rngs["department"]),
        "currency": _currencies(rngs["currency"]),
        "staff": _staff(rngs["staff"], sizes["staff"], sizes["department"]),
        "address": _addresses(rngs["address"], sizes["address"]),
        "counterparty": _counterparties(
            rngs["counterparty"], sizes["counterparty"], sizes["address"]
        ),
        "design": _designs(rngs["design"], sizes["design"]),
    }
    planted_dimension_rows: dict[str, list[dict[str, Any]]] = {t: [] for t in bases}
    if bad_rows:
        planted_dimension_rows["currency"].append(
            {"currency_id": sizes["currency"] + 1, "currency_code": UNKNOWN_CURRENCY_CODE}
        )
        planted_dimension_rows["staff"].append(
            {
                "staff_id": sizes["staff"] + 1,
                "first_name": "Zoë",
                "last_name": "Łukasiewicz",
                "department_id": sizes["department"] + _MISSING_ID_OFFSET,
                "email_address": "zoe.lukasiewicz" + _EMAIL_DOMAIN,
            }
        )

    packets: list[Packet] = []
    lines = dict.fromkeys(SOURCE_TABLES, 0)
    for table, base in bases.items():
        table_packets, table_lines = _dimension_packets(
            table, base, _MUTATORS[table], planted_dimension_rows[table], timeline, rngs[table]
        )
        packets.extend(table_packets)
        lines[table] = table_lines
    sales_packets, lines["sales_order"] = _sales_packets(
        n - planted, sizes, timeline, rngs["sales_order"], bad_rows=bad_rows
    )
    packets.extend(sales_packets)
    packets.sort(key=lambda p: (p.table, p.packet_id))

    reasons = (*BAD_ROW_REASONS, DUPLICATE_REDELIVERY)
    bad_counts = dict.fromkeys(reasons, 0)
    bad_per_table = dict.fromkeys(SOURCE_TABLES, 0)
    if bad_rows:
        bad_counts.update(dict.fromkeys(reasons, 1))
        bad_counts["unknown_currency_code"] = 2
        bad_counts["staff_without_department"] = 2
        bad_per_table.update(sales_order=len(BAD_ROW_REASONS), currency=1, staff=1)
    return DemoCorpus(
        packets=packets,
        bad_rows=bad_counts,
        rows_per_table=lines,
        bad_rows_per_table=bad_per_table,
    )


class _Timeline:
    """Packet k's rows change inside window k, so later packets always carry later times."""

    def __init__(self, packets: int) -> None:
        self.packets = packets
        self.width_ms = _SALES_SPAN_MS // packets // _MS_PER_S * _MS_PER_S

    def draw(
        self, rng: np.random.Generator, packet_id: int, size: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sorted ms timestamps in the packet's window and which of them drop the fraction."""
        start = _SALES_START_MS + (packet_id - 1) * self.width_ms
        ms = np.sort(rng.integers(start + _MS_PER_S, start + self.width_ms - _MS_PER_S, size))
        whole = rng.random(size) < _WHOLE_SECOND_SHARE
        return np.where(whole, ms - ms % _MS_PER_S, ms), whole


def _timestamp_text(ms: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """ToteSys text: microseconds always written, except on rows already floored to a second."""
    values = np.asarray(ms, dtype=np.int64).astype("datetime64[ms]")
    text = np.datetime_as_string(values, unit="us").astype(object)
    if whole.any():
        text[whole] = np.datetime_as_string(values[whole], unit="s")
    return text


def _date_text(days: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(np.asarray(days, dtype=np.int64).astype("datetime64[D]"))


def _pick(rng: np.random.Generator, vocabulary: tuple[str, ...], size: int) -> np.ndarray:
    return np.asarray(vocabulary, dtype=object)[rng.integers(0, len(vocabulary), size)]


def _pick_other(
    rng: np.random.Generator, vocabulary: tuple[str, ...], old: pd.Series
) -> np.ndarray:
    """A vocabulary word different from each old value, so an update visibly changes it."""
    new = _pick(rng, vocabulary, len(old))
    same = new == old.to_numpy(dtype=object)
    following = {word: vocabulary[(i + 1) % len(vocabulary)] for i, word in enumerate(vocabulary)}
    new[same] = pd.Series(new[same]).map(following).to_numpy(dtype=object)
    return new


def _changed(rng: np.random.Generator, old: np.ndarray, low: int, high: int) -> np.ndarray:
    """Integers in [low, high) that all differ from ``old``."""
    new = rng.integers(low, high, len(old))
    return np.where(new == old, low + (new - low + 1) % (high - low), new)


def _ascii_slug(words: np.ndarray) -> np.ndarray:
    """Lower-case ASCII forms for e-mail addresses and file names ("Zoë" -> "zoe")."""
    folded = {
        word: "".join(
            c
            for c in unicodedata.normalize("NFKD", word.replace("Ł", "L").replace("ł", "l"))
            if c.isascii() and c.isalnum()
        ).lower()
        for word in set(words.tolist())
    }
    return pd.Series(words, dtype=object).map(folded).to_numpy(dtype=object)


def _full_names(rng: np.random.Generator, size: int) -> np.ndarray:
    return _pick(rng, _FIRST_NAMES, size) + " " + _pick(rng, _LAST_NAMES, size)


def _emails(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    return _ascii_slug(first) + "." + _ascii_slug(last) + _EMAIL_DOMAIN


def _digits(rng: np.random.Generator, size: int, width: int) -> np.ndarray:
    return pd.Series(rng.integers(10 ** (width - 1), 10**width, size)).astype(str).to_numpy()


def _departments(rng: np.random.Generator) -> pd.DataFrame:
    del rng
    return pd.DataFrame(
        {
            "department_id": np.arange(1, len(_DEPARTMENTS) + 1),
            "department_name": [name for name, _ in _DEPARTMENTS],
            "location": [location for _, location in _DEPARTMENTS],
            "manager": [
                "Rhonda Reinger", "Nicholas Ruecker", "Siân Müller", "Ana Dvořák",
                "Émile Lefèvre", "Tom Hughes", "Łukasz Kowalski", "Jeremie Franey",
            ],
        }
    )  # fmt: skip


def _currencies(rng: np.random.Generator) -> pd.DataFrame:
    del rng
    return pd.DataFrame(
        {
            "currency_id": np.arange(1, len(_CURRENCY_CODES) + 1),
            "currency_code": list(_CURRENCY_CODES),
        }
    )


def _staff(rng: np.random.Generator, size: int, departments: int) -> pd.DataFrame:
    first = _pick(rng, _FIRST_NAMES, size)
    last = _pick(rng, _LAST_NAMES, size)
    return pd.DataFrame(
        {
            "staff_id": np.arange(1, size + 1),
            "first_name": first,
            "last_name": last,
            "department_id": rng.integers(1, departments + 1, size),
            "email_address": _emails(first, last),
        }
    )


def _addresses(rng: np.random.Generator, size: int) -> pd.DataFrame:
    line_2 = _pick(rng, _ADDRESS_LINE_2, size)
    line_2[rng.random(size) < 0.4] = None
    district = _pick(rng, _DISTRICTS, size)
    district[rng.random(size) < 0.4] = None
    return pd.DataFrame(
        {
            "address_id": np.arange(1, size + 1),
            "address_line_1": pd.Series(rng.integers(1, 300, size)).astype(str).to_numpy()
            + " "
            + _pick(rng, _STREETS, size),
            "address_line_2": line_2,
            "district": district,
            "city": _pick(rng, _CITIES, size),
            "postal_code": _digits(rng, size, 5),
            "country": _pick(rng, _COUNTRIES, size),
            "phone": _digits(rng, size, 4) + " " + _digits(rng, size, 6),
        }
    )


def _counterparties(rng: np.random.Generator, size: int, addresses: int) -> pd.DataFrame:
    single = _pick(rng, _LAST_NAMES, size) + _pick(rng, _COMPANY_SUFFIXES, size)
    partners = (
        _pick(rng, _LAST_NAMES, size)
        + ", "
        + _pick(rng, _LAST_NAMES, size)
        + " and "
        + _pick(rng, _LAST_NAMES, size)
    )
    return pd.DataFrame(
        {
            "counterparty_id": np.arange(1, size + 1),
            "counterparty_legal_name": np.where(rng.random(size) < 0.5, single, partners),
            "legal_address_id": rng.integers(1, addresses + 1, size),
            "commercial_contact": _full_names(rng, size),
            "delegate_contact": _full_names(rng, size),
        }
    )


def _design_file_names(rng: np.random.Generator, names: np.ndarray) -> np.ndarray:
    size = len(names)
    day = _date_text(_BASE_MS // _MS_PER_DAY - rng.integers(0, 365, size))
    stamp = pd.Series(day).str.replace("-", "", regex=False).to_numpy(dtype=object)
    letters = rng.integers(ord("a"), ord("z") + 1, (size, 4)).astype(np.uint8)
    suffix = letters.view("S4").ravel().astype(str).astype(object)
    return _ascii_slug(names) + "-" + stamp + "-" + suffix + ".json"


def _designs(rng: np.random.Generator, size: int) -> pd.DataFrame:
    names = _pick(rng, _DESIGN_NAMES, size)
    return pd.DataFrame(
        {
            "design_id": np.arange(1, size + 1),
            "design_name": names,
            "file_location": _pick(rng, _FILE_LOCATIONS, size),
            "file_name": _design_file_names(rng, names),
        }
    )


def _mutate_staff(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    rows["last_name"] = _pick_other(rng, _LAST_NAMES, rows["last_name"])
    rows["email_address"] = _emails(
        rows["first_name"].to_numpy(dtype=object), rows["last_name"].to_numpy(dtype=object)
    )
    return rows


def _mutate_department(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    rows["manager"] = _full_names(rng, len(rows))
    return rows


def _mutate_address(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    rows["phone"] = _digits(rng, len(rows), 4) + " " + _digits(rng, len(rows), 6)
    return rows


def _mutate_currency(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """ToteSys touches currency rows without changing them: only last_updated moves."""
    del rng
    return rows


def _mutate_design(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    rows["design_name"] = _pick_other(rng, _DESIGN_NAMES, rows["design_name"])
    rows["file_name"] = _design_file_names(rng, rows["design_name"].to_numpy(dtype=object))
    return rows


def _mutate_counterparty(rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    rows["commercial_contact"] = _full_names(rng, len(rows))
    return rows


_MUTATORS: Final[dict[str, Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]]] = {
    "staff": _mutate_staff,
    "department": _mutate_department,
    "address": _mutate_address,
    "currency": _mutate_currency,
    "design": _mutate_design,
    "counterparty": _mutate_counterparty,
}


def _to_jsonl(frame: pd.DataFrame) -> bytes:
    if frame.empty:
        return b""
    # Ten decimal places, then trailing zeros trimmed: cents / 100 prints as 2.97. At 15 places
    # pandas writes 2.970000000000001 for most prices (checked over 0.00 to 10000.00).
    text = frame.to_json(orient="records", force_ascii=False, double_precision=10)
    # lines=True re-scans the text in Python (3 s of the 1M-row benchmark). Splitting the array
    # at "},{" is exact when the only braces are the records' own, which the count proves.
    if text.count("{") == len(frame):
        text = text[1:-1].replace("},{", "}\n{") + "\n"
    else:
        text = frame.to_json(orient="records", lines=True, force_ascii=False, double_precision=10)
    # pandas escapes every "/" as "\/"; ToteSys extracts do not. Undoing it is exact because
    # pandas also escapes every backslash, so no other "\/" can occur.
    return text.replace("\\/", "/").encode("utf-8")


def _line(record: dict[str, Any]) -> bytes:
    """One planted line, in the same compact form as pandas writes the rest."""
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _insert_lines(body: bytes, lines: list[bytes], rng: np.random.Generator) -> bytes:
    """Scatter ``lines`` between existing lines so planted rows are not all at the end."""
    cuts = []
    for position in rng.integers(0, len(body) + 1, len(lines)):
        newline = body.find(b"\n", int(position))
        cuts.append(len(body) if newline < 0 or position == len(body) else newline + 1)
    order = np.argsort(cuts, kind="stable")
    pieces, previous = [], 0
    for i in order:
        pieces += [body[previous : cuts[i]], lines[i]]
        previous = cuts[i]
    pieces.append(body[previous:])
    return b"".join(pieces)


def _with_times(
    frame: pd.DataFrame,
    table: str,
    created: tuple[np.ndarray, np.ndarray],
    updated: tuple[np.ndarray, np.ndarray],
) -> pd.DataFrame:
    frame = frame.copy()
    frame["created_at"] = _timestamp_text(*created)
    frame["last_updated"] = _timestamp_text(*updated)
    return frame[list(COLUMNS[table])]


def _dimension_packets(
    table: str,
    base: pd.DataFrame,
    mutate: Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame],
    planted: list[dict[str, Any]],
    timeline: _Timeline,
    rng: np.random.Generator,
) -> tuple[list[Packet], int]:
    """Packet 1 holds every base row; later packets hold a few updated versions each."""
    size = len(base)
    base_whole = rng.random(size) < _WHOLE_SECOND_SHARE
    base_ms = np.where(base_whole, _BASE_MS - _BASE_MS % _MS_PER_S, _BASE_MS)
    created = (base_ms, base_whole)
    current = base.copy()
    frames = [_with_times(base, table, created, created)]
    updates = min(size, max(1, round(size * _DIMENSION_UPDATE_SHARE)))
    for packet_id in range(2, timeline.packets + 1):
        index = rng.choice(size, updates, replace=False)
        rows = mutate(current.iloc[index].reset_index(drop=True), rng)
        for column in rows.columns:
            current.loc[index, column] = rows[column].to_numpy()
        frames.append(
            _with_times(
                rows,
                table,
                (created[0][index], created[1][index]),
                timeline.draw(rng, packet_id, updates),
            )
        )
    bodies = [_to_jsonl(frame) for frame in frames]
    if planted:
        ms, whole = timeline.draw(rng, timeline.packets, len(planted))
        stamps = _timestamp_text(ms, whole)
        records = [
            {**row, "created_at": stamp, "last_updated": stamp}
            for row, stamp in zip(planted, stamps, strict=True)
        ]
        lines = [_line({column: r[column] for column in COLUMNS[table]}) for r in records]
        bodies[-1] = _insert_lines(bodies[-1], lines, rng)
    packets = [Packet(table, i, body) for i, body in enumerate(bodies, start=1)]
    return packets, sum(len(frame) for frame in frames) + len(planted)


def _split(total: int, parts: int) -> np.ndarray:
    """Sizes of ``parts`` near-equal chunks of ``total``, larger ones first."""
    sizes = np.full(parts, total // parts, dtype=np.int64)
    sizes[: total % parts] += 1
    return sizes


class _Orders:
    """Every order's current version, so an update changes what the previous version said."""

    def __init__(
        self,
        rng: np.random.Generator,
        created: tuple[np.ndarray, np.ndarray],
        sizes: dict[str, int],
    ) -> None:
        count = len(created[0])
        self.created_ms, self.created_whole = created
        self.design_id = rng.integers(1, sizes["design"] + 1, count)
        self.staff_id = rng.integers(1, sizes["staff"] + 1, count)
        self.counterparty_id = rng.integers(1, sizes["counterparty"] + 1, count)
        self.currency_id = rng.integers(1, sizes["currency"] + 1, count)
        self.location_id = rng.integers(1, sizes["address"] + 1, count)
        self.units_sold = rng.integers(1_000, 100_001, count)
        self.price_cents = rng.integers(200, 401, count)
        self.price_as_int = rng.random(count) < _INT_PRICE_SHARE
        # At least one whole price written as a JSON integer, so readers meet that case.
        first_whole = rng.integers(0, count)
        self.price_cents[first_whole], self.price_as_int[first_whole] = 300, True
        created_day = self.created_ms // _MS_PER_DAY
        self.delivery_day = created_day + rng.integers(2, 8, count)
        self.payment_day = created_day + rng.integers(1, 8, count)

    def update(self, rng: np.random.Generator, ids: np.ndarray, updated_ms: np.ndarray) -> None:
        """Change units, price or agreed dates (at least one) of orders ``ids`` (1-based)."""
        i = ids - 1
        size = len(i)
        units, price, dates = rng.random((3, size)) < np.array([[0.6], [0.5], [0.4]])
        units |= ~(price | dates)
        self.units_sold[i] = np.where(
            units, _changed(rng, self.units_sold[i], 1_000, 100_001), self.units_sold[i]
        )
        self.price_cents[i] = np.where(
            price, _changed(rng, self.price_cents[i], 200, 401), self.price_cents[i]
        )
        self.price_as_int[i] = np.where(
            price, rng.random(size) < _INT_PRICE_SHARE, self.price_as_int[i]
        )
        updated_day = updated_ms // _MS_PER_DAY
        new_delivery = updated_day + rng.integers(2, 8, size)
        new_delivery = np.where(
            new_delivery == self.delivery_day[i], new_delivery + 1, new_delivery
        )
        new_payment = updated_day + rng.integers(1, 8, size)
        new_payment = np.where(new_payment == self.payment_day[i], new_payment + 1, new_payment)
        self.delivery_day[i] = np.where(dates, new_delivery, self.delivery_day[i])
        self.payment_day[i] = np.where(dates, new_payment, self.payment_day[i])

    def frame(self, ids: np.ndarray, updated: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
        """The current versions of orders ``ids`` as ToteSys columns."""
        i = ids - 1
        cents = self.price_cents[i]
        price = (cents / 100).astype(object)
        integer = self.price_as_int[i] & (cents % 100 == 0)
        price[integer] = (cents[integer] // 100).astype(object)
        return pd.DataFrame(
            {
                "sales_order_id": ids,
                "created_at": _timestamp_text(self.created_ms[i], self.created_whole[i]),
                "last_updated": _timestamp_text(*updated),
                "design_id": self.design_id[i],
                "staff_id": self.staff_id[i],
                "counterparty_id": self.counterparty_id[i],
                "units_sold": self.units_sold[i],
                "unit_price": price,
                "currency_id": self.currency_id[i],
                "agreed_delivery_date": _date_text(self.delivery_day[i]),
                "agreed_payment_date": _date_text(self.payment_day[i]),
                "agreed_delivery_location_id": self.location_id[i],
            }
        )


def _sales_packets(
    n_good: int,
    sizes: dict[str, int],
    timeline: _Timeline,
    rng: np.random.Generator,
    *,
    bad_rows: bool,
) -> tuple[list[Packet], int]:
    """Good versions split evenly over the packets; a packet updates only earlier orders."""
    packets = timeline.packets
    lines = _split(n_good, packets)
    wanted_updates = _split(round(n_good * _UPDATE_SHARE), max(packets - 1, 1))
    new_counts, update_counts, available = [], [], 0
    for k in range(packets):
        updates = 0 if k == 0 else int(min(wanted_updates[k - 1], lines[k], available))
        new_counts.append(int(lines[k]) - updates)
        update_counts.append(updates)
        available += new_counts[-1]

    created = [timeline.draw(rng, k + 1, new_counts[k]) for k in range(packets)]
    orders = _Orders(
        rng,
        (
            np.concatenate([ms for ms, _ in created]),
            np.concatenate([whole for _, whole in created]),
        ),
        sizes,
    )
    bodies, first_id = [], 1
    for k in range(packets):
        new_ids = np.arange(first_id, first_id + new_counts[k])
        new_frame = orders.frame(new_ids, created[k])
        update_ids = rng.choice(first_id - 1, update_counts[k], replace=False) + 1
        updated = timeline.draw(rng, k + 1, update_counts[k])
        orders.update(rng, update_ids, updated[0])
        frame = pd.concat([new_frame, orders.frame(update_ids, updated)], ignore_index=True)
        stamp_order = np.argsort(np.concatenate([created[k][0], updated[0]]), kind="stable")
        bodies.append(_to_jsonl(frame.iloc[stamp_order]))
        first_id += new_counts[k]

    planted: list[bytes] = []
    if bad_rows:
        planted = _planted_orders(first_id, sizes, timeline, rng)
        planted.append(_random_line(bodies[0], rng))
        bodies[-1] = _insert_lines(bodies[-1], planted, rng)
    packets_out = [Packet("sales_order", i, body) for i, body in enumerate(bodies, start=1)]
    return packets_out, n_good + len(planted)


def _random_line(body: bytes, rng: np.random.Generator) -> bytes:
    """A whole line of ``body`` (newline included), for an exact re-delivery."""
    position = int(rng.integers(0, len(body)))
    start = body.rfind(b"\n", 0, position) + 1
    return body[start : body.index(b"\n", position) + 1]


def _planted_orders(
    first_id: int, sizes: dict[str, int], timeline: _Timeline, rng: np.random.Generator
) -> list[bytes]:
    """One sales_order line per bad-row reason, with ids after every good order."""
    count = len(BAD_ROW_REASONS)
    ms, whole = timeline.draw(rng, timeline.packets, count)
    orders = _Orders(rng, (ms, whole), sizes)
    frame = orders.frame(np.arange(1, count + 1), (ms, whole))
    frame["sales_order_id"] += first_id - 1
    records = [
        {
            column: value.item() if isinstance(value, np.generic) else value
            for column, value in row.items()
        }
        for row in frame.to_dict(orient="records")
    ]
    malformed, missing_key, negative, currency, dimension, staff = records
    del missing_key["units_sold"]
    negative["units_sold"] = -int(rng.integers(1, 100))
    currency["currency_id"] = sizes["currency"] + 1
    dimension["design_id"] = sizes["design"] + _MISSING_ID_OFFSET
    staff["staff_id"] = sizes["staff"] + 1
    truncated = _line(malformed)
    return [
        truncated[: len(truncated) // 2] + b"\n",
        *(_line(r) for r in (missing_key, negative, currency, dimension, staff)),
    ]
