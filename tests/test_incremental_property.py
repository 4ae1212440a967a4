"""Random interleavings of ingests (with duplicates and late trades) and runs of random
levels always end, after a final run, equal to the independent oracle (tests/oracle.py);
a run killed mid-way converges too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollup.adapters import TRADES_SCHEMA
from rollup.incremental.runner import run_cascade, run_level
from rollup.ingestion.batch import ingest_file
from tests.helpers import append_trades, assert_exact, snapshot_ids

pytestmark = [pytest.mark.spark, pytest.mark.slow]

BASE = datetime(2024, 6, 10, 9, tzinfo=UTC)
LEVELS = ["1m", "5m", "30m", "1h", "1d"]


@st.composite
def batches(draw: st.DrawFn) -> list[tuple]:  # type: ignore[type-arg]
    n = draw(st.integers(1, 12))
    rows = []
    for _ in range(n):
        age = draw(st.sampled_from([0, 0, 0, 1, 7, 40]))  # days late
        ts = BASE - timedelta(days=age) + timedelta(seconds=draw(st.integers(0, 7200)))
        tid = draw(st.integers(0, 60))  # small id space: re-deliveries happen
        sym = draw(st.sampled_from(["BTC", "ETH"]))
        # content derived from the key, so a re-delivered trade is an exact duplicate
        rows.append(("X", sym, tid + 1000 * age, ts if age else BASE + timedelta(seconds=tid * 97),
                     Decimal(100 + tid) + Decimal(age) / 8, Decimal(tid % 4)))
    return rows


operations = st.lists(
    st.one_of(st.tuples(st.just("ingest"), batches()),
              st.tuples(st.just("run"), st.sampled_from(LEVELS)),
              st.tuples(st.just("cascade"), st.none())),
    min_size=2, max_size=5,
)


def write_batch(rows: list[tuple], path: Path) -> Path:  # type: ignore[type-arg]
    columns = list(zip(*rows, strict=True))
    table = pa.table({
        "exchange": columns[0], "symbol": columns[1], "trade_id": pa.array(columns[2], pa.int64()),
        "ts": pa.array(columns[3], pa.timestamp("us", tz="UTC")),
        "price": pa.array(columns[4], pa.decimal128(18, 8)),
        "quantity": pa.array(columns[5], pa.decimal128(20, 8)),
        "side": pa.array([None] * len(rows), pa.string()),
    }, schema=TRADES_SCHEMA)
    pq.write_table(table, path)
    return path


@settings(max_examples=3, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=operations)
def test_interleavings_converge_to_the_oracle(tables, tmp_path, ops) -> None:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    # Each example starts from empty tables of its own.
    for table in [tables.trades_table, *[lv.table for lv in tables.dag]]:
        tables.spark.sql(f"DELETE FROM {tables.name(table)}")  # noqa: S608 - validated names
    for lv in tables.dag:
        tables.spark.sql(f"ALTER TABLE {tables.bars(lv)} UNSET TBLPROPERTIES IF EXISTS "
                         "('rollup.parent-snapshot-id')")
    delivered: set[tuple] = set()  # type: ignore[type-arg]
    for i, (kind, arg) in enumerate(ops):
        if kind == "ingest":
            report = ingest_file(tables, write_batch(arg, tmp_path / f"b{i}.parquet"))
            assert report.read == report.ingested + report.quarantined + report.duplicates
            assert report.quarantined == 0
            delivered |= {(r[0], r[1], r[2]) for r in arg}
        elif kind == "run":
            run_level(tables, arg)
        else:
            run_cascade(tables)
    run_cascade(tables)
    assert tables.read_trades().count() == len(delivered)  # duplicates counted once
    assert tables.read_trades().select("exchange", "symbol", "trade_id").distinct().count() == \
        len(delivered)
    assert_exact(tables)
    assert tables.read_bars("1m").agg(F.sum("trade_count")).first()[0] in (None, len(delivered))


def test_killed_run_converges(tables, warehouse) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL after 1m committed and while 5m recomputes: the process dies mid-run (5m and
    above unchanged), and the next run completes every level exactly."""
    rows = [("X", "BTC", i, BASE + timedelta(seconds=13 * i), Decimal(100 + i % 9), Decimal(1))
            for i in range(3000)]
    append_trades(tables, rows)
    before = snapshot_ids(tables)
    env = {**os.environ, "ROLLUP_WAREHOUSE": str(warehouse)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollup.cli", "--catalog", "rollup", "--namespace",
         tables.namespace, "run"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )
    seen = []
    killed = False
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("5m: recomputing"):  # 1m committed, 5m under way
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
    proc.wait(timeout=120)
    assert killed, f"the run ended before 5m started: {seen}"
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, seen)
    assert any(line.startswith("1m: wrote") for line in seen), seen
    after = snapshot_ids(tables)
    assert after["1m"] != before["1m"], "1m committed before the kill"
    unchanged = {lv: after[lv] for lv in ("5m", "30m", "1h", "1d")}
    assert unchanged == {lv: before[lv] for lv in unchanged}, "a level after 1m committed"
    run_cascade(tables)
    assert_exact(tables)
