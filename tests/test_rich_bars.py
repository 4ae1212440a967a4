"""Richer bars (issue 15): buy/sell volume and count, open_ts and close_ts, exact at every level.

Stored bars are compared with the independent oracle of tests/oracle.py (pure Python, from each
trade's side and ts) and with values worked out by hand, never with `Rollup.plan_direct`.
Bars written before a table was upgraded have null (unknown) rich columns: a parent of such a
child is null too, never a partial sum, until `backfill` recomputes the range.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rollup.incremental.runner import backfill, run_cascade
from rollup.readers.export import select_bars, to_pandas_utc, write_frame
from rollup.specs.bar import (
    BAR_COLUMNS,
    PLANNED_BAR_COLUMNS,
    RICH_COLUMNS,
    TRADE_COLUMNS,
    Bar,
    combine_all,
)
from rollup.specs.columns import spark_schema
from rollup.storage.tables import Tables
from rollup.timeframes import Dag, Timeframe
from rollup.transforms.bars import Rollup
from tests.helpers import assert_exact
from tests.oracle import Trade, collect_bars, oracle_bars

D = Decimal
DAY = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
T0 = DAY + timedelta(hours=10)
MICRO = timedelta(microseconds=1)
RICH = tuple(c.name for c in RICH_COLUMNS)
BIG = D("999999999999.99999999")  # the largest quantity ingest accepts

Row = tuple[Any, ...]


def _trade(tid: int, at: datetime, price: str, qty: str | Decimal, side: str | None,
           symbol: str = "BTC") -> Row:
    return ("X", symbol, tid, at, D(price), D(qty), side)


def adversarial() -> list[Row]:
    """Ties on ts across sides, null sides, zero and extreme quantities, trades on the first
    and last microsecond of minute, 5-minute, hour and day windows, ids across 2^21 chunks."""
    rows = [
        _trade(7, T0, "101", "1", "sell"),
        _trade(3, T0, "100", "2", "buy"),  # opens 10:00 (lowest id at the first instant)
        _trade(-5, T0 + timedelta(seconds=30), "102", "0", "buy"),  # zero quantity, buy
        _trade(9, T0 + timedelta(seconds=30), "102", "0.00000001", None),
        _trade(1 << 21, T0 + timedelta(minutes=5) - MICRO, "99", "3", "sell"),  # last micro
        _trade((1 << 21) - 1, T0 + timedelta(minutes=5) - MICRO, "98", "1", None),
        _trade(11, T0 + timedelta(minutes=5), "97", BIG, "buy"),  # first micro of 10:05
        _trade(12, T0 + timedelta(minutes=5), "97", BIG, "sell"),
        _trade(13, T0 + timedelta(minutes=5), "97", BIG, "buy"),
        _trade(14, DAY + timedelta(hours=11) - MICRO, "105", "1.5", "sell"),
        _trade(15, DAY + timedelta(hours=11), "106", "2.25", None),
        _trade(16, DAY + timedelta(days=1) - MICRO, "107", "0", None),  # closes the day
        _trade(17, DAY + timedelta(days=1), "108", "4", "sell"),  # opens the next day
        _trade(2, DAY + timedelta(days=1), "108.5", "5", "buy"),
        _trade(1, T0, "50", "1", None, symbol="ETH"),  # a window of null sides only
        _trade(2, T0 + timedelta(seconds=1), "51", "0", None, symbol="ETH"),
    ]
    rng = random.Random(15)
    instants = [DAY + timedelta(minutes=m, seconds=s) for m in range(0, 1440, 37)
                for s in (0, 0, 29, 59.999999)]  # repeated instants: ties on ts
    for i in range(300):
        at = rng.choice(instants)
        qty = rng.choice(["0", "0.00000001", "1", "2.5", "123.45678901"])
        side = rng.choice(["buy", "sell", None])
        rows.append(_trade(1000 + i, at, f"{rng.randint(90, 110)}.{rng.randint(0, 99):02d}",
                           qty, side, symbol=rng.choice(["BTC", "SOL"])))
    return rows


def append(tables: Tables, rows: list[Row]) -> None:
    """Append trades (with their side) to the trades table."""
    blanks = (None,) * (len(TRADE_COLUMNS) - 7)  # ingested_at, trade_ref
    frame = tables.spark.createDataFrame([(*r, *blanks) for r in rows],
                                         spark_schema(TRADE_COLUMNS))
    frame.writeTo(tables.trades).append()


def as_trades(rows: list[Row]) -> list[Trade]:
    return [Trade(*r) for r in rows]


# ---------------------------------------------------------------------------------------------
# The Python spec and the oracle, by hand


def test_a_trade_bar_splits_by_side_and_keeps_its_time() -> None:
    at = T0 + timedelta(seconds=5)
    buy = Bar.of_trade("X", "BTC", T0, T0, D("10"), D("2"), "buy", at)
    sell = Bar.of_trade("X", "BTC", T0, T0, D("10"), D("3"), "sell", at)
    none = Bar.of_trade("X", "BTC", T0, T0, D("10"), D("4"), None, at)
    assert (buy.buy_volume, buy.sell_volume, buy.buy_count, buy.sell_count) == (2, 0, 1, 0)
    assert (sell.buy_volume, sell.sell_volume, sell.buy_count, sell.sell_count) == (0, 3, 0, 1)
    assert (none.buy_volume, none.sell_volume, none.buy_count, none.sell_count) == (0, 0, 0, 0)
    assert (buy.open_ts, buy.close_ts) == (at, at)


def test_combine_is_exact_and_an_unknown_stays_unknown() -> None:
    minute = timedelta(minutes=1)
    a = Bar.of_trade("X", "BTC", T0, T0 + minute, D("1"), D("0.00000001"), "buy",
                     T0 + timedelta(seconds=3))
    b = Bar.of_trade("X", "BTC", T0 + minute, T0 + 2 * minute, D("2"), BIG, "buy",
                     T0 + minute)
    c = Bar.of_trade("X", "BTC", T0 + 2 * minute, T0 + 3 * minute, D("3"), D("1"), "sell",
                     T0 + 3 * minute - MICRO)
    whole = combine_all([c, a, b])
    assert whole is not None
    assert whole.buy_volume == D("1000000000000.00000000")
    assert (whole.sell_volume, whole.buy_count, whole.sell_count) == (D("1"), 2, 1)
    assert (whole.open_ts, whole.close_ts) == (T0 + timedelta(seconds=3), T0 + 3 * minute - MICRO)
    old = Bar("X", "BTC", T0 + minute, T0 + 2 * minute, D("2"), D("2"), D("2"), D("2"), D("5"),
              D("10"), 1)  # written before the upgrade: rich columns unknown
    mixed = combine_all([a, old, c])
    assert mixed is not None
    assert (mixed.buy_volume, mixed.sell_volume, mixed.buy_count, mixed.sell_count) == (
        None, None, None, None)
    assert (mixed.open_ts, mixed.close_ts) == (a.open_ts, c.close_ts)  # first/last child known
    assert combine_all([old, c]).open_ts is None  # type: ignore[union-attr]


def test_oracle_bars_by_hand() -> None:
    bars = oracle_bars(as_trades(adversarial()[:9]), Timeframe.parse("1m"))
    first = bars[("X", "BTC", T0)]
    assert (first["buy_volume"], first["sell_volume"]) == (D("2"), D("1"))
    assert (first["buy_count"], first["sell_count"], first["trade_count"]) == (2, 1, 4)
    assert (first["open_ts"], first["close_ts"]) == (T0, T0 + timedelta(seconds=30))
    edge = bars[("X", "BTC", T0 + timedelta(minutes=4))]
    assert (edge["buy_count"], edge["sell_count"], edge["trade_count"]) == (0, 1, 2)
    assert edge["open_ts"] == edge["close_ts"] == T0 + timedelta(minutes=5) - MICRO
    big = bars[("X", "BTC", T0 + timedelta(minutes=5))]
    assert (big["buy_volume"], big["sell_volume"]) == (2 * BIG, BIG)
    five = oracle_bars(as_trades(adversarial()[:9]), Timeframe.parse("5m"))[("X", "BTC", T0)]
    assert (five["open_ts"], five["close_ts"]) == (T0, T0 + timedelta(minutes=5) - MICRO)


# ---------------------------------------------------------------------------------------------
# Spark: a parent of unknown children is unknown


def _child(start: datetime, **rich: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "exchange": "X", "symbol": "BTC", "window_start": start,
        "window_end": start + timedelta(minutes=1), "window_date": start.date(),
        "open": D("1"), "high": D("1"), "low": D("1"), "close": D("1"), "volume": D("2"),
        "quote_volume": D("2"), "trade_count": 2, "vwap": D("1"),
        "buy_volume": D("1.5"), "sell_volume": D("0.5"), "buy_count": 1, "sell_count": 1,
        "open_ts": start + timedelta(seconds=1), "close_ts": start + timedelta(seconds=59),
    }
    return {**values, **rich}


@pytest.mark.spark
def test_a_null_child_makes_the_parent_null_not_a_partial_sum(spark) -> None:  # type: ignore[no-untyped-def]
    minute = timedelta(minutes=1)
    five = timedelta(minutes=5)
    unknown = dict.fromkeys(RICH)
    children = [
        _child(T0),  # window 10:00: a middle child unknown
        _child(T0 + minute, **unknown),
        _child(T0 + 2 * minute, sell_volume=D("0.25")),
        _child(T0 + five, **unknown),  # window 10:05: the first child unknown
        _child(T0 + five + minute),
        _child(T0 + 2 * five),  # window 10:10: every child known
        _child(T0 + 2 * five + 4 * minute, buy_count=7, close_ts=T0 + 3 * five - MICRO),
    ]
    names = [c.name for c in PLANNED_BAR_COLUMNS]
    frame = spark.createDataFrame([tuple(c[n] for n in names) for c in children],
                                  spark_schema(PLANNED_BAR_COLUMNS))
    level = Dag.standard().level("5m")
    got = {r["window_start"]: r for r in
           collect_bars({"5m": Rollup(level).plan(frame)})["5m"]}
    middle = got[T0]
    assert [middle[c] for c in ("buy_volume", "sell_volume", "buy_count", "sell_count")] == [
        None, None, None, None]
    assert (middle["open_ts"], middle["close_ts"]) == (
        T0 + timedelta(seconds=1), T0 + 2 * minute + timedelta(seconds=59))
    assert middle["trade_count"] == 6 and middle["volume"] == D("6")  # old columns still exact
    first = got[T0 + five]
    assert first["open_ts"] is None and first["buy_volume"] is None
    assert first["close_ts"] == T0 + five + minute + timedelta(seconds=59)
    known = got[T0 + 2 * five]
    assert (known["buy_volume"], known["sell_volume"]) == (D("3"), D("1"))
    assert (known["buy_count"], known["sell_count"]) == (8, 2)
    assert (known["open_ts"], known["close_ts"]) == (
        T0 + 2 * five + timedelta(seconds=1), T0 + 3 * five - MICRO)
    python = combine_all(Bar(**{k: v for k, v in c.items() if k not in (
        "window_date", "vwap")}) for c in children[:3])
    assert python is not None and python.buy_volume is None  # the Python spec agrees


# ---------------------------------------------------------------------------------------------
# Through the runner: every level equals the oracle, also after late trades


def _exercised(tables: Tables) -> None:
    """The data exercise what the test claims: both sides, sideless trades, a tie across
    sides, a bar whose open and close times differ."""
    bars = tables.read_bars("1m").collect()
    assert any(b.buy_count and b.sell_count for b in bars)
    assert any(b.buy_count + b.sell_count < b.trade_count for b in bars)
    assert any(b.buy_count == 0 and b.sell_count == 0 for b in bars)
    assert any(b.open_ts != b.close_ts for b in bars)
    assert all(b[c] is not None for b in bars for c in RICH)


@pytest.mark.spark
def test_every_level_equals_the_oracle_through_incremental_runs(tables) -> None:  # type: ignore[no-untyped-def]
    rows = adversarial()
    append(tables, rows[:200])
    assert all(r.status == "written" for r in run_cascade(tables))
    assert assert_exact(tables) > 0
    append(tables, rows[200:])
    run_cascade(tables)
    assert_exact(tables)
    late = [
        _trade(50, T0 - timedelta(seconds=1), "90", "1", "buy"),  # a new 09:59 bar
        _trade(-9, T0, "95", "0.5", "sell"),  # ties the 10:00 open instant, lower id: new open
        _trade(51, T0 + timedelta(minutes=1) - MICRO, "96", "2", "buy"),  # new close of 10:00
        _trade(52, DAY - timedelta(days=3) + timedelta(hours=23, minutes=59, seconds=59),
               "80", "7", "sell"),  # days late, last second of an old day
        _trade(53, DAY + timedelta(days=1) - MICRO, "81", "1", "buy"),  # ties the day's close
    ]
    append(tables, late)
    results = run_cascade(tables)
    assert all(r.status == "written" for r in results)
    assert not results[0].full  # incremental: only the touched windows
    assert_exact(tables)
    _exercised(tables)


# ---------------------------------------------------------------------------------------------
# Upgrading a warehouse created by an older rollup


OLD_COLUMNS = tuple(c for c in BAR_COLUMNS if c not in RICH_COLUMNS)


def _old_rows(rows: list[Row], level_tf: Timeframe) -> list[tuple[Any, ...]]:
    """The bars an older rollup wrote: the oracle's values without the rich columns."""
    now = datetime(2024, 3, 6, tzinfo=UTC)
    out = []
    for bar in oracle_bars(as_trades(rows), level_tf).values():
        lineage = {"created_at": now, "updated_at": now, "run_id": "old"}
        out.append(tuple({**bar, **lineage}[c.name] for c in OLD_COLUMNS))
    return out


@pytest.mark.spark
def test_old_tables_upgrade_in_place_and_backfill_fills_them(  # type: ignore[no-untyped-def]
        spark, namespace, monkeypatch, tmp_path) -> None:
    import rollup.storage.tables as tables_module

    tables = Tables(spark, "rollup", namespace)
    with monkeypatch.context() as patch:  # what an older rollup created
        patch.setattr(tables_module, "BAR_COLUMNS", OLD_COLUMNS)
        tables.create_all()
    rows = adversarial()
    append(tables, rows)
    for level in tables.dag.order():
        assert not set(RICH) & set(spark.table(tables.bars(level)).columns)
        spark.createDataFrame(_old_rows(rows, level.timeframe), spark_schema(OLD_COLUMNS)) \
            .writeTo(tables.bars(level)).append()
    before = {lv.name: sorted(tables.read_bars(lv).select(*[c.name for c in OLD_COLUMNS])
                              .collect()) for lv in tables.dag.order()}

    assert tables.create_all() == []  # opening upgrades, creates nothing
    for level in tables.dag.order():
        stored = tables.read_bars(level)
        assert stored.columns == [c.name for c in BAR_COLUMNS]  # each at its place
        assert sorted(stored.select(*[c.name for c in OLD_COLUMNS]).collect()) \
            == before[level.name]  # nothing lost
        assert stored.where(" OR ".join(f"{c} IS NOT NULL" for c in RICH)).count() == 0
        assert tables.upgrade_bars(level) == []  # idempotent
    export = tmp_path / "bars.csv"
    write_frame(to_pandas_utc(select_bars(tables, "1m")), "csv", str(export))
    header, first = export.read_text().splitlines()[:2]
    values = dict(zip(header.split(","), first.split(","), strict=True))
    assert values["buy_count"] == "" and values["trade_count"].isdigit()  # null, not NaN/3.0

    # A backfill of one hour fills it; the day around it stays unknown, never partial.
    backfill(tables, T0, T0 + timedelta(hours=1))
    hours = collect_bars({"1h": tables.read_bars("1h")})["1h"]
    [filled] = [b for b in hours if b["symbol"] == "BTC" and b["window_start"] == T0]
    expected = oracle_bars(as_trades(rows), Timeframe.parse("1h"))[("X", "BTC", T0)]
    assert {c: filled[c] for c in RICH} == {c: expected[c] for c in RICH}
    day = collect_bars({"1d": tables.read_bars("1d")})["1d"]
    monday = next(b for b in day if b["symbol"] == "BTC" and b["window_start"] == DAY)
    assert [monday[c] for c in RICH] == [None] * len(RICH)  # first hour child still unknown

    # The documented backfill over the whole history makes every level exact.
    backfill(tables, DAY, DAY + timedelta(days=2))
    assert_exact(tables)
    append(tables, [_trade(90, T0 + timedelta(seconds=2), "100", "1", "buy")])
    run_cascade(tables)  # runs after the upgrade stay exact
    assert_exact(tables)


@pytest.mark.spark
def test_the_sink_rewrites_a_bar_whose_rich_columns_were_unknown(spark) -> None:  # type: ignore[no-untyped-def]
    from rollup.storage.sink import reconcile

    lineage = {"created_at": T0, "updated_at": T0, "run_id": "old"}
    known = {**_child(T0), **lineage}
    names = [c.name for c in BAR_COLUMNS]

    def frame(*bars: dict[str, Any]) -> Any:
        return spark.createDataFrame([tuple(b[n] for n in names) for b in bars],
                                     spark_schema(BAR_COLUMNS))

    for column in RICH:
        old = frame({**known, column: None})
        found = reconcile(frame({**known, "run_id": "new"}), old)
        assert (found.changed, found.deleted) == (1, 0), column  # null -> value is a change
    found = reconcile(frame({**known, "run_id": "new"}), frame(known))
    assert found.changed == 0  # equal values: nothing to rewrite
