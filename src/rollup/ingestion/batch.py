"""Ingest trade files (CSV or Parquet) into the trades table, quarantining bad rows.

Each file (or directory of files) is one unit. Its header or footer and column types are
checked before Spark reads it, then every row is validated and classified (ingested,
quarantined or duplicate) completely, on the executors, before anything is written. A file
that cannot be used at all (empty, truncated, binary junk, missing columns, a column of the
wrong type) raises a one-line InputError naming the file and writes nothing. Good rows go to
the trades table; rows with a reason go to `trades_rejected` with their original text, the
file and the row number. Counts always add up: read = ingested + quarantined + duplicates.

Work is bounded by the batch: the file is parsed and validated once (kept on the executors),
and duplicate and conflict checks read only the days the batch touches. The write is
exactly once: it is validated against the trades snapshot the checks read, so an ingest that
raced with another one is re-checked and retried (see docs/input.md).
"""
from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import monotonic

import attrs
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from rollup.errors import IngestConflictError, InputError, RollupError, one_line
from rollup.spark.engine import is_commit_conflict
from rollup.specs.bar import FEED_NAMES, REJECTED_COLUMNS, REQUIRED_TRADE_COLUMNS, TRADE_COLUMNS
from rollup.specs.bar import TRADE_KEY as KEY
from rollup.specs.trade_ids import TradeIds
from rollup.storage.state import current_snapshot, read_at
from rollup.storage.tables import REJECTED_TABLE, Tables
from rollup.transforms.validate import (
    CORRUPT_COLUMN,
    R_CONFLICT_FILE,
    R_CONFLICT_STORED,
    TimeBounds,
    is_systematic,
    is_timestamp_type,
    validate,
    with_ordinal_keys,
    with_trade_columns,
)

CONTENT = tuple(c.name for c in TRADE_COLUMNS if c.name not in (*KEY, "ingested_at"))
"""What two deliveries of a key must agree on to be the same trade."""
TYPED = tuple(f"_{c}" for c in (*KEY, *CONTENT))
COMMIT_ATTEMPTS = 5
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
    retries: int = 0
    """Commits retried because another writer committed to the trades table first."""

    def describe(self) -> str:
        text = (f"{self.file}: read {self.read}, ingested {self.ingested}, "
                f"quarantined {self.quarantined}, duplicates skipped {self.duplicates}")
        if self.reasons:
            parts = sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            text += " (" + "; ".join(f"{reason}: {n}" for reason, n in parts) + ")"
        if self.retries:
            text += f"; checked again {self.retries} time(s) after concurrent writes"
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


def _check_columns(path: Path, names: Sequence[str],
                   required: Sequence[str] = REQUIRED_TRADE_COLUMNS) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen and name in FEED_NAMES:
            raise InputError(f"{path}: column {name} appears twice")
        seen.add(name)
    missing = [c for c in required if c not in seen]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}: the first line must be a header "
            f"naming {', '.join(required)} (and optionally side)")


def _spark_path(path: Path) -> str:
    """The path for Spark's reader, with Hadoop glob characters escaped (a name, not a glob)."""
    return re.sub(r"([\\\[\]{}*?])", r"\\\1", str(path))


def _read_csv(spark: SparkSession, path: Path, required: Sequence[str]) -> DataFrame:
    names = csv_header(path)
    _check_columns(path, names, required)
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


def _read_parquet(spark: SparkSession, path: Path, required: Sequence[str]) -> DataFrame:
    _check_parquet_footer(path)
    df = spark.read.parquet(_spark_path(path))
    names = [c.strip().lower() for c in df.columns]
    _check_columns(path, names, required)
    renamed = df.toDF(*names)
    for field in renamed.schema.fields:
        allowed = _ALLOWED_TYPES.get(field.name)
        if allowed is not None and not isinstance(field.dataType, allowed):
            raise InputError(
                f"{path}: column {field.name} has type {field.dataType.simpleString()}: "
                f"expected {_EXPECTED_TYPES[field.name]}")
    return renamed


def _read_file(spark: SparkSession, file: Path, fmt: str | None, number: int,
               required: Sequence[str]) -> DataFrame:
    """One file's trade columns, typed as stored in the file, with its name and number."""
    if file.stat().st_size == 0:
        raise InputError(f"{file}: empty file")
    kind = _format_of(file, fmt)
    try:
        df = (_read_csv(spark, file, required) if kind == "csv"
              else _read_parquet(spark, file, required))
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - turn Spark's stack into one line
        raise InputError(f"{file}: not a readable {kind} file ({one_line(exc)})") from None
    df = with_trade_columns(df)
    corrupt = F.col(CORRUPT_COLUMN) if CORRUPT_COLUMN in df.columns else F.lit(None).cast(
        "string")
    return df.select(*FEED_NAMES, corrupt.alias(CORRUPT_COLUMN),
                     F.lit(str(file)).alias("source_file"), F.lit(number).alias("_file_no"))


SPREAD_BYTES = 16 << 20
"""Input of at least this size is spread over every core when Spark reads it in fewer
partitions (a Parquet file of one row group is read by one task)."""


def _spread(spark: SparkSession, raw: DataFrame, size: int) -> DataFrame:
    """`raw` (`size` bytes of files) repartitioned over the cores if it is large and read by
    fewer tasks; its row order columns (`_pid`, `_mid`) are kept, so row numbers hold."""
    cores = spark.sparkContext.defaultParallelism
    if size < SPREAD_BYTES or raw.rdd.getNumPartitions() >= cores:
        return raw
    return raw.repartition(cores)


def _read(spark: SparkSession, path: Path, fmt: str | None,
          required: Sequence[str] = REQUIRED_TRADE_COLUMNS) -> DataFrame:
    """Rows as read plus source_file, `_file_no` and their order within the file.

    A directory is read file by file (each with its own header or schema); files whose
    column types differ are read as text. `_pid` and `_mid` follow the byte order of each
    file (Spark reads a file's splits into consecutive partitions); `with_source_rows`
    turns them into row numbers.
    """
    if not path.exists():
        raise InputError(f"{path}: no such file")
    files = _data_files(path)
    parts = [_read_file(spark, file, fmt, number, required) for number, file in enumerate(files)]
    if len({is_timestamp_type(part.schema["ts"].dataType) for part in parts}) > 1:
        raise InputError(f"{path}: some files hold ts as timestamps and others as text or "
                         "numbers: ingest them separately")
    if len({part.schema.simpleString() for part in parts}) > 1:
        parts = [part.select(*[F.col(c).cast("string").alias(c) if c in FEED_NAMES
                               and not is_timestamp_type(part.schema[c].dataType) else F.col(c)
                               for c in part.columns]) for part in parts]
    rows = parts[0]
    for frame in parts[1:]:
        rows = rows.unionByName(frame)
    rows = rows.withColumn("_pid", F.spark_partition_id()).withColumn(
        "_mid", F.monotonically_increasing_id())
    return _spread(spark, rows, sum(f.stat().st_size for f in files))


def with_source_rows(df: DataFrame, rows: DataFrame | None = None) -> DataFrame:
    """`rows` (default `df`) with `source_row`: the 1-based row number within its file.

    `df` holds every row read, with `_file_no`, `_pid` and `_mid` from `_read`; counting the
    rows of each earlier partition of a file gives offsets, without collecting rows.
    """
    counts = df.groupBy("_file_no", "_pid").agg(F.count(F.lit(1)).alias("_n"),
                                                F.min("_mid").alias("_m0"))
    before = Window.partitionBy("_file_no").orderBy("_pid").rowsBetween(
        Window.unboundedPreceding, -1)  # one row per input partition: a tiny window
    offsets = counts.withColumn("_off", F.coalesce(F.sum("_n").over(before), F.lit(0)))
    joined = (df if rows is None else rows).join(
        F.broadcast(offsets.select("_file_no", "_pid", "_off", "_m0")), ["_file_no", "_pid"])
    return joined.withColumn("source_row", F.col("_off") + F.col("_mid") - F.col("_m0") + 1
                             ).drop("_off", "_m0")


def read_raw(spark: SparkSession, path: Path, fmt: str | None = None) -> DataFrame:
    """A file's rows as read plus source_file and source_row; InputError if unusable."""
    return with_source_rows(_read(spark, Path(path), fmt)).drop("_file_no", "_pid", "_mid")


def _checked(raw: DataFrame, *, time_unit: str | None, bounds: TimeBounds, now: datetime,
             ids: TradeIds) -> DataFrame:
    """Validated rows, narrowed to what classification and quarantine need.

    Good rows keep their typed columns only; rejected rows also keep their original text.
    """
    checked = validate(raw, time_unit=time_unit, bounds=bounds, now=now, trade_ids=ids)
    if ids.needs_order:  # rank within each file's microsecond, in row order
        checked = with_ordinal_keys(checked, ids, within=["_file_no"], order=["_mid"])
    bad = F.col("reason").isNotNull()
    return checked.select(
        "_file_no", "_pid", "_mid", "source_file", *TYPED, "reason",
        *[F.when(bad, F.col(c).cast("string")).alias(c) for c in FEED_NAMES])


def _with_content(rejected: DataFrame) -> DataFrame:
    """Rejected rows with their trade as text: a row that passed validation and was set aside
    by classification (a conflicting trade id) keeps no original text, so its typed values
    are written out (ts in ISO-8601 with its offset, decimals in plain notation)."""
    text = {
        "ts": F.date_format("_ts", "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"),
        "trade_id": F.coalesce(F.col("_trade_ref"), F.col("_trade_id").cast("string")),
    }
    return rejected.select("*", *[
        F.coalesce(F.col(c), text.get(c, F.col(f"_{c}").cast("string"))).alias(f"__{c}")
        for c in FEED_NAMES]).drop(*FEED_NAMES).select(
        "*", *[F.col(f"__{c}").alias(c) for c in FEED_NAMES]).drop(
        *[f"__{c}" for c in FEED_NAMES])


def _days(checked: DataFrame) -> list[date]:
    """The UTC days of the good rows (the trades-table partitions the batch touches)."""
    rows = (checked.where(F.col("reason").isNull()).select(F.to_date("_ts").alias("d"))
            .distinct().collect())
    return sorted(row["d"] for row in rows)


def _stored_in(tables: Tables, days: Sequence[date], snapshot: int | None) -> DataFrame | None:
    """Stored trades of `days` at `snapshot` (pruned to those partitions), or None if empty."""
    if snapshot is None or not days:
        return None
    from rollup.transforms.bars import MAX_PRUNE_RANGES, coarsen, in_ranges

    one = timedelta(days=1)
    spans = coarsen([(datetime.combine(d, time(0), UTC), datetime.combine(d, time(0), UTC) + one)
                     for d in days], MAX_PRUNE_RANGES)
    stored = read_at(tables.spark, tables.trades, snapshot)
    return stored.where(in_ranges("ts", spans)).select(*KEY, *CONTENT)


BROADCAST_ROWS = 500_000
"""Repeated or stored keys up to this many are joined back by broadcast (no shuffle)."""


def _join_small(big: DataFrame, small: DataFrame, on: list[Column],
                flag: str | None = None) -> DataFrame:
    """Left join of `big` with `small`, materialised first: skipped when `small` is empty,
    broadcast when it is small. `flag` names a column that is true for matched rows."""
    small = small.localCheckpoint(eager=True)
    rows = small.count()
    if rows == 0:
        extra = [F.lit(None).cast(f.dataType).alias(f.name) for f in small.schema.fields]
        out = big.select("*", *extra)
    else:
        out = big.join(F.broadcast(small) if rows <= BROADCAST_ROWS else small, on, "left")
    if flag is not None:
        out = out.withColumn(flag, F.coalesce(F.col(f"_{flag}_hit"), F.lit(False))).drop(
            f"_{flag}_hit")
    return out


def classify(checked: DataFrame, stored: DataFrame | None) -> DataFrame:
    """Give every validated row an `outcome` (ingested, quarantined, duplicate) and reason.

    A good row whose content equals a stored trade with the same (exchange, symbol, trade_id)
    is a duplicate; with different content it is quarantined. Within the batch, the first
    row of a key (by file, then row) counts; a later row with the same content is a
    duplicate, with different content it is quarantined. Only keys that repeat in the batch
    or are stored are joined back (materialised, by broadcast when small), so a batch of new
    trades costs one aggregation of its keys and no shuffle of its rows.
    """
    typed = {c: F.col(f"_{c}") for c in (*KEY, *CONTENT)}
    good = checked.where(F.col("reason").isNull())
    keys = [typed[c].alias(c) for c in KEY]
    # `_mid` orders the rows of a batch by file, then row: the first of a repeated key is
    # its smallest `_mid`.
    counted = good.groupBy(*keys).agg(F.count(F.lit(1)).alias("_n"),
                                      F.min("_mid").alias("_first_mid")).where(F.col("_n") > 1)
    firsts = good.select(*keys, "_mid", F.struct(*[typed[c].alias(c) for c in CONTENT])
                         .alias("_first")).join(
        counted.withColumnRenamed("_first_mid", "_mid"), [*KEY, "_mid"], "left_semi")
    repeated = firsts.select(*[F.col(c).alias(f"_r_{c}") for c in KEY],
                             F.col("_mid").alias("_first_mid"), "_first")
    joined = _join_small(checked, repeated, [typed[c] == F.col(f"_r_{c}") for c in KEY])
    hits = None
    if stored is not None:
        hits = stored.join(good.select(*keys), list(KEY), "left_semi").localCheckpoint(
            eager=True)
        if hits.isEmpty():  # no stored trade shares a key with the batch
            hits = None
    if hits is not None:
        known = hits.select(*[F.col(c).alias(f"_k_{c}") for c in KEY]).distinct()
        same = hits.select(*[F.col(c).alias(f"_s_{c}") for c in (*KEY, *CONTENT)]).distinct()
        joined = _join_small(joined, known.withColumn("__known_hit", F.lit(True)),
                             [typed[c] == F.col(f"_k_{c}") for c in KEY], "_known")
        joined = _join_small(joined, same.withColumn("__stored_same_hit", F.lit(True)),
                             [typed[c].eqNullSafe(F.col(f"_s_{c}")) for c in (*KEY, *CONTENT)],
                             "_stored_same")
    else:
        joined = joined.withColumn("_known", F.lit(False)).withColumn(
            "_stored_same", F.lit(False))
    first = F.col("_first")
    is_first = first.isNull() | (F.col("_first_mid") == F.col("_mid"))
    same_as_first: Column = F.lit(True)
    for c in CONTENT:
        same_as_first = same_as_first & typed[c].eqNullSafe(first[c])
    ok = F.col("reason").isNull()
    stored_same, is_known = F.col("_stored_same"), F.col("_known")
    reason = (F.when(~ok, F.col("reason"))
              .when(stored_same, F.lit(None))
              .when(is_known, F.lit(R_CONFLICT_STORED))
              .when(is_first | same_as_first, F.lit(None))
              .otherwise(F.lit(R_CONFLICT_FILE)))
    outcome = (F.when(reason.isNotNull(), F.lit(QUARANTINED))
               .when(stored_same | ~is_first, F.lit(DUPLICATE))
               .otherwise(F.lit(INGESTED)))
    helper = [c for c in joined.columns if c.startswith(("_r_", "_k_", "_s_"))]
    return (joined.withColumn("outcome", outcome).withColumn("reason", reason)
            .drop("_first", "_first_mid", "_known", "_stored_same", *helper))


def _counts(classified: DataFrame) -> tuple[dict[str, int], dict[str, int]]:
    counts = {INGESTED: 0, QUARANTINED: 0, DUPLICATE: 0}
    reasons: dict[str, int] = {}
    for row in classified.groupBy("outcome", "reason").count().collect():
        counts[row["outcome"]] += row["count"]
        if row["reason"] is not None:
            reasons[row["reason"]] = reasons.get(row["reason"], 0) + row["count"]
    return counts, reasons


def _append_validated(table: str, rows: DataFrame, since: int | None) -> None:
    """Append `rows`, failing with a conflict if anything was added to `table` after snapshot
    `since` (None: after it was empty).

    An overwrite that deletes nothing commits as an append, but with serializable validation
    from `since`, which a plain append has not. Written without a shuffle: the batch is
    already on the executors, and `rollup maintain` compacts small files.
    """
    writer = (rows.writeTo(table).option("isolation-level", "serializable")
              .option("distribution-mode", "none").option("fanout-enabled", "true"))
    if since is not None:
        writer = writer.option("validate-from-snapshot-id", str(since))
    writer.overwrite(F.lit(False))


def _commit_trades(tables: Tables, classified: DataFrame, now: datetime,
                   since: int | None) -> None:
    """Append the ingested rows of `classified`, validated from snapshot `since`."""
    rows = classified.where(F.col("outcome") == INGESTED).select(
        *[F.col(f"_{c}").alias(c) for c in (*KEY, *CONTENT)],
        F.lit(now).cast("timestamp").alias("ingested_at"))
    _append_validated(tables.trades, rows, since)


def ingest_file(
    tables: Tables,
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    time_unit: str | None = None,
    bounds: TimeBounds | None = None,
    ingest_id: str | None = None,
    trade_ids: TradeIds | None = None,
    progress: Callable[[str], None] | None = None,
    attempts: int = COMMIT_ATTEMPTS,
) -> IngestReport:
    """Validate one file (or directory) and store its good rows exactly once; bad rows go to
    quarantine with a reason.

    Args:
        tables: where the trades and `trades_rejected` tables live.
        path: a CSV or Parquet file (or a directory of them, read as one unit).
        fmt: "csv" or "parquet"; default from the file suffix.
        time_unit: s, ms, us or ns when `ts` holds epoch numbers; None for ISO-8601 text.
        bounds: accepted trade times (default 2009-01-01 to now + 1 day).
        ingest_id: id stored with quarantined rows (default from the clock).
        trade_ids: the feed's trade-id scheme (default 64-bit integers; see rollup.specs.trade_ids).
        progress: called with one line per phase (rows and rows/s), e.g. to print on a
            terminal; None is quiet.
        attempts: commits tried when concurrent ingests race (each retry re-checks the batch
            against the trades that won).

    Raises:
        InputError: the file cannot be used at all; nothing of it was written.
        IngestConflictError: every attempt lost a race with another writer.
    """
    spark = tables.spark
    file = Path(path).expanduser().resolve()
    ids = trade_ids or TradeIds()
    say = progress or (lambda _message: None)
    now = datetime.now(UTC)
    started = monotonic()
    ingest_id = ingest_id or f"ingest-{now:%Y%m%dT%H%M%S%f}"
    required = [c for c in REQUIRED_TRADE_COLUMNS if c != "trade_id" or ids.scheme != "none"]
    raw = _read(spark, file, fmt, required)
    unit = None if is_timestamp_type(raw.schema["ts"].dataType) else time_unit
    tables.require(tables.trades_table)
    tables.upgrade_trades()
    try:
        checked = _checked(raw, time_unit=unit, bounds=bounds or TimeBounds(), now=now,
                           ids=ids).localCheckpoint(eager=True)
        days = _days(checked)
    except RollupError:
        raise
    except Exception as exc:  # noqa: BLE001 - a file Spark fails to read: one line
        raise InputError(f"{file}: cannot be read ({one_line(exc)})") from None
    for attempt in range(1, attempts + 1):
        since = current_snapshot(spark, tables.trades)
        classified = classify(checked, _stored_in(tables, days, since)).localCheckpoint(
            eager=True)
        counts, reasons = _counts(classified)
        read = sum(counts.values())
        if attempt == 1:
            seconds = monotonic() - started
            say(f"{file.name}: {read:,} rows read and checked in {seconds:.1f} s "
                f"({read / max(seconds, 1e-9):,.0f} rows/s) against {len(days)} day(s) of "
                "stored trades")
        if read == 0:
            raise InputError(f"{file}: no data rows")
        if (counts[QUARANTINED] == read and len(reasons) == 1
                and is_systematic(next(iter(reasons)))):
            raise InputError(f"{file}: every row fails with '{next(iter(reasons))}': a column "
                             "has the wrong type or order (or --time-unit is wrong); nothing "
                             "written")
        try:
            if counts[INGESTED]:
                _commit_trades(tables, classified, now, since)
        except Exception as exc:  # noqa: BLE001 - a lost race is retried, anything else not
            if not is_commit_conflict(exc):
                raise
            if attempt == attempts:
                raise IngestConflictError(
                    f"{file}: another writer changed the trades table during each of "
                    f"{attempts} attempts; nothing of this file was stored: run the ingest "
                    "again") from None
            say(f"{file.name}: another writer committed first; checking again "
                f"(attempt {attempt + 1} of {attempts})")
            continue
        if counts[QUARANTINED]:
            rejected = _with_content(with_source_rows(checked, classified.where(
                F.col("outcome") == QUARANTINED)))
            _quarantine(tables, rejected, now, ingest_id)
        seconds = monotonic() - started
        say(f"{file.name}: {counts[INGESTED]:,} rows stored in {seconds:.1f} s "
            f"({read / max(seconds, 1e-9):,.0f} rows/s)")
        return IngestReport(str(file), read, counts[INGESTED], counts[QUARANTINED],
                            counts[DUPLICATE], reasons, ingest_id, attempt - 1)
    raise AssertionError("unreachable")  # pragma: no cover


def _quarantine(tables: Tables, rejected: DataFrame, now: datetime, ingest_id: str,
                attempts: int = COMMIT_ATTEMPTS) -> None:
    """Append rejected rows, skipping rows already quarantined from the same file and row
    with the same text (whatever the reason then: read again, a row whose trade id repeats
    in its file is found `already stored`; it is still one rejected row). A file delivered
    again under the same name with other rows has its own rows quarantined.

    Validated like the trades write, so two ingests of one file quarantine each row once.
    """
    target = tables.name(REJECTED_TABLE)
    spark = tables.spark
    stamped = {"rejected_at": F.lit(now).cast("timestamp"), "ingest_id": F.lit(ingest_id)}
    for attempt in range(1, attempts + 1):
        since = current_snapshot(spark, target)
        fresh = rejected
        if since is not None:
            same = [*FEED_NAMES, "source_file", "source_row"]
            stored = read_at(spark, target, since).select(*[F.col(c).alias(f"_q_{c}")
                                                            for c in same])
            known = F.lit(True)
            for c in same:
                known = known & F.col(c).eqNullSafe(F.col(f"_q_{c}"))
            fresh = rejected.join(stored, known, "left_anti")
        rows = fresh.select(*[stamped.get(c.name, F.col(c.name)).alias(c.name)
                              for c in REJECTED_COLUMNS])
        try:
            _append_validated(target, rows, since)
            return
        except Exception as exc:  # noqa: BLE001 - a lost race is retried, anything else not
            if not is_commit_conflict(exc) or attempt == attempts:
                raise


def quarantine_rows(tables: Tables, rejected: DataFrame, *, ingest_id: str) -> None:
    """Quarantine rows found invalid outside `rollup ingest` (an external source table)."""
    _quarantine(tables, rejected.select(
        *[F.col(c).cast("string") for c in FEED_NAMES],
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
