"""Exactness: every level, built through the cascade and built straight from the trades,
equals the independent pure-Python oracle of tests/oracle.py, column for column."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Context, Decimal, localcontext

import pytest
from hypothesis import HealthCheck, given, settings

from rollup.specs.bar import TRADE_COLUMNS
from rollup.specs.columns import spark_schema
from rollup.timeframes import Dag
from rollup.transforms.bars import CHUNK_BITS, Rollup
from tests.oracle import Trade, collect_bars, compare_level, oracle_bars
from tests.strategies import trade_history

pytestmark = pytest.mark.spark

DAG = Dag.standard().add("15m", "5m").add("4h", "1h").add("1w", "1d")
"""Every standard level (1m, 5m, 30m, 1h, 1d) plus 15m, 4h and 1w."""


def trades_df(spark, rows):  # type: ignore[no-untyped-def]
    full = [(*r, None, None, None) for r in rows]
    return spark.createDataFrame(full, spark_schema(TRADE_COLUMNS))


def cascade_frames(trades):  # type: ignore[no-untyped-def]
    frames = {}
    for level in DAG.order():
        parent = trades if level.parent is None else frames[level.parent.name]
        frames[level.name] = Rollup(level).plan(parent)
    return frames


def collect_all(trades):  # type: ignore[no-untyped-def]
    """Every level through the cascade ("cascade/<level>") and straight from the trades
    ("direct/<level>"), collected in ONE Spark job."""
    frames = {f"cascade/{name}": frame for name, frame in cascade_frames(trades).items()}
    for level in DAG.order():
        frames[f"direct/{level.name}"] = Rollup(level).plan_direct(trades)
    return collect_bars(frames)


def assert_all_match_oracle(spark, rows) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Both ways of building every level of DAG equal the oracle of `rows`; returns the
    collected bars by "cascade/<level>" and "direct/<level>"."""
    results = collect_all(trades_df(spark, rows))
    trades = [Trade(*row) for row in rows]
    problems = []
    for level in DAG.order():
        expected = oracle_bars(trades, level.timeframe)
        assert expected, level.name
        for kind in ("cascade", "direct"):
            name = f"{kind}/{level.name}"
            problems += compare_level(name, results[name], expected)
    assert not problems, f"{len(rows)} trades:\n  " + "\n  ".join(problems)
    return results


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(rows=trade_history())
def test_every_level_equals_the_oracle_on_hundreds_of_trades(spark, rows) -> None:  # type: ignore[no-untyped-def]
    """Hundreds of trades of three instruments over five weeks: many share an instant (ties
    broken by trade_id) and a price, many sit on window, week and month boundaries."""
    assert len(rows) >= 200
    assert_all_match_oracle(spark, rows)


def test_small_example_exercises_ties_and_every_level(spark) -> None:  # type: ignore[no-untyped-def]
    """The property on a fixed handful of trades: a tie on ts and on price, a week boundary."""
    t = datetime(2024, 1, 7, 23, 59, 59, 999_999, tzinfo=UTC)  # Sunday, last microsecond
    rows = [("X", "BTC", 9, t, Decimal("10"), Decimal("1")),
            ("X", "BTC", -4, t, Decimal("11"), Decimal("2")),  # opens: lowest id at t
            ("X", "BTC", 3, t, Decimal("11"), Decimal("0")),  # same ts, same price
            ("X", "BTC", 5, datetime(2024, 1, 8, tzinfo=UTC), Decimal("12"), Decimal("1"))]
    results = assert_all_match_oracle(spark, rows)
    assert len(results["cascade/1w"]) == 2 and len(results["cascade/1m"]) == 2
    week = min(results["cascade/1w"], key=lambda r: r["window_start"])
    assert (week["open"], week["close"], week["trade_count"]) == (Decimal("11"), Decimal("10"), 3)


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
        F.lit(None).cast("string").alias("side"),
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
    results = assert_all_match_oracle(spark, rows)  # every level, both ways
    day = {r["symbol"]: r for r in results["cascade/1d"]}
    assert day["PEPE"]["volume"] == Decimal("1999999999999.99999998")
    assert day["PEPE"]["quote_volume"] == Decimal("19999.9999999999999998")
    with localcontext(Context(prec=80)):
        expected_big = (Decimal("9999999999.99999999") * Decimal("99999999999.99999999")
                        + Decimal("999999999.99999999") * Decimal("999999999999.99999999"))
    assert day["BIG"]["quote_volume"] == expected_big
    week = {r["symbol"]: r for r in results["cascade/1w"]}
    assert week["BIG"]["quote_volume"] == day["BIG"]["quote_volume"]


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
