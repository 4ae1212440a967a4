"""Exactness: every level built through the cascade equals the direct aggregation of trades,
column for column, and both equal the pure-Python oracle."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Context, Decimal, localcontext

import pytest
from hypothesis import HealthCheck, given, settings
from pyspark.sql import Row

from rollup.bar import TRADE_COLUMNS, Bar, combine_all
from rollup.plans import CHUNK_BITS, Rollup
from rollup.schema import spark_schema
from rollup.timeframes import Dag, Timeframe
from tests.strategies import trade_rows

pytestmark = pytest.mark.spark

DAG = Dag.standard().add("15m", "5m").add("4h", "1h").add("1w", "1d")
VALUES = ("open", "high", "low", "close", "volume", "quote_volume", "trade_count", "vwap")


def trades_df(spark, rows):  # type: ignore[no-untyped-def]
    full = [(*r, None, None, None) for r in rows]
    return spark.createDataFrame(full, spark_schema(TRADE_COLUMNS))


def oracle(rows, tf: Timeframe) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Bars of `tf` computed in pure Python from trades with the documented semantics."""
    groups: dict[tuple, list] = defaultdict(list)  # type: ignore[type-arg]
    for ex, sym, tid, ts, price, qty in rows:
        groups[(ex, sym, tf.floor(ts))].append((ts, tid, price, qty))
    out = {}
    for (ex, sym, start), trades in groups.items():
        trades.sort(key=lambda t: (t[0], t[1]))
        bar = combine_all(
            Bar.of_trade(ex, sym, start, start + tf.duration, p, q) for _, _, p, q in trades[:1]
        )
        assert bar is not None
        for _, _, p, q in trades[1:]:
            bar = Bar(ex, sym, start, start + tf.duration, bar.open, max(bar.high, p),
                      min(bar.low, p), p, bar.volume + q, bar.quote_volume + p * q,
                      bar.trade_count + 1)
        out[(ex, sym, start)] = bar
    return out


def cascade_frames(trades):  # type: ignore[no-untyped-def]
    frames = {}
    for level in DAG.order():
        parent = trades if level.parent is None else frames[level.parent.name]
        frames[level.name] = Rollup(level).plan(parent)
    return frames


def collect_all(trades):  # type: ignore[no-untyped-def]
    """Every level through the cascade and directly, in ONE Spark job (exchanges are reused)."""
    from pyspark.sql import functions as F

    frames = cascade_frames(trades)
    parts = []
    for level in DAG.order():
        parts.append(frames[level.name].withColumn("_level", F.lit(level.name))
                     .withColumn("_kind", F.lit("cascade")))
        parts.append(Rollup(level).plan_direct(trades).withColumn("_level", F.lit(level.name))
                     .withColumn("_kind", F.lit("direct")))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    out: dict = defaultdict(dict)  # type: ignore[type-arg]
    for row in union.collect():
        key = (row.exchange, row.symbol, row.window_start.replace(tzinfo=UTC))
        values = row.asDict()
        level, kind = values.pop("_level"), values.pop("_kind")
        out[(level, kind)][key] = Row(**values)
    return out


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(rows=trade_rows())
def test_cascade_equals_direct_equals_oracle(spark, rows) -> None:  # type: ignore[no-untyped-def]
    results = collect_all(trades_df(spark, rows))
    for level in DAG.order():
        via_cascade = results[(level.name, "cascade")]
        direct = results[(level.name, "direct")]
        assert via_cascade == direct, level.name
        with localcontext(Context(prec=80)):
            expected = oracle(rows, level.timeframe)
        assert set(via_cascade) == set(expected), level.name
        for key, bar in expected.items():
            row = via_cascade[key]
            assert (row.open, row.high, row.low, row.close) == (bar.open, bar.high, bar.low,
                                                                bar.close), (level.name, key)
            assert row.volume == bar.volume and row.quote_volume == bar.quote_volume
            assert row.trade_count == bar.trade_count and row.vwap == bar.vwap
            assert row.window_end.replace(tzinfo=UTC) == bar.window_end
            assert row.window_date == bar.window_start.date()


def test_ties_on_equal_timestamps_are_broken_by_trade_id(spark) -> None:  # type: ignore[no-untyped-def]
    t = datetime(2024, 1, 2, 10, 0, 0, tzinfo=UTC)
    rows = [
        ("X", "BTC", 7, t, Decimal("101"), Decimal("1")),
        ("X", "BTC", -3, t, Decimal("99"), Decimal("1")),  # smallest id at the first instant
        ("X", "BTC", 5, t, Decimal("100"), Decimal("1")),
        ("X", "BTC", 2**63 - 1, datetime(2024, 1, 2, 10, 0, 59, 999_999, tzinfo=UTC),
         Decimal("98"), Decimal("1")),
        ("X", "BTC", 1, datetime(2024, 1, 2, 10, 0, 59, 999_999, tzinfo=UTC),
         Decimal("102"), Decimal("1")),
    ]
    bars = Rollup(DAG.level("1m")).plan(trades_df(spark, rows)).collect()
    assert len(bars) == 1
    assert bars[0].open == Decimal("99") and bars[0].close == Decimal("98")
    assert bars[0].high == Decimal("102") and bars[0].low == Decimal("98")


def test_open_close_across_trade_id_chunks(spark) -> None:  # type: ignore[no-untyped-def]
    """Trades are first aggregated per chunk of 2^21 ids; the order must hold across chunks."""
    t = datetime(2024, 1, 2, 10, 0, 0, tzinfo=UTC)
    late = datetime(2024, 1, 2, 10, 0, 30, tzinfo=UTC)
    edge = 1 << CHUNK_BITS
    rows = [
        ("X", "BTC", edge + 1, t, Decimal("101"), Decimal("1")),
        ("X", "BTC", edge, t, Decimal("102"), Decimal("2")),
        ("X", "BTC", edge - 1, t, Decimal("99"), Decimal("3")),  # first: lowest id at t
        ("X", "BTC", 5 * edge, late, Decimal("97"), Decimal("4")),
        ("X", "BTC", edge - 2, late, Decimal("98"), Decimal("5")),
        ("X", "BTC", 5 * edge + 1, late, Decimal("96"), Decimal("6")),  # last: highest id
    ]
    bar = Rollup(DAG.level("1m")).plan(trades_df(spark, rows)).collect()
    assert len(bar) == 1
    assert (bar[0].open, bar[0].close) == (Decimal("99"), Decimal("96"))
    assert (bar[0].high, bar[0].low) == (Decimal("102"), Decimal("96"))
    assert bar[0].volume == 21 and bar[0].trade_count == 6
    assert bar[0].quote_volume == sum(r[4] * r[5] for r in rows)


def test_repeated_trade_ids_beyond_a_chunk_raise(spark) -> None:  # type: ignore[no-untyped-def]
    """A chunk's long sums are safe for 2^21 trades; more can only come from repeated ids."""
    from pyspark.sql import functions as F

    trades = spark.range((1 << CHUNK_BITS) + 1).select(
        F.lit("X").alias("exchange"), F.lit("DUP").alias("symbol"),
        F.lit(7).cast("long").alias("trade_id"),
        F.lit(datetime(2024, 1, 2, tzinfo=UTC)).alias("ts"),
        F.lit(Decimal("1")).cast("decimal(18,8)").alias("price"),
        F.lit(Decimal("1")).cast("decimal(20,8)").alias("quantity"),
    )
    with pytest.raises(Exception, match="trade ids must be unique"):
        Rollup(DAG.level("1m")).plan(trades).collect()


def test_extreme_values_do_not_overflow_or_round(spark) -> None:  # type: ignore[no-untyped-def]
    t = datetime(2024, 1, 2, tzinfo=UTC)
    rows = [
        ("X", "PEPE", 1, t, Decimal("0.00000001"), Decimal("999999999999.99999999")),
        ("X", "PEPE", 2, t, Decimal("0.00000001"), Decimal("999999999999.99999999")),
        ("X", "BIG", 1, t, Decimal("9999999999.99999999"), Decimal("99999999999.99999999")),
        ("X", "BIG", 2, t, Decimal("999999999.99999999"), Decimal("999999999999.99999999")),
    ]
    results = collect_all(trades_df(spark, rows))
    day = {key[1]: r for key, r in results[("1d", "cascade")].items()}
    assert day["PEPE"].volume == Decimal("1999999999999.99999998")
    assert day["PEPE"].quote_volume == Decimal("19999.9999999999999998")
    with localcontext(Context(prec=80)):
        expected_big = (Decimal("9999999999.99999999") * Decimal("99999999999.99999999")
                        + Decimal("999999999.99999999") * Decimal("999999999999.99999999"))
    assert day["BIG"].quote_volume == expected_big
    week = {key[1]: r for key, r in results[("1w", "cascade")].items()}
    assert week["BIG"].quote_volume == day["BIG"].quote_volume
    assert results[("1w", "cascade")] == results[("1w", "direct")]


def test_zero_quantity_trades_count_but_add_no_volume(spark) -> None:  # type: ignore[no-untyped-def]
    t = datetime(2024, 1, 2, tzinfo=UTC)
    rows = [("X", "GC", 1, t, Decimal("1300.1"), Decimal("0")),
            ("X", "GC", 2, t, Decimal("1300.2"), Decimal("0"))]
    bar = Rollup(DAG.level("1m")).plan(trades_df(spark, rows)).first()
    assert bar.trade_count == 2 and bar.volume == 0 and bar.vwap is None
    assert bar.open == Decimal("1300.1") and bar.close == Decimal("1300.2")


def test_plans_are_pure_and_restrictable(spark) -> None:  # type: ignore[no-untyped-def]
    t = datetime(2024, 1, 2, 10, tzinfo=UTC)
    rows = [("X", "A", i, t.replace(minute=i), Decimal(1 + i), Decimal(1)) for i in range(30)]
    trades = trades_df(spark, rows)
    rollup = Rollup(DAG.level("5m"))
    one_m = Rollup(DAG.level("1m")).plan(trades)
    restricted = rollup.plan(one_m, ranges=[(t.replace(minute=10), t.replace(minute=20))])
    starts = sorted(r.window_start.minute for r in restricted.collect())
    assert starts == [10, 15]
    assert spark.catalog.listTables() == [] or all(
        tbl.tableType == "TEMPORARY" for tbl in spark.catalog.listTables())
