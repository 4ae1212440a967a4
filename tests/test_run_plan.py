"""A level run as a value: `plan_level` decides without writing, `rollup run --dry-run` shows
the plans, and the run that follows does what they said."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rollup.cli import main
from rollup.errors import InputError
from rollup.incremental.changes import Touched
from rollup.incremental.planning import LevelPlan, after_level_below, partitions_in
from rollup.incremental.runner import execute_plan
from rollup.timeframes import Dag

DAG = Dag.standard()
T0 = datetime(2024, 3, 4, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def incremental(level: str, windows: list[tuple[datetime, datetime]], count: int,
                partitions: tuple[date, ...] = ()) -> LevelPlan:
    lv = DAG.level(level)
    return LevelPlan(lv, "recompute", lv.parent_name, 11, 21, 10, windows=tuple(windows),
                     window_count=count, partitions=partitions, reason="1 append")


def test_a_plan_names_its_kind_snapshot_and_ranges() -> None:
    plan = incremental("1m", [(at(0), at(3)), (at(10), at(11))], 4)
    assert plan.kind == "incremental"
    text = plan.describe()
    assert text.startswith("1m: incremental from trades snapshot 11, position 10 (1 append)")
    assert "4 windows in 2 range(s) 2024-03-04T00:00:00Z..2024-03-04T00:03:00Z, " \
           "2024-03-04T00:10:00Z..2024-03-04T00:11:00Z" in text
    many = incremental("1m", [(at(2 * i), at(2 * i + 1)) for i in range(8)], 8)
    assert many.describe().endswith("2024-03-04T00:09:00Z and 3 more")
    shown = many.as_json()
    assert shown["range_count"] == 8 and len(shown["ranges"]) == 8  # type: ignore[arg-type]
    assert shown["kind"] == "incremental" and shown["parent_snapshot"] == 11
    idle = LevelPlan(DAG.level("5m"), "up-to-date", "bars_1m", 7, 3, 7)
    assert idle.kind == "nothing"
    assert idle.describe() == "5m: nothing to do (up to date with bars_1m snapshot 7)"
    full = LevelPlan(DAG.level("1h"), "recompute", "bars_30m", 5, None, None,
                     touched=Touched(True), reason="no position")
    assert full.kind == "full"
    assert full.describe() == "1h: full, recompute all windows from bars_30m snapshot 5 " \
                              "(no position)"


def test_the_level_above_a_pending_merge_level_gets_its_windows_widened() -> None:
    below = incremental("1m", [(at(3), at(4)), (at(7), at(12))], 6)
    idle = LevelPlan(DAG.level("5m"), "up-to-date", "bars_1m", 7, 3, 7)
    plan = after_level_below(idle, below, horizon=None)
    assert plan.kind == "incremental" and plan.after == "1m"
    assert plan.windows == ((at(0), at(15)),) and plan.window_count == 3
    assert "5m: incremental after 1m is written (reads bars_1m, now at snapshot 7)" \
           in plan.describe()
    assert "up to 3 windows" in plan.describe()
    clipped = after_level_below(idle, below, horizon=at(5))
    assert clipped.windows == ((at(5), at(15)),) and clipped.window_count == 2


def test_the_level_above_a_pending_overwrite_level_covers_its_partitions() -> None:
    below = incremental("1h", [(at(60), at(120))], 1, partitions=(date(2024, 3, 4),))
    idle = LevelPlan(DAG.level("1d"), "up-to-date", "bars_1h", 7, 3, 7)
    plan = after_level_below(idle, below, horizon=None)
    assert plan.windows == ((T0, T0 + timedelta(days=1)),) and plan.window_count == 1
    assert plan.partitions == (date(2024, 3, 1),)  # 1d is partitioned by month


def test_no_position_or_a_full_run_below_makes_the_level_above_full() -> None:
    below = incremental("1m", [(at(0), at(1))], 1)
    never_ran = LevelPlan(DAG.level("5m"), "no-input", "bars_1m")
    assert after_level_below(never_ran, below, None).kind == "full"
    full_below = LevelPlan(DAG.level("1m"), "recompute", "trades", 3, None, None,
                           touched=Touched(True))
    idle = LevelPlan(DAG.level("5m"), "up-to-date", "bars_1m", 7, 3, 7)
    assert after_level_below(idle, full_below, None).kind == "full"
    nothing = LevelPlan(DAG.level("1m"), "up-to-date", "trades", 3, 2, 3)
    assert after_level_below(idle, nothing, None) is idle


def test_partitions_in_ranges() -> None:
    ranges = [(T0 - timedelta(hours=1), T0 + timedelta(hours=1)),
              (T0 + timedelta(days=30), T0 + timedelta(days=30, minutes=1))]
    assert partitions_in(ranges, DAG.level("30m")) == (
        date(2024, 3, 3), date(2024, 3, 4), date(2024, 4, 3))
    assert partitions_in(ranges, DAG.level("1d")) == (date(2024, 3, 1), date(2024, 4, 1))


def test_a_predicted_plan_cannot_be_executed() -> None:
    plan = after_level_below(LevelPlan(DAG.level("5m"), "up-to-date", "bars_1m", 7, 3, 7),
                             incremental("1m", [(at(0), at(1))], 1), None)
    with pytest.raises(InputError, match="5m predicts what 1m will write"):
        execute_plan(None, plan, run_id="x")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# On Iceberg


def trades(start: datetime, n: int, first_id: int, step: int = 137) -> list[tuple[Any, ...]]:
    return [("X", ("BTC", "ETH")[i % 2], first_id + i, start + timedelta(seconds=i * step),
             Decimal(100 + i % 13), Decimal(i % 4 + 1)) for i in range(n)]


def table_state(tables: Any) -> dict[str, tuple[int | None, dict[str, str]]]:
    """Every table of the namespace: its current snapshot and its properties."""
    from rollup.storage import state

    names = [r.tableName for r in tables.spark.sql(
        f"SHOW TABLES IN {tables.catalog}.{tables.namespace}").collect()]
    assert "trades" in names and "bars_1d" in names
    return {n: (state.current_snapshot(tables.spark, tables.name(n)),
                state.table_properties(tables.spark, tables.name(n))) for n in names}


def merged(starts: list[datetime], width: timedelta) -> list[list[str]]:
    """Window starts as merged [start, end) ranges, ISO text (written here, not rollup's)."""
    out: list[list[datetime]] = []
    for s in sorted(set(starts)):
        if out and out[-1][1] == s:
            out[-1][1] = s + width
        else:
            out.append([s, s + width])
    return [[a.isoformat().replace("+00:00", "Z"), b.isoformat().replace("+00:00", "Z")]
            for a, b in out]


@pytest.mark.spark
def test_dry_run_commits_nothing_and_the_run_does_what_it_showed(  # type: ignore[no-untyped-def]
    tables, warehouse: Path, capsys
) -> None:
    from pyspark.sql import functions as F

    from rollup.incremental.runner import run_cascade
    from rollup.specs.times import from_micros

    def cli(*args: str) -> str:
        code = main(["--warehouse", str(warehouse), "--catalog", "rollup",
                     "--namespace", tables.namespace, *args])
        out, _ = capsys.readouterr()
        assert code == 0
        return out

    append_trades(tables, trades(T0, 200, 0))
    run_cascade(tables)
    append_trades(tables, trades(T0 + timedelta(hours=10), 40, 5_000, step=61))
    before = table_state(tables)
    plans = {p["level"]: p for p in json.loads(cli("run", "--dry-run", "--json"))}
    text = cli("run", "--dry-run").splitlines()
    assert table_state(tables) == before  # no commit, no table property, no quarantine row
    assert text[0].startswith("1m: incremental from trades snapshot ")
    assert text[1].startswith("5m: incremental after 1m is written")
    assert all(p["kind"] == "incremental" for p in plans.values()), plans

    results = {r["level"]: r for r in json.loads(cli("run", "--json"))}
    assert set(results) == set(plans) == {"1m", "5m", "30m", "1h", "1d"}
    assert plans["1m"]["parent_snapshot"] == results["1m"]["parent_snapshot"]
    for lv in tables.dag.order():
        plan, result = plans[lv.name], results[lv.name]
        assert result["status"] == "written", result
        assert len(plan["partitions"]) == result["partitions"], (plan, result)
        rewritten = [from_micros(r.m) for r in tables.read_bars(lv).where(
            F.col("run_id") == result["run_id"]).select(
            F.unix_micros("window_start").alias("m")).collect()]
        if lv.parent is None or tables.dag.level(lv.parent).write_mode == "merge":
            # from the trades or a merge level the plan is exact: the windows rewritten
            assert plan["windows"] == result["windows"], (plan, result)
            assert plan["ranges"] == merged(rewritten, lv.timeframe.duration), lv.name
        else:  # below it an overwrite level rewrites whole partitions: an upper bound
            assert plan["windows"] >= result["windows"] >= 1, (plan, result)
            spans = [(datetime.fromisoformat(a), datetime.fromisoformat(b))
                     for a, b in plan["ranges"]]
            assert all(any(a <= w < b for a, b in spans) for w in rewritten), lv.name
    assert table_state(tables) != before


def append_trades(tables: Any, rows: list[tuple[Any, ...]]) -> None:
    from tests.helpers import append_trades as append

    append(tables, rows)
