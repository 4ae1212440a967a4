"""The follow_lag figure of `rollup bench` (issue 16) and its writer without a JVM.

The pyiceberg writer's commits are visible to Spark; two writers staged on the same version
cannot both commit it; the tiny figure measures a positive lag for every commit and leaves
every level equal to the independent oracle (tests/oracle.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from rollup.benchmarks.common import BenchConfig
from rollup.benchmarks.follow_lag import FollowLagResult, commit_lags, nearest_rank
from rollup.benchmarks.incremental import IncrementalResult
from rollup.benchmarks.report import FRESHNESS_GOALS, BenchReport
from rollup.benchmarks.writer import Committed, HadoopTables, local_warehouse
from rollup.errors import ConfigError
from rollup.incremental.follow import Cycle
from rollup.incremental.runner import LevelResult

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _commit(k: int, snapshot: int, seconds: float) -> Committed:
    at = T0 + timedelta(seconds=seconds)
    return Committed(k, snapshot, None, int(at.timestamp() * 1000), 10, 0.1)


def _cycle(n: int, snapshot: int | None, not_run: tuple[str, ...] = ()) -> Cycle:
    return Cycle(n, "trades", snapshot, 1, (LevelResult("1m", "written", "r", snapshot),),
                 1.0, 1.0, not_run=not_run)


def test_lag_is_up_to_the_first_full_cycle_that_includes_the_commit() -> None:
    # snapshots 1 -> 2 -> 3 -> 4 (a chain); 9 is on another branch
    chain = {1: {1}, 2: {1, 2}, 3: {1, 2, 3}, 4: {1, 2, 3, 4}, 9: {1, 9}}
    commits = [_commit(0, 2, 0.0), _commit(1, 3, 5.0), _commit(2, 4, 10.0)]
    at = [T0 + timedelta(seconds=s) for s in (1.0, 3.5, 8.0, 9.0, 14.0)]
    cycles = [(_cycle(1, 1), at[0]),               # before any commit
              (_cycle(2, 2), at[1]),               # includes commit 0
              (_cycle(3, 3, ("1h", "1d")), at[2]),  # includes commit 1, but not every level
              (_cycle(4, 9), at[3]),               # another branch: includes none
              (_cycle(5, 3), at[4])]               # commit 1, every level
    assert commit_lags(commits, cycles, chain.__getitem__) == [3.5, 9.0, None]
    # a cycle at a descendant counts for every commit before it
    late = [*cycles, (_cycle(6, 4), T0 + timedelta(seconds=20.5))]
    assert commit_lags(commits, late, chain.__getitem__) == [3.5, 9.0, 10.5]


def test_nearest_rank_percentiles() -> None:
    assert nearest_rank([], 0.95) is None
    assert nearest_rank([4.0], 0.95) == 4.0
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert nearest_rank(values, 0.95) == 19.0 and nearest_rank(values, 0.5) == 10.0
    assert nearest_rank(list(reversed(values)), 1.0) == 20.0


def _follow_result(**kw: Any) -> FollowLagResult:
    base: dict[str, Any] = {
        "commits": 4, "trades_per_commit": 5_000, "interval": 5.0, "poll": 0.5,
        "lags": (6.0, 8.0, 30.0, None), "cycles": 5, "cycle_seconds": 4.2,
        "commit_seconds": 0.3, "exact": True, "checked": {"1m": 40, "1d": 20}}
    return FollowLagResult(**{**base, **kw})


def _timing(name: str, *wall: float) -> Any:
    from rollup.benchmarks.common import Timing

    return Timing(name, wall, tuple(None for _ in wall))


def test_report_shows_cycle_s_and_the_follow_lag_with_their_goals() -> None:
    result = _follow_result()
    assert result.median_s == 8.0 and result.p95_s == 30.0 and len(result.measured) == 3
    report = BenchReport(
        BenchConfig(history_days=(1, 30), parts=("incremental", "follow")), "local[2]",
        timings={}, cascade_levels={}, duckdb_equal=None,
        incremental=(IncrementalResult(1, 10, 3.0, _timing("i1", 1.9, 1.5, 2.5), {}),
                     IncrementalResult(30, 300, 9.0, _timing("i30", 9.0), {})),
        scaling=(), follow=result)
    assert report.freshness() == {"cycle_s": 1.9, "follow_lag_median_s": 8.0,
                                  "follow_lag_p95_s": 30.0}
    assert report.freshness_goals() == {"cycle_s": True, "follow_lag_median_s": True,
                                        "follow_lag_p95_s": False}
    assert set(FRESHNESS_GOALS) == set(report.freshness())
    line = json.loads(report.json_line())
    assert (line["cycle_s"], line["follow_lag_median_s"], line["follow_lag_p95_s"],
            line["follow_commits"]) == (1.9, 8.0, 30.0, 4)
    assert line["follow_lags_s"] == [6.0, 8.0, 30.0, None] and line["follow_exact"] is True
    assert line["freshness_goals_met"]["follow_lag_p95_s"] is False
    table = report.table()
    for text in ("follow lag", "3/4 commits of 5,000 trades every 5s", "no JVM",
                 "goal <= 2 s: met", "goal <= 10 s: met", "goal <= 20 s: NOT met"):
        assert text in table, text
    bare = json.loads(attrs.evolve(report, follow=None, incremental=()).json_line())
    assert bare["cycle_s"] is None and bare["follow_lag_median_s"] is None
    assert "follow_commits" not in bare
    assert bare["freshness_goals_met"] == {name: None for name in FRESHNESS_GOALS}


def test_follow_options_build_the_config() -> None:
    import argparse

    from rollup.cli.bench import build_config

    args = argparse.Namespace(
        quick=False, trades=None, sizes=None, symbols=None, repeats=None, history_per_day=None,
        warmups=None, scattered_windows=None, ingest_rows=None, late_batch=None, only="follow",
        follow_commits=3, follow_interval=1.5, follow_trades="2k", follow_poll=0.25,
        history_days="1,2")
    config = build_config(args)
    assert config.history_days == (1, 2)
    with pytest.raises(ConfigError, match="invalid --history-days '1,x'"):
        build_config(argparse.Namespace(**{**vars(args), "history_days": "1,x"}))
    with pytest.raises(ConfigError, match="history_days must be two day counts"):
        build_config(argparse.Namespace(**{**vars(args), "history_days": "3"}))
    assert (config.parts, config.follow_commits, config.follow_interval, config.follow_trades,
            config.follow_poll) == (("follow",), 3, 1.5, 2_000, 0.25)
    assert BenchConfig().follow_commits * BenchConfig().follow_interval == 120  # two minutes
    assert BenchConfig().follow_trades == 5_000 and "follow" in BenchConfig().parts
    with pytest.raises(ConfigError, match="follow_interval must be a number of seconds > 0"):
        BenchConfig(follow_interval=0)
    with pytest.raises(ConfigError, match="follow_commits must be an integer >= 1"):
        BenchConfig(follow_commits=0)


def test_local_warehouse_only() -> None:
    assert local_warehouse("/tmp/wh") == Path("/tmp/wh")
    assert local_warehouse("file:///tmp/wh") == Path("/tmp/wh")
    assert local_warehouse("file:/tmp/wh") == Path("/tmp/wh")
    with pytest.raises(ConfigError, match="s3://b/wh is not a local directory"):
        local_warehouse("s3://b/wh")


def test_writer_failures_are_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import sys

    from rollup.benchmarks.follow_lag import _run_writer
    from rollup.benchmarks.writer import _main
    from rollup.errors import RollupError

    assert _main(["--warehouse", str(tmp_path), "--namespace", "ns", "--commits", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("writer: no Iceberg table at "), err
    assert _main(["--warehouse", str(tmp_path), "--namespace", "ns", "--trades", "0"]) == 2
    assert "invalid --trades 0" in capsys.readouterr().err
    failing = [sys.executable, "-c", "import sys; print('x', file=sys.stderr); "
               "print('boom', file=sys.stderr); sys.exit(3)"]
    with pytest.raises(RollupError, match="^the follow_lag writer failed: boom$"):
        _run_writer(failing, tmp_path / "log", lambda _m: None)


# -- with Spark --------------------------------------------------------------------------------


def _batch(table: Any, n: int, first_id: int) -> Any:
    from rollup.benchmarks.writer import live_trades

    end = int(T0.timestamp() * 1e6)
    return live_trades(table.schema().as_arrow(), n, 2, end - 5_000_000, end, first_id, first_id)


def _count(tables: Any) -> tuple[int, set[int]]:
    tables.spark.sql(f"REFRESH TABLE {tables.trades}")  # another catalog committed
    rows = tables.spark.table(tables.trades).select("trade_id").collect()
    return len(rows), {r.trade_id for r in rows}


@pytest.mark.spark
def test_writer_commits_are_seen_by_spark_and_racing_writers_fail_cleanly(
    tables, warehouse  # type: ignore[no-untyped-def]
) -> None:
    from pyiceberg.exceptions import CommitFailedException

    from rollup.benchmarks.writer import write_data_files

    ident = (tables.namespace, tables.trades_table)
    first = HadoopTables(warehouse).load_table(ident)
    one = _batch(first, 300, 1_000)
    first.add_files(write_data_files(first, one), check_duplicate_files=False)
    count, ids = _count(tables)
    assert count == 300 and ids == set(one.column("trade_id").to_pylist())
    from pyspark.sql import functions as F

    spark_rows = (tables.spark.table(tables.trades).orderBy("trade_id")
                  .select("symbol", F.unix_micros("ts").alias("us"), "price", "quantity", "side")
                  .collect())
    ordered = one.sort_by("trade_id")
    for column in ("symbol", "price", "quantity", "side"):
        assert [r[column] for r in spark_rows] == ordered.column(column).to_pylist(), column
    assert [r.us for r in spark_rows] == ordered.column("ts").cast("int64").to_pylist()

    # Two writers stage a commit on the same version; only the first to publish commits it.
    staged: list[Any] = []

    class Paused(Exception):
        pass

    class Staging(HadoopTables):
        def commit_table(self, table: Any, requirements: Any, updates: Any) -> Any:
            staged.append(self.stage(table, requirements, updates))
            raise Paused  # stop pyiceberg here: publish below, in a forced order

    a = Staging(warehouse).load_table(ident)
    b = Staging(warehouse).load_table(ident)
    batch_a, batch_b = _batch(a, 40, 2_000), _batch(b, 50, 3_000)
    for table, batch in ((a, batch_a), (b, batch_b)):
        with pytest.raises(Paused):
            table.add_files(write_data_files(table, batch), check_duplicate_files=False)
    hint = int((staged[0].metadata_dir / "version-hint.text").read_text().strip())
    assert staged[0].version == staged[1].version == hint + 1
    catalog = HadoopTables(warehouse)
    catalog.publish(staged[0])
    with pytest.raises(CommitFailedException, match=f"v{staged[1].version}.metadata.json "
                                                      "already exists"):
        catalog.publish(staged[1])
    count, ids = _count(tables)
    expected = set(one.column("trade_id").to_pylist()) | set(batch_a.column("trade_id").to_pylist())
    assert count == 340 and ids == expected  # exactly the first writer's commit on top
    assert not list(staged[0].metadata_dir.glob(".*.tmp"))  # no temp file left behind

    # Through pyiceberg's own commit: a stale writer's commit fails, is retried on the new
    # version (the table's commit.retry settings) and lands once.
    stale = HadoopTables(warehouse).load_table(ident)
    fresh = HadoopTables(warehouse).load_table(ident)
    c, d = _batch(fresh, 20, 4_000), _batch(stale, 30, 5_000)
    fresh.add_files(write_data_files(fresh, c), check_duplicate_files=False)
    stale.add_files(write_data_files(stale, d), check_duplicate_files=False)
    count, ids = _count(tables)
    assert count == 390 and {*c.column("trade_id").to_pylist(),
                             *d.column("trade_id").to_pylist()} <= ids
    history = (tables.spark.table(f"{tables.trades}.snapshots").orderBy("committed_at")
               .select("snapshot_id", "parent_id").collect())
    assert len(history) == 4 and all(  # one linear chain
        later.parent_id == earlier.snapshot_id
        for earlier, later in zip(history, history[1:], strict=False))


@pytest.mark.spark
@pytest.mark.slow
def test_tiny_follow_lag_figure_measures_every_commit_and_ends_exact(
    spark, namespace, tmp_path  # type: ignore[no-untyped-def]
) -> None:
    from rollup.benchmarks.follow_lag import measure_follow_lag
    from rollup.storage.tables import Tables
    from tests.helpers import assert_exact

    config = BenchConfig(symbols=2, history_per_day=100, rows_per_file=1_000,
                         follow_commits=3, follow_trades=200, follow_interval=1.0,
                         follow_poll=0.2)
    said: list[str] = []
    result = measure_follow_lag(spark, "rollup", namespace, config, tmp_path, said.append)
    assert result.commits == 3 and len(result.lags) == 3, said
    assert all(lag is not None and lag > 0 for lag in result.lags), (result.lags, said)
    assert result.median_s is not None and result.p95_s is not None
    assert result.p95_s >= result.median_s > 0
    assert result.exact and not result.problems, result.problems
    assert result.checked["1m"] > 0 and result.checked["1d"] >= 2  # 2 symbols, today
    tables = Tables(spark, "rollup", namespace)
    spark.sql(f"REFRESH TABLE {tables.trades}")
    assert spark.table(tables.trades).count() == 100 + 3 * 200
    assert assert_exact(tables) > 0  # every level == the independent oracle
