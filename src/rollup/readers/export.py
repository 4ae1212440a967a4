"""Reading bars and quarantined trade rows with filters (as values, never SQL text) and
writing them out."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollup.errors import InputError
from rollup.readers.read import window_date_bounds
from rollup.specs.bar import KEY_COLUMNS, REJECTED_COLUMNS
from rollup.specs.times import parse_instant

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from rollup.storage.tables import Tables

FORMATS = ("table", "csv", "json", "parquet")
REJECT_FIRST = ("source_file", "source_row", "reason")
"""The quarantine listing shows where a row came from and why first, then its columns."""


def select_bars(
    tables: Tables,
    timeframe: str,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    realtime: bool = False,
) -> DataFrame:
    """Bars of one level filtered by exchange, symbol and [start, end) on window_start; with
    `realtime`, merged with bars computed on the fly (`rollup.realtime_bars`), plus the column
    `provisional`."""
    from pyspark.sql import functions as F

    lo = parse_instant(start, "start") if start is not None else None
    hi = parse_instant(end, "end") if end is not None else None
    level = tables.dag.level(timeframe)
    if not tables.exists(level.table):
        raise InputError(
            f"no table {level.table} in namespace {tables.namespace!r} of catalog "
            f"{tables.catalog!r}: run `rollup init` and `rollup run`, or check --warehouse and "
            "--namespace")
    from rollup.incremental.realtime import realtime_bars

    df = realtime_bars(tables, level) if realtime else tables.read_bars(level)
    if exchange is not None:
        df = df.where(F.col("exchange") == F.lit(exchange))
    if symbol is not None:
        df = df.where(F.col("symbol") == F.lit(symbol))
    if lo is not None:
        df = df.where(F.col("window_start") >= F.lit(lo))
    if hi is not None:
        df = df.where(F.col("window_start") < F.lit(hi))
    first, last = window_date_bounds(level.timeframe, lo, hi)  # labels of calendar windows
    if first is not None:
        df = df.where(F.col("window_date") >= F.lit(first))
    if last is not None:
        df = df.where(F.col("window_date") <= F.lit(last))
    return df.orderBy(*KEY_COLUMNS)


def select_rejects(
    tables: Tables,
    *,
    file: str | None = None,
    reason: str | None = None,
    ingest_id: str | None = None,
    summary: bool = False,
    limit: int | None = None,
) -> DataFrame:
    """Quarantined trade rows, oldest first, or their counts per source file and reason.

    Args:
        tables: where `trades_rejected` lives.
        file: only rows from this source file; `reason`: only rows whose reason contains
            this text; `ingest_id`: only rows of this ingest run (all compared as values).
        summary: count rows per (source_file, reason) instead of listing them.
        limit: at most this many rows.

    Raises:
        InputError: no `trades_rejected` table, or a negative `limit`.
    """
    from pyspark.sql import functions as F

    from rollup.storage.tables import REJECTED_TABLE

    if limit is not None and limit < 0:
        raise InputError(f"invalid limit {limit}: expected a number >= 0")
    if not tables.exists(REJECTED_TABLE):
        raise InputError(f"no {REJECTED_TABLE} table in namespace {tables.namespace!r}: "
                         "run `rollup init` or `rollup ingest` first")
    df = tables.spark.table(tables.name(REJECTED_TABLE))
    if file is not None:
        df = df.where(F.col("source_file") == F.lit(file))
    if reason is not None:
        df = df.where(F.col("reason").contains(F.lit(reason)))
    if ingest_id is not None:
        df = df.where(F.col("ingest_id") == F.lit(ingest_id))
    if summary:
        df = df.groupBy("source_file", "reason").agg(F.count(F.lit(1)).alias("rows")).orderBy(
            "source_file", F.desc("rows"), "reason")
    else:
        rest = [c.name for c in REJECTED_COLUMNS if c.name not in REJECT_FIRST]
        df = df.select(*REJECT_FIRST, *rest).orderBy(
            "rejected_at", "source_file", "source_row", "reason")
    return df if limit is None else df.limit(limit)


def to_pandas_utc(df: DataFrame) -> pd.DataFrame:
    """Collect bars to pandas with timestamp columns as UTC-aware values and long columns as
    integers, also where some are null (bars not yet backfilled after an upgrade)."""
    frame: Any = df.toPandas()
    for name, kind in df.dtypes:
        if kind == "timestamp":
            frame[name] = frame[name].dt.tz_localize("UTC")
        elif kind == "bigint" and frame[name].dtype != "int64":
            frame[name] = frame[name].astype("Int64")
    return frame


def write_frame(frame: pd.DataFrame, fmt: str, output: str | None, *,
                empty: str = "(no bars)") -> None:
    """Write rows as an aligned table, CSV, JSON lines or Parquet (to a file or stdout);
    `empty` is the table format's text for no rows. Timestamps are written as UTC ISO-8601,
    decimals as their exact text, nulls as null."""
    if fmt not in FORMATS:
        raise InputError(f"invalid format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if not output:
            raise InputError("--format parquet needs --output FILE")
        frame.to_parquet(Path(output), index=False)
        return
    if fmt == "table":
        text = frame.to_string(index=False) if len(frame) else empty
        text += "\n"
    elif fmt == "csv":
        text = frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        from pandas import NaT

        copy = frame.copy()
        for col in copy.columns:
            if str(copy[col].dtype).startswith("datetime"):
                copy[col] = copy[col].map(
                    lambda v: None if v is NaT else v.isoformat().replace("+00:00", "Z"))
            elif copy[col].dtype == object:
                copy[col] = copy[col].map(lambda v: str(v) if v is not None and
                                          not isinstance(v, str) else v)
        text = copy.to_json(orient="records", lines=True, date_format="iso")
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)
