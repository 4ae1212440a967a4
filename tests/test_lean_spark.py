"""Real data: LEAN COMEX gold futures ticks rolled up by Spark equal the vendor's minute bars,
and every level of the cascade equals the independent oracle of tests/oracle.py."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from rollup.adapters.lean import read_lean_minute_bars, read_lean_trades
from rollup.timeframes import Dag
from rollup.transforms.bars import Rollup
from tests.oracle import Trade, collect_bars, compare_level, oracle_bars

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def lean_trades(lean_data: Path) -> pa.Table:
    return read_lean_trades(lean_data)


@pytest.fixture(scope="module")
def lean_frames(spark, lean_data, lean_trades, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp: Path = tmp_path_factory.mktemp("lean")
    pq.write_table(lean_trades, tmp / "trades.parquet")
    pq.write_table(read_lean_minute_bars(lean_data), tmp / "minute.parquet")
    return spark.read.parquet(str(tmp / "trades.parquet")), spark.read.parquet(
        str(tmp / "minute.parquet"))


def test_rebuilt_minute_bars_equal_published_bars(lean_frames) -> None:  # type: ignore[no-untyped-def]
    trades, published = lean_frames
    assert trades.count() == 157_822  # 157,849 ticks less the 27 repeated last rows
    ours = Rollup(Dag.standard().level("1m")).plan(trades)
    cols = ["open", "high", "low", "close", "volume"]
    joined = published.alias("p").join(ours.alias("o"), ["symbol", "window_start"], "full_outer")
    assert published.count() == 4_681
    assert joined.where(F.col("p.open").isNull() | F.col("o.open").isNull()).count() == 0
    differ = F.lit(False)
    for c in cols:
        differ = differ | ~F.col(f"p.{c}").eqNullSafe(F.col(f"o.{c}"))
    assert joined.where(differ).count() == 0


def test_real_data_cascade_equals_the_oracle(lean_frames, lean_trades) -> None:  # type: ignore[no-untyped-def]
    trades, _ = lean_frames
    dag = Dag.standard()
    frames = {}
    for level in dag.order():
        parent = trades if level.parent is None else frames[level.parent.name]
        frames[level.name] = Rollup(level).plan(parent)
    got = collect_bars(frames)
    python_trades = [Trade(r["exchange"], r["symbol"], r["trade_id"], r["ts"], r["price"],
                           r["quantity"]) for r in lean_trades.to_pylist()]
    assert len(python_trades) == 157_822
    problems = [p for level in dag.order()
                for p in compare_level(level.name, got[level.name],
                                       oracle_bars(python_trades, level.timeframe))]
    assert not problems, "\n".join(problems)
    assert len(got["1m"]) == 4_681 and len(got["1d"]) > 0
