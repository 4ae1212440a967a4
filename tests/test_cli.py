"""The `rollup` command line end to end on a temporary warehouse (in-process, shared Spark)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from rollup.cli import main

pytestmark = pytest.mark.spark

CSV = """exchange,symbol,trade_id,ts,price,quantity,side
X,BTC,1,2024-01-02T00:00:00Z,42000.5,0.25,buy
X,BTC,2,2024-01-02T00:00:30,42001.00000001,1.5,sell
X,BTC,3,2024-01-02T00:01:00+01:00,41999,2,
X,ETH,1,2024-01-02T23:59:59.999999Z,2300.12345678,10,buy
X,ETH,2,2024-01-03T00:00:00Z,2301,0,buy
"""


def cli(capsys, warehouse: Path, namespace: str, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    code = main(["--warehouse", str(warehouse), "--catalog", "rollup", "--namespace", namespace,
                 *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_end_to_end(spark, warehouse, namespace, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    run = lambda *a: cli(capsys, warehouse, namespace, *a)  # noqa: E731
    code, out, _ = run("init")
    assert code == 0 and "bars_1d" in out
    code, out, _ = run("init")
    assert code == 0 and "already exist" in out

    trades = tmp_path / "trades.csv"
    trades.write_text(CSV)
    epoch = tmp_path / "epoch.csv"
    epoch.write_text("exchange,symbol,trade_id,ts,price,quantity\n"
                     "X,SOL,9,1704153600000,101.5,3\nX,SOL,10,1704153600001,101.25,1\n")
    code, out, err = run("ingest", str(trades))
    assert code == 0 and "read 5, ingested 5, quarantined 0, duplicates skipped 0" in out
    code, out, _ = run("ingest", "--time-unit", "ms", str(epoch))
    assert code == 0 and "ingested 2" in out
    code, out, _ = run("ingest", str(trades))  # a re-delivered file: all duplicates
    assert code == 0 and "ingested 0, quarantined 0, duplicates skipped 5" in out

    code, out, err = run("run")
    assert code == 0 and "1m: wrote" in out and "1d: wrote" in out
    code, out, _ = run("run")
    assert code == 0 and out.count("up-to-date") == 5

    csv_out = tmp_path / "bars.csv"
    code, _, _ = run("bars", "1m", "--symbol", "BTC", "--format", "csv", "--output", str(csv_out))
    frame = pd.read_csv(csv_out, dtype=str)
    assert code == 0 and len(frame) == 2  # 00:00 BTC minute and 23:01 on the 1st (+01:00)
    assert set(frame.columns) >= {"window_start", "quote_volume", "vwap", "run_id"}
    first = frame.sort_values("window_start").iloc[-1]
    assert first["open"] == "42000.50000000" and first["close"] == "42001.00000001"
    assert first["window_start"].endswith("Z") and first["volume"] == "1.75000000"

    code, out, _ = run("bars", "1d", "--format", "json", "--start", "2024-01-03")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["symbol"] for r in rows] == ["ETH"]
    assert rows[0]["volume"] == "0E-8" or rows[0]["volume"] in ("0.00000000", "0")
    assert rows[0]["vwap"] is None and rows[0]["window_start"] == "2024-01-03T00:00:00Z"

    parquet = tmp_path / "bars.parquet"
    code, _, _ = run("bars", "1h", "--format", "parquet", "--output", str(parquet))
    assert code == 0 and len(pd.read_parquet(parquet)) == 5  # BTC x2, ETH x2, SOL

    code, out, _ = run("status", "--json")
    status = json.loads(out)
    assert code == 0 and [s["level"] for s in status] == ["1m", "5m", "30m", "1h", "1d"]
    assert all(not s["pending"] for s in status)

    code, out, _ = run("backfill", "--start", "2024-01-02", "--end", "2024-01-03")
    assert code == 0 and "1m:" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bars", "7m"], "unknown timeframe '7m'"),
        (["bars", "1m", "--start", "yesterday"], "invalid start 'yesterday'"),
        (["run", "--timeframe", "1y"], "invalid timeframe '1y'"),
        (["backfill", "--start", "2024-01-02", "--end", "2024-01-01"], "is not after start"),
        (["bars", "1m", "--format", "parquet"], "needs --output"),
    ],
)
def test_cli_errors_are_one_line(spark, warehouse, namespace, capsys, args, message) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli(capsys, warehouse, namespace, *args)
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("rollup: error:")]
    assert len(lines) == 1 and message in lines[0], err


def test_cli_rejects_bad_namespace(capsys) -> None:  # type: ignore[no-untyped-def]
    code = main(["--namespace", "x; DROP TABLE t", "status"])
    err = capsys.readouterr().err
    assert code == 2 and "invalid namespace 'x; DROP TABLE t'" in err
