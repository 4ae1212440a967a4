"""The plan-level and scaling figures of `rollup bench`, on Parquet files (no Iceberg).

- ``1m``: the 1m level from the trades' Parquet files, written as Parquet;
- ``cascade``: 1m, then 5m from the 1m files, 30m from 5m, 1h from 30m and 1d from 1h;
- ``direct``: every level aggregated straight from the trades (the seed's approach);
- ``duckdb 1m``: the same exact 1m bars computed by DuckDB from the same files (and checked
  equal, column for column, to Spark's);
- ``scaling``: the cascade, the 1m level and the direct approach at several sizes, as time
  per trade, with the peak memory.

They time the computation and one columnar write and leave Iceberg commit costs to the
incremental figures (`rollup.benchmarks.incremental`).
"""

from __future__ import annotations

import functools
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from rollup.benchmarks.common import (
    BenchConfig,
    Clock,
    Progress,
    Timing,
    duckdb_connection,
    interleaved,
    write_trades,
)
from rollup.errors import ConfigError
from rollup.specs.bar import FEED_COLUMNS, PLANNED_BAR_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

LABELS = {"1m": "1m (Spark)", "cascade": "cascade 1m..1d (Spark)",
          "direct": "direct, 5 levels (Spark)", "duckdb 1m": "1m (DuckDB)"}
"""The printed name of each plan-level figure."""


def _spark_level(spark: SparkSession, level_name: str, source: Path, target: Path, *,
                 from_trades: bool) -> None:
    from rollup.specs.columns import spark_schema
    from rollup.timeframes import Dag
    from rollup.transforms.bars import Rollup

    rollup = Rollup(Dag.standard().level(level_name))
    # The schema is given, as a table format would: no footer is read to infer it.
    schema = spark_schema(FEED_COLUMNS if from_trades else PLANNED_BAR_COLUMNS)
    frame = spark.read.schema(schema).parquet(str(source))
    bars = rollup.plan_direct(frame) if from_trades else rollup.plan(frame)
    bars.write.mode("overwrite").parquet(str(target))


def _cascade(spark: SparkSession, trades: Path, out: Path) -> dict[str, float]:
    """Run the cascade level by level through Parquet files; seconds per level."""
    from rollup.timeframes import Dag

    seconds = {}
    for level in Dag.standard().order():
        source = trades if level.parent is None else out / level.parent.name
        began = time.perf_counter()
        _spark_level(spark, level.name, source, out / level.name,
                     from_trades=level.parent is None)
        seconds[level.name] = time.perf_counter() - began
    return seconds


def _direct(spark: SparkSession, trades: Path, out: Path) -> None:
    from rollup.timeframes import Dag

    for level in Dag.standard().order():
        _spark_level(spark, level.name, trades, out / f"direct_{level.name}", from_trades=True)


DUCKDB_1M_SQL = """
COPY (
  WITH b AS (
    SELECT exchange, symbol, time_bucket(INTERVAL 1 MINUTE, ts) AS window_start,
           arg_min(price, (ts, trade_id)) AS open, max(price) AS high, min(price) AS low,
           arg_max(price, (ts, trade_id)) AS close,
           sum(CAST(quantity AS DECIMAL(38,8))) AS volume,
           sum(CAST(price AS DECIMAL(38,8)) * CAST(quantity AS DECIMAL(38,8))) AS quote_volume,
           count(*) AS trade_count,
           sum(CASE WHEN side = 'buy' THEN CAST(quantity AS DECIMAL(38,8)) ELSE 0 END)
             AS buy_volume,
           sum(CASE WHEN side = 'sell' THEN CAST(quantity AS DECIMAL(38,8)) ELSE 0 END)
             AS sell_volume,
           count(*) FILTER (WHERE side = 'buy') AS buy_count,
           count(*) FILTER (WHERE side = 'sell') AS sell_count,
           min(ts) AS open_ts, max(ts) AS close_ts
    FROM read_parquet($files)
    GROUP BY exchange, symbol, window_start
  ), u AS (
    SELECT *, CAST(replace(CAST(quote_volume AS VARCHAR), '.', '') AS HUGEINT) AS qu,
              CAST(replace(CAST(volume AS VARCHAR), '.', '') AS HUGEINT) AS vu
    FROM b
  )
  SELECT exchange, symbol, window_start, window_start + INTERVAL 1 MINUTE AS window_end,
         CAST(window_start AS DATE) AS window_date, open, high, low, close, volume,
         quote_volume, trade_count,
         CASE WHEN vu <> 0 THEN CAST(CAST((2 * qu + vu) // (2 * vu) AS DECIMAL(38,0))
                                     * 0.00000001 AS DECIMAL(18,8)) END AS vwap,
         buy_volume, sell_volume, buy_count, sell_count, open_ts, close_ts
  FROM u
) TO '{target}' (FORMAT parquet)
"""
"""The same exact 1m bars in DuckDB, as a single-machine user would write them.

Sums are exact DECIMAL(38,*) (DuckDB 2.0 overflows DECIMAL(18,8) x DECIMAL(18,8), so both
sides are widened to DECIMAL(38,8) first); ties are broken by (ts, trade_id). DuckDB divides
decimals in DOUBLE, so vwap is rounded half-up on the integer units of each bar instead."""


def duckdb_1m(con: Any, files: Sequence[Path], target: Path) -> None:
    """DuckDB's exact 1m bars of the trades Parquet `files`, written to the file `target`."""
    # COPY takes no parameter for its target: it is rollup's own scratch file, checked here.
    if "'" in str(target):
        raise ConfigError(f"bench work directory {target.parent} must not contain a quote")
    sql = DUCKDB_1M_SQL.replace("{target}", str(target))
    con.execute(sql, {"files": [str(f) for f in files]})


def _different_bars_sql() -> str:
    columns = ", ".join(c.name for c in PLANNED_BAR_COLUMNS)
    return (f"WITH s AS (SELECT {columns} FROM read_parquet($spark)),\n"  # noqa: S608 - names from rollup.specs.bar
            f"     d AS (SELECT {columns} FROM read_parquet($duck))\n"
            "SELECT (SELECT count(*) FROM (FROM s EXCEPT ALL FROM d))\n"
            "     + (SELECT count(*) FROM (FROM d EXCEPT ALL FROM s))")


def _same_bars(con: Any, spark_dir: Path, duckdb_file: Path) -> bool:
    """True when Spark's 1m Parquet files and DuckDB's hold exactly the same bars."""
    params = {"spark": [str(p) for p in sorted(spark_dir.glob("*.parquet"))],
              "duck": str(duckdb_file)}
    return bool(con.execute(_different_bars_sql(), params).fetchone()[0] == 0)


@attrs.frozen
class PlanResult:
    """The plan-level figures: a `Timing` per figure (keys of `LABELS`), the cascade's
    median seconds per level, and whether DuckDB's 1m bars equal Spark's (None: no DuckDB)."""

    timings: dict[str, Timing]
    cascade_levels: dict[str, float]
    duckdb_equal: bool | None


def measure_plan(spark: SparkSession, clock: Clock, config: BenchConfig, work: Path,
                 threads: int, say: Progress) -> PlanResult:
    """The 1m, cascade, direct and DuckDB figures on `config.trades` trades in `work`."""
    say(f"writing {config.trades:,} synthetic trades to {work} ...")
    trades = work / "trades"
    files = write_trades(trades, config.trades, config.symbols, config.rows_per_file)
    out = work / "out"
    level_runs: list[dict[str, float]] = []
    steps: dict[str, Callable[[], object]] = {
        "1m": functools.partial(_spark_level, spark, "1m", trades, out / "1m", from_trades=True),
        "cascade": lambda: level_runs.append(_cascade(spark, trades, out)),
        "direct": functools.partial(_direct, spark, trades, out),
    }
    con = None
    try:
        con = duckdb_connection(threads)
    except ImportError:
        say("duckdb is not installed: no DuckDB figure (pip install 'rollup[bench]')")
    duck_out = work / "duckdb_1m.parquet"
    if con is not None:
        steps["duckdb 1m"] = functools.partial(duckdb_1m, con, files, duck_out)
    say(f"timing 1m, cascade, direct (Spark) and 1m (DuckDB, {threads} threads): "
        f"{config.warmups} warm-up and {config.repeats} timed round(s) ...")
    measured = interleaved(clock, steps, config.repeats, config.warmups)
    level_runs = level_runs[config.warmups:]
    timings = {name: measured.timing(name, LABELS[name], config.trades) for name in steps}
    cascade_levels = {name: statistics.median(run[name] for run in level_runs)
                      for name in level_runs[0]}
    duckdb_equal = None
    if con is not None:
        duckdb_equal = _same_bars(con, out / "1m", duck_out)
        con.close()
    return PlanResult(timings, cascade_levels, duckdb_equal)


# -- scaling -------------------------------------------------------------------------------


@attrs.frozen
class ScalePoint:
    trades: int
    cascade: Timing
    one_minute: Timing
    peak_mib: dict[str, float | None]
    direct: Timing | None = None

    @property
    def ns_per_trade(self) -> float:
        return self.cascade.seconds / self.trades * 1e9


def linear_fit(points: Sequence[tuple[int, float]]) -> tuple[float, float] | None:
    """Least-squares `seconds = fixed + per_trade * trades`; None for fewer than two sizes."""
    if len({n for n, _ in points}) < 2:
        return None
    mean_n = statistics.fmean(n for n, _ in points)
    mean_s = statistics.fmean(s for _, s in points)
    slope = (sum((n - mean_n) * (s - mean_s) for n, s in points)
             / sum((n - mean_n) ** 2 for n, _ in points))
    return mean_s - slope * mean_n, slope


def measure_scale_point(
    spark: SparkSession, clock: Clock, config: BenchConfig, work: Path, size: int,
    keep: bool, say: Progress,
) -> ScalePoint:
    """The cascade, 1m and direct figures on `size` trades (the plan-level files when they
    have that size), after one warm-up round unless `config.warmups` is 0."""
    say(f"scaling: {size:,} trades ...")
    trades = work / f"trades_{size}"
    shared = size == config.trades and (work / "trades").is_dir()  # the plan-level files
    if shared:
        trades = work / "trades"
    else:
        write_trades(trades, size, config.symbols, config.rows_per_file, seed=size)
    out = work / f"out_{size}"
    clock.reset_peaks()
    measured = interleaved(clock, {
        "cascade": functools.partial(_cascade, spark, trades, out),
        "1m": functools.partial(_spark_level, spark, "1m", trades, out / "1m", from_trades=True),
        "direct": functools.partial(_direct, spark, trades, out),
    }, config.repeats, warmups=min(config.warmups, 1))
    def timing(name: str) -> Timing:
        return measured.timing(name, f"{name} {size:,}", size)

    point = ScalePoint(size, timing("cascade"), timing("1m"), clock.peak_mib(), timing("direct"))
    if not shared and not keep:
        shutil.rmtree(trades, ignore_errors=True)
    return point
