"""The cascade written to Iceberg: exact at every level, idempotent, incremental, late data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from rollup.incremental import runner
from rollup.incremental.runner import backfill, run_cascade, run_level
from rollup.operations.status import level_status
from tests.helpers import append_trades, assert_exact, snapshot_ids

pytestmark = pytest.mark.spark

DAY = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday


def day_trades(day: datetime, n: int, *, first_id: int = 0, symbols=("BTC", "ETH")) -> list:  # type: ignore[no-untyped-def,type-arg]
    rows = []
    for i in range(n):
        sym = symbols[i % len(symbols)]
        ts = day + timedelta(seconds=(i * 137) % 86_400)
        price = Decimal(100 + (i * 7) % 13) + Decimal(i % 100) / 100
        rows.append(("X", sym, first_id + i, ts, price, Decimal(i % 5) / 4))
    return rows


def test_full_cascade_is_exact_and_rerun_changes_nothing(tables) -> None:  # type: ignore[no-untyped-def]
    append_trades(tables, day_trades(DAY, 400) + day_trades(DAY + timedelta(days=1), 100,
                                                             first_id=10_000))
    results = run_cascade(tables)
    assert [r.level for r in results] == ["1m", "5m", "30m", "1h", "1d"]
    assert all(r.status == "written" for r in results)
    assert assert_exact(tables) > 0
    before = snapshot_ids(tables)
    lineage = tables.read_bars("1m").select("created_at", "updated_at", "run_id").collect()
    again = run_cascade(tables)
    assert [r.status for r in again] == ["up-to-date"] * 5
    assert snapshot_ids(tables) == before  # nothing committed
    assert sorted(tables.read_bars("1m").select("created_at", "updated_at", "run_id")
                  .collect()) == sorted(lineage)
    full = run_cascade(tables, full=True)  # recompute everything: still no change
    assert [r.status for r in full] == ["unchanged"] * 5
    assert snapshot_ids(tables) == before


def test_incremental_with_late_trades_of_any_age(tables) -> None:  # type: ignore[no-untyped-def]
    early = day_trades(DAY, 300)
    append_trades(tables, early[:150])
    run_cascade(tables)
    assert_exact(tables)
    last_week = day_trades(DAY - timedelta(days=6), 40, first_id=50_000)
    two_months = day_trades(DAY - timedelta(days=61), 10, first_id=60_000)
    append_trades(tables, early[150:])
    run_cascade(tables)
    append_trades(tables, last_week + two_months)
    results = run_cascade(tables)
    written = {r.level: r for r in results}
    assert all(r.status == "written" for r in results)
    assert not written["1m"].full and written["1m"].windows <= 50  # only what changed
    assert_exact(tables)
    run_ids = {r.run_id for r in tables.read_bars("1d").collect()}
    assert len(run_ids) >= 2  # old days kept their lineage, late days got the new run id
    assert [r.status for r in run_cascade(tables)] == ["up-to-date"] * 5


def test_large_change_sets_stay_in_spark(tables, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Beyond LOCAL_KEYS changed windows the keys are checkpointed in Spark, not collected."""
    from rollup.incremental import changes

    monkeypatch.setattr(changes, "LOCAL_KEYS", 3)  # decides collect vs checkpoint
    monkeypatch.setattr(runner, "LOCAL_KEYS", 3)  # decides broadcast of the keys
    append_trades(tables, day_trades(DAY, 120))
    run_cascade(tables)
    append_trades(tables, day_trades(DAY - timedelta(days=2), 30, first_id=70_000))
    results = run_cascade(tables)
    assert not results[0].full and results[0].windows > 3
    assert assert_exact(tables) > 0


def test_levels_run_on_their_own_schedule_and_catch_up(tables) -> None:  # type: ignore[no-untyped-def]
    append_trades(tables, day_trades(DAY, 100))
    run_level(tables, "1m")
    append_trades(tables, day_trades(DAY, 60, first_id=1_000))
    run_level(tables, "1m")  # 1m moved twice; 5m has not run at all
    run_cascade(tables, up_to="5m")
    statuses = {s.level: s for s in level_status(tables)}
    assert not statuses["5m"].pending and statuses["30m"].pending
    run_cascade(tables)
    assert_exact(tables)
    as_json = json.dumps([s.as_json() for s in level_status(tables)])
    assert '"pending": false' in as_json


def test_crash_right_after_a_commit_converges(tables, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    append_trades(tables, day_trades(DAY, 120))
    run_cascade(tables)
    append_trades(tables, day_trades(DAY, 80, first_id=5_000))
    real = runner.merge_changes
    calls = {"n": 0}

    def crash_after_second(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # 1m and 5m committed (with their positions), then the crash
            raise RuntimeError("injected crash")
        return result

    monkeypatch.setattr(runner, "merge_changes", crash_after_second)
    with pytest.raises(RuntimeError, match="injected"):
        run_cascade(tables)
    monkeypatch.setattr(runner, "merge_changes", real)
    statuses = {s.level: s for s in level_status(tables)}
    assert not statuses["5m"].pending and statuses["30m"].pending  # the position came along
    run_cascade(tables)
    assert_exact(tables)


def test_crash_inside_partition_overwrite_leaves_tables_consistent(tables, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql.readwriter import DataFrameWriterV2

    append_trades(tables, day_trades(DAY, 120))
    run_cascade(tables)
    append_trades(tables, day_trades(DAY + timedelta(hours=3), 50, first_id=7_000))

    def boom(self, condition):  # type: ignore[no-untyped-def]
        raise RuntimeError("injected crash inside overwrite")

    monkeypatch.setattr(DataFrameWriterV2, "overwrite", boom)
    with pytest.raises(RuntimeError, match="inside overwrite"):
        run_cascade(tables)  # 1m and 5m (merge) commit; 30m fails before its commit
    monkeypatch.undo()
    statuses = {s.level: s for s in level_status(tables)}
    assert statuses["30m"].pending
    run_cascade(tables)
    assert_exact(tables)


def test_concurrent_runs_of_one_level_stay_exact(tables, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Forced interleaving: between one run's plan and its commit, another run of the same
    level commits the same partition and the level below moves on. Iceberg refuses the first
    run's partition overwrite; the run plans again, writes the newer input, and every level
    equals the independent oracle."""
    from rollup.spark.engine import is_commit_conflict
    from tests.oracle import (
        assert_matches_oracle,
        compare_level,
        oracle_bars,
        read_stored,
        read_trades,
    )

    append_trades(tables, day_trades(DAY, 200))
    run_cascade(tables)
    append_trades(tables, day_trades(DAY, 100, first_id=20_000))
    run_cascade(tables, up_to="5m")
    real = runner.execute_plan
    plans: list[runner.LevelPlan] = []
    refused: list[BaseException] = []

    def interleaved(tbl, plan, **kwargs):  # type: ignore[no-untyped-def]
        if plan.level.name != "30m":
            return real(tbl, plan, **kwargs)
        plans.append(plan)
        if len(plans) > 1:
            return real(tbl, plan, **kwargs)
        other = run_level(tables, "30m")  # the other run, from the same 5m snapshot
        assert other.status == "written" and other.retries == 0
        append_trades(tables, day_trades(DAY + timedelta(hours=2), 30, first_id=40_000))
        run_cascade(tables, up_to="5m")  # newer input the refused run never read
        try:
            return real(tbl, plan, **kwargs)
        except Exception as exc:
            refused.append(exc)
            raise

    monkeypatch.setattr(runner, "execute_plan", interleaved)
    result = run_level(tables, "30m")
    monkeypatch.undo()
    assert len(refused) == 1 and is_commit_conflict(refused[0]), refused
    assert result.retries == 1 and result.status == "written", result
    assert "planned again 1x" in result.describe()
    stale, other, retried = plans
    assert stale.parent_snapshot == other.parent_snapshot != retried.parent_snapshot
    assert retried.position == other.parent_snapshot  # the other run's commit counted
    trades = read_trades(tables)
    stored = read_stored(tables)
    for name in ("1m", "5m", "30m"):  # right after the contested run, before any other
        level = tables.dag.level(name)
        assert not compare_level(name, stored[name], oracle_bars(trades, level.timeframe))
    run_cascade(tables)
    assert assert_matches_oracle(tables) > 0


def test_backfill_restated_trades_removes_vanished_windows(tables) -> None:  # type: ignore[no-untyped-def]
    append_trades(tables, day_trades(DAY, 200))
    run_cascade(tables)
    # Restate: the source drops all trades of hour 5 and corrects hour 6.
    spark = tables.spark
    from pyspark.sql import functions as F

    kept = tables.read_trades().where(
        ~((F.col("ts") >= F.lit(DAY + timedelta(hours=5))) &
          (F.col("ts") < F.lit(DAY + timedelta(hours=7))))).localCheckpoint()
    kept.writeTo(tables.trades).overwrite(F.lit(True))
    append_trades(tables, [("X", "BTC", 99_999, DAY + timedelta(hours=6, minutes=1),
                            Decimal("555.5"), Decimal("2"))])
    assert spark.table(tables.trades).count() > 0
    results = backfill(tables, DAY + timedelta(hours=5), DAY + timedelta(hours=7))
    assert {r.level for r in results} == {"1m", "5m", "30m", "1h", "1d"}
    assert any(r.deleted > 0 for r in results)
    assert_exact(tables)


def test_month_partitioned_level_updates_one_day_of_a_busy_month(tables) -> None:  # type: ignore[no-untyped-def]
    append_trades(tables, day_trades(DAY, 60) + day_trades(DAY + timedelta(days=1), 60,
                                                           first_id=1_000))
    run_cascade(tables)
    append_trades(tables, day_trades(DAY + timedelta(days=1), 10, first_id=2_000))
    results = {r.level: r for r in run_cascade(tables)}
    assert results["1d"].status == "written" and results["1d"].partitions == 1
    assert_exact(tables)


def test_a_late_trade_touches_one_window_per_level(tables) -> None:  # type: ignore[no-untyped-def]
    """The 1m MERGE that updates a bar writes a position delete file; the 5m run reads the
    rows it points at, not its whole partition."""
    from rollup.incremental.runner import plan_level

    append_trades(tables, day_trades(DAY, 300))
    run_cascade(tables)
    late = DAY + timedelta(seconds=137 * 5 + 1)  # inside an existing 1m window
    append_trades(tables, [("X", "BTC", 90_000, late, Decimal("101.5"), Decimal("0.25"))])
    assert run_level(tables, "1m").windows == 1
    plan = plan_level(tables, "5m")
    assert plan.status == "recompute" and len(plan.touched.starts) == 1, plan.describe()
    results = {r.level: r for r in run_cascade(tables)}
    assert results["5m"].windows == 1 and results["5m"].changed == 1
    assert results["30m"].partitions == 1 and results["30m"].changed == 1
    assert_exact(tables)
