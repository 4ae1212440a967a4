"""The benchmark suite: configuration, report arithmetic, and a tiny end-to-end run.

Timings are never asserted; the smoke run checks the printed structure, the JSON keys and
that DuckDB's exact 1m bars equal Spark's on the same synthetic trades (ties included)."""

from __future__ import annotations

import argparse
import json

import attrs
import pytest

from rollup.bench import (
    GOALS,
    BenchConfig,
    BenchReport,
    IncrementalResult,
    ScalePoint,
    Timing,
    linear_fit,
    parse_count,
)
from rollup.errors import ConfigError

RATIOS = ("cascade_over_1m", "direct_over_cascade", "spark_over_duckdb",
          "incremental_30d_over_1d", "per_trade_spread")
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


def _args(**kw: object) -> argparse.Namespace:
    base = {"quick": False, "trades": None, "sizes": None, "symbols": None, "repeats": None,
            "history_per_day": None, "warmups": None, "scattered_windows": None}
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


def test_scattered_trades_touch_distinct_windows_of_every_shape() -> None:
    from datetime import date

    from rollup.bench_scattered import ILLIQUID, scattered_trades, sparse_history

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
    goals = report.goals()
    assert goals == {"cascade_over_1m": True, "direct_over_cascade": True,
                     "spark_over_duckdb": False, "incremental_30d_over_1d": True,
                     "per_trade_spread": False}
    line = json.loads(report.json_line())
    assert set(RATIOS) <= set(line) and line["duckdb_equal"] is True
    assert line["cpu"]["cascade_over_1m"] == pytest.approx(1.1, abs=1e-3)
    # 1.0 s at 1,000 trades and 1.8 s at 2,000: 0.2 s fixed plus 0.8 ms per trade
    assert line["scaling_fit"] == {"fixed_s": pytest.approx(0.2), "marginal_ns_per_trade":
                                   pytest.approx(800_000.0)}
    table = report.table()
    assert "spark_over_duckdb" in table and "NOT met" in table and "2,000 trades" in table
    assert "0.20 s fixed + 800000 ns per trade" in table
    assert "4.00" in table  # direct over cascade at 1,000 trades


def test_report_with_a_scattered_batch() -> None:
    from rollup.bench_scattered import ScatteredResult

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


def test_linear_fit() -> None:
    assert linear_fit([(1, 5.0)]) is None
    assert linear_fit([(2, 5.0), (2, 6.0)]) is None
    fixed, slope = linear_fit([(1, 3.0), (2, 5.0), (4, 9.0)]) or (0.0, 0.0)
    assert fixed == pytest.approx(1.0) and slope == pytest.approx(2.0)
    assert set(GOALS) == set(RATIOS)


@pytest.mark.spark
@pytest.mark.slow
def test_quick_bench_run_prints_a_table_and_one_json_line(
    spark, warehouse, namespace, capsys  # type: ignore[no-untyped-def]
) -> None:
    from rollup.cli import main

    code = main(["--catalog", "rollup", "--namespace", namespace, "--warehouse", str(warehouse),
                 "bench", "--quick"])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    for key in RATIOS:
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["trades"] == BenchConfig.quick().trades
    assert result["duckdb_equal"] is True  # Spark's 1m bars == DuckDB's, exactly
    assert set(result["goals_met"]) == set(RATIOS)
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
    for label in ("1m (Spark)", "cascade 1m..1d (Spark)", "direct, 5 levels (Spark)",
                  "1m (DuckDB)", "incremental 1d", "incremental 2d", "scaling (cascade)",
                  "scattered late 2d", "ordinary after scattered"):
        assert label in text, label
    # the scratch namespaces of the incremental figure are dropped again
    names = {r.namespace for r in spark.sql("SHOW NAMESPACES IN rollup").collect()}
    assert not any(n.startswith(f"{namespace}_h") for n in names)
