"""A faithful loader of QuantConnect LEAN futures tick-trade and minute-trade files.

File layout (as found in LEAN's ``Data/future/<market>/{tick,minute}/<root>/``):

- one zip per day, ``YYYYMMDD_trade.zip``;
- inside it one CSV per contract, named ``YYYYMMDD_<root>_<resolution>_trade_<expiry>.csv``,
  e.g. ``20131007_gc_tick_trade_201312.csv`` (``<expiry>`` is the contract month ``YYYYMM``;
  a ``YYYYMMDD`` expiry is accepted too);
- no header, ``\\n`` line ends, plain decimal text.
- tick rows:   ``ms_since_midnight,price,quantity,exchange,condition,suspicious``
- minute rows: ``ms_since_midnight(bar open),open,high,low,close,volume``

Facts taken from the files themselves (COMEX GC sample, 2013-10-07..09):

- **Prices are not scaled.** LEAN scales *equity* prices by 10000 (integer deci-cents), but
  these futures files carry plain decimal prices (``1313.7`` USD/oz) in both the tick and the
  minute files, so both loaders read the text as written and the two products compare
  directly. (Only the futures member layout above is accepted, so scaled equity files are
  rejected rather than silently mis-read.)
- **The last row of every tick file is a byte-for-byte repeat of the row before it**; it is
  a vendor artefact, not a trade, and the published minute bars do not count it.
- Trades carry no id; file order is the only tie-break within one millisecond.
- Zero-quantity ticks exist and do count for open/high/low/close of the published bars.
- **Time zone: unverified.** The ms-since-midnight values are treated as UTC. Circumstantial
  evidence supports UTC: the front contract's daily gap runs from 21:15 to 22:00 file time,
  which is the 17:15-18:00 America/New_York Globex maintenance break of October 2013 (EDT,
  UTC-4). No vendor documentation was checked. Ticks and bars share the zone, so comparing
  them is unaffected either way.

Symbol rule: ``f"{ROOT} {expiry}"`` -- the root from the member name upper-cased, one space,
the expiry digits as written in the member name, e.g. ``GC 201312``.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rollup.adapters.frame import PRICE_TYPE, QUANTITY_TYPE, TRADES_SCHEMA, TS_TYPE, VOLUME_TYPE
from rollup.errors import ConfigError, InputError
from rollup.settings.env import value as env_value
from rollup.specs.bar import BAR_COLUMNS
from rollup.specs.columns import arrow_schema, columns_named

__all__ = [
    "LEAN_DATA_ENV",
    "LEAN_GC_DATASET",
    "MINUTE_BARS_SCHEMA",
    "lean_data_dir",
    "read_lean_minute_bars",
    "read_lean_trades",
]

LEAN_DATA_ENV = "ROLLUP_LEAN_DATA"
"""Environment variable naming the LEAN sample dataset directory (see `lean_data_dir`)."""

LEAN_GC_DATASET = "lean_comex_gc_1m_2013-10"
"""Name of the COMEX GC sample dataset directory inside the shared data directory."""

MINUTE_BARS_SCHEMA = arrow_schema(columns_named(
    BAR_COLUMNS, ("symbol", "window_start", "open", "high", "low", "close", "volume")))
"""Schema of `read_lean_minute_bars`: the vendor's published 1-minute trade bars."""

VENDOR_COLUMNS_SCHEMA = pa.schema(
    [
        pa.field("lean_exchange", pa.string(), nullable=False),
        pa.field("condition", pa.string(), nullable=True),
        pa.field("suspicious", pa.bool_(), nullable=False),
    ]
)
"""Extra columns appended by ``read_lean_trades(..., vendor_columns=True)``."""

DROPPED_ROWS_METADATA_KEY = b"rollup.lean.dropped_duplicate_rows"
"""Schema-metadata key of `read_lean_trades` output: number of vendor duplicate rows dropped."""

_MS_PER_DAY = 86_400_000
_US_PER_DAY = 86_400_000_000
_ROWS_PER_DAY_ID = 10**9  # trade_id = days_since_epoch * 10**9 + row_number_in_file
_EPOCH = date(1970, 1, 1)

_ZIP_NAME = re.compile(r"^(?P<date>\d{8})_trade\.zip$")
_MEMBER_NAME = re.compile(
    r"^(?P<date>\d{8})_(?P<root>[a-z0-9]+)_(?P<resolution>tick|minute)_trade_"
    r"(?P<expiry>\d{6}|\d{8})\.csv$"
)
_UINT = re.compile(r"^[0-9]+$")
_DECIMAL_TEXT = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_UDECIMAL_TEXT = re.compile(r"^[0-9]+(\.[0-9]+)?$")

_TICK_COLUMNS = 6
_MINUTE_COLUMNS = 6


# --------------------------------------------------------------------------- data location


def _dataset_in(directory: Path) -> Path | None:
    """`directory` itself if it holds tick/ and minute/, else its LEAN dataset child, else None."""
    for candidate in (directory, directory / LEAN_GC_DATASET):
        if (candidate / "tick").is_dir() and (candidate / "minute").is_dir():
            return candidate
    return None


def lean_data_dir(shared_data: str | os.PathLike[str] | None = None) -> Path | None:
    """Locate the LEAN COMEX GC sample dataset (the directory holding ``tick/`` and ``minute/``).

    Search order:

    1. env ``ROLLUP_LEAN_DATA``: the dataset directory itself or a directory containing
       ``lean_comex_gc_1m_2013-10``; if it is set but holds neither, `ConfigError` is raised
       (an explicit setting is never silently ignored);
    2. ``shared_data`` if given (e.g. ``Path(__file__).resolve().parents[2] / "shared" /
       "data"`` from a test in ``<repo>/tests``);
    3. ``<repo>/../shared/data`` computed from this module's location (source checkouts);
    4. ``./../shared/data`` relative to the current working directory.

    Returns None when the data is absent, so callers can skip.
    """
    env = env_value(LEAN_DATA_ENV)
    if env:
        found = _dataset_in(Path(env).expanduser())
        if found is None:
            raise ConfigError(
                f"{LEAN_DATA_ENV}={env!r} holds neither tick/ and minute/ nor {LEAN_GC_DATASET}/"
            )
        return found.resolve()
    candidates: list[Path] = []
    if shared_data is not None:
        candidates.append(Path(shared_data))
    candidates.append(Path(__file__).resolve().parents[3].parent / "shared" / "data")
    candidates.append(Path.cwd().parent / "shared" / "data")
    for candidate in candidates:
        found = _dataset_in(candidate)
        if found is not None:
            return found.resolve()
    return None


# --------------------------------------------------------------------------- file discovery


@dataclass(frozen=True)
class _Member:
    zip_path: Path
    name: str
    day: date
    symbol: str

    @property
    def where(self) -> str:
        return f"{self.zip_path}:{self.name}"


def _zip_files(path_or_dir: str | os.PathLike[str], resolution: str) -> list[Path]:
    path = Path(path_or_dir)
    if path.is_file():
        return [path]
    if path.is_dir():
        if (path / resolution).is_dir():
            path = path / resolution
        zips = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith("_trade.zip"))
        if not zips:
            raise InputError(f"{path}: no LEAN YYYYMMDD_trade.zip files found")
        return zips
    raise InputError(f"{path}: no such file or directory")


def _members(zip_path: Path, resolution: str) -> Iterator[tuple[_Member, bytes]]:
    zip_match = _ZIP_NAME.match(zip_path.name)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            infos = sorted(
                (i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename
            )
            for info in infos:
                where = f"{zip_path}:{info.filename}"
                m = _MEMBER_NAME.match(info.filename)
                if m is None:
                    raise InputError(
                        f"{where}: member name is not YYYYMMDD_<root>_<resolution>_trade_"
                        "<expiry>.csv (only LEAN futures trade files are supported)"
                    )
                if m["resolution"] != resolution:
                    raise InputError(
                        f"{where}: a {m['resolution']} file where {resolution} files are expected"
                    )
                if zip_match is not None and zip_match["date"] != m["date"]:
                    raise InputError(f"{where}: member date differs from the zip file's date")
                try:
                    day = datetime.strptime(m["date"], "%Y%m%d").date()
                except ValueError:
                    raise InputError(f"{where}: invalid date {m['date']!r}") from None
                symbol = f"{m['root'].upper()} {m['expiry']}"
                yield _Member(zip_path, info.filename, day, symbol), archive.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise InputError(f"{zip_path}: not a readable zip archive ({exc})") from None


def _lines(member: _Member, data: bytes) -> list[str]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise InputError(f"{member.where}: non-ASCII byte at offset {exc.start}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _split(member: _Member, lines: list[str], n_columns: int) -> list[list[str]]:
    """Columns of the rows (column-major), checking the column count of every row."""
    rows = [line.split(",") for line in lines]
    for number, row in enumerate(rows, start=1):
        if len(row) != n_columns:
            raise InputError(
                f"{member.where}: line {number}: expected {n_columns} columns, got {len(row)}"
            )
    if not rows:
        return [[] for _ in range(n_columns)]
    return [list(column) for column in zip(*rows, strict=True)]


def _check_text(member: _Member, values: list[str], pattern: re.Pattern[str], what: str) -> None:
    for number, value in enumerate(values, start=1):
        if pattern.match(value) is None:
            raise InputError(f"{member.where}: line {number}: bad {what} {value!r}")


def _decimal(member: _Member, values: list[str], type_: pa.DataType, what: str) -> pa.Array:
    """Exact text -> decimal conversion (never via float); errors name the file and line."""
    try:
        return pc.cast(pa.array(values, pa.string()), type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for number, value in enumerate(values, start=1):
            try:
                pc.cast(pa.array([value], pa.string()), type_)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputError(
                    f"{member.where}: line {number}: {what} {value!r} does not fit {type_}"
                ) from None
        raise


def _ms_of_day(member: _Member, values: list[str]) -> np.ndarray:
    _check_text(member, values, _UINT, "ms_since_midnight")
    ms = np.array([int(v) for v in values], dtype=np.int64)
    bad = np.flatnonzero(ms >= _MS_PER_DAY)
    if bad.size:
        line = int(bad[0]) + 1
        raise InputError(
            f"{member.where}: line {line}: ms_since_midnight {values[line - 1]} >= 1 day"
        )
    return ms


def _timestamps(day: date, ms: np.ndarray) -> pa.Array:
    day_us = (day - _EPOCH).days * _US_PER_DAY
    return pa.array(ms * 1000 + day_us, type=pa.int64()).cast(TS_TYPE)


# --------------------------------------------------------------------------- tick trades


def read_lean_trades(
    path_or_dir: str | os.PathLike[str],
    exchange: str = "COMEX",
    *,
    vendor_columns: bool = False,
) -> pa.Table:
    """Read LEAN futures tick-trade files into rollup's trades frame (`TRADES_SCHEMA`).

    ``path_or_dir`` is one ``YYYYMMDD_trade.zip``, a directory of them, or a dataset directory
    with a ``tick/`` subdirectory. Every contract CSV in every zip is read; rows come out in
    (file date, member name, file row) order.

    - ``exchange``: the constant venue code written to every row (the vendor's own exchange
      field, ``usa``, is a market code, not a venue).
    - ``symbol``: ``f"{ROOT} {expiry}"`` from the member name, e.g. ``GC 201312``.
    - ``ts``: file date + ms_since_midnight, **treated as UTC; the vendor zone is unverified**
      (see the module docstring for the evidence that it is UTC).
    - ``price`` / ``quantity``: the text parsed exactly into decimal128(18,8) / (20,8); never
      via float; no scaling (futures files are not scaled, unlike LEAN equity files). More than
      8 decimals, a negative quantity or a non-decimal text raises `InputError`.
    - ``trade_id``: ``days_since_1970(file date) * 10**9 + row_number`` (0-based row in the
      file). Unique and increasing per symbol, follows file order -- the only tie-break the
      vendor provides -- and does not depend on which other files are loaded.
    - ``side``: null (LEAN trade ticks carry no aggressor side).
    - The vendor's duplicated last row is dropped: **only the last row of a file, and only
      when it is a byte-for-byte repeat of the row before it**. Identical rows elsewhere are
      kept (several trades can share time, price and size). The number dropped is stored in
      the schema metadata under ``rollup.lean.dropped_duplicate_rows``.
    - Zero-quantity ticks are kept (they count for open/high/low/close of the vendor's bars).
    - ``vendor_columns=True`` appends ``lean_exchange`` (string), ``condition`` (string, null
      when empty) and ``suspicious`` (bool); by default they are left out of the frame.

    Malformed input (unreadable zip, unexpected member name, wrong column count, bad number)
    raises a one-line `InputError` naming the file (``zip:member``) and the line.
    """
    if not isinstance(exchange, str) or not exchange:
        raise ConfigError(f"exchange must be a non-empty string, got {exchange!r}")
    tables: list[pa.Table] = []
    seen: set[tuple[str, date]] = set()
    dropped = 0
    for zip_path in _zip_files(path_or_dir, "tick"):
        for member, data in _members(zip_path, "tick"):
            if (member.symbol, member.day) in seen:
                raise InputError(f"{member.where}: {member.symbol} on {member.day} read twice")
            seen.add((member.symbol, member.day))
            lines = _lines(member, data)
            if len(lines) >= 2 and lines[-1] == lines[-2]:
                lines.pop()
                dropped += 1
            tables.append(_tick_table(member, lines, exchange, vendor_columns))
    schema = _trades_output_schema(vendor_columns)
    metadata = {DROPPED_ROWS_METADATA_KEY: str(dropped).encode()}
    if not tables:
        return schema.empty_table().replace_schema_metadata(metadata)
    return pa.concat_tables(tables).replace_schema_metadata(metadata)


def _trades_output_schema(vendor_columns: bool) -> pa.Schema:
    fields = list(TRADES_SCHEMA)
    if vendor_columns:
        fields += list(VENDOR_COLUMNS_SCHEMA)
    return pa.schema(fields)


def _tick_table(member: _Member, lines: list[str], exchange: str, vendor_columns: bool) -> pa.Table:
    if len(lines) >= _ROWS_PER_DAY_ID:
        raise InputError(f"{member.where}: more than {_ROWS_PER_DAY_ID} rows")
    ms_text, price_text, qty_text, lean_exchange, condition, suspicious = _split(
        member, lines, _TICK_COLUMNS
    )
    n = len(lines)
    ms = _ms_of_day(member, ms_text)
    _check_text(member, price_text, _DECIMAL_TEXT, "price")
    _check_text(member, qty_text, _UDECIMAL_TEXT, "quantity")
    for number, flag in enumerate(suspicious, start=1):
        if flag not in ("0", "1"):
            raise InputError(f"{member.where}: line {number}: bad suspicious flag {flag!r}")
    first_id = (member.day - _EPOCH).days * _ROWS_PER_DAY_ID
    columns: list[pa.Array] = [
        pa.array([exchange] * n, pa.string()),
        pa.array([member.symbol] * n, pa.string()),
        pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
        _timestamps(member.day, ms),
        _decimal(member, price_text, PRICE_TYPE, "price"),
        _decimal(member, qty_text, QUANTITY_TYPE, "quantity"),
        pa.nulls(n, pa.string()),
    ]
    if vendor_columns:
        columns += [
            pa.array(lean_exchange, pa.string()),
            pa.array([c or None for c in condition], pa.string()),
            pa.array([s == "1" for s in suspicious], pa.bool_()),
        ]
    return pa.Table.from_arrays(columns, schema=_trades_output_schema(vendor_columns))


# --------------------------------------------------------------------------- minute bars


def read_lean_minute_bars(path_or_dir: str | os.PathLike[str]) -> pa.Table:
    """Read LEAN futures minute-trade bar files into a table of `MINUTE_BARS_SCHEMA`.

    ``path_or_dir`` is one ``YYYYMMDD_trade.zip``, a directory of them, or a dataset directory
    with a ``minute/`` subdirectory. Columns: ``symbol`` (same rule as `read_lean_trades`),
    ``window_start`` (file date + bar-open ms, treated as UTC like the ticks), ``open``,
    ``high``, ``low``, ``close`` (decimal128(18,8)) and ``volume`` (decimal128(38,8)), all
    parsed exactly from the text with no scaling -- the same units as the tick files, so bars
    rebuilt from `read_lean_trades` compare directly. Rows come out in file order. A bar
    whose start is not on a whole minute, or any malformed row, raises a one-line
    `InputError` naming the file and line.
    """
    tables: list[pa.Table] = []
    seen: set[tuple[str, date]] = set()
    for zip_path in _zip_files(path_or_dir, "minute"):
        for member, data in _members(zip_path, "minute"):
            if (member.symbol, member.day) in seen:
                raise InputError(f"{member.where}: {member.symbol} on {member.day} read twice")
            seen.add((member.symbol, member.day))
            tables.append(_minute_table(member, _lines(member, data)))
    if not tables:
        return MINUTE_BARS_SCHEMA.empty_table()
    return pa.concat_tables(tables)


def _minute_table(member: _Member, lines: list[str]) -> pa.Table:
    ms_text, open_, high, low, close, volume = _split(member, lines, _MINUTE_COLUMNS)
    ms = _ms_of_day(member, ms_text)
    off = np.flatnonzero(ms % 60_000)
    if off.size:
        line = int(off[0]) + 1
        raise InputError(
            f"{member.where}: line {line}: bar start {ms_text[line - 1]} ms is not "
            "on a whole minute"
        )
    for values, what in ((open_, "open"), (high, "high"), (low, "low"), (close, "close")):
        _check_text(member, values, _DECIMAL_TEXT, what)
    _check_text(member, volume, _UDECIMAL_TEXT, "volume")
    columns = [
        pa.array([member.symbol] * len(lines), pa.string()),
        _timestamps(member.day, ms),
        _decimal(member, open_, PRICE_TYPE, "open"),
        _decimal(member, high, PRICE_TYPE, "high"),
        _decimal(member, low, PRICE_TYPE, "low"),
        _decimal(member, close, PRICE_TYPE, "close"),
        _decimal(member, volume, VOLUME_TYPE, "volume"),
    ]
    return pa.Table.from_arrays(columns, schema=MINUTE_BARS_SCHEMA)
