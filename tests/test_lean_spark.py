"""Real data: LEAN COMEX gold futures ticks rolled up by Spark equal the vendor's minute bars."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from rollup.adapters.lean import lean_data_dir, read_lean_minute_bars, read_lean_trades
from rollup.plans import Rollup
from rollup.timeframes import Dag

pytestmark = pytest.mark.spark

DATA = lean_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="../shared/data (LEAN sample) not present")


@pytest.fixture(scope="module")
def lean_frames(spark, tmp_path_factory):  # type: ignore[no-untyped-def]
    assert DATA is not None
    tmp: Path = tmp_path_factory.mktemp("lean")
    pq.write_table(read_lean_trades(DATA), tmp / "trades.parquet")
    pq.write_table(read_lean_minute_bars(DATA), tmp / "minute.parquet")
    return spark.read.parquet(str(tmp / "trades.parquet")), spark.read.parquet(
        str(tmp / "minute.parquet"))


@needs_data
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


@needs_data
def test_real_data_cascade_equals_direct(lean_frames) -> None:  # type: ignore[no-untyped-def]
    trades, _ = lean_frames
    dag = Dag.standard()
    frames = {}
    for level in dag.order():
        parent = trades if level.parent is None else frames[level.parent.name]
        frames[level.name] = Rollup(level).plan(parent).localCheckpoint()
    for level in dag.order():
        direct = Rollup(level).plan_direct(trades)
        assert frames[level.name].exceptAll(direct).count() == 0, level.name
        assert direct.exceptAll(frames[level.name]).count() == 0, level.name
    assert frames["1d"].count() > 0
