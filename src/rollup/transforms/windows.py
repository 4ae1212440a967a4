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

_EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal()
WINDOW_TABLE_COLUMNS = ("_cw_day", "_cw_start", "_cw_end", "_cw_date")


@functools.cache
def window_rows(tf: Timeframe) -> tuple[tuple[int, int, int], ...]:
    """(label, start, end) of every window of a calendar `tf`: the label as days since the
    epoch, start and end as epoch seconds. Skipped dates (Samoa, 2011-12-30) have none."""
    grid = tf.calendar_grid
    if grid is None:
        raise ValueError(f"timeframe {tf.name} is not a calendar timeframe")
    bounds = grid.boundaries()
    return tuple((label.toordinal() - _EPOCH_ORDINAL, start, end)
                 for (label, start), (_, end) in zip(bounds, bounds[1:], strict=False)
                 if end > start)


@functools.cache
def grid_span_micros(tf: Timeframe) -> tuple[int, int]:
    """First window start and last window end (epoch micros) of a calendar `tf`'s table."""
    rows = window_rows(tf)
    return rows[0][1] * 1_000_000, rows[-1][2] * 1_000_000


@functools.cache
def longest_window_micros(tf: Timeframe) -> int:
    """The length of the longest window of `tf` (a fixed timeframe: its length)."""
    if not tf.is_calendar:
        return tf.micros
    return max(end - start for _, start, end in window_rows(tf)) * 1_000_000


def _floor_div(column: str, divisor: int) -> str:
    """SQL: `column` divided by `divisor`, rounded down on longs (also before 1970)."""
    return f"(({column} - pmod({column}, {divisor})) div {divisor})"


def window_table(spark: SparkSession, tf: Timeframe) -> DataFrame:
    """The windows of a calendar `tf` as a cached DataFrame, one row per window and UTC day
    it overlaps (WINDOW_TABLE_COLUMNS: the day, start and end in epoch microseconds, the
    window_date), built once per session and timeframe from `window_rows`."""
    with _LOCK:
        per_session = _TABLES.setdefault(spark, {})
        table = per_session.get(tf.name)
        if table is None:
            windows = spark.createDataFrame(list(window_rows(tf)),
                                            "label INT, start BIGINT, end BIGINT")
            table = windows.selectExpr(
                f"explode(sequence({_floor_div('start', 86_400)},"
                f" {_floor_div('(end - 1)', 86_400)})) AS _cw_day",
                "start * 1000000 AS _cw_start", "end * 1000000 AS _cw_end",
                "date_from_unix_date(label) AS _cw_date").cache()
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
        "_cw_key", F.expr(_floor_div("_cw_at", _DAY_MICROS)))
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
