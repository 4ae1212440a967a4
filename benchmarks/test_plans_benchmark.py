"""pytest-benchmark micro-benchmarks of the plans (not part of `make test`).

    python -m pytest benchmarks/ --benchmark-only            # 200k trades
    ROLLUP_BENCH_TRADES=2000000 python -m pytest benchmarks/ --benchmark-only

Each benchmark writes its bars with Spark's no-op sink (compute only) after one warm-up
round; compare the 1m level with one cascade level and with DuckDB on the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rollup.timeframes import Dag
from rollup.transforms.bars import Rollup

DAG = Dag.standard()


def _noop(frame: Any) -> None:
    frame.write.format("noop").mode("overwrite").save()


def test_1m_from_trades(benchmark: Any, spark: Any, trades_dir: Path) -> None:
    plan = Rollup(DAG.level("1m"))
    benchmark.pedantic(lambda: _noop(plan.plan_direct(spark.read.parquet(str(trades_dir)))),
                       rounds=5, warmup_rounds=1)


def test_1d_direct_from_trades(benchmark: Any, spark: Any, trades_dir: Path) -> None:
    plan = Rollup(DAG.level("1d"))
    benchmark.pedantic(lambda: _noop(plan.plan_direct(spark.read.parquet(str(trades_dir)))),
                       rounds=5, warmup_rounds=1)


def test_5m_from_1m(benchmark: Any, spark: Any, trades_dir: Path, tmp_path: Path) -> None:
    one = Rollup(DAG.level("1m")).plan_direct(spark.read.parquet(str(trades_dir)))
    one.write.parquet(str(tmp_path / "1m"))
    plan = Rollup(DAG.level("5m"))
    benchmark.pedantic(lambda: _noop(plan.plan(spark.read.parquet(str(tmp_path / "1m")))),
                       rounds=5, warmup_rounds=1)


def test_1m_duckdb(benchmark: Any, trades_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("duckdb")
    from rollup.benchmarks.common import duckdb_connection
    from rollup.benchmarks.plan import duckdb_1m

    con = duckdb_connection(2)
    files = sorted(trades_dir.glob("*.parquet"))
    benchmark.pedantic(lambda: duckdb_1m(con, files, tmp_path / "1m.parquet"),
                       rounds=5, warmup_rounds=1)
