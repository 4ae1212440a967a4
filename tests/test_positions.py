"""Positions recorded in the level's own commits: the pure resolution rules, and a forced
interleaving of two runs of one level (the race of issue 13, case 4)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from rollup.storage.iceberg import Snapshot
from rollup.storage.state import BASE, POSITION, ancestry, earlier, resolve_position

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def snap(sid: int, parent: int | None, op: str = "overwrite", **summary: object) -> Snapshot:
    keys = {"position": POSITION, "base": BASE}
    return Snapshot(sid, parent, op, T0 + timedelta(seconds=sid),
                    {keys[k]: str(v) for k, v in summary.items()})


# parent table lineage: 100 <- 101 <- 102 <- 103, and a rolled-back branch 101 <- 201
PARENT = {s.snapshot_id: s for s in [snap(100, None, "append"), snap(101, 100, "append"),
                                     snap(102, 101, "append"), snap(103, 102, "append"),
                                     snap(201, 101, "append")]}
IS_ANCESTOR = ancestry(PARENT)


def resolve(snaps: list[Snapshot], current: int | None, verified=None, legacy=None):  # type: ignore[no-untyped-def]
    return resolve_position({s.snapshot_id: s for s in snaps}, current, verified, legacy,
                            IS_ANCESTOR)


def test_earlier_follows_the_parent_lineage() -> None:
    assert earlier(101, 103, IS_ANCESTOR) == 101
    assert earlier(103, 101, IS_ANCESTOR) == 101
    assert earlier(201, 103, IS_ANCESTOR) is None  # different lineages: recompute all
    assert earlier(None, 103, IS_ANCESTOR) is None


def test_a_commit_planned_on_its_parent_carries_the_position() -> None:
    snaps = [snap(1, None, position=101, base="none"), snap(2, 1, position=103, base=1)]
    assert resolve(snaps, 2) == 103


def test_compaction_between_plan_and_commit_keeps_the_claim() -> None:
    snaps = [snap(1, None, position=101, base="none"), snap(2, 1, "replace"),
             snap(3, 2, position=103, base=1), snap(4, 3, "replace")]
    assert resolve(snaps, 4) == 103


def test_a_raced_commit_counts_with_the_older_state() -> None:
    # run B planned on 1 and committed 2 (parent 103); stale run A also planned on 1 (parent
    # 101) and committed 3 on top of B: the bars reflect only 101.
    snaps = [snap(1, None, position=100, base="none"), snap(2, 1, position=103, base=1),
             snap(3, 2, position=101, base=1)]
    assert resolve(snaps, 3) == 101
    # the other order: the stale run first, then the fresh one applied on top of it
    snaps = [snap(1, None, position=100, base="none"), snap(2, 1, position=101, base=1),
             snap(3, 2, position=103, base=1)]
    assert resolve(snaps, 3) == 101


def test_foreign_commits_are_transparent_and_verified_overrides() -> None:
    snaps = [snap(1, None, position=101, base="none"), snap(2, 1, "delete")]
    assert resolve(snaps, 2) == 101
    assert resolve(snaps, 2, verified=(2, 103)) == 103
    assert resolve(snaps, 2, verified=(1, 103)) == 103  # verified state 1, deleted since
    assert resolve(snaps, 2, verified=(7, 103)) == 101  # a table state that is gone


def test_expired_history_and_legacy_positions() -> None:
    assert resolve([], None) is None
    assert resolve([snap(5, 4, "append")], 5, legacy=102) == 102  # older snapshots expired
    assert resolve([snap(5, None, "append")], 5) is None
    raced = [snap(1, None, position=201, base="none"), snap(2, 1, position=103, base="none")]
    assert resolve(raced, 2) is None  # positions on two lineages: only a full run is safe


@pytest.mark.spark
def test_forced_interleaving_of_two_runs_of_a_merge_level(tables) -> None:  # type: ignore[no-untyped-def]
    """A stale run commits after a fresh one: the position must not claim the fresh input."""
    from pyspark.sql import functions as F

    from rollup.incremental.runner import execute_plan, plan_level, run_cascade, run_level
    from tests.helpers import append_trades, assert_exact

    day = datetime(2024, 3, 4, 10, tzinfo=UTC)
    append_trades(tables, [("X", "BTC", i, day + timedelta(seconds=7 * i), Decimal(100 + i),
                            Decimal(1)) for i in range(20)])
    run_level(tables, "1m")
    append_trades(tables, [("X", "BTC", 100, day + timedelta(seconds=1), Decimal(7), Decimal(2))])
    stale = plan_level(tables, "1m")  # run A plans from the parent with trade 100
    assert stale.status == "recompute"
    late = ("X", "BTC", 101, day + timedelta(seconds=2), Decimal(9), Decimal(3))
    append_trades(tables, [late])
    fresh = run_level(tables, "1m")  # run B reads trade 101 too, and commits first
    assert fresh.status == "written"
    window = tables.read_bars("1m").where(F.col("window_start") == F.lit(day))
    assert window.first().trade_count == 9 + 2  # 9 originals, 100 and 101
    execute_plan(tables, stale, run_id="stale")  # run A commits its older bars on top
    assert window.first().trade_count == 9 + 1, "the race did not happen"
    again = run_level(tables, "1m")
    assert again.status == "written" and again.windows >= 1
    assert window.first().trade_count == 11
    run_cascade(tables)
    assert_exact(tables)


@pytest.mark.spark
def test_forced_interleaving_of_two_runs_of_an_overwrite_level(tables) -> None:  # type: ignore[no-untyped-def]
    """The stale run's partition overwrite is rejected: another run changed the partition."""
    from rollup.incremental.runner import execute_plan, plan_level, run_cascade, run_level
    from tests.helpers import append_trades, assert_exact

    day = datetime(2024, 3, 4, 10, tzinfo=UTC)
    append_trades(tables, [("X", "ETH", i, day + timedelta(seconds=60 * i), Decimal(50 + i),
                            Decimal(1)) for i in range(30)])
    run_cascade(tables, up_to="30m")
    append_trades(tables, [("X", "ETH", 500, day + timedelta(seconds=5), Decimal(1), Decimal(1))])
    run_cascade(tables, up_to="5m")
    stale = plan_level(tables, "30m")
    append_trades(tables, [("X", "ETH", 501, day + timedelta(seconds=6), Decimal(2), Decimal(1))])
    run_cascade(tables, up_to="5m")
    assert run_level(tables, "30m").status == "written"
    with pytest.raises(Exception, match="conflicting"):
        execute_plan(tables, stale, run_id="stale")
    run_cascade(tables)
    assert_exact(tables)


@pytest.mark.spark
def test_a_spark_failure_is_one_line_naming_the_level(tables) -> None:  # type: ignore[no-untyped-def]
    """A parent data file lost from storage: one line naming the level and what to do."""
    from pathlib import Path

    from rollup.errors import LevelRunError
    from rollup.incremental.runner import run_level
    from rollup.storage.iceberg import Table
    from tests.helpers import append_trades

    day = datetime(2024, 3, 4, 10, tzinfo=UTC)
    append_trades(tables, [("X", "BTC", 1, day, Decimal(1), Decimal(1))])
    run_level(tables, "1m")
    append_trades(tables, [("X", "BTC", 2, day, Decimal(2), Decimal(1))])
    meta = Table(tables.spark, tables.trades, "ts")
    lost = meta.file_changes(meta.current_snapshot_id()).added_data[0].path  # type: ignore[arg-type]
    Path(lost.removeprefix("file:")).unlink()
    with pytest.raises(LevelRunError) as failure:
        run_level(tables, "1m")
    message = str(failure.value)
    assert "\n" not in message and "level 1m failed in Spark" in message
    assert "run `rollup run` again" in message and "at org.apache" not in message
