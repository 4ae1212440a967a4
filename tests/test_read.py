"""Tests for rollup.readers.read: bars through pyiceberg (no JVM) equal `rollup bars`; gap
filling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from rollup.errors import ConfigError, InputError, TimeframeError
from rollup.readers.export import write_frame
from rollup.readers.read import (
    bar_filter,
    fill_gap_frame,
    metadata_location,
    read_bars,
    read_bars_arrow,
    scan_bars,
)
from rollup.timeframes import Timeframe

CATALOG = "rollup"
DAY1 = date(2024, 1, 2)


def _late_trades() -> pa.Table:
    """Late trades, some in windows that already have bars: MERGE updates them (row deletes)."""
    from rollup.adapters import TRADES_SCHEMA

    stamps = [datetime(2024, 1, 2, h, m, 30, tzinfo=UTC) for h, m in
              ((0, 0), (3, 7), (9, 41), (15, 15), (23, 59))]
    n = len(stamps)
    return pa.Table.from_pydict(
        {
            "exchange": ["SYNTH"] * n,
            "symbol": ["BTC-USD"] * n,
            "trade_id": [10**12 + i for i in range(n)],
            "ts": stamps,
            "price": [Decimal("61234.5")] * n,
            "quantity": [Decimal("0.25")] * n,
            "side": ["buy"] * n,
        },
        schema=TRADES_SCHEMA,
    )


def _append_trades(tables: Any, trades: pa.Table) -> None:
    from pyspark.sql import functions as F

    spark = tables.spark
    schema = spark.table(tables.trades).drop("ingested_at", "trade_ref").schema
    frame = spark.createDataFrame(trades.to_pandas(), schema=schema)
    frame.withColumn("ingested_at", F.current_timestamp()).withColumn(
        "trade_ref", F.lit(None).cast("string")).writeTo(tables.trades).append()


@pytest.fixture(scope="module")
def bars_env(spark: Any, warehouse: Path) -> dict[str, Any]:
    """A namespace with two days of sparse synthetic trades for three symbols, rolled up twice
    (the second run merges late trades, so the 1m table has merge-on-read delete files)."""
    from rollup.adapters.synthetic import synthetic_trades
    from rollup.incremental.runner import run_cascade
    from rollup.storage.tables import Tables

    ns = f"t_{uuid.uuid4().hex[:8]}"
    tables = Tables(spark, CATALOG, ns)
    tables.create_all()
    _append_trades(tables, synthetic_trades(1500, symbols=3, day=DAY1, days=2, seed=7))
    run_cascade(tables)
    _append_trades(tables, _late_trades())
    # Up to 1h: enough for row-level deletes in 1m/5m (and keeps clear of the 1d month
    # partitions, whose incremental overwrite is the runner's business, not the reader's).
    run_cascade(tables, up_to="1h")
    return {"tables": tables, "namespace": ns, "warehouse": str(warehouse)}


def _cli_bars(env: dict[str, Any], tmp_path: Path, fmt: str, tf: str, filters: dict[str, str]
              ) -> str:
    from rollup.cli import main

    out = tmp_path / f"cli.{fmt}"
    argv = ["--catalog", CATALOG, "--namespace", env["namespace"], "--warehouse",
            env["warehouse"], "bars", tf, "--format", fmt, "--output", str(out)]
    for key, value in filters.items():
        argv += [f"--{key}", value]
    assert main(argv) == 0
    return out.read_text()


def _read_as(env: dict[str, Any], tmp_path: Path, fmt: str, tf: str, filters: dict[str, str]
             ) -> str:
    frame = read_bars(tf, warehouse=env["warehouse"], namespace=env["namespace"], **filters)
    out = tmp_path / f"read.{fmt}"
    write_frame(frame, fmt, str(out))
    return out.read_text()


FILTERS = [
    ("1m", {}),
    ("1m", {"symbol": "BTC-USD", "start": "2024-01-02T03:00", "end": "2024-01-02T10:00"}),
    ("5m", {"exchange": "SYNTH", "symbol": "ETH-USD"}),
    ("30m", {"end": "2024-01-03"}),
    ("1h", {"start": "2024-01-02T23:00:00Z", "end": "2024-01-03T01:30:00+00:00"}),
    ("1d", {}),
    ("1d", {"symbol": "BTC-USD", "start": "2024-01-03"}),
    ("5m", {"symbol": "x' OR '1'='1"}),
]


@pytest.mark.spark
@pytest.mark.parametrize(("tf", "filters"), FILTERS)
def test_read_bars_equals_rollup_bars(bars_env: dict[str, Any], tmp_path: Path, tf: str,
                                      filters: dict[str, str]) -> None:
    for fmt in ("csv", "json"):
        expected = _cli_bars(bars_env, tmp_path, fmt, tf, filters)
        assert _read_as(bars_env, tmp_path, fmt, tf, filters) == expected
    if "OR" in filters.get("symbol", ""):
        assert expected.strip() == ""  # the injection payload is a value: no rows
    else:
        assert expected.count("\n") >= 1


@pytest.mark.spark
def test_read_bars_sees_merged_rows(bars_env: dict[str, Any]) -> None:
    """Late trades reached 5m by MERGE (merge-on-read): the scan applies the delete files."""
    where = {"warehouse": bars_env["warehouse"], "namespace": bars_env["namespace"]}
    scan = scan_bars("5m", **where)
    assert any(task.delete_files for task in scan.plan_files())
    frame = read_bars("5m", **where)
    assert len(frame) == bars_env["tables"].read_bars("5m").count()
    assert not frame.duplicated(["exchange", "symbol", "window_start"]).any()
    late = frame[(frame.symbol == "BTC-USD")
                 & (frame.window_start == pd.Timestamp("2024-01-02T09:40", tz="UTC"))]
    assert len(late) == 1 and late.iloc[0]["high"] >= Decimal("61234.5")


@pytest.mark.spark
def test_filters_prune_partitions_and_files(bars_env: dict[str, Any]) -> None:
    where = {"warehouse": bars_env["warehouse"], "namespace": bars_env["namespace"]}
    every = list(scan_bars("1m", **where).plan_files())
    day2 = list(scan_bars("1m", start="2024-01-03T06:00", end="2024-01-03T07:00",
                          **where).plan_files())
    assert {"window_date_day=2024-01-02", "window_date_day=2024-01-03"} <= {
        Path(t.file.file_path).parent.name for t in every}
    assert day2 and len(day2) < len(every)
    assert all("window_date_day=2024-01-03" in t.file.file_path for t in day2)
    # Column statistics skip every file for an exchange that is not there.
    assert list(scan_bars("1m", exchange="NOPE", **where).plan_files()) == []


@pytest.mark.spark
def test_read_bars_starts_no_jvm(bars_env: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "bars.parquet"
    script = f"""
import os, sys
import rollup
frame = rollup.read_bars("5m", symbol="ETH-USD", start="2024-01-02T12:00",
                         warehouse={bars_env["warehouse"]!r}, namespace={bars_env["namespace"]!r})
arrow = rollup.read_bars_arrow("1d", warehouse={bars_env["warehouse"]!r},
                               namespace={bars_env["namespace"]!r})
frame.to_parquet({str(out)!r})
imported = "pyspark" in sys.modules
children = []
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            stat = open(f"/proc/{{entry}}/stat").read()
            cmd = open(f"/proc/{{entry}}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
            children.append(cmd)
from pyspark import SparkContext
print(imported, SparkContext._active_spark_context is None, arrow.num_rows, children)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    imported, no_context, daily, children = done.stdout.strip().split(" ", 3)
    assert imported == "False" and no_context == "True"
    assert int(daily) == 6 and not any("java" in c for c in eval(children))  # noqa: S307
    expected = bars_env["tables"].read_bars("5m").where(
        "symbol = 'ETH-USD' AND window_start >= TIMESTAMP '2024-01-02 12:00:00'").count()
    got = pd.read_parquet(out)
    assert len(got) == expected > 0
    assert (got.symbol == "ETH-USD").all()
    assert got.window_start.is_monotonic_increasing


@pytest.mark.spark
def test_gap_filling_on_table(bars_env: dict[str, Any]) -> None:
    where = {"warehouse": bars_env["warehouse"], "namespace": bars_env["namespace"]}
    start, end = "2024-01-02T06:00", "2024-01-02T09:00"
    plain = read_bars("1m", start=start, end=end, **where)
    filled = read_bars("1m", start=start, end=end, fill_gaps=True, **where)
    assert filled["filled"].any() and not filled["filled"].all()
    earlier = read_bars("1m", end=start, **where)
    plain_before = earlier.groupby("symbol").close.last().to_dict()
    real = filled[~filled["filled"]].drop(columns="filled").reset_index(drop=True)
    pd.testing.assert_frame_equal(real, plain)
    for (_, symbol), group in filled.groupby(["exchange", "symbol"]):
        # Every minute of the range, leading gaps filled from the close before `start`.
        expected = pd.date_range("2024-01-02T06:00", "2024-01-02T08:59", freq="1min", tz="UTC")
        assert list(group.window_start) == list(expected), symbol
        prev_close = plain_before[symbol]
        for row in group.itertuples():
            if row.filled:
                assert row.open == row.high == row.low == row.close == prev_close
                assert row.volume == 0 and row.quote_volume == 0 and row.trade_count == 0
                assert pd.isna(row.vwap) and pd.isna(row.run_id)
                assert row.window_end - row.window_start == timedelta(minutes=1)
                assert row.window_date == row.window_start.date()
            prev_close = row.close
    arrow = read_bars_arrow("1m", start=start, end=end, fill_gaps=True, **where)
    assert arrow.schema.field("filled").type == pa.bool_()
    assert arrow.schema.field("open").type == pa.decimal128(18, 8)
    assert arrow.num_rows == len(filled)


@pytest.mark.spark
def test_polars_from_arrow(bars_env: dict[str, Any]) -> None:
    polars = pytest.importorskip("polars")
    arrow = read_bars_arrow("1h", symbol="BTC-USD", warehouse=bars_env["warehouse"],
                            namespace=bars_env["namespace"])
    frame = polars.from_arrow(arrow)
    assert frame.height == arrow.num_rows == 48


@pytest.mark.spark
def test_read_errors(bars_env: dict[str, Any]) -> None:
    wh = bars_env["warehouse"]
    with pytest.raises(TimeframeError, match="unknown timeframe '15m'"):
        read_bars("15m", warehouse=wh, namespace=bars_env["namespace"])
    with pytest.raises(ConfigError, match="no Iceberg table at .*no_such_ns"):
        read_bars("1m", warehouse=wh, namespace="no_such_ns")
    with pytest.raises(ConfigError, match="invalid namespace"):
        read_bars("1m", warehouse=wh, namespace="a.b")
    with pytest.raises(InputError, match="invalid end"):
        read_bars("1m", warehouse=wh, namespace=bars_env["namespace"], end="yesterday")
    with pytest.raises(InputError, match="end .* is before start"):
        read_bars("1m", warehouse=wh, namespace=bars_env["namespace"], start="2024-01-03",
                  end="2024-01-02")


# ------------------------------------------------------------------------------ no Spark


def test_bar_filter_uses_values_and_partition_column() -> None:
    expr = repr(bar_filter("E'; DROP", ["A", "B"], "2024-01-02T05:00", datetime(2024, 1, 3)))
    assert "EqualTo(term=Reference(name='exchange'), literal=literal(\"E'; DROP\"))" in expr
    assert "In(Reference(name='symbol')" in expr
    assert "window_date" in expr and "window_start" in expr
    with pytest.raises(InputError, match="invalid symbol filter"):
        bar_filter(symbol=[])
    with pytest.raises(InputError, match="invalid exchange filter"):
        bar_filter(exchange=[3])  # type: ignore[list-item]


def test_metadata_location_follows_newer_versions(tmp_path: Path) -> None:
    meta = tmp_path / "t" / "metadata"
    meta.mkdir(parents=True)
    for v in (1, 2, 3):
        (meta / f"v{v}.metadata.json").write_text("{}")
    (meta / "version-hint.text").write_text("2\n")
    assert metadata_location(str(tmp_path / "t")) == f"{meta}/v3.metadata.json"
    (meta / "version-hint.text").unlink()  # no hint: the highest version
    assert metadata_location(str(tmp_path / "t")) == f"{meta}/v3.metadata.json"
    with pytest.raises(ConfigError, match="no Iceberg table at"):
        metadata_location(str(tmp_path / "missing"))


def _bar(symbol: str, start: str, close: str, volume: str = "1") -> dict[str, Any]:
    ws = pd.Timestamp(start, tz="UTC")
    price = Decimal(close)
    return {"exchange": "X", "symbol": symbol, "window_start": ws,
            "window_end": ws + pd.Timedelta(minutes=5), "window_date": ws.date(),
            "open": price, "high": price, "low": price, "close": price,
            "volume": Decimal(volume), "quote_volume": price * Decimal(volume),
            "trade_count": 2, "vwap": price, "created_at": ws, "updated_at": ws, "run_id": "r"}


def test_fill_gap_frame() -> None:
    tf = Timeframe.parse("5m")
    bars = pd.DataFrame([
        _bar("A", "2024-01-02T00:10", "10"), _bar("A", "2024-01-02T00:25", "11"),
        _bar("B", "2024-01-02T00:05", "7"),
    ])
    before = pd.DataFrame([{"exchange": "X", "symbol": "A",
                            "window_start": pd.Timestamp("2024-01-01T23:00", tz="UTC"),
                            "close": Decimal("9")}])
    start = datetime(2024, 1, 2, 0, 2, tzinfo=UTC)  # not aligned: first window 00:05
    end = datetime(2024, 1, 2, 0, 31, tzinfo=UTC)  # last window 00:30
    out = fill_gap_frame(bars, tf, start, end, before)
    a = out[out.symbol == "A"]
    assert [t.strftime("%H:%M") for t in a.window_start] == [
        "00:05", "00:10", "00:15", "00:20", "00:25", "00:30"]
    assert list(a.filled) == [True, False, True, True, False, True]
    assert list(a.close) == [Decimal(v) for v in ("9", "10", "10", "10", "11", "11")]
    assert list(a.trade_count) == [0, 2, 0, 0, 2, 0]
    b = out[out.symbol == "B"]  # no earlier close known: nothing before its first bar
    assert [t.strftime("%H:%M") for t in b.window_start] == [
        "00:05", "00:10", "00:15", "00:20", "00:25", "00:30"]
    assert list(b.filled) == [False, True, True, True, True, True]
    assert list(out.columns)[-1] == "filled"
    # Without a range: between each instrument's first and last bar only.
    open_range = fill_gap_frame(bars, tf, None, None)
    assert list(open_range[open_range.symbol == "A"].filled) == [False, True, True, False]
    assert list(open_range[open_range.symbol == "B"].filled) == [False]
    empty = fill_gap_frame(bars.iloc[0:0], tf, start, end)
    assert empty.empty and "filled" in empty.columns


def test_fill_gap_frame_weekly_alignment() -> None:
    tf = Timeframe.parse("1w")
    bars = pd.DataFrame([_bar("A", "2024-01-01", "5"), _bar("A", "2024-01-22", "6")])
    out = fill_gap_frame(bars, tf, None, None)
    assert [t.date().isoformat() for t in out.window_start] == [
        "2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"]
    assert all(t.weekday() == 0 for t in out.window_start)
    assert list(out.close) == [Decimal(v) for v in ("5", "5", "5", "6")]


def test_read_module_imports_no_pyspark() -> None:
    code = ("import sys, rollup, rollup.readers.read, rollup.readers.charts; "
            "print(json.dumps('pyspark' in sys.modules))")
    done = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True,
                          text=True, timeout=120, check=True)
    assert json.loads(done.stdout) is False


def test_pyiceberg_properties_for_rest_and_s3() -> None:
    from rollup.readers.read import pyiceberg_properties
    from rollup.settings.catalogs import load_catalog_config

    section = {"type": "rest", "uri": "http://127.0.0.1:8181", "scope": "catalog",
               "s3": {"endpoint": "http://127.0.0.1:9000", "path_style_access": True}}
    env = {"ROLLUP_CATALOG_TOKEN": "tok", "ROLLUP_S3_ACCESS_KEY_ID": "AK",
           "ROLLUP_S3_SECRET_ACCESS_KEY": "SK", "ROLLUP_S3_REGION": "us-east-1"}
    props = pyiceberg_properties(load_catalog_config(section, env), "analytics")
    assert props == {
        "type": "rest", "uri": "http://127.0.0.1:8181", "warehouse": "analytics",
        "token": "tok", "scope": "catalog", "s3.endpoint": "http://127.0.0.1:9000",
        "s3.region": "us-east-1", "s3.force-virtual-addressing": "false",
        "s3.access-key-id": "AK", "s3.secret-access-key": "SK",
    }
    assert pyiceberg_properties(load_catalog_config(None, {}), "/wh") == {}
