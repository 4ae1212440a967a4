"""Plan builders: pure DataFrame -> DataFrame steps that turn trades or bars into bars.

Nothing here writes. Each step is small and testable alone:
`bucket` assigns windows, `aggregate_trades`/`aggregate_bars` build the value columns, and
`finish` adds window_end, window_date and vwap. `Rollup` composes them for one level.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import attrs
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from rollup.bar import PRICE, QUOTE
from rollup.timeframes import Level, Timeframe

TRADE_INPUT = ("exchange", "symbol", "trade_id", "ts", "price", "quantity")
BAR_OUTPUT = (
    "exchange", "symbol", "window_start", "window_end", "window_date",
    "open", "high", "low", "close", "volume", "quote_volume", "trade_count", "vwap",
)
_MICROS_PER_DAY = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TimeRange = tuple[datetime, datetime]
"""A half-open UTC interval [start, end)."""


def window_start_micros(micros: Column, tf: Timeframe) -> Column:
    """Epoch-microsecond start of the `tf` window holding `micros` (floor on integers)."""
    origin = tf.origin_seconds * 1_000_000
    shifted = micros - F.lit(origin) if origin else micros
    # pmod is a non-negative remainder on longs: exact floor, also before 1970, no doubles.
    return micros - F.pmod(shifted, F.lit(tf.micros))


def bucket(df: DataFrame, time_col: str, tf: Timeframe) -> DataFrame:
    """Add `window_start` (timestamp) of the `tf` window holding `time_col`."""
    micros = window_start_micros(F.unix_micros(F.col(time_col)), tf)
    return df.withColumn("window_start", F.timestamp_micros(micros))


def notional(price: Column, quantity: Column) -> Column:
    """Exact price x quantity as DECIMAL(38,16).

    Spark types a decimal product as precision p1+p2+1, and above 38 it silently drops
    scale. Casting price to (17,8) when below 1e9 and quantity to (19,8) otherwise keeps the
    declared precision at 38, so no digit is ever lost.
    """
    small_price = price.cast("decimal(17,8)") * quantity.cast("decimal(20,8)")
    large_price = price.cast("decimal(18,8)") * quantity.cast("decimal(19,8)")
    product = F.when(price < F.lit(1_000_000_000), small_price).otherwise(large_price)
    return product.cast(QUOTE)


def aggregate_trades(trades: DataFrame) -> DataFrame:
    """Trades with `window_start` -> one row per (exchange, symbol, window_start)."""
    order = F.struct(F.col("ts"), F.col("trade_id"))
    return trades.groupBy("exchange", "symbol", "window_start").agg(
        F.min_by("price", order).alias("open"),
        F.max("price").alias("high"),
        F.min("price").alias("low"),
        F.max_by("price", order).alias("close"),
        F.sum(F.col("quantity").cast("decimal(38,8)")).alias("volume"),
        F.sum(notional(F.col("price"), F.col("quantity"))).alias("quote_volume"),
        F.count(F.lit(1)).alias("trade_count"),
    )


def aggregate_bars(bars: DataFrame) -> DataFrame:
    """Child bars re-keyed to parent `window_start` (as `child_start`) -> combined bars."""
    return bars.groupBy("exchange", "symbol", "window_start").agg(
        F.min_by("open", "child_start").alias("open"),
        F.max("high").alias("high"),
        F.min("low").alias("low"),
        F.max_by("close", "child_start").alias("close"),
        F.sum("volume").cast("decimal(38,8)").alias("volume"),
        F.sum("quote_volume").cast(QUOTE).alias("quote_volume"),
        F.sum("trade_count").cast("long").alias("trade_count"),
    )


def finish(bars: DataFrame, tf: Timeframe) -> DataFrame:
    """Add window_end, window_date and vwap, check for overflow, order the columns."""
    start_micros = F.unix_micros(F.col("window_start"))
    vwap = F.when(
        F.col("volume") != 0, (F.col("quote_volume") / F.col("volume")).cast(PRICE)
    )
    overflow = F.raise_error(
        F.concat(
            F.lit("rollup: decimal overflow in volume or quote_volume for "),
            F.col("exchange"), F.lit("/"), F.col("symbol"), F.lit(" at "),
            F.col("window_start").cast("string"),
        )
    )
    checked_quote = F.when(
        F.col("quote_volume").isNull() | F.col("volume").isNull(), overflow.cast(QUOTE)
    ).otherwise(F.col("quote_volume"))
    return (
        bars.withColumn("quote_volume", checked_quote)
        .withColumn("window_end", F.timestamp_micros(start_micros + F.lit(tf.micros)))
        .withColumn(
            "window_date",
            F.date_from_unix_date(F.floor(start_micros / F.lit(_MICROS_PER_DAY)).cast("int")),
        )
        .withColumn("vwap", vwap)
        .select(*BAR_OUTPUT)
    )


def micros_of(instant: datetime) -> int:
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    delta = instant - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def in_ranges(time_col: str, ranges: Sequence[TimeRange]) -> Column:
    """A filter keeping rows whose `time_col` falls in any of the half-open `ranges`."""
    cond: Column | None = None
    for start, end in ranges:
        term = (F.col(time_col) >= F.lit(start)) & (F.col(time_col) < F.lit(end))
        cond = term if cond is None else (cond | term)
    return cond if cond is not None else F.lit(False)


def dates_in(ranges: Sequence[TimeRange]) -> list[datetime]:
    """UTC dates (as midnight datetimes) that the ranges touch, for partition pruning."""
    days: set[datetime] = set()
    for start, end in ranges:
        day = Timeframe.parse("1d").floor(start)
        while day < end:
            days.add(day)
            day += timedelta(days=1)
    return sorted(days)


def merge_ranges(starts: Sequence[datetime], tf: Timeframe) -> list[TimeRange]:
    """Turn window starts of `tf` into the fewest covering half-open ranges."""
    ranges: list[TimeRange] = []
    for start in sorted(set(starts)):
        end = start + tf.duration
        if ranges and ranges[-1][1] >= start:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], end))
        else:
            ranges.append((start, end))
    return ranges


@attrs.frozen
class Rollup:
    """The plan of one level: its bars from its parent (trades for a root level).

    `plan` is pure: it returns a lazy DataFrame and writes nothing. `ranges` restricts the
    output to windows starting inside the given UTC ranges (which must be aligned to the
    level's windows); `keys` (a DataFrame of exchange, symbol, window_start) restricts it
    further to those windows.
    """

    level: Level

    @property
    def timeframe(self) -> Timeframe:
        return self.level.timeframe

    def plan(
        self,
        source: DataFrame,
        ranges: Sequence[TimeRange] | None = None,
        keys: DataFrame | None = None,
    ) -> DataFrame:
        if self.level.parent is None:
            return self.plan_direct(source, ranges, keys)
        parent = source
        if ranges is not None:
            covering = self.covering(ranges)
            parent = parent.where(in_ranges("window_start", covering))
            days = [d.date() for d in dates_in(covering)]
            parent = parent.where(F.col("window_date").isin(days))
        rekeyed = bucket(parent.withColumnRenamed("window_start", "child_start"), "child_start",
                         self.timeframe)
        if keys is not None:
            rekeyed = rekeyed.join(F.broadcast(keys), ["exchange", "symbol", "window_start"],
                                   "left_semi")
        return self._restrict(finish(aggregate_bars(rekeyed), self.timeframe), ranges)

    def covering(self, ranges: Sequence[TimeRange]) -> list[TimeRange]:
        """`ranges` widened to whole windows of this level (e.g. weeks around a month)."""
        tf = self.timeframe
        tick = timedelta(microseconds=1)
        return [(tf.floor(start), tf.floor(end - tick) + tf.duration) for start, end in ranges]

    @staticmethod
    def _restrict(bars: DataFrame, ranges: Sequence[TimeRange] | None) -> DataFrame:
        return bars if ranges is None else bars.where(in_ranges("window_start", ranges))

    def plan_direct(
        self,
        trades: DataFrame,
        ranges: Sequence[TimeRange] | None = None,
        keys: DataFrame | None = None,
    ) -> DataFrame:
        """This level's bars aggregated straight from canonical trades (the oracle path)."""
        selected = trades.select(*TRADE_INPUT)
        if ranges is not None:
            selected = selected.where(in_ranges("ts", self.covering(ranges)))
        bucketed = bucket(selected, "ts", self.timeframe)
        if keys is not None:
            bucketed = bucketed.join(F.broadcast(keys), ["exchange", "symbol", "window_start"],
                                     "left_semi")
        return self._restrict(finish(aggregate_trades(bucketed), self.timeframe), ranges)
