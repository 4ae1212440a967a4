"""An independent oracle: every level's bars computed in pure Python from the stored trades.

Nothing here uses the plan code of `rollup.transforms.bars` (only its BAR_OUTPUT column list), so
tests
compare with this, never with `Rollup.plan_direct`, which shares that code. The trades are
read with Spark, collected to Python, and each level is aggregated straight from them with
`rollup.specs.bar.Bar.of_trade` and `rollup.specs.bar.combine_all`: windows aligned by the level's
`Timeframe.floor`, open/close the earliest/latest trade by (ts, trade_id), vwap by
`rollup.specs.bar.vwap_of`, buy/sell volume and count from each trade's side, open_ts/close_ts
the ts of the earliest/latest trade. For an external source, the trades are its validated,
deduplicated rows.

`assert_matches_oracle(tables)` compares every stored level (all columns of
`rollup.transforms.bars.BAR_OUTPUT`) with it and fails with sample missing / extra / wrong bars.
Where retention dropped old partitions (`rollup.retained-from`), only windows that the
cascade may still recompute exactly are compared (see `level_horizon`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import attrs

from rollup.specs.bar import Bar, combine_all, vwap_of
from rollup.timeframes import Level, Timeframe
from rollup.transforms.bars import BAR_OUTPUT

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from rollup.storage.tables import Tables

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RETAINED_FROM = "rollup.retained-from"
"""Table property written by retention: the first window_date a table still holds."""

Key = tuple[str, str, datetime]
"""(exchange, symbol, window_start UTC)"""


@attrs.frozen
class Trade:
    exchange: str
    symbol: str
    trade_id: int
    ts: datetime  # aware, UTC
    price: Decimal
    quantity: Decimal
    side: str | None = None  # 'buy', 'sell' or None


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(micros))


TIME_COLUMNS = ("window_start", "window_end", "open_ts", "close_ts")
"""Bar timestamps, compared as aware UTC datetimes (collected as epoch microseconds)."""


def bar_row(bar: Bar) -> dict[str, Any]:
    """A bar as the columns of `rollup.transforms.bars.BAR_OUTPUT` (window times aware UTC)."""
    values = {
        "exchange": bar.exchange, "symbol": bar.symbol,
        "window_start": bar.window_start, "window_end": bar.window_end,
        "window_date": bar.window_start.astimezone(UTC).date(),
        "open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close,
        "volume": bar.volume, "quote_volume": bar.quote_volume,
        "trade_count": bar.trade_count, "vwap": vwap_of(bar.quote_volume, bar.volume),
        "buy_volume": bar.buy_volume, "sell_volume": bar.sell_volume,
        "buy_count": bar.buy_count, "sell_count": bar.sell_count,
        "open_ts": bar.open_ts, "close_ts": bar.close_ts,
    }
    assert tuple(values) == tuple(BAR_OUTPUT), "BAR_OUTPUT changed: update the oracle"
    return values


def oracle_bars(trades: Iterable[Trade], tf: Timeframe) -> dict[Key, dict[str, Any]]:
    """The bars of timeframe `tf` aggregated straight from `trades`, by key.

    Each trade becomes a zero-width bar at its own time; the bars of a window are folded in
    (ts, trade_id) order, so ties on ts are broken by trade_id, then the result gets the window.
    """
    groups: dict[Key, list[Trade]] = defaultdict(list)
    for t in trades:
        groups[(t.exchange, t.symbol, window_of(t.ts, tf)[0])].append(t)
    out: dict[Key, dict[str, Any]] = {}
    for key, members in groups.items():
        members.sort(key=lambda t: (t.ts, t.trade_id))
        # combine_all sorts by window_start only (a stable sort): ties keep trade_id order
        folded = combine_all(
            Bar.of_trade(t.exchange, t.symbol, t.ts, t.ts, t.price, t.quantity, t.side, t.ts)
            for t in members
        )
        assert folded is not None
        start, end, label = window_of(key[2], tf)
        out[key] = {**bar_row(attrs.evolve(folded, window_start=start, window_end=end)),
                    "window_date": label}
    return out


def window_of(ts: datetime, tf: Timeframe) -> tuple[datetime, datetime, date]:
    """(start, end, window_date) of the window of `tf` holding `ts`.

    Fixed windows come from `Timeframe.floor` (epoch arithmetic). Calendar windows are
    computed here from wall clocks with zoneinfo, independently of `rollup.timeframes`:
    a day is labelled by its local date, a session (`+17:00`) by the local date on which it
    ends, a week or month by its first day; the window starts at the label's local anchor
    (midnight, or the session time the day before). Only zones and dates where no anchor is
    skipped or repeated are supported (asserted).
    """
    if not tf.is_calendar:
        start = tf.floor(ts)
        return start, start + tf.duration, start.date()
    tz = ZoneInfo(tf.zone or "UTC")
    shift = timedelta(minutes=tf.session_minutes)
    wall = ts.astimezone(tz).replace(tzinfo=None)
    label = (wall + (timedelta(days=1) - shift)).date() if shift else wall.date()
    if tf.unit == "d":
        first = label - timedelta(days=(label - date(1970, 1, 1)).days % tf.count)
        after = first + timedelta(days=tf.count)
    elif tf.unit == "w":
        assert tf.count == 1, "the oracle builds one-week calendar windows only"
        first = label - timedelta(days=(label.weekday() - tf.week_start) % 7)
        after = first + timedelta(days=7)
    else:
        index = label.year * 12 + label.month - 1
        index -= (label.month - 1) % tf.count
        first = date(index // 12, index % 12 + 1, 1)
        index += tf.count
        after = date(index // 12, index % 12 + 1, 1)

    def anchor(day: date) -> datetime:
        local = datetime(day.year, day.month, day.day) + (shift - timedelta(days=1) if shift
                                                          else timedelta(0))
        instant = local.replace(tzinfo=tz).astimezone(UTC)
        assert instant.astimezone(tz).replace(tzinfo=None) == local, f"{local} skipped in {tz}"
        assert local.replace(tzinfo=tz, fold=1).utcoffset() == local.replace(
            tzinfo=tz).utcoffset(), f"{local} repeated in {tz}"
        return instant

    start, end = anchor(first), anchor(after)
    assert start <= ts < end, (ts, tf.name, start, end)
    return start, end, first


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _ceil(instant: datetime, tf: Timeframe) -> datetime:
    start, end, _ = window_of(instant, tf)
    return start if start == instant else end


def _ceil_month(instant: datetime) -> datetime:
    first = instant.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if first == instant:
        return first
    return (first + timedelta(days=32)).replace(day=1)


def level_horizon(level: Level, chain_retained_from: Sequence[date | None]) -> datetime | None:
    """The first window start of `level` that must be exact, given retention.

    `chain_retained_from` holds `rollup.retained-from` of the level's own table and of every
    table it is built from (its parent, grandparent, ...). Windows before the latest of them
    were (or were built from) partitions that retention deleted: their input is partial, so
    docs/retention.md lets them stay unchanged. The horizon is rounded up to the level's grid,
    and for levels that replace whole partitions to the partition (a day or a month).
    """
    days = [d for d in chain_retained_from if d is not None]
    if not days:
        return None
    tf = level.timeframe
    horizon = _ceil(_midnight(max(days)), tf)
    if level.write_mode == "overwrite" and tf.is_calendar:
        # partitions hold the windows of their window_dates: the first window of a partition
        while level.partitioning == "months" and window_of(horizon, tf)[2].day != 1:
            horizon = window_of(horizon, tf)[1]
    elif level.write_mode == "overwrite":
        if level.partitioning == "months":
            horizon = _ceil_month(horizon)
        elif horizon != _midnight(horizon.date()):
            horizon = _midnight(horizon.date()) + timedelta(days=1)
    return horizon


# ---------------------------------------------------------------------------------------------
# Reading the warehouse (Spark, collected to Python; no rollup plan code)


def read_trades(tables: Tables) -> list[Trade]:
    """The trades every level is built from: the trades table, or for an external source its
    validated, deduplicated rows (`Tables.canonical_trades`: input semantics, not bar code)."""
    from pyspark.sql import functions as F

    rows = tables.canonical_trades().select(
        "exchange", "symbol", "trade_id", F.unix_micros("ts").alias("micros"), "price",
        "quantity", "side",
    ).collect()
    return [Trade(r.exchange, r.symbol, int(r.trade_id), from_micros(r.micros), r.price,
                  r.quantity, r.side) for r in rows]


def collect_bars(frames: Mapping[str, DataFrame]) -> dict[str, list[dict[str, Any]]]:
    """The rows of several bar DataFrames (BAR_OUTPUT columns, window times aware UTC) by
    name, collected in one Spark job."""
    from pyspark.sql import functions as F

    parts = []
    for name, frame in frames.items():
        cols = [F.unix_micros(c).alias(c) if c in TIME_COLUMNS else F.col(c)
                for c in BAR_OUTPUT]
        parts.append(frame.select(F.lit(name).alias("_frame"), *cols))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in frames}
    for row in union.collect():
        values = row.asDict()
        name = values.pop("_frame")
        for c in TIME_COLUMNS:
            values[c] = None if values[c] is None else from_micros(values[c])
        out[name].append(values)
    return out


def read_stored(tables: Tables) -> dict[str, list[dict[str, Any]]]:
    """Every level's stored bars (BAR_OUTPUT columns, window times aware UTC), in one job."""
    return collect_bars({lv.name: tables.read_bars(lv) for lv in tables.dag.order()})


def retained_from(tables: Tables, table: str) -> date | None:
    rows = tables.spark.sql(f"SHOW TBLPROPERTIES {table}").collect()
    value = {r.key: r.value for r in rows}.get(RETAINED_FROM)
    return date.fromisoformat(value) if value else None


def horizons(tables: Tables) -> dict[str, datetime | None]:
    """Per level, the first window start that must match the oracle (None: all of them)."""
    own = {lv.name: retained_from(tables, tables.bars(lv)) for lv in tables.dag.order()}
    out: dict[str, datetime | None] = {}
    for level in tables.dag.order():
        chain: list[date | None] = []
        cursor: Level | None = level
        while cursor is not None:
            chain.append(own[cursor.name])
            cursor = tables.dag.level(cursor.parent.name) if cursor.parent is not None else None
        out[level.name] = level_horizon(level, chain)
    return out


# ---------------------------------------------------------------------------------------------
# Comparison


def compare_level(
    name: str,
    stored: Sequence[Mapping[str, Any]],
    expected: Mapping[Key, Mapping[str, Any]],
    horizon: datetime | None = None,
    samples: int = 3,
) -> list[str]:
    """Problems of one level (empty when it matches), each naming a few sample bars."""
    problems: list[str] = []
    by_key: dict[Key, Mapping[str, Any]] = {}
    duplicates: list[Key] = []
    for row in stored:
        key = (row["exchange"], row["symbol"], row["window_start"])
        if horizon is not None and key[2] < horizon:
            continue
        if key in by_key:
            duplicates.append(key)
        by_key[key] = row
    wanted = {k: v for k, v in expected.items() if horizon is None or k[2] >= horizon}
    missing = sorted(set(wanted) - set(by_key))
    extra = sorted(set(by_key) - set(wanted))
    wrong = []
    for key in sorted(set(wanted) & set(by_key)):
        diff = {c: (by_key[key][c], wanted[key][c]) for c in BAR_OUTPUT
                if by_key[key][c] != wanted[key][c]}
        if diff:
            wrong.append((key, diff))
    scope = f" (windows from {horizon.isoformat()})" if horizon is not None else ""

    def show(keys: Sequence[Key]) -> str:
        return ", ".join(f"{e}/{s}@{w.isoformat()}" for e, s, w in keys[:samples])

    if duplicates:
        problems.append(f"{name}{scope}: {len(duplicates)} duplicate bars: {show(duplicates)}")
    if missing:
        problems.append(f"{name}{scope}: {len(missing)} of {len(wanted)} bars missing: "
                        f"{show(missing)}")
    if extra:
        problems.append(f"{name}{scope}: {len(extra)} extra bars (no trades in the window): "
                        f"{show(extra)}")
    if wrong:
        shown = "; ".join(
            f"{k[0]}/{k[1]}@{k[2].isoformat()} " + ", ".join(
                f"{c} stored {s} expected {e}" for c, (s, e) in diff.items())
            for k, diff in wrong[:samples])
        problems.append(f"{name}{scope}: {len(wrong)} wrong bars: {shown}")
    return problems


def assert_matches_oracle(tables: Tables, horizon_aware: bool = True) -> int:
    """Every stored level equals the oracle computed from the trades now in the table.

    With `horizon_aware`, windows before a level's retention horizon are not compared.
    Returns the number of bars compared.
    """
    trades = read_trades(tables)
    stored = read_stored(tables)
    limits = horizons(tables) if horizon_aware else {}
    problems: list[str] = []
    compared = 0
    for level in tables.dag.order():
        expected = oracle_bars(trades, level.timeframe)
        horizon = limits.get(level.name)
        problems += compare_level(level.name, stored[level.name], expected, horizon)
        compared += sum(1 for k in expected if horizon is None or k[2] >= horizon)
    assert not problems, (f"bars differ from the oracle ({len(trades)} trades):\n  "
                          + "\n  ".join(problems))
    return compared
