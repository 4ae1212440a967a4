"""Calendar-level scenario shared by the test_calendar_cascade_* files.

The trades sit on the edges that break naive candles in 2026: New York's DST changes
(March 8, November 1), London's (March 29, October 25), a CME session week opening on the
Sunday of the US change, and month ends (February, October), with ties on ts, both taker
sides and trades without a side. `run_scenario` builds a DAG with calendar levels through
incremental runs with late trades, and every level must equal the oracle of tests/oracle.py,
whose calendar windows are computed from wall clocks with zoneinfo, independently of
`rollup.timeframes`.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from rollup.incremental.planning import plan_cascade
from rollup.incremental.runner import backfill, run_cascade
from rollup.specs.bar import TRADE_COLUMNS
from rollup.specs.columns import spark_schema
from rollup.storage.tables import Tables
from rollup.timeframes import Dag
from tests.helpers import assert_exact, snapshot_ids

SIDES = ("buy", "sell", None)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


EDGES = [
    utc(2026, 2, 28, 23, 59, 59),  # the UTC month end, New York still in February
    utc(2026, 3, 1, 5, 0),         # New York's March 1 starts (EST)
    utc(2026, 3, 8, 5, 0),         # New York's 23-hour Sunday starts
    utc(2026, 3, 8, 7, 0),         # 02:00 EST -> 03:00 EDT
    utc(2026, 3, 8, 22, 0),        # the CME Sunday open: 17:00 CDT, session of March 9
    utc(2026, 3, 9, 4, 0),         # New York's Monday starts (EDT)
    utc(2026, 3, 13, 22, 0),       # Friday 17:00 CDT: the week's last session closes
    utc(2026, 3, 29, 1, 0),        # London: 01:00 GMT -> 02:00 BST
    utc(2026, 3, 29, 23, 0),       # London's Monday starts (BST)
    utc(2026, 10, 25, 1, 0),       # London: 02:00 BST -> 01:00 GMT
    utc(2026, 10, 31, 23, 0),      # London's November 1; 19:00 in New York, still October
    utc(2026, 11, 1, 4, 0),        # New York's 25-hour November 1 starts (EDT)
    utc(2026, 11, 1, 6, 0),        # 02:00 EDT -> 01:00 EST: the repeated hour
    utc(2026, 11, 2, 5, 0),        # New York's November 2 starts (EST)
]


def edge_trades(first_id: int) -> list[tuple[Any, ...]]:
    """Trades one microsecond before, at and after every edge, with ties on ts."""
    rows = []
    trade_id = first_id
    for edge in EDGES:
        for offset in (-1, 0, 0, 1, 59_999_999):
            for symbol in ("GC", "ES"):
                trade_id += 1
                price = Decimal(2000 + trade_id % 17) + Decimal("0.12345678")
                rows.append(("CME", symbol, trade_id, edge + timedelta(microseconds=offset),
                             price, Decimal(trade_id % 5) / 4, SIDES[trade_id % 3]))
    return rows


def spread_trades(first_id: int, n: int, lo: datetime, hi: datetime,
                  seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    span = int((hi - lo).total_seconds())
    return [("CME", rng.choice(("GC", "ES")), first_id + i,
             lo + timedelta(seconds=rng.randrange(span)),
             Decimal(rng.randrange(190_000, 210_000)) / 100, Decimal(rng.randrange(1, 400)) / 100,
             rng.choice(SIDES))
            for i in range(n)]


def append_trades(tables: Tables, rows: list[tuple[Any, ...]]) -> None:
    """Append trades (exchange, symbol, trade_id, ts, price, quantity, side)."""
    frame = tables.spark.createDataFrame([(*r, None, None) for r in rows],
                                         spark_schema(TRADE_COLUMNS))
    frame.writeTo(tables.trades).append()


def run_scenario(spark: Any, namespace: str, levels: dict[str, str | None],
                 *, lakehouse: bool = False) -> Tables:
    """Build `levels` over the edge trades, add late trades, rerun and backfill; every step
    ends exact against the oracle. With `lakehouse`, also delete the trades of the US DST
    change hours (merge-on-read delete files) and compact a calendar table. Returns the
    tables for further checks."""
    tables = Tables(spark, "rollup", namespace, Dag.from_spec(levels))
    tables.create_all()
    append_trades(tables, edge_trades(0) + spread_trades(10_000, 300, utc(2026, 2, 27),
                                                          utc(2026, 11, 3), seed=1))
    assert all(p.full for p in plan_cascade(tables))
    results = {r.level: r for r in run_cascade(tables)}
    assert set(results) == set(levels)
    assert all(r.status == "written" for r in results.values()), results
    assert assert_exact(tables) > 0

    # Late trades in old windows of every calendar level, and new ones.
    before = snapshot_ids(tables)
    late = (spread_trades(20_000, 40, utc(2026, 3, 7, 20), utc(2026, 3, 9, 6), seed=2)
            + spread_trades(30_000, 20, utc(2026, 10, 31, 20), utc(2026, 11, 1, 8), seed=3))
    append_trades(tables, late)
    plans = {p.level.name: p for p in plan_cascade(tables)}
    assert not plans["1m"].full and plans["1m"].window_count > 0
    results = {r.level: r for r in run_cascade(tables)}
    assert all(r.status == "written" for r in results.values()), results
    assert assert_exact(tables) > 0
    after = snapshot_ids(tables)
    assert all(after[name] != before[name] for name in levels)
    if lakehouse:
        operate(tables, next(name for name in levels if "@" in name))

    # A rerun changes nothing; a backfill over the US DST week rewrites nothing either.
    assert all(r.status != "written" for r in run_cascade(tables))
    unchanged = snapshot_ids(tables)
    for result in backfill(tables, utc(2026, 3, 7), utc(2026, 3, 10)):
        assert result.status in ("unchanged", "expired"), result
    assert snapshot_ids(tables) == unchanged
    return tables


def operate(tables: Tables, calendar_level: str) -> None:
    """What operators do: a DELETE of trades (delete files), a compaction of a calendar
    table (a `replace` snapshot, no content change); both end exact."""
    spark = tables.spark
    hours = "ts >= TIMESTAMP '2026-03-08 06:30:00' AND ts < TIMESTAMP '2026-03-08 07:30:00'"
    spark.sql(f"DELETE FROM {tables.trades} WHERE {hours}")  # noqa: S608 - validated names
    results = run_cascade(tables)
    assert any(r.status == "written" for r in results), results
    assert assert_exact(tables) > 0
    table = tables.bars(calendar_level).split(".", 1)[1]
    spark.sql(f"CALL {tables.catalog}.system.rewrite_data_files(table => '{table}', "
              "options => map('rewrite-all', 'true'))")
    assert all(r.status != "written" for r in run_cascade(tables))
    assert_exact(tables)
