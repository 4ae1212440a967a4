"""Ingest trade files (CSV or Parquet) into the trades table, quarantining bad rows.

Each file is one unit: it is read and validated completely before anything is written, and a
file that cannot be read at all (empty, truncated, missing columns, binary junk) raises a
one-line InputError and writes nothing. Good rows are appended; rows with a reason go to the
`trades_rejected` table with their original text, the file and the row number. Counts always
add up: read = ingested + quarantined + duplicates.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import attrs
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from rollup.errors import InputError
from rollup.tables import REJECTED_TABLE, Tables
from rollup.validate import TimeBounds, validate

REQUIRED = ("exchange", "symbol", "trade_id", "ts", "price", "quantity")
OPTIONAL = ("side",)
CONTENT = ("ts", "price", "quantity", "side")


@attrs.frozen
class IngestReport:
    """Counts for one file: read = ingested + quarantined + duplicates."""

    file: str
    read: int
    ingested: int
    quarantined: int
    duplicates: int

    def describe(self) -> str:
        return (f"{self.file}: read {self.read}, ingested {self.ingested}, "
                f"quarantined {self.quarantined}, duplicates skipped {self.duplicates}")


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


def with_row_numbers(df: DataFrame) -> DataFrame:
    """Add `source_row` (1-based order within a single file) without collecting rows."""
    tagged = df.withColumn("_pid", F.spark_partition_id()).withColumn(
        "_mid", F.monotonically_increasing_id())
    counts = tagged.groupBy("_pid").agg(F.count(F.lit(1)).alias("_n"), F.min("_mid").alias("_m0"))
    offsets = counts.withColumn(
        "_off", F.coalesce(F.sum("_n").over(Window.orderBy("_pid").rowsBetween(
            Window.unboundedPreceding, -1)), F.lit(0)))
    joined = tagged.join(F.broadcast(offsets.select("_pid", "_off", "_m0")), "_pid")
    return joined.withColumn("source_row", F.col("_off") + F.col("_mid") - F.col("_m0") + 1).drop(
        "_pid", "_mid", "_off", "_m0")


def read_raw(spark: SparkSession, path: Path, fmt: str | None = None) -> DataFrame:
    """A file's rows as text columns plus source_file and source_row; InputError if unusable."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    kind = _format_of(path, fmt)
    try:
        if kind == "csv":
            df = spark.read.option("header", True).option("inferSchema", False).option(
                "mode", "PERMISSIVE").csv(str(path))
        else:
            df = spark.read.parquet(str(path))
        columns = [c.strip().lower() for c in df.columns]
    except Exception as exc:  # noqa: BLE001 - turn Spark's stack into one line
        raise InputError(f"{path}: not a readable {kind} file ({_first_line(exc)})") from None
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(REQUIRED)}"
            " and optionally side")
    renamed = df.toDF(*columns)
    for name in OPTIONAL:
        if name not in columns:
            renamed = renamed.withColumn(name, F.lit(None).cast("string"))
    text = renamed.select(*[F.col(c).cast("string").alias(c) for c in (*REQUIRED, *OPTIONAL)])
    return with_row_numbers(text).withColumn("source_file", F.lit(str(path)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:200]


def ingest_file(
    tables: Tables,
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    time_unit: str | None = None,
    bounds: TimeBounds | None = None,
    ingest_id: str | None = None,
) -> IngestReport:
    """Validate one file and append its good rows; bad rows go to quarantine with a reason."""
    spark = tables.spark
    file = Path(path).expanduser().resolve()
    now = datetime.now(UTC)
    ingest_id = ingest_id or f"ingest-{now:%Y%m%dT%H%M%S%f}"
    raw = read_raw(spark, file, fmt)
    try:
        checked = validate(raw, time_unit=time_unit, bounds=bounds or TimeBounds(),
                           now=now).localCheckpoint()
        read = checked.count()
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{file}: cannot be read ({_first_line(exc)})") from None
    if read == 0:
        raise InputError(f"{file}: no data rows")

    good = checked.where(F.col("reason").isNull()).select(
        *[F.col(f"_{c}").alias(c) for c in ("exchange", "symbol", "trade_id", "ts", "price",
                                             "quantity", "side")],
        "source_row",
    )
    key = ["exchange", "symbol", "trade_id"]
    first = Window.partitionBy(*key).orderBy("source_row")
    ranked = good.withColumn("_first_row", F.first("source_row").over(first))
    firsts = ranked.where(F.col("source_row") == F.col("_first_row"))
    repeats = ranked.where(F.col("source_row") != F.col("_first_row")).join(
        firsts.select(*key, *[F.col(c).alias(f"_f_{c}") for c in CONTENT]), key)
    same_as_first = _same_content(repeats, "_f_")
    in_file_dupes = repeats.where(same_as_first).select("source_row")
    in_file_conflicts = repeats.where(~same_as_first).select(
        "source_row", F.lit("trade_id repeated in this file with different content").alias("r"))

    existing = tables.read_trades().select(*key, *[F.col(c).alias(f"_e_{c}") for c in CONTENT])
    against = firsts.join(existing, key, "left")
    known = F.col("_e_ts").isNotNull()
    stored_same = known & _same_content(against, "_e_")
    stored_dupes = against.where(stored_same).select("source_row")
    stored_conflicts = against.where(known & ~stored_same).select(
        "source_row", F.lit("trade_id already stored with different content").alias("r"))
    new_rows = against.where(~known).select(
        *key, "ts", "price", "quantity", "side",
        F.lit(now).cast("timestamp").alias("ingested_at"))

    conflicts = in_file_conflicts.unionByName(stored_conflicts).localCheckpoint()
    duplicates = in_file_dupes.count() + stored_dupes.count()
    rejected = checked.where(F.col("reason").isNotNull()).select(
        *[F.col(c) for c in (*REQUIRED, *OPTIONAL)], "source_file", "source_row", "reason"
    ).unionByName(
        checked.join(conflicts, "source_row").select(
            *[F.col(c) for c in (*REQUIRED, *OPTIONAL)], "source_file", "source_row",
            F.col("r").alias("reason"))
    ).withColumn("rejected_at", F.lit(now).cast("timestamp")).withColumn(
        "ingest_id", F.lit(ingest_id)).localCheckpoint()
    new_rows = new_rows.localCheckpoint()
    ingested = new_rows.count()
    quarantined = rejected.count()
    if ingested:
        new_rows.writeTo(tables.trades).append()
    if quarantined:
        _quarantine(tables, rejected)
    return IngestReport(str(file), read, ingested, quarantined, duplicates)


def _same_content(df: DataFrame, prefix: str) -> F.Column:
    cond = F.lit(True)
    for c in CONTENT:
        cond = cond & F.col(c).eqNullSafe(F.col(f"{prefix}{c}"))
    return cond


def _quarantine(tables: Tables, rejected: DataFrame) -> None:
    """Append rejected rows, skipping rows already quarantined from the same file and row."""
    target = tables.name(REJECTED_TABLE)
    stored = tables.spark.table(target).select("source_file", "source_row", "reason")
    fresh = rejected.join(stored, ["source_file", "source_row", "reason"], "left_anti")
    fresh.select(*REJECTED_COLUMN_NAMES).writeTo(target).append()


REJECTED_COLUMN_NAMES = (*REQUIRED, *OPTIONAL, "source_file", "source_row", "reason",
                         "rejected_at", "ingest_id")


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
            errors.append(InputError(f"{path}: {_first_line(exc)}"))
    return reports, errors
