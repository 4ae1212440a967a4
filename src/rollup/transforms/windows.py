"""Calendar windows in Spark: a row's window looked up in a table computed by the timeframe.

Fixed timeframes are bucketed with integer arithmetic (`rollup.transforms.bars`). A calendar
timeframe (`1d@America/New_York`, `1d@America/Chicago+17:00`, `1M`) has windows of varying
length, so its windows are data: the pure-Python grid (`Timeframe.calendar_grid`, zoneinfo)
lists every window from `calendar.CHECK_FROM` to `calendar.CHECK_UNTIL`, and a row finds its
window by an equi-join on its UTC day plus a range condition, against a broadcast table of
about two rows per day. Spark's own time zone functions are never used, so a bar's window is
exactly the window `Timeframe.window` computes, DST changes and skipped dates included.
"""

from __future__ import annotations

import functools
import threading
import weakref

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from rollup.timeframes import Timeframe
from rollup.timeframes.calendar import CHECK_FROM, CHECK_UNTIL

_DAY_MICROS = 86_400_000_000
_PREFIX = "_cw"
_TABLES: weakref.WeakKeyDictionary[SparkSession, dict[str, DataFrame]] = (
    weakref.WeakKeyDictionary())
_LOCK = threading.Lock()

WINDOW_TABLE_SCHEMA = "_cw_day BIGINT, _cw_start BIGINT, _cw_end BIGINT, _cw_date DATE"


@functools.cache
def window_rows(tf: Timeframe) -> tuple[tuple[int, int, int, object], ...]:
    """(UTC day, start, end, label) for every window of a calendar `tf` and every UTC day it
    overlaps; start and end in epoch microseconds, the day as days since the epoch."""
    grid = tf.calendar_grid
    if grid is None:
        raise ValueError(f"timeframe {tf.name} is not a calendar timeframe")
    bounds = grid.boundaries()
    rows = []
    for (label, start), (_, end) in zip(bounds, bounds[1:], strict=False):
        if end <= start:  # a skipped date (Samoa, 2011-12-30): no window
            continue
        for day in range(start // 86_400, (end - 1) // 86_400 + 1):
            rows.append((day, start * 1_000_000, end * 1_000_000, label))
    return tuple(rows)


@functools.cache
def longest_window_micros(tf: Timeframe) -> int:
    """The length of the longest window of `tf` (a fixed timeframe: its length)."""
    if not tf.is_calendar:
        return tf.micros
    return max(end - start for _, start, end, _ in window_rows(tf))


def window_table(spark: SparkSession, tf: Timeframe) -> DataFrame:
    """The windows of a calendar `tf` as a cached DataFrame (WINDOW_TABLE_SCHEMA), built once
    per session and timeframe (about 0.3 s for a day grid of 130 years)."""
    with _LOCK:
        per_session = _TABLES.setdefault(spark, {})
        table = per_session.get(tf.name)
        if table is None:
            table = spark.createDataFrame(list(window_rows(tf)), WINDOW_TABLE_SCHEMA).cache()
            per_session[tf.name] = table
    return table


def with_window(df: DataFrame, micros: Column, tf: Timeframe, *, what: str) -> DataFrame:
    """`df` plus `_cw_start`, `_cw_end` (epoch micros) and `_cw_date` (window_date) of the
    calendar window of `tf` holding `micros` (epoch microseconds).

    An instant outside the grid (before CHECK_FROM or from CHECK_UNTIL on) fails the plan
    with a message naming it; no row is ever dropped.
    """
    table = F.broadcast(window_table(df.sparkSession, tf))
    keyed = df.withColumn("_cw_at", micros).withColumn(
        "_cw_key", F.floor(F.col("_cw_at") / F.lit(_DAY_MICROS)))
    on = ((keyed["_cw_key"] == table["_cw_day"]) & (keyed["_cw_at"] >= table["_cw_start"])
          & (keyed["_cw_at"] < table["_cw_end"]))
    joined = keyed.join(table, on, "left").drop("_cw_day", "_cw_key")
    outside = (f"raise_error(concat('rollup: {what} ', CAST(timestamp_micros(_cw_at) AS STRING),"
               f" ' is outside the calendar of {tf.name} ({CHECK_FROM} to {CHECK_UNTIL})'))")
    return joined.withColumn("_cw_start", F.expr(
        f"CASE WHEN _cw_start IS NULL THEN CAST({outside} AS BIGINT) ELSE _cw_start END")
    ).drop("_cw_at")


def drop_window(df: DataFrame) -> DataFrame:
    return df.drop(*(c for c in df.columns if c.startswith(_PREFIX)))
