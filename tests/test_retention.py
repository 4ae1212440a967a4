"""Retention: exact partition drops with a fixed clock, snapshot expiry, orphan removal, and
the retention-aware cascade (late trades for expired periods never corrupt coarser bars)."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollup.incremental.retention import (
    ceil_to_grid,
    ceil_to_partition,
    clip_ranges,
    combine_horizon,
    cutoff,
    split_ranges,
)
from rollup.timeframes import Dag, Level, Timeframe

DAY = timedelta(days=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Pure rules


def test_cutoff_keeps_every_partition_touching_the_window() -> None:
    now = utc(2024, 7, 1, 12)
    minute = Level("1m", None, retention=90 * DAY)
    assert cutoff(minute, now) == date(2024, 4, 2)  # 2024-04-02 12:00 is inside: keep that day
    daily = Level("1d", "1h", retention=45 * DAY)
    assert daily.partitioning == "months"
    assert cutoff(daily, now) == date(2024, 5, 1)  # May is partly inside: keep all of May
    assert cutoff(Level("1h", "30m"), now) is None  # no retention: keep forever


@given(
    now=st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1)),
    days=st.integers(min_value=1, max_value=4000),
    months=st.booleans(),
)
def test_dropped_partitions_lie_entirely_before_the_retention_window(
    now: datetime, days: int, months: bool
) -> None:
    level = Level("1d" if months else "1h", "1h" if months else "30m", retention=days * DAY)
    keep = cutoff(level, now)
    assert keep is not None
    window_start = now.replace(tzinfo=UTC) - days * DAY
    last_dropped_day = keep - DAY  # the newest day of the newest dropped partition
    assert datetime(last_dropped_day.year, last_dropped_day.month, last_dropped_day.day,
                    tzinfo=UTC) + DAY <= window_start
    # and the first kept partition starts at most one partition before the window
    slack = timedelta(days=31) if months else DAY
    assert datetime(keep.year, keep.month, keep.day, tzinfo=UTC) > window_start - slack


def test_grid_and_partition_ceilings() -> None:
    tf = Timeframe.parse("30m")
    assert ceil_to_grid(utc(2024, 1, 2, 10, 5), tf) == utc(2024, 1, 2, 10, 30)
    assert ceil_to_grid(utc(2024, 1, 2, 10, 30), tf) == utc(2024, 1, 2, 10, 30)
    assert ceil_to_grid(utc(2024, 1, 3), Timeframe.parse("1w")) == utc(2024, 1, 8)  # a Monday
    assert ceil_to_partition(utc(2024, 1, 2, 0, 1), "days") == utc(2024, 1, 3)
    assert ceil_to_partition(utc(2024, 1, 2), "months") == utc(2024, 2, 1)
    assert ceil_to_partition(utc(2024, 12, 1), "months") == utc(2024, 12, 1)
    assert ceil_to_partition(utc(2024, 12, 31), "months") == utc(2025, 1, 1)


def test_horizon_is_the_later_of_own_and_parent_retention() -> None:
    dag = Dag.standard()
    daily, half_hour = dag.level("1d"), dag.level("30m")
    assert combine_horizon(half_hour, None, None, whole_partitions=True) is None
    assert combine_horizon(half_hour, date(2023, 7, 2), date(2024, 1, 3),
                           whole_partitions=True) == utc(2024, 1, 3)
    # the 1d level rewrites whole months: a month whose start lost its 1h bars is frozen
    assert combine_horizon(daily, None, date(2021, 7, 2), whole_partitions=True) == utc(2021, 8, 1)
    assert combine_horizon(daily, None, date(2021, 7, 2), whole_partitions=False) == utc(2021, 7, 2)


def test_range_clipping_and_splitting() -> None:
    ranges = [(utc(2024, 1, 1), utc(2024, 1, 3)), (utc(2024, 1, 5), utc(2024, 1, 6))]
    assert clip_ranges(ranges, None) == ranges
    assert clip_ranges(ranges, utc(2024, 1, 2)) == [(utc(2024, 1, 2), utc(2024, 1, 3)),
                                                   (utc(2024, 1, 5), utc(2024, 1, 6))]
    assert clip_ranges(ranges, utc(2024, 1, 7)) == []
    before, after = split_ranges(ranges, utc(2024, 1, 5, 12))
    assert before == [(utc(2024, 1, 1), utc(2024, 1, 3)), (utc(2024, 1, 5), utc(2024, 1, 5, 12))]
    assert after == [(utc(2024, 1, 5, 12), utc(2024, 1, 6))]


# ---------------------------------------------------------------------------------------------
# Spark helpers


def append_trades(tables: Any, arrow: Any) -> None:
    from pyspark.sql import functions as F

    df = tables.spark.createDataFrame(arrow.to_pandas())
    df.select(
        "exchange", "symbol", "trade_id", F.col("ts").cast("timestamp").alias("ts"),
        F.col("price").cast("decimal(18,8)").alias("price"),
        F.col("quantity").cast("decimal(20,8)").alias("quantity"), "side",
        F.current_timestamp().alias("ingested_at"), F.lit(None).cast("string").alias("trade_ref"),
    ).writeTo(tables.trades).append()


def new_tables(spark: Any, dag: Dag) -> Any:
    from rollup.storage.tables import Tables

    tables = Tables(spark, "rollup", f"r_{uuid.uuid4().hex[:8]}", dag)
    tables.create_all()
    return tables


def partitions(tables: Any, tf: str) -> set[date]:
    from pyspark.sql import functions as F

    level = tables.dag.level(tf)
    df = tables.read_bars(tf)
    part = F.trunc("window_date", "month") if level.partitioning == "months" else F.col(
        "window_date")
    return {r.p for r in df.select(part.alias("p")).distinct().collect()}


def snapshot_ids(tables: Any, table: str) -> set[int]:
    return {r.snapshot_id for r in tables.spark.table(f"{table}.snapshots").collect()}


def bars(tables: Any, tf: str, day: date) -> dict[tuple[str, str, datetime], tuple[Any, ...]]:
    from pyspark.sql import functions as F

    rows = tables.read_bars(tf).where(F.col("window_date") == F.lit(day)).collect()
    return {(r.exchange, r.symbol, r.window_start): tuple(r) for r in rows}


# Days with trades and the retention of each level (shortened so every table drops something).
DAYS = (date(2023, 12, 28), date(2024, 1, 31), date(2024, 2, 3), date(2024, 2, 20),
        date(2024, 3, 5), date(2024, 3, 14))
NOW = utc(2024, 3, 16, 12)
RETENTION = {"1m": 2, "5m": 12, "30m": 30, "1h": 44, "1d": 45}
EXPECTED_DROPS = {
    "1m": set(DAYS[:5]),                                  # keep from 2024-03-14
    "5m": set(DAYS[:4]),                                  # keep from 2024-03-04
    "30m": set(DAYS[:3]),                                 # keep from 2024-02-15
    "1h": set(DAYS[:2]),                                  # keep from 2024-02-01
    "1d": {date(2023, 12, 1)},  # keep from January: 2024-01-31 is partly inside the window
}


@pytest.fixture(scope="module")
def retained(spark: Any) -> Any:
    """Six days of trades, a full cascade, one planted orphan file; retention not yet run."""
    from rollup.adapters.synthetic import synthetic_trades
    from rollup.incremental.runner import run_cascade

    dag = Dag.standard()
    for tf, days in RETENTION.items():
        dag = dag.replace(tf, retention=days * DAY)
    tables = new_tables(spark, dag)
    for i, day in enumerate(DAYS):
        append_trades(tables, synthetic_trades(40, symbols=2, day=day, seed=i))
    run_cascade(tables)
    return tables


@pytest.mark.spark
def test_dry_run_lists_exactly_and_changes_nothing(
    retained: Any, warehouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rollup.cli import main
    from rollup.incremental.retention import enforce_retention

    tables = retained
    before = {tf: partitions(tables, tf) for tf in RETENTION}
    snaps = {tf: snapshot_ids(tables, tables.bars(tf)) for tf in RETENTION}
    orphan = warehouse / tables.namespace / "bars_1h" / "data" / "left-over.parquet"
    orphan.write_bytes(b"not referenced by any snapshot")
    old = time.time() - 10 * 86_400
    os.utime(orphan, (old, old))
    young = orphan.with_name("in-flight.parquet")
    young.write_bytes(b"maybe an uncommitted write")
    results = {r.timeframe: r for r in enforce_retention(tables, now=NOW, dry_run=True)}
    assert set(results) == {None, *RETENTION}
    for tf, expected in EXPECTED_DROPS.items():
        assert set(results[tf].partitions) == expected, tf
        assert results[tf].dry_run and results[tf].rows > 0
        assert partitions(tables, tf) == before[tf]
        assert snapshot_ids(tables, tables.bars(tf)) == snaps[tf]
    assert results[None].cutoff is None and results[None].partitions == ()
    assert [Path(p.removeprefix("file:")).name for p in results["1h"].orphan_files] == [
        orphan.name]  # the young file may belong to a commit in flight
    assert orphan.exists()
    assert all(r.orphan_files == () for r in results.values() if r.timeframe != "1h")

    config = tmp_path / "rollup.toml"  # the same retention, configured per timeframe
    config.write_text("[retention]\n" + "".join(f'{tf} = {d}\n' for tf, d in RETENTION.items()))
    code = main(["--catalog", "rollup", "--namespace", tables.namespace, "--config", str(config),
                 "--warehouse", str(warehouse), "retention", "--dry-run", "--json",
                 "--now", "2024-03-16T12:00:00Z"])
    listed = {r["table"]: r for r in json.loads(capsys.readouterr().out)}
    assert code == 0
    assert listed["bars_1d"]["partitions"] == ["2023-12-01"]
    assert listed["bars_5m"]["cutoff"] == "2024-03-04"
    assert all(partitions(tables, tf) == before[tf] for tf in RETENTION)
    assert listed["bars_1h"]["orphan_files"] == list(results["1h"].orphan_files)


@pytest.mark.spark
def test_retention_drops_expired_partitions_expires_snapshots_and_orphans(
    retained: Any, warehouse: Path
) -> None:
    from rollup.incremental.retention import RETAINED_FROM, enforce_retention
    from rollup.incremental.runner import run_cascade
    from rollup.operations.quality import run_checks
    from rollup.storage import state

    tables = retained
    spark = tables.spark
    before = {tf: partitions(tables, tf) for tf in RETENTION}
    rows_before = {tf: tables.read_bars(tf).count() for tf in RETENTION}
    data = warehouse / tables.namespace / "bars_1h" / "data"
    orphan, young = data / "left-over.parquet", data / "in-flight.parquet"
    if not orphan.exists():  # planted by the dry-run test, unless run alone
        orphan.write_bytes(b"not referenced by any snapshot")
        os.utime(orphan, (time.time() - 10 * 86_400,) * 2)
        young.write_bytes(b"maybe an uncommitted write")
    assert len(snapshot_ids(tables, tables.trades)) == len(DAYS)

    predicted = {r.timeframe: r.snapshots for r in enforce_retention(
        tables, now=NOW, snapshot_age=timedelta(0), dry_run=True)}
    results = {r.timeframe: r for r in enforce_retention(
        tables, now=NOW, snapshot_age=timedelta(0))}
    assert {tf: r.snapshots for tf, r in results.items()} == predicted  # the dry run was exact
    for tf, expected in EXPECTED_DROPS.items():
        assert set(results[tf].partitions) == expected, tf
        assert partitions(tables, tf) == before[tf] - expected, tf
        assert tables.read_bars(tf).count() == rows_before[tf] - results[tf].rows
        props = state.table_properties(spark, tables.bars(tf))
        assert props[RETAINED_FROM] == results[tf].cutoff.isoformat()
        # the level read by nobody (1d) and every other one keep only the newest snapshot
        assert len(snapshot_ids(tables, tables.bars(tf))) == 1, tf
        assert len(results[tf].snapshots) == 1  # the pre-delete snapshot expired
    assert not orphan.exists() and young.exists()
    assert [Path(p.removeprefix("file:")).name for p in results["1h"].orphan_files] == [
        orphan.name]
    # trades: five appends expired; the one 1m has consumed is kept
    assert len(results[None].snapshots) == len(DAYS) - 1
    assert snapshot_ids(tables, tables.trades) == {state.current_snapshot(spark, tables.trades)}
    assert state.position(spark, tables.bars("1m"), tables.trades) == state.current_snapshot(
        spark, tables.trades)

    # the cascade has nothing to redo, and every check still passes
    runs = run_cascade(tables)
    assert {r.status for r in runs} == {"up-to-date"}
    failed = [r for r in run_checks(tables) if not r.passed]
    assert failed == []
    # a second run removes nothing more
    again = enforce_retention(tables, now=NOW, snapshot_age=timedelta(0))
    assert all(r.partitions == () and r.orphan_files == () for r in again)


@pytest.mark.spark
def test_late_trade_for_expired_period_keeps_coarse_bars_exact(
    spark: Any, tmp_path: Path
) -> None:
    """The issue's scenario with the standard retention (1m 90 days, 5m 180 days)."""
    from rollup.adapters.synthetic import synthetic_trades
    from rollup.incremental.retention import enforce_retention
    from rollup.incremental.runner import backfill, run_cascade
    from rollup.ingestion.batch import ingest_file
    from rollup.operations.quality import run_checks

    tables = new_tables(spark, Dag.standard())
    old_day, recent_day, now = date(2024, 1, 2), date(2024, 6, 28), utc(2024, 7, 1)
    append_trades(tables, synthetic_trades(60, symbols=2, day=old_day, seed=1))
    append_trades(tables, synthetic_trades(60, symbols=2, day=recent_day, seed=2))
    run_cascade(tables)
    dropped = {r.timeframe: set(r.partitions) for r in enforce_retention(tables, now=now)}
    assert dropped["1m"] == dropped["5m"] == {old_day}
    assert dropped["30m"] == dropped["1h"] == dropped["1d"] == set()
    coarse = ("30m", "1h", "1d")
    stored = {tf: bars(tables, tf, old_day) for tf in coarse}

    # a late trade far above that day's high, for the first symbol's 10:00 windows
    first = tables.read_trades().orderBy("symbol").first()
    late = tmp_path / "late.csv"
    late.write_text("exchange,symbol,trade_id,ts,price,quantity,side\n"
                    f"{first.exchange},{first.symbol},9000000001,2024-01-02T10:00:30Z,"
                    f"{first.price * 3},1.5,buy\n")
    assert ingest_file(tables, late).ingested == 1

    # the cascade cannot apply it exactly (1m and 5m are gone): bars unchanged, trade reported
    runs = {r.level: r for r in run_cascade(tables)}
    assert runs["1m"].skipped == 1 and "left unchanged" in runs["1m"].describe()
    assert all(runs[tf].status == "up-to-date" for tf in ("5m", *coarse))
    assert old_day not in partitions(tables, "1m")  # no partial partition re-created
    for tf in coarse:
        assert bars(tables, tf, old_day) == stored[tf], tf
    assert [r for r in run_checks(tables, checks=("reconcile",)) if not r.passed] == []

    # backfill rebuilds the coarse levels exactly, from the trades where 5m is gone
    results = {r.level: r for r in backfill(tables, utc(2024, 1, 2), utc(2024, 1, 3))}
    assert results["1m"].status == results["5m"].status == "expired"
    assert all(results[tf].status == "written" for tf in coarse)
    from pyspark.sql import functions as F

    from tests.oracle import collect_bars, compare_level, oracle_bars, read_trades

    trades_now = read_trades(tables)
    for tf in coarse:
        level = tables.dag.level(tf)
        expected = {k: v for k, v in oracle_bars(trades_now, level.timeframe).items()
                    if v["window_date"] == old_day}
        stored = collect_bars({tf: tables.read_bars(tf).where(
            F.col("window_date") == F.lit(old_day))})[tf]
        assert expected and compare_level(tf, stored, expected) == [], tf
        got = {(r["exchange"], r["symbol"], r["window_start"], r["open"], r["high"])
               for r in stored}
        assert any(r[4] == first.price * 3 for r in got), tf  # the late trade's price is the high
    assert old_day not in partitions(tables, "5m")
    assert [r for r in run_checks(tables) if not r.passed] == []


@pytest.mark.spark
def test_retention_rejects_unsafe_settings(retained: Any) -> None:
    from rollup.errors import InputError
    from rollup.incremental.retention import enforce_retention

    with pytest.raises(InputError, match="orphan age"):
        enforce_retention(retained, now=NOW, dry_run=True, orphan_age=timedelta(hours=1))
    with pytest.raises(InputError, match="retain_last"):
        enforce_retention(retained, now=NOW, dry_run=True, retain_last=0)


def test_calendar_horizons_follow_local_windows_and_label_partitions() -> None:
    """Hand-derived instants: New York midnights are 05:00Z in winter and 04:00Z in summer;
    a CME session labelled D starts at 17:00 Chicago on D - 1 (22:00Z in summer)."""
    from rollup.incremental.retention import first_start
    from rollup.timeframes import Level

    ny = Timeframe.parse("1d@America/New_York")
    cme = Timeframe.parse("1d@America/Chicago+17:00")
    assert ceil_to_grid(utc(2026, 3, 8, 12), ny) == utc(2026, 3, 9, 4)
    assert ceil_to_grid(utc(2026, 3, 8, 5), ny) == utc(2026, 3, 8, 5)
    assert first_start(date(2026, 3, 9), cme) == utc(2026, 3, 8, 22)
    assert first_start(date(2026, 3, 9), Timeframe.parse("1h")) == utc(2026, 3, 9)
    assert ceil_to_partition(utc(2026, 3, 9, 4), "months", ny) == utc(2026, 4, 1, 4)
    assert ceil_to_partition(utc(2026, 3, 1, 5), "months", ny) == utc(2026, 3, 1, 5)
    # March's first session window (labelled March 1, a Sunday: every date has a window,
    # weekend ones hold no trades) opens on February 28 at 17:00 CST, 23:00Z.
    assert ceil_to_partition(utc(2026, 2, 26, 23), "months", cme) == utc(2026, 2, 28, 23)
    session = Level("1d@America/Chicago+17:00", "1h")
    assert combine_horizon(session, date(2026, 3, 9), None, whole_partitions=False) \
        == utc(2026, 3, 8, 22)
    month = Level("1M@America/New_York", "1d@America/New_York")
    assert combine_horizon(month, None, date(2026, 3, 9), whole_partitions=True) \
        == utc(2026, 4, 1, 4)
