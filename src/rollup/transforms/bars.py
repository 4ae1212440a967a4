"""Plan builders: pure DataFrame -> DataFrame steps that turn trades or bars into bars.

Nothing here writes. Each step is small and testable alone:
`bucket` assigns windows, `aggregate_trades`/`aggregate_bars` build the value columns, and
`finish` adds window_end, window_date and vwap. `Rollup` composes them for one level.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import attrs
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from rollup.specs.bar import (
    KEY_COLUMNS,
    PLANNED_BAR_COLUMNS,
    PRICE,
    QUOTE,
    REQUIRED_TRADE_COLUMNS,
    RICH_COLUMNS,
    VOLUME,
)
from rollup.specs.times import TimeRange as TimeRange  # re-exported: the interval of every plan
from rollup.specs.times import from_micros, merge_intervals
from rollup.timeframes import Level, Timeframe
from rollup.timeframes.calendar import CalendarGrid
from rollup.transforms.windows import drop_window, longest_window_micros, with_window

TRADE_INPUT = (*REQUIRED_TRADE_COLUMNS, "side")
BAR_OUTPUT = tuple(column.name for column in PLANNED_BAR_COLUMNS)
RICH_OUTPUT = tuple(column.name for column in RICH_COLUMNS)
_MICROS_PER_DAY = 86_400_000_000


def window_start_micros(micros: Column, tf: Timeframe) -> Column:
    """Epoch-microsecond start of the `tf` window holding `micros` (floor on integers)."""
    origin = tf.origin_seconds * 1_000_000
    shifted = micros - F.lit(origin) if origin else micros
    # pmod is a non-negative remainder on longs: exact floor, also before 1970, no doubles.
    return micros - F.pmod(shifted, F.lit(tf.micros))


def bucket(df: DataFrame, time_col: str, tf: Timeframe) -> DataFrame:
    """Add `window_start` (timestamp) of the `tf` window holding `time_col`."""
    if tf.is_calendar:
        located = with_window(df, F.unix_micros(F.col(time_col)), tf, what=time_col)
        return drop_window(located.withColumn("window_start", F.timestamp_micros("_cw_start")))
    micros = window_start_micros(F.unix_micros(F.col(time_col)), tf)
    return df.withColumn("window_start", F.timestamp_micros(micros))


_UNITS = 100_000_000  # prices and quantities have 8 decimals: 1e8 units per whole
_LIMB = 1_000_000  # base of the integer limbs that carry exact sums on longs
_PRICE_LIMBS = 3  # price units < 1e18
_QUANTITY_LIMBS = 4  # quantity units < 1e20 (the top limb is below 101)
CHUNK_BITS = 21
"""Trades are aggregated first per chunk of 2^21 consecutive trade ids of a window.

Trade ids are unique per (exchange, symbol), so a chunk holds at most 2^21 trades and a chunk's
sums of limb products (each term below 3e12 per trade) stay below 6.3e18: no long overflows.
Chunks are then combined with decimal sums."""
_MAX_CHUNK_TRADES = 1 << CHUNK_BITS


def _whole(column: str) -> str:
    """SQL: the integer part of a decimal column, as a long (truncated toward zero)."""
    return f"CAST({column} AS BIGINT)"


def _fraction_units(column: str) -> str:
    """SQL: the fraction of a decimal column with 8 decimals, in exact 1e-8 units (a long).

    The fraction has at most 8 decimals and magnitude below 1, so its double is within 1e-16
    of it and rint(double x 1e8) is exactly its number of units.
    """
    return (f"CAST(rint(CAST({column} - CAST({_whole(column)} AS DECIMAL(20,0)) AS DOUBLE)"
            " * 1e8) AS BIGINT)")


def _decimal_of_units(units: str, scale: int, type_: str) -> str:
    """SQL: an integral count of 10^-scale units as an exact `type_`; null if it does not fit."""
    return f"CAST(concat(CAST(CAST({units} AS DECIMAL(38,0)) AS STRING), 'E-{scale}') AS {type_})"


def order_bits(tf: Timeframe) -> int:
    """How many low bits of trade_id fit in a long next to a trade's offset in its window."""
    return 63 - (longest_window_micros(tf) - 1).bit_length()


_SIDES = (("buy", 1), ("sell", 2))
"""The taker sides a bar splits volume and count by, and their codes in `aggregate_trades`."""


def aggregate_trades(trades: DataFrame, tf: Timeframe) -> DataFrame:
    """Trades with `window_start` of `tf` -> one row per (exchange, symbol, window_start).

    Exact, and on longs only, so that Spark hash-aggregates with fixed-width buffers (a
    struct or decimal buffer would make it sort, or allocate per trade):

    - prices as exact 1e-8 units: open/high/low/close are taken on them and turned back into
      decimals per window.
    - open/close, the first/last trade by (ts, trade_id), in two steps. Step one groups by
      window and chunk (trade_id >> 21) and orders by one long: the offset of ts in the window
      above the low `order_bits(tf)` bits of trade_id. Step two orders the chunks of a window
      by (offset, chunk, low bits). The ids of one window's trades nearly always fall in one
      or two chunks, so step two sees about one row per window.
    - volume and quote_volume: quantities and prices as integer limbs of base 1e6, summed as
      longs per chunk (see `CHUNK_BITS`), then as decimals per window; buy_volume and
      sell_volume the same way over the trades of that side, buy_count and sell_count as sums
      of 0/1.
    - open_ts/close_ts: the window start plus the offset in the first/last trade's key.

    Raises (when the plan runs) if a chunk holds more than 2^21 trades, which only repeated
    trade ids can cause.
    """
    bits = order_bits(tf)
    low = (1 << bits) - 1
    chunk_bits = min(CHUNK_BITS, bits)  # the ids of a chunk differ only in the `low` bits
    # Integer arithmetic on this function's own columns, as SQL text: one JVM call per
    # expression instead of one per operator (plan building is part of every run's cost).
    units = trades.selectExpr(
        *KEY_COLUMNS,
        f"shiftleft(unix_micros(ts) - unix_micros(window_start), {bits}) | (trade_id & {low})"
        " AS _key",
        f"shiftright(trade_id, {chunk_bits}) AS _chunk",
        f"{_whole('price')} * {_UNITS} + {_fraction_units('price')} AS _p",
        f"{_whole('quantity')} AS _qw",
        f"{_fraction_units('quantity')} AS _qf",
        "CASE side " + " ".join(f"WHEN '{side}' THEN {code}" for side, code in _SIDES)
        + " ELSE 0 END AS _sd",
    )
    # quantity units = _qw * 1e8 + _qf = (_qw * 100 + _qf div 1e6) * 1e6 + _qf % 1e6
    upper = f"(_qw * 100 + _qf div {_LIMB})"
    limbs_of = units.selectExpr(
        *KEY_COLUMNS, "_key", "_chunk", "_p", "_qw", "_qf", "_sd",
        *[f"_p div {_LIMB**k} % {_LIMB} AS _p{k}" for k in range(_PRICE_LIMBS - 1)],
        f"_p div {_LIMB ** (_PRICE_LIMBS - 1)} AS _p{_PRICE_LIMBS - 1}",
        f"_qf % {_LIMB} AS _q0", f"{upper} % {_LIMB} AS _q1",
        f"{upper} div {_LIMB} % {_LIMB} AS _q2", f"{upper} div {_LIMB**2} AS _q3",
    )
    n_sums = _PRICE_LIMBS + _QUANTITY_LIMBS - 1
    products = [  # sum over trades of the k-th limb of price x quantity, before carries
        "sum(" + " + ".join(f"_p{i} * _q{k - i}" for i in range(_PRICE_LIMBS)
                            if 0 <= k - i < _QUANTITY_LIMBS) + f") AS _s{k}"
        for k in range(n_sums)
    ]
    step_one = limbs_of.groupBy(*KEY_COLUMNS, "_chunk").agg(*map(F.expr, [
        "min_by(_p, _key) AS `open`", "min(_key) AS _open_key",
        "max_by(_p, _key) AS `close`", "max(_key) AS _close_key",
        "max(_p) AS high", "min(_p) AS low", "count(1) AS trade_count",
        "sum(_qw) AS _vw", "sum(_qf) AS _vf", *products,
        *(f"sum(CASE WHEN _sd = {code} THEN {part} ELSE 0 END) AS _{side}{name}"
          for side, code in _SIDES for part, name in (("_qw", "w"), ("_qf", "f"), ("1", "c"))),
    ]))
    too_many = (f"raise_error(concat('rollup: more than {_MAX_CHUNK_TRADES} trades of ', "
                f"exchange, '/', symbol, ' share the trade id range of ', CAST(_chunk AS STRING),"
                " ' (trade ids must be unique per exchange and symbol)'))")
    # (offset, chunk, low bits) of a chunk's first/last trade: the (ts, trade_id) order
    order = f"struct(shiftright({{0}}, {bits}), _chunk, {{0}} & {low})"
    sums = ["_vw", "_vf", *(f"_s{k}" for k in range(n_sums)),
            *(f"_{side}{name}" for side, _ in _SIDES for name in ("w", "f"))]
    step_two = step_one.groupBy(*KEY_COLUMNS).agg(*map(F.expr, [
        f"min_by(`open`, {order.format('_open_key')}) AS `open`",
        "max(high) AS high", "min(low) AS low",
        f"max_by(`close`, {order.format('_close_key')}) AS `close`",
        f"sum(CASE WHEN trade_count > {_MAX_CHUNK_TRADES} THEN CAST({too_many} AS BIGINT)"
        " ELSE trade_count END) AS trade_count",
        *(f"sum(CAST({name} AS DECIMAL(38,0))) AS {name}" for name in sums),
        *(f"sum(_{side}c) AS _{side}c" for side, _ in _SIDES),
        f"min(shiftright(_open_key, {bits})) AS _open_off",
        f"max(shiftright(_close_key, {bits})) AS _close_off",
    ]))
    volume_units = f"_vw * {_UNITS} + _vf"
    quote_units = " + ".join(f"_s{k} * {_LIMB**k}" for k in range(n_sums))
    return step_two.selectExpr(
        *KEY_COLUMNS,
        *(f"{_decimal_of_units(f'`{c}`', 8, PRICE)} AS `{c}`"
          for c in ("open", "high", "low", "close")),
        f"{_decimal_of_units(volume_units, 8, VOLUME)} AS volume",
        f"{_decimal_of_units(quote_units, 16, QUOTE)} AS quote_volume",
        "CAST(trade_count AS BIGINT) AS trade_count",
        *(f"{_decimal_of_units(f'_{side}w * {_UNITS} + _{side}f', 8, VOLUME)} AS {side}_volume"
          for side, _ in _SIDES),
        *(f"CAST(_{side}c AS BIGINT) AS {side}_count" for side, _ in _SIDES),
        "timestamp_micros(unix_micros(window_start) + _open_off) AS open_ts",
        "timestamp_micros(unix_micros(window_start) + _close_off) AS close_ts",
    )


def _known_sum(column: str, type_: str) -> str:
    """The sum of `column` over a group, null (unknown) if any row's value is null: a child
    bar written before its table was upgraded must not make a partial sum."""
    known = f"count({column}) = count(1)"
    return f"CAST(CASE WHEN {known} THEN sum({column}) END AS {type_}) AS {column}"


def aggregate_bars(bars: DataFrame) -> DataFrame:
    """Child bars re-keyed to parent `window_start` (as `child_start`) -> combined bars.

    open_ts/close_ts come from the first/last child (null if that child's is); the buy/sell
    sums are null when any child's is (see `_known_sum`). The aggregates are SQL over the
    constant column names (a few JVM calls instead of one per function)."""
    return bars.groupBy(*KEY_COLUMNS).agg(*(F.expr(e) for e in (
        "min_by(`open`, child_start) AS `open`",
        "max(high) AS high",
        "min(low) AS low",
        "max_by(`close`, child_start) AS `close`",
        "CAST(sum(volume) AS decimal(38,8)) AS volume",
        f"CAST(sum(quote_volume) AS {QUOTE}) AS quote_volume",
        "CAST(sum(trade_count) AS BIGINT) AS trade_count",
        *(_known_sum(f"{side}_volume", VOLUME) for side, _ in _SIDES),
        *(_known_sum(f"{side}_count", "BIGINT") for side, _ in _SIDES),
        "min_by(open_ts, child_start) AS open_ts",
        "max_by(close_ts, child_start) AS close_ts",
    )))


def finish(bars: DataFrame, tf: Timeframe) -> DataFrame:
    """Add window_end, window_date and vwap, check for overflow, order the columns.

    A fixed window ends `tf` after its start and is dated by the UTC date of its start; a
    calendar window ends where the next one starts and is dated by its label (the local
    date, a session's trade date, the first day of a month)."""
    start = "unix_micros(window_start)"
    if tf.is_calendar:
        bars = with_window(bars, F.unix_micros("window_start"), tf, what="window_start")
        end = "timestamp_micros(_cw_end) AS window_end"
        day = "_cw_date AS window_date"
    else:
        end = f"timestamp_micros({start} + {tf.micros}) AS window_end"
        day = (f"date_from_unix_date(CAST(({start} - pmod({start}, {_MICROS_PER_DAY}))"
               f" div {_MICROS_PER_DAY} AS INT)) AS window_date")
    overflow = ("raise_error(concat('rollup: decimal overflow in volume or quote_volume for ', "
                "exchange, '/', symbol, ' at ', CAST(window_start AS STRING)))")
    return bars.selectExpr(  # one projection, built in one JVM call
        "exchange", "symbol", "window_start", end, day,
        "`open`", "high", "low", "`close`", "volume",
        f"CASE WHEN quote_volume IS NULL OR volume IS NULL THEN CAST({overflow} AS {QUOTE})"
        " ELSE quote_volume END AS quote_volume",
        "trade_count",
        f"CASE WHEN volume != 0 THEN CAST(quote_volume / volume AS {PRICE}) END AS vwap",
        *RICH_OUTPUT,
    )


def in_ranges(time_col: str, ranges: Sequence[TimeRange]) -> Column:
    """A filter keeping rows whose `time_col` falls in any of the half-open `ranges`.

    The OR tree is balanced (depth log2 of the number of ranges); callers keep the number of
    ranges bounded (see `coarsen`): many scattered windows are selected by a join on keys.
    """
    return any_of([(F.col(time_col) >= F.lit(start)) & (F.col(time_col) < F.lit(end))
                   for start, end in ranges])


def any_of(terms: Sequence[Column]) -> Column:
    """The OR of `terms` as a balanced tree (depth log2 n, not n); False for no terms."""
    level = list(terms)
    if not level:
        return F.lit(False)
    while len(level) > 1:
        level = [level[i] | level[i + 1] if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    return level[0]


def coarsen(ranges: Sequence[TimeRange], limit: int) -> list[TimeRange]:
    """At most `limit` sorted, disjoint ranges covering `ranges` (the smallest gaps closed)."""
    merged = merge_intervals(ranges)
    if len(merged) <= limit:
        return merged
    gaps = sorted(range(len(merged) - 1), key=lambda i: merged[i + 1][0] - merged[i][1])
    close = set(gaps[: len(merged) - limit])
    out: list[TimeRange] = []
    for i, span in enumerate(merged):
        if i - 1 in close:
            out[-1] = (out[-1][0], span[1])
        else:
            out.append(span)
    return out


def window_partition(col: str, partitioning: str) -> Column:
    """The partition (first day, as a DATE) of a UTC window start: its day or its month."""
    micros = f"unix_micros(`{col}`)"
    day = F.expr(f"date_from_unix_date(CAST(({micros} - pmod({micros}, {_MICROS_PER_DAY}))"
                 f" div {_MICROS_PER_DAY} AS INT))")
    return _partition_of(day, partitioning)


def partition_of_date(col: str, partitioning: str) -> Column:
    """The partition (first day, as a DATE) of a DATE column: its day or its month."""
    return _partition_of(F.col(col), partitioning)


def _partition_of(day: Column, partitioning: str) -> Column:
    return F.trunc(day, "month") if partitioning == "months" else day


def partition_span(first_day: date, partitioning: str,
                   tf: Timeframe | None = None) -> TimeRange:
    """The UTC interval of the windows of `tf` in the partition starting on `first_day` (a
    day or a month of window_date); without `tf`, or for a fixed `tf`, the UTC day or month.

    A calendar window belongs to the partition of its label, so a New York day's partition
    spans from its local midnight and a CME session's from 17:00 Chicago the day before.
    """
    lo = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    nxt = (lo + timedelta(days=32)).replace(day=1) if partitioning == "months" \
        else lo + timedelta(days=1)
    grid = tf.calendar_grid if tf is not None else None
    if grid is None:
        return lo, nxt
    return (from_micros(grid.boundary(_first_label_from(grid, lo.date())) * 1_000_000),
            from_micros(grid.boundary(_first_label_from(grid, nxt.date())) * 1_000_000))


def _first_label_from(grid: CalendarGrid, day: date) -> date:
    """The first label of `grid` on or after `day`."""
    label = grid.floor_label(day)
    return label if label >= day else grid.next_label(label)


MAX_PRUNE_RANGES = 64
"""Ranges in a pruning filter; more touched windows are selected by a join on their keys."""


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
    if tf.is_calendar:
        return merge_intervals((start, tf.window_end(start)) for start in starts)
    return merge_intervals((start, start + tf.duration) for start in starts)


def dates_of(starts: Sequence[datetime], tf: Timeframe) -> list[date]:
    """The `window_date` of each window of `tf` starting at `starts` (sorted, distinct)."""
    if tf.is_calendar:
        return sorted({tf.window_date(s) for s in starts})
    return sorted({s.astimezone(UTC).date() for s in starts})


def window_dates(ranges: Sequence[TimeRange], tf: Timeframe) -> list[date]:
    """The `window_date` values of the windows of `tf` that start inside `ranges` (exact for
    calendar timeframes; the UTC dates the ranges touch, a superset, for fixed ones)."""
    if not tf.is_calendar:
        return [d.date() for d in dates_in(ranges)]
    return sorted({w.date for lo, hi in ranges for w in tf.windows(lo, hi) if w.start >= lo})


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
        bucketed = self._bucketed(source, ranges)
        if keys is not None:
            bucketed = bucketed.join(F.broadcast(keys), list(KEY_COLUMNS), "left_semi")
        return self._restrict(self._aggregate(bucketed), ranges)

    def _bucketed(self, source: DataFrame, prune: Sequence[TimeRange] | None) -> DataFrame:
        """Parent rows (pruned to whole windows around `prune`) with this level's window."""
        tf = self.timeframe
        if self.level.parent is None:
            selected = source.select(*TRADE_INPUT)
            if prune is not None:
                selected = selected.where(in_ranges("ts", self.covering(prune)))
            return bucket(selected, "ts", tf)
        parent = source
        if prune is not None:
            covering = self.covering(prune)
            parent = parent.where(in_ranges("window_start", covering))
            parent = parent.where(F.col("window_date").isin(
                window_dates(covering, self.level.parent)))
        return bucket(parent.withColumnRenamed("window_start", "child_start"), "child_start", tf)

    def _aggregate(self, bucketed: DataFrame) -> DataFrame:
        if self.level.parent is None:
            return finish(aggregate_trades(bucketed, self.timeframe), self.timeframe)
        return finish(aggregate_bars(bucketed), self.timeframe)

    def plan_windows(
        self, source: DataFrame, keys: DataFrame, starts: Sequence[datetime],
        *, broadcast: bool = True,
    ) -> DataFrame:
        """The bars of the windows `keys` (exchange, symbol, window_start) whose distinct
        starts are `starts`: any number of scattered windows, with a bounded plan."""
        tf = self.timeframe
        bucketed = self._bucketed(source, self.window_ranges(starts))
        if self.level.parent is not None:  # partition pruning on the exact parent days
            days = window_dates(merge_ranges(starts, tf), self.level.parent)
            bucketed = bucketed.where(F.col("window_date").isin(days))
        wanted = F.broadcast(keys) if broadcast else keys
        return self._aggregate(bucketed.join(wanted, list(KEY_COLUMNS), "left_semi"))

    def plan_partitions(self, source: DataFrame, partitions: Sequence[date]) -> DataFrame:
        """Every bar of the level's partitions starting on `partitions` (days or months)."""
        partitioning = self.level.partitioning
        bucketed = self._bucketed(source, self.partition_ranges(partitions))
        wanted = sorted(set(partitions))
        if self.timeframe.is_calendar:  # a calendar window's partition is its label's
            bars = self._aggregate(bucketed)
            return bars.where(partition_of_date("window_date", partitioning).isin(wanted))
        inside = window_partition("window_start", partitioning).isin(wanted)
        return self._aggregate(bucketed.where(inside))

    def window_ranges(self, starts: Sequence[datetime]) -> list[TimeRange]:
        """What `plan_windows` reads for window `starts`: at most MAX_PRUNE_RANGES ranges of
        whole windows."""
        return self.covering(coarsen(merge_ranges(starts, self.timeframe), MAX_PRUNE_RANGES))

    def partition_ranges(self, partitions: Sequence[date]) -> list[TimeRange]:
        """What `plan_partitions` reads for `partitions`: at most MAX_PRUNE_RANGES ranges of
        whole windows."""
        spans = [partition_span(p, self.level.partitioning, self.timeframe) for p in partitions]
        return self.covering(coarsen(spans, MAX_PRUNE_RANGES))

    def covering(self, ranges: Sequence[TimeRange]) -> list[TimeRange]:
        """`ranges` widened to whole windows of this level (e.g. weeks around a month)."""
        tf = self.timeframe
        tick = timedelta(microseconds=1)
        if tf.is_calendar:
            return [(tf.window_start(start), tf.window_end(end - tick)) for start, end in ranges]
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
            bucketed = bucketed.join(F.broadcast(keys), list(KEY_COLUMNS), "left_semi")
        bars = finish(aggregate_trades(bucketed, self.timeframe), self.timeframe)
        return self._restrict(bars, ranges)
