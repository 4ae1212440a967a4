"""Calendar levels built by Spark through the cascade, against the zoneinfo oracle.

The trades sit on the edges that break naive candles in 2026: New York's DST changes
(March 8, November 1), London's (March 29, October 25), a CME session week opening on the
Sunday of the US change, and month ends (February, October). Every level (New York and
London days, CME sessions, New York and UTC months, London weeks) must equal the oracle of
tests/oracle.py, whose calendar windows are computed from wall clocks with zoneinfo,
independently of `rollup.timeframes`. Late trades then land in old windows and a second run
must end exact again.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rollup.incremental.planning import plan_cascade
from rollup.incremental.runner import backfill, run_cascade
from rollup.storage.tables import Tables
from rollup.timeframes import Dag
from tests.helpers import append_trades, assert_exact, snapshot_ids
from tests.oracle import window_of

pytestmark = pytest.mark.spark

LEVELS = {
    "1m": None, "5m": "1m", "30m": "5m", "1h": "30m", "1d": "1h", "1M": "1d",
    "1d@America/New_York": "1h", "1M@America/New_York": "1d@America/New_York",
    "1d@America/Chicago+17:00": "1h",
    "1d@Europe/London": "30m", "1w@Europe/London": "1d@Europe/London",
}


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
                             price, Decimal(trade_id % 5) / 4))
    return rows


def spread_trades(first_id: int, n: int, lo: datetime, hi: datetime,
                  seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    span = int((hi - lo).total_seconds())
    return [("CME", rng.choice(("GC", "ES")), first_id + i,
             lo + timedelta(seconds=rng.randrange(span)),
             Decimal(rng.randrange(190_000, 210_000)) / 100, Decimal(rng.randrange(1, 400)) / 100)
            for i in range(n)]


@pytest.fixture()
def calendar_tables(spark, namespace) -> Tables:  # type: ignore[no-untyped-def]
    tables = Tables(spark, "rollup", namespace, Dag.from_spec(LEVELS))
    tables.create_all()
    return tables


def test_the_oracle_windows_are_the_documented_ones() -> None:
    """The oracle itself, on the worked examples of docs/timeframes.md."""
    from rollup.timeframes import Timeframe

    ny = Timeframe.parse("1d@America/New_York")
    assert window_of(utc(2026, 3, 8, 12), ny) == (utc(2026, 3, 8, 5), utc(2026, 3, 9, 4),
                                                  datetime(2026, 3, 8).date())
    assert window_of(utc(2026, 11, 1, 12), ny)[1] - window_of(utc(2026, 11, 1, 12), ny)[0] \
        == timedelta(hours=25)
    cme = Timeframe.parse("1d@America/Chicago+17:00")
    assert window_of(utc(2026, 3, 8, 22), cme) == (utc(2026, 3, 8, 22), utc(2026, 3, 9, 22),
                                                   datetime(2026, 3, 9).date())
    assert window_of(utc(2026, 3, 8, 21, 59), cme)[2] == datetime(2026, 3, 8).date()
    month = Timeframe.parse("1M@America/New_York")
    assert window_of(utc(2026, 3, 1, 4, 59), month)[2] == datetime(2026, 2, 1).date()


def test_calendar_levels_equal_the_oracle_through_incremental_runs(calendar_tables) -> None:  # type: ignore[no-untyped-def]
    tables = calendar_tables
    append_trades(tables, edge_trades(0) + spread_trades(10_000, 300, utc(2026, 2, 27),
                                                          utc(2026, 11, 3), seed=1))
    predicted = {p.level.name: p for p in plan_cascade(tables)}
    assert predicted["1d@America/New_York"].full
    results = {r.level: r for r in run_cascade(tables)}
    assert set(results) == set(LEVELS)
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
    assert all(after[name] != before[name] for name in LEVELS)

    # A rerun changes nothing; a backfill over the DST week rewrites nothing either.
    assert all(r.status != "written" for r in run_cascade(tables))
    unchanged = snapshot_ids(tables)
    for result in backfill(tables, utc(2026, 3, 7), utc(2026, 3, 10)):
        assert result.status in ("unchanged", "expired"), result
    assert snapshot_ids(tables) == unchanged
    assert_exact(tables)


def test_a_new_york_day_bar_reads_as_the_local_day(calendar_tables) -> None:  # type: ignore[no-untyped-def]
    """`window_start` is the UTC instant of local midnight; the DST Sunday lasts 23 hours."""
    from pyspark.sql import functions as F

    tables = calendar_tables
    append_trades(tables, edge_trades(0))
    run_cascade(tables, up_to="1d@America/New_York")
    rows = {r.window_date.isoformat(): r for r in tables.read_bars("1d@America/New_York")
            .select("window_date", F.unix_micros("window_start").alias("s"),
                    F.unix_micros("window_end").alias("e")).collect()}
    sunday = rows["2026-03-08"]
    assert datetime.fromtimestamp(sunday.s / 1e6, UTC) == utc(2026, 3, 8, 5)
    assert (sunday.e - sunday.s) == 23 * 3_600_000_000
    assert (rows["2026-11-01"].e - rows["2026-11-01"].s) == 25 * 3_600_000_000
