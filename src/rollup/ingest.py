"""Ingest trade files (CSV or Parquet) into the trades table, quarantining bad rows.

Each file is one unit. Its header or footer and column types are checked before Spark reads
it, then every row is validated and classified (ingested, quarantined or exact duplicate)
completely, on the executors, before anything is written. A file that cannot be used at all
(empty, truncated, binary junk, missing columns, a column of the wrong type) raises a
one-line InputError naming the file and writes nothing. Good rows are appended; rows with a
reason go to the `trades_rejected` table with their original text, the file and the row
number. Counts always add up: read = ingested + quarantined + duplicates.

Nothing is collected to the driver but counts: a file larger than the driver's memory
streams through Spark.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import attrs
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from rollup.errors import InputError, RollupError, one_line
from rollup.tables import REJECTED_TABLE, Tables
from rollup.validate import (
    CORRUPT_COLUMN,
    R_CONFLICT_FILE,
    R_CONFLICT_STORED,
    TimeBounds,
    as_text,
    is_systematic,
    validate,
)

REQUIRED = ("exchange", "symbol", "trade_id", "ts", "price", "quantity")
OPTIONAL = ("side",)
CONTENT = ("ts", "price", "quantity", "side")
KEY = ("exchange", "symbol", "trade_id")
INGESTED, QUARANTINED, DUPLICATE = "ingested", "quarantined", "duplicate"
_HEADER_LIMIT = 1 << 16

_TEXT_TYPES = (T.StringType, T.VarcharType, T.CharType)
_INTEGRAL = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
_NUMERIC = (*_INTEGRAL, T.DecimalType, T.FloatType, T.DoubleType)
_ALLOWED_TYPES: dict[str, tuple[type, ...]] = {
    "exchange": _TEXT_TYPES,
    "symbol": _TEXT_TYPES,
    "side": _TEXT_TYPES,
    "trade_id": (*_TEXT_TYPES, *_INTEGRAL, T.DecimalType, T.FloatType, T.DoubleType),
    "ts": (*_TEXT_TYPES, *_INTEGRAL, T.DecimalType, T.TimestampType, T.TimestampNTZType,
           T.DateType),
    "price": (*_TEXT_TYPES, *_NUMERIC),
    "quantity": (*_TEXT_TYPES, *_NUMERIC),
}
_EXPECTED_TYPES = {
    "exchange": "text", "symbol": "text", "side": "text", "trade_id": "an integer or text",
    "ts": "a timestamp, integer epoch numbers or ISO-8601 text",
    "price": "a decimal, a number or text", "quantity": "a decimal, a number or text",
}


@attrs.frozen
class IngestReport:
    """Counts for one file: read = ingested + quarantined + duplicates."""

    file: str
    read: int
    ingested: int
    quarantined: int
    duplicates: int
    reasons: Mapping[str, int] = attrs.field(factory=dict)
    """Quarantined rows per reason."""
    ingest_id: str | None = None

    def describe(self) -> str:
        text = (f"{self.file}: read {self.read}, ingested {self.ingested}, "
                f"quarantined {self.quarantined}, duplicates skipped {self.duplicates}")
        if self.reasons:
            parts = sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            text += " (" + "; ".join(f"{reason}: {n}" for reason, n in parts) + ")"
        return text


def _format_of(path: Path, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("csv", "parquet"):
            raise InputError(f"invalid format {fmt!r} for {path}: expected csv or parquet")
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise InputError(f"{path}: unknown file type {suffix or '(none)'}: expected .csv or .parquet "
                     "(or pass --format)")


def _data_files(path: Path) -> list[Path]:
    """The file itself, or the non-empty files under a directory (not hidden, not `_SUCCESS`)."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.stat().st_size > 0 and not any(
        part.startswith(("_", ".")) for part in p.relative_to(path).parts))
    if not files:
        raise InputError(f"{path}: directory holds no data files")
    return files


def csv_header(path: Path) -> list[str]:
    """The lower-cased column names of a CSV file's header; InputError if it has none."""
    with path.open("rb") as handle:
        head = handle.read(_HEADER_LIMIT)
    if not head.strip():
        raise InputError(f"{path}: empty file")
    if b"\x00" in head:
        raise InputError(f"{path}: binary data, not a CSV text file")
    line, newline, _ = head.partition(b"\n")
    if not newline and len(head) == _HEADER_LIMIT:
        raise InputError(f"{path}: no line break in the first 64 KiB: not a CSV file")
    try:
        text = line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        raise InputError(f"{path}: the header line is not UTF-8 text: not a CSV file") from None
    names = [name.strip().lower() for name in next(csv.reader([text]), [])]
    return names


def _check_columns(path: Path, names: Sequence[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen and name in (*REQUIRED, *OPTIONAL):
            raise InputError(f"{path}: column {name} appears twice")
        seen.add(name)
    missing = [c for c in REQUIRED if c not in seen]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}: the first line must be a header "
            f"naming {', '.join(REQUIRED)} (and optionally side)")


def _spark_path(path: Path) -> str:
    """The path for Spark's reader, with Hadoop glob characters escaped (a name, not a glob)."""
    return re.sub(r"([\\\[\]{}*?])", r"\\\1", str(path))


def _read_csv(spark: SparkSession, path: Path) -> DataFrame:
    names = csv_header(path)
    _check_columns(path, names)
    positional = [n if n and n not in names[:i] else f"_c{i}" for i, n in enumerate(names)]
    schema = T.StructType([T.StructField(n, T.StringType()) for n in positional]
                          + [T.StructField(CORRUPT_COLUMN, T.StringType())])
    return (spark.read.schema(schema).option("header", True).option("mode", "PERMISSIVE")
            .option("escape", '"')  # RFC 4180: a quote inside a quoted field is doubled
            .option("columnNameOfCorruptRecord", CORRUPT_COLUMN).csv(_spark_path(path)))


def _check_parquet_footer(file: Path) -> None:
    """Read the footer with pyarrow: a truncated or junk file fails here, before Spark."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(file)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds
        raise InputError(f"{file}: not a Parquet file or truncated ({one_line(exc)})") from None
    for field in schema:
        if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
            raise InputError(
                f"{file}: column {field.name} holds nanosecond timestamps, which Spark "
                "cannot read: write microseconds (pyarrow coerce_timestamps='us') or "
                "int64 epoch nanoseconds and pass --time-unit ns")


def _read_parquet(spark: SparkSession, path: Path) -> DataFrame:
    _check_parquet_footer(path)
    df = spark.read.parquet(_spark_path(path))
    names = [c.strip().lower() for c in df.columns]
    _check_columns(path, names)
    renamed = df.toDF(*names)
    for field in renamed.schema.fields:
        allowed = _ALLOWED_TYPES.get(field.name)
        if allowed is not None and not isinstance(field.dataType, allowed):
            raise InputError(
                f"{path}: column {field.name} has type {field.dataType.simpleString()}: "
                f"expected {_EXPECTED_TYPES[field.name]}")
    return renamed


def _read_file(spark: SparkSession, file: Path, fmt: str | None) -> tuple[DataFrame, bool]:
    """One file's trade columns as text with source_file, and whether ts was a timestamp."""
    if file.stat().st_size == 0:
        raise InputError(f"{file}: empty file")
    kind = _format_of(file, fmt)
    try:
        df = _read_csv(spark, file) if kind == "csv" else _read_parquet(spark, file)
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - turn Spark's stack into one line
        raise InputError(f"{file}: not a readable {kind} file ({one_line(exc)})") from None
    text, ts_is_timestamp = as_text(df)
    if CORRUPT_COLUMN not in text.columns:
        text = text.withColumn(CORRUPT_COLUMN, F.lit(None).cast("string"))
    return (text.select(*REQUIRED, *OPTIONAL, CORRUPT_COLUMN)
            .withColumn("source_file", F.lit(str(file))), ts_is_timestamp)


def _read(spark: SparkSession, path: Path, fmt: str | None) -> tuple[DataFrame, bool]:
    """(rows as text with source_file and source_row, whether ts was a timestamp column).

    A directory is read file by file (each with its own header or schema) and numbered per
    file, so quarantined rows name their own file and row.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file")
    parts = [_read_file(spark, file, fmt) for file in _data_files(path)]
    if len({ts_is_timestamp for _, ts_is_timestamp in parts}) > 1:
        raise InputError(f"{path}: some files hold ts as timestamps and others as text or "
                         "numbers: ingest them separately")
    rows = parts[0][0]
    for frame, _ in parts[1:]:
        rows = rows.unionByName(frame)
    return with_row_numbers(rows, within="source_file"), parts[0][1]


def read_raw(spark: SparkSession, path: Path, fmt: str | None = None) -> DataFrame:
    """A file's rows as text columns plus source_file and source_row; InputError if unusable."""
    return _read(spark, Path(path), fmt)[0]


def with_row_numbers(df: DataFrame, within: str | None = None) -> DataFrame:
    """Add `source_row`: 1-based order of the rows as read, restarting for each value of
    the column `within` (e.g. the source file), without collecting rows.

    Spark reads a file's splits into consecutive partitions in byte order and numbers rows
    within a partition in order; counting the rows of each earlier partition gives offsets.
    """
    keys = [within] if within else []
    tagged = df.withColumn("_pid", F.spark_partition_id()).withColumn(
        "_mid", F.monotonically_increasing_id())
    counts = tagged.groupBy(*keys, "_pid").agg(F.count(F.lit(1)).alias("_n"),
                                               F.min("_mid").alias("_m0"))
    groups = [F.col(k) for k in keys] or [F.lit(0)]
    before = Window.partitionBy(*groups).orderBy("_pid").rowsBetween(
        Window.unboundedPreceding, -1)  # one row per input partition: a tiny window
    offsets = counts.withColumn("_off", F.coalesce(F.sum("_n").over(before), F.lit(0)))
    joined = tagged.join(F.broadcast(offsets.select(*keys, "_pid", "_off", "_m0")),
                         [*keys, "_pid"])
    return joined.withColumn("source_row", F.col("_off") + F.col("_mid") - F.col("_m0") + 1).drop(
        "_pid", "_mid", "_off", "_m0")


def classify(checked: DataFrame, stored: DataFrame) -> DataFrame:
    """Give every validated row an `outcome` (ingested, quarantined, duplicate) and reason.

    A good row whose content equals a stored trade with the same (exchange, symbol, trade_id)
    is a duplicate; with different content it is quarantined. Within the file, the first row
    of a key counts; a later row with the same content is a duplicate, with different
    content it is quarantined. Joins are against distinct stored rows, so no row multiplies.
    """
    typed = {c: F.col(f"_{c}") for c in (*KEY, *CONTENT)}
    good = F.col("reason").isNull()
    window = Window.partitionBy(good, *[typed[c] for c in KEY]).orderBy("source_row")
    flagged = checked.select(
        "*",
        (F.col("source_row") == F.first("source_row").over(window)).alias("_is_first"),
        *[F.first(typed[c]).over(window).alias(f"_first_{c}") for c in CONTENT],
    )
    known = stored.select(*[F.col(c).alias(f"_k_{c}") for c in KEY]).distinct()
    same = stored.select(*[F.col(c).alias(f"_s_{c}") for c in (*KEY, *CONTENT)]).distinct()
    joined = flagged.join(
        known.withColumn("_known", F.lit(True)),
        [typed[c] == F.col(f"_k_{c}") for c in KEY], "left",
    ).join(
        same.withColumn("_stored_same", F.lit(True)),
        [typed[c].eqNullSafe(F.col(f"_s_{c}")) for c in (*KEY, *CONTENT)], "left",
    )
    same_as_first: Column = F.lit(True)
    for c in CONTENT:
        same_as_first = same_as_first & typed[c].eqNullSafe(F.col(f"_first_{c}"))
    stored_same = F.coalesce(F.col("_stored_same"), F.lit(False))
    is_known = F.coalesce(F.col("_known"), F.lit(False))
    reason = (F.when(~good, F.col("reason"))
              .when(stored_same, F.lit(None))
              .when(is_known, F.lit(R_CONFLICT_STORED))
              .when(F.col("_is_first") | same_as_first, F.lit(None))
              .otherwise(F.lit(R_CONFLICT_FILE)))
    outcome = (F.when(reason.isNotNull(), F.lit(QUARANTINED))
               .when(stored_same | ~F.col("_is_first"), F.lit(DUPLICATE))
               .otherwise(F.lit(INGESTED)))
    helper = [c for c in joined.columns if c.startswith(("_first_", "_k_", "_s_"))]
    return (joined.withColumn("outcome", outcome).withColumn("reason", reason)
            .drop("_is_first", "_known", "_stored_same", *helper))


def ingest_file(
    tables: Tables,
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    time_unit: str | None = None,
    bounds: TimeBounds | None = None,
    ingest_id: str | None = None,
) -> IngestReport:
    """Validate one file and append its good rows; bad rows go to quarantine with a reason.

    Args:
        tables: where the trades and `trades_rejected` tables live.
        path: a CSV or Parquet file (or a directory of them, read as one unit).
        fmt: "csv" or "parquet"; default from the file suffix.
        time_unit: s, ms, us or ns when `ts` holds epoch numbers; None for ISO-8601 text.
        bounds: accepted trade times (default 2009-01-01 to now + 1 day).
        ingest_id: id stored with quarantined rows (default from the clock).

    Raises:
        InputError: the file cannot be used at all; nothing of it was written.
    """
    spark = tables.spark
    file = Path(path).expanduser().resolve()
    now = datetime.now(UTC)
    ingest_id = ingest_id or f"ingest-{now:%Y%m%dT%H%M%S%f}"
    raw, ts_is_timestamp = _read(spark, file, fmt)
    unit = None if ts_is_timestamp else time_unit
    try:
        checked = validate(raw, time_unit=unit, bounds=bounds or TimeBounds(), now=now)
        stored = tables.read_trades().select(*KEY, *CONTENT)
        classified = classify(checked, stored).localCheckpoint(eager=True)
        summary = classified.groupBy("outcome", "reason").count().collect()
    except RollupError:
        raise
    except Exception as exc:  # noqa: BLE001 - a file Spark fails to read: one line
        raise InputError(f"{file}: cannot be read ({one_line(exc)})") from None
    counts = {INGESTED: 0, QUARANTINED: 0, DUPLICATE: 0}
    reasons: dict[str, int] = {}
    for row in summary:
        counts[row["outcome"]] += row["count"]
        if row["reason"] is not None:
            reasons[row["reason"]] = reasons.get(row["reason"], 0) + row["count"]
    read = sum(counts.values())
    if read == 0:
        raise InputError(f"{file}: no data rows")
    if counts[QUARANTINED] == read and len(reasons) == 1 and is_systematic(next(iter(reasons))):
        raise InputError(f"{file}: every row fails with '{next(iter(reasons))}': a column has "
                         "the wrong type or order (or --time-unit is wrong); nothing written")
    if counts[QUARANTINED]:
        _quarantine(tables, classified.where(F.col("outcome") == QUARANTINED), now, ingest_id)
    if counts[INGESTED]:
        classified.where(F.col("outcome") == INGESTED).select(
            *[F.col(f"_{c}").alias(c) for c in (*KEY, *CONTENT)],
            F.lit(now).cast("timestamp").alias("ingested_at"),
        ).writeTo(tables.trades).append()
    return IngestReport(str(file), read, counts[INGESTED], counts[QUARANTINED],
                        counts[DUPLICATE], reasons, ingest_id)


REJECTED_COLUMN_NAMES = (*REQUIRED, *OPTIONAL, "source_file", "source_row", "reason",
                         "rejected_at", "ingest_id")


def _quarantine(tables: Tables, rejected: DataFrame, now: datetime, ingest_id: str) -> None:
    """Append rejected rows, skipping rows already quarantined from the same file and row."""
    target = tables.name(REJECTED_TABLE)
    stored = tables.spark.table(target).select("source_file", "source_row", "reason")
    fresh = rejected.join(stored, ["source_file", "source_row", "reason"], "left_anti")
    fresh.select(
        *REQUIRED, *OPTIONAL, "source_file", "source_row", "reason",
        F.lit(now).cast("timestamp").alias("rejected_at"), F.lit(ingest_id).alias("ingest_id"),
    ).writeTo(target).append()


def quarantine_rows(tables: Tables, rejected: DataFrame, *, ingest_id: str) -> None:
    """Quarantine rows found invalid outside `rollup ingest` (an external source table)."""
    _quarantine(tables, rejected.select(
        *[F.col(c).cast("string") for c in (*REQUIRED, *OPTIONAL)],
        F.col("source_file"), F.col("source_row").cast("long"), F.col("reason")),
        datetime.now(UTC), ingest_id)


def ingest_files(
    tables: Tables,
    paths: Sequence[str | os.PathLike[str]],
    **options: object,
) -> tuple[list[IngestReport], list[InputError]]:
    """Ingest several files; a file that fails is reported and the others still go in."""
    reports: list[IngestReport] = []
    errors: list[InputError] = []
    for path in paths:
        try:
            reports.append(ingest_file(tables, path, **options))  # type: ignore[arg-type]
        except InputError as exc:
            errors.append(exc)
        except AnalysisException as exc:
            errors.append(InputError(f"{path}: {one_line(exc)}"))
    return reports, errors
