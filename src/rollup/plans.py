"""Plan builders: pure DataFrame -> DataFrame steps that turn trades or bars into bars.

Nothing here writes. Each step is small and testable alone:
`bucket` assigns windows, `aggregate_trades`/`aggregate_bars` build the value columns, and
`finish` adds window_end, window_date and vwap. `Rollup` composes them for one level.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import attrs
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from rollup.bar import PRICE, QUOTE, VOLUME
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


_UNITS = 100_000_000  # prices and quantities have 8 decimals: 1e8 units per whole
_LIMB = 10_000  # base of the integer limbs that carry exact sums on longs
_LIMBS = 5  # price units (< 1e18) and quantity units (< 1e20) each fit in 5 limbs
_KEYS = ("exchange", "symbol", "window_start")


def _whole_and_units(value: Column) -> tuple[Column, Column]:
    """A decimal with 8 decimals as two exact longs: integer part and fraction in 1e-8 units.

    The fraction has at most 8 decimals and magnitude below 1, so its double is within 1e-16
    of it and rint(double x 1e8) is exactly its number of units.
    """
    whole = value.cast("long")
    fraction = (value - whole.cast("decimal(20,0)")).cast("double")
    return whole, F.rint(fraction * F.lit(1e8)).cast("long")


def _div(name: str, divisor: int) -> Column:
    """Integer division (truncating, as Java) of one of this module's own long columns."""
    return F.expr(f"`{name}` div {int(divisor)}")


def _units_to_decimal(units: Column, scale: int, type_: str) -> Column:
    """An integral count of 10^-scale units as an exact `type_`; null when it does not fit."""
    text = units.cast("decimal(38,0)").cast("string")
    return F.concat(text, F.lit(f"E-{int(scale)}")).cast(type_)


def order_bits(tf: Timeframe) -> int:
    """How many low bits of trade_id fit in a long next to a trade's offset in its window."""
    return 63 - (tf.micros - 1).bit_length()


def aggregate_trades(trades: DataFrame, tf: Timeframe) -> DataFrame:
    """Trades with `window_start` of `tf` -> one row per (exchange, symbol, window_start).

    Exact, and on longs only, so that Spark hash-aggregates (a struct or wide-decimal buffer
    would make it sort every trade):

    - open/close, the first/last trade by (ts, trade_id), in two steps. Step one groups by
      window and the high bits of trade_id and orders by one long: the offset of ts in the
      window above the low `order_bits(tf)` bits of trade_id. Step two orders the step-one rows
      of a window by (offset, high bits, low bits). The ids of one window's trades nearly
      always share their high bits, so step two sees about one row per window.
    - volume and quote_volume: quantities and prices as integer limbs of base 1e4, summed as
      longs (safe up to 1.8e10 trades per window) and turned back into decimals per window.
    """
    bits = order_bits(tf)
    low = F.lit((1 << bits) - 1)
    offset = F.unix_micros(F.col("ts")) - F.unix_micros(F.col("window_start"))
    price_whole, price_frac = _whole_and_units(F.col("price"))
    qty_whole, qty_frac = _whole_and_units(F.col("quantity"))
    units = trades.select(
        *_KEYS, "price",
        F.shiftleft(offset, bits).bitwiseOR(F.col("trade_id").bitwiseAND(low)).alias("_key"),
        F.shiftright(F.col("trade_id"), bits).alias("_id_high"),
        (price_whole * F.lit(_UNITS) + price_frac).alias("_p"),
        qty_whole.alias("_qw"), qty_frac.alias("_qf"),
    )
    # quantity units = _qw * 1e8 + _qf: limbs 0-1 come from the fraction, 2-4 from the whole
    qty_limbs = [F.col("_qf") % F.lit(_LIMB), _div("_qf", _LIMB), F.col("_qw") % F.lit(_LIMB),
                 _div("_qw", _LIMB) % F.lit(_LIMB), _div("_qw", _LIMB**2)]
    limbs = units.select(
        *_KEYS, "price", "_key", "_id_high", "_qf",
        (F.col("_qw") % F.lit(1_000_000)).alias("_qw_low"),
        _div("_qw", 1_000_000).alias("_qw_high"),
        *[(_div("_p", _LIMB**k) % F.lit(_LIMB)).alias(f"_p{k}") for k in range(_LIMBS)],
        *[limb.alias(f"_q{k}") for k, limb in enumerate(qty_limbs)],
    )
    products = []  # sum over trades of the k-th limb of price x quantity, before carries
    for k in range(2 * _LIMBS - 1):
        terms = [F.col(f"_p{i}") * F.col(f"_q{k - i}")
                 for i in range(_LIMBS) if 0 <= k - i < _LIMBS]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        products.append(F.sum(total).alias(f"_s{k}"))
    step_one = limbs.groupBy(*_KEYS, "_id_high").agg(
        F.min_by("price", "_key").alias("open"), F.min("_key").alias("_open_key"),
        F.max_by("price", "_key").alias("close"), F.max("_key").alias("_close_key"),
        F.max("price").alias("high"), F.min("price").alias("low"),
        F.count(F.lit(1)).alias("trade_count"),
        F.sum("_qw_high").alias("_vh"), F.sum("_qw_low").alias("_vl"), F.sum("_qf").alias("_vf"),
        *products,
    )

    def order(key: str) -> Column:  # (offset, trade_id) of a step-one row's first/last trade
        return F.struct(F.shiftright(F.col(key), bits), F.col("_id_high"),
                        F.col(key).bitwiseAND(low))

    sums = ["_vh", "_vl", "_vf", *(f"_s{k}" for k in range(2 * _LIMBS - 1))]
    step_two = step_one.groupBy(*_KEYS).agg(
        F.min_by("open", order("_open_key")).alias("open"),
        F.max("high").alias("high"),
        F.min("low").alias("low"),
        F.max_by("close", order("_close_key")).alias("close"),
        F.sum("trade_count").alias("trade_count"),
        *[F.sum(name).alias(name) for name in sums],
    )
    volume_units = ((F.col("_vh").cast("decimal(38,0)") * F.lit(1_000_000) + F.col("_vl"))
                    * F.lit(_UNITS) + F.col("_vf"))
    quote_units: Column | None = None
    for k in range(2 * _LIMBS - 1):
        term = F.col(f"_s{k}").cast("decimal(38,0)") * F.lit(Decimal(_LIMB**k))
        quote_units = term if quote_units is None else quote_units + term
    assert quote_units is not None
    return step_two.select(
        *_KEYS, "open", "high", "low", "close",
        _units_to_decimal(volume_units, 8, VOLUME).alias("volume"),
        _units_to_decimal(quote_units, 16, QUOTE).alias("quote_volume"),
        F.col("trade_count").cast("long").alias("trade_count"),
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
        bars = finish(aggregate_trades(bucketed, self.timeframe), self.timeframe)
        return self._restrict(bars, ranges)
