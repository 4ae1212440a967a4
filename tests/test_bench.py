"""The benchmark suite: configuration, report arithmetic, and a tiny end-to-end run.

Timings are never asserted; the smoke run checks the printed structure, the JSON keys and
that DuckDB's exact 1m bars equal Spark's on the same synthetic trades (ties included)."""

from __future__ import annotations

import argparse
import json

import attrs
import pytest

from rollup.benchmarks.common import BenchConfig, Timing, parse_count
from rollup.benchmarks.incremental import IncrementalResult
from rollup.benchmarks.ingest import IngestResult
from rollup.benchmarks.plan import ScalePoint, linear_fit
from rollup.benchmarks.report import GOALS, BenchReport
from rollup.errors import ConfigError

RATIOS = ("cascade_over_1m", "direct_over_cascade", "spark_over_duckdb",
          "incremental_30d_over_1d", "per_trade_spread", "ingest_30d_over_1d")
RATES = ("csv_rows_per_s", "parquet_rows_per_s")
INGEST = ("ingest_rows", "ingest_csv_s", "ingest_parquet_s", "ingest_late_batch",
          "ingest_history_per_day", "ingest_late_s", "ingest_all_rows")
SCATTERED = ("scattered_windows", "scattered_history_days", "scattered_cycle_s",
             "scattered_cpu_s", "scattered_peak_mib", "scattered_python_peak_mib",
             "ordinary_cycle_s", "scattered_over_ordinary", "ordinary_after_scattered_s",
             "scattered_exact", "scattered_checked", "scattered_levels")
LEVELS = ("1m", "5m", "30m", "1h", "1d")


@pytest.mark.parametrize(("text", "expected"), [
    ("200k", 200_000), ("5M", 5_000_000), ("20m", 20_000_000), ("1500000", 1_500_000),
    ("1_000", 1_000), ("2.5M", 2_500_000),
])
def test_parse_count(text: str, expected: int) -> None:
    assert parse_count(text) == expected


@pytest.mark.parametrize("text", ["", "x", "0", "-5", "1.5", "5G"])
def test_parse_count_rejects_with_one_line(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid number of trades"):
        parse_count(text)


def test_config_validates_values() -> None:
    with pytest.raises(ConfigError, match="repeats must be an integer >= 1"):
        BenchConfig(repeats=0)
    with pytest.raises(ConfigError, match="warmups must be an integer >= 0, got -1"):
        BenchConfig(warmups=-1)
    assert BenchConfig.quick().warmups == 0 and BenchConfig().warmups == 4
    with pytest.raises(ConfigError, match="sizes must name at least one"):
        BenchConfig(sizes=())
    with pytest.raises(ConfigError, match="history_days"):
        BenchConfig(history_days=(30, 1))
    with pytest.raises(ConfigError, match="scattered_windows must be an integer >= 0"):
        BenchConfig(scattered_windows=-1)
    assert BenchConfig().trades == 5_000_000 and BenchConfig().symbols == 20
    assert BenchConfig.quick().trades < 10_000
    assert BenchConfig().scattered_windows == 10_000
    assert 0 < BenchConfig.quick().scattered_windows <= 500
    with pytest.raises(ConfigError, match="ingest_rows must be an integer >= 0"):
        BenchConfig(ingest_rows=-1)
    with pytest.raises(ConfigError, match="late_batch must be an integer >= 1"):
        BenchConfig(late_batch=0)
    with pytest.raises(ConfigError, match="parts must be some of plan, incremental"):
        BenchConfig(parts=("ingest", "bogus"))
    with pytest.raises(ConfigError, match="parts must be some of"):
        BenchConfig(parts=())
    assert BenchConfig().ingest_rows == 1_000_000 and BenchConfig().late_batch == 10_000
    assert 0 < BenchConfig.quick().ingest_rows < 10_000
    assert BenchConfig(ingest_rows=0).ingest_rows == 0  # 0 skips the ingest figures


def _args(**kw: object) -> argparse.Namespace:
    base = {"quick": False, "trades": None, "sizes": None, "symbols": None, "repeats": None,
            "history_per_day": None, "warmups": None, "scattered_windows": None,
            "ingest_rows": None, "late_batch": None, "only": None}
    return argparse.Namespace(**{**base, **kw})


def test_cli_options_build_the_config() -> None:
    from rollup.cli.bench import build_config

    assert build_config(_args()) == BenchConfig()
    config = build_config(_args(trades="1M", sizes="200k,1M", repeats=5, symbols=4, warmups=6))
    assert (config.trades, config.sizes, config.repeats, config.symbols, config.warmups) == (
        1_000_000, (200_000, 1_000_000), 5, 4, 6)
    quick = build_config(_args(quick=True, trades="3000"))
    assert quick.trades == 3_000 and quick.sizes == (3_000,) and quick.repeats == 1
    assert quick.scattered_windows == BenchConfig.quick().scattered_windows
    assert build_config(_args(scattered_windows=500)).scattered_windows == 500
    assert build_config(_args(quick=True, scattered_windows=0)).scattered_windows == 0
    config = build_config(_args(ingest_rows="200k", late_batch="5k", only="ingest"))
    assert (config.ingest_rows, config.late_batch, config.parts) == (200_000, 5_000,
                                                                     ("ingest",))
    assert build_config(_args(quick=True, ingest_rows="0")).ingest_rows == 0
    assert build_config(_args(only="plan, Scaling")).parts == ("plan", "scaling")
    with pytest.raises(ConfigError, match="parts must be some of"):
        build_config(_args(only="ingset"))


def test_scattered_trades_touch_distinct_windows_of_every_shape() -> None:
    from datetime import date

    from rollup.benchmarks.scattered import ILLIQUID, scattered_trades, sparse_history

    late = scattered_trades(1_000, date(2024, 1, 1), 30, 20)
    symbols = late.column("symbol").to_pylist()
    micros = late.column("ts").cast("int64").to_pylist()
    assert late.num_rows == 1_000
    assert len({(s, t // 60_000_000) for s, t in zip(symbols, micros, strict=True)}) == 1_000
    assert symbols.count(ILLIQUID) == 100 and len(set(symbols)) == 5
    days = {t // 86_400_000_000 for t in micros}
    assert len(days) == 30  # spread over the whole history
    assert len(set(late.column("trade_id").to_pylist())) == 1_000
    assert late.equals(scattered_trades(1_000, date(2024, 1, 1), 30, 20))  # deterministic
    sparse = sparse_history(date(2024, 1, 1), 30)
    assert set(sparse.column("symbol").to_pylist()) == {ILLIQUID}


def _timing(name: str, *wall: float, trades: int = 0) -> Timing:
    return Timing(name, wall, tuple(w * 1.5 for w in wall), trades)


def test_report_ratios_goals_and_json() -> None:
    config = BenchConfig(trades=1_000, sizes=(1_000, 2_000), history_days=(1, 30))
    report = BenchReport(
        config, "local[2]",
        timings={"1m": _timing("1m", 1.0, 2.0, 3.0), "cascade": _timing("c", 2.2),
                 "direct": _timing("d", 11.0), "duckdb 1m": _timing("duck", 0.5)},
        cascade_levels={"1m": 2.0, "5m": 0.2},
        duckdb_equal=True,
        incremental=(IncrementalResult(1, 10, 3.0, _timing("i1", 1.0), {"1m": 0.5}),
                     IncrementalResult(30, 300, 9.0, _timing("i30", 1.1), {"1m": 0.6})),
        scaling=(ScalePoint(1_000, _timing("s1", 1.0), _timing("o1", 0.5), {"jvm": 1.0},
                            _timing("d1", 4.0)),
                 ScalePoint(2_000, _timing("s2", 1.8), _timing("o2", 0.9), {"jvm": 2.0})),
    )
    ratios = report.ratios()
    assert ratios["cascade_over_1m"] == pytest.approx(1.1)  # median of 1m is 2.0
    assert ratios["direct_over_cascade"] == pytest.approx(5.0)
    assert ratios["spark_over_duckdb"] == pytest.approx(4.0)
    assert ratios["incremental_30d_over_1d"] == pytest.approx(1.1)
    assert ratios["per_trade_spread"] == pytest.approx(1.0 / 0.9)
    assert ratios["ingest_30d_over_1d"] is None  # not measured
    goals = report.goals()
    assert goals == {"cascade_over_1m": True, "direct_over_cascade": True,
                     "spark_over_duckdb": False, "incremental_30d_over_1d": True,
                     "per_trade_spread": False, "ingest_30d_over_1d": None,
                     "csv_rows_per_s": None, "parquet_rows_per_s": None}
    line = json.loads(report.json_line())
    assert set(RATIOS) <= set(line) and line["duckdb_equal"] is True
    assert line["csv_rows_per_s"] is None and "ingest_csv_s" not in line
    assert line["cpu"]["cascade_over_1m"] == pytest.approx(1.1, abs=1e-3)
    # 1.0 s at 1,000 trades and 1.8 s at 2,000: 0.2 s fixed plus 0.8 ms per trade
    assert line["scaling_fit"] == {"fixed_s": pytest.approx(0.2), "marginal_ns_per_trade":
                                   pytest.approx(800_000.0)}
    table = report.table()
    assert "spark_over_duckdb" in table and "NOT met" in table and "2,000 trades" in table
    assert "0.20 s fixed + 800000 ns per trade" in table
    assert "4.00" in table  # direct over cascade at 1,000 trades


def test_report_with_a_scattered_batch() -> None:
    from rollup.benchmarks.scattered import ScatteredResult

    config = BenchConfig(trades=1_000, sizes=(1_000,), history_days=(1, 30))
    levels = {name: {"status": "written", "windows": 10, "partitions": 2 if name != "1m" else 0,
                     "changed": 10, "deleted": 0, "full": False, "seconds": 0.5}
              for name in LEVELS}
    scattered = ScatteredResult(30, 10_000, 1_000, ("A", "B"), _timing("s", 6.6),
                                {"jvm": 2048.0, "python": 300.0}, levels, True, 300, 150,
                                ordinary_after=_timing("o", 2.0))
    report = BenchReport(
        config, "local[2]",
        timings={"1m": _timing("1m", 1.0), "cascade": _timing("c", 1.2),
                 "direct": _timing("d", 4.0)},
        cascade_levels={"1m": 1.0}, duckdb_equal=None,
        incremental=(IncrementalResult(1, 10, 3.0, _timing("i1", 2.0), {"1m": 0.5}),
                     IncrementalResult(30, 300, 9.0, _timing("i30", 2.2), {"1m": 0.6})),
        scaling=(), scattered=scattered)
    line = json.loads(report.json_line())
    assert set(SCATTERED) <= set(line)
    assert line["scattered_cycle_s"] == pytest.approx(6.6)
    assert line["ordinary_cycle_s"] == pytest.approx(2.2)  # the 30-day ordinary cycle
    assert line["scattered_over_ordinary"] == pytest.approx(3.0)
    assert line["cpu"]["scattered_over_ordinary"] == pytest.approx(3.0)
    assert line["scattered_peak_mib"] == 2048.0 and line["scattered_exact"] is True
    assert line["scattered_levels"]["30m"] == {"windows": 10, "partitions": 2,
                                               "status": "written"}
    table = report.table()
    assert "scattered late 30d" in table and "10,000 1m windows" in table
    assert "ordinary after scattered" in table and "scattered over ordinary" in table
    plain = json.loads(attrs.evolve(report, scattered=None).json_line())
    assert "scattered_cycle_s" not in plain


def _ingest_result(**kw: object) -> IngestResult:
    base: dict[str, object] = {
        "rows": 1_000_000, "csv": _timing("csv", 8.0, 10.0, 12.0, trades=1_000_000),
        "parquet": _timing("pq", 4.0, trades=1_000_000), "late_batch": 10_000,
        "history_per_day": 200_000,
        "late": {1: _timing("l1", 2.0, trades=10_000), 30: _timing("l30", 2.6, trades=10_000)},
        "all_rows": True}
    return IngestResult(**{**base, **kw})  # type: ignore[arg-type]


def test_report_with_ingest_figures() -> None:
    config = BenchConfig(history_days=(1, 30), parts=("ingest",))
    report = BenchReport(config, "local[2]", timings={}, cascade_levels={}, duckdb_equal=None,
                         incremental=(), scaling=(), ingest=_ingest_result())
    assert report.rates() == {"csv_rows_per_s": pytest.approx(100_000.0),
                              "parquet_rows_per_s": pytest.approx(250_000.0)}
    ratios = report.ratios()
    assert ratios["ingest_30d_over_1d"] == pytest.approx(1.3)
    assert ratios["cascade_over_1m"] is None  # the plan-level part did not run
    goals = report.goals()
    assert goals["csv_rows_per_s"] is True and goals["parquet_rows_per_s"] is True
    assert goals["ingest_30d_over_1d"] is False and goals["cascade_over_1m"] is None
    line = json.loads(report.json_line())
    assert line["csv_rows_per_s"] == 100_000 and line["parquet_rows_per_s"] == 250_000
    assert line["ingest_30d_over_1d"] == pytest.approx(1.3)
    assert line["cpu"]["ingest_30d_over_1d"] == pytest.approx(1.3)
    assert set(INGEST) <= set(line)
    assert line["ingest_late_s"] == {"1d": 2.0, "30d": 2.6} and line["ingest_all_rows"] is True
    assert set(line["goals_met"]) == set(RATIOS) | set(RATES)
    table = report.table()
    assert table.startswith("rollup bench (ingest only): 20 symbols, 1 day; Spark local[2]")
    for text in ("ingest CSV 1,000,000", "100,000 rows/s", "ingest Parquet 1,000,000",
                 "250,000 rows/s", "ingest late 1d", "ingest late 30d",
                 "history 6,000,000 trades", "csv_rows_per_s", "goal >= 100,000: met",
                 "goal >= 200,000: met", "ingest_30d_over_1d", "goal <= 1.2: NOT met"):
        assert text in table, text
    assert "WARNING" not in table
    slow = attrs.evolve(report, ingest=_ingest_result(
        csv=_timing("csv", 20.0, trades=1_000_000), all_rows=False))
    assert slow.goals()["csv_rows_per_s"] is False
    assert "goal >= 100,000: NOT met" in slow.table() and "WARNING" in slow.table()


def test_ingest_files_hold_the_expected_text_and_types(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    from rollup.adapters import TRADES_SCHEMA
    from rollup.benchmarks.ingest import LATE_IDS, ingest_trades, write_csv, write_parquet

    trades = ingest_trades(500, 20)
    assert trades.num_rows == 500 and trades.column("side").null_count == 0
    assert len(set(trades.column("symbol").to_pylist())) == 20
    late = ingest_trades(50, 20, seed=3, id_offset=LATE_IDS)
    assert min(late.column("trade_id").to_pylist()) > LATE_IDS
    lines = write_csv(trades, tmp_path / "t.csv").read_text().splitlines()
    assert lines[0] == "exchange,symbol,trade_id,ts,price,quantity,side"  # no quotes
    assert len(lines) == 501
    exchange, symbol, trade_id, ts, price, quantity, side = lines[1].split(",")
    assert trade_id.isdigit() and side in ("buy", "sell")
    assert ts.startswith("2024-03-01T") and ts.endswith("Z") and len(ts) == 27
    assert "." in price and "." in quantity and "e" not in price.lower()
    path = write_parquet(trades, tmp_path / "pq")
    assert pq.read_schema(path).types == TRADES_SCHEMA.types
    assert pq.read_metadata(path).num_rows == 500


def test_linear_fit() -> None:
    assert linear_fit([(1, 5.0)]) is None
    assert linear_fit([(2, 5.0), (2, 6.0)]) is None
    fixed, slope = linear_fit([(1, 3.0), (2, 5.0), (4, 9.0)]) or (0.0, 0.0)
    assert fixed == pytest.approx(1.0) and slope == pytest.approx(2.0)
    assert set(GOALS) == set(RATIOS) | set(RATES)


@pytest.mark.spark
@pytest.mark.slow
def test_quick_bench_run_prints_a_table_and_one_json_line(
    spark, warehouse, namespace, capsys  # type: ignore[no-untyped-def]
) -> None:
    from rollup.cli import main

    # every part but follow, whose figure tests/test_follow_lag.py runs and checks
    code = main(["--catalog", "rollup", "--namespace", namespace, "--warehouse", str(warehouse),
                 "bench", "--quick", "--only", "plan,incremental,scaling,ingest"])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    for key in RATIOS:
        assert isinstance(result[key], float) and result[key] > 0, key
    for key in RATES:
        assert isinstance(result[key], int) and result[key] > 0, key
    assert result["trades"] == BenchConfig.quick().trades
    assert result["duckdb_equal"] is True  # Spark's 1m bars == DuckDB's, exactly
    assert set(result["goals_met"]) == set(RATIOS) | set(RATES)
    # the ingest figures (issue 14): every timed ingest stored every row of its file
    for key in INGEST:
        assert key in result, key
    assert result["ingest_all_rows"] is True
    assert result["ingest_rows"] == BenchConfig.quick().ingest_rows
    assert set(result["ingest_late_s"]) == {"1d", "2d"}
    assert all(s > 0 for s in result["ingest_late_s"].values())
    # the scattered late batch (issue 13): structure and exactness, never timings
    for key in SCATTERED:
        assert key in result, key
    assert result["scattered_exact"] is True  # stored 1m samples and 1d bars == DuckDB's
    assert result["scattered_windows"] == BenchConfig.quick().scattered_windows
    assert result["scattered_history_days"] == BenchConfig.quick().history_days[-1]
    assert result["scattered_checked"]["1m"] > 0 and result["scattered_checked"]["1d"] > 0
    assert set(result["scattered_levels"]) == set(LEVELS)
    for level in LEVELS:
        assert result["scattered_levels"][level]["status"] == "written", level
    assert result["scattered_levels"]["1m"]["windows"] > 0
    for key in ("scattered_cycle_s", "ordinary_cycle_s", "scattered_over_ordinary",
                "ordinary_after_scattered_s"):
        assert isinstance(result[key], float) and result[key] > 0, key
    text = "\n".join(out[:-1])
    rows = f"{BenchConfig.quick().ingest_rows:,}"
    for label in ("1m (Spark)", "cascade 1m..1d (Spark)", "direct, 5 levels (Spark)",
                  "1m (DuckDB)", "incremental 1d", "incremental 2d", "scaling (cascade)",
                  "scattered late 2d", "ordinary after scattered", f"ingest CSV {rows}",
                  f"ingest Parquet {rows}", "ingest late 1d", "ingest late 2d",
                  "csv_rows_per_s", "parquet_rows_per_s", "fit: cascade ="):
        assert label in text, label
    # the scratch namespaces of the incremental figure are dropped again
    names = {r.namespace for r in spark.sql("SHOW NAMESPACES IN rollup").collect()}
    assert not any(n.startswith((f"{namespace}_h", f"{namespace}_ingest")) for n in names)
