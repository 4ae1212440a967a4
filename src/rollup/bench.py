"""The benchmark suite: the cascade against its peers, on one warm SparkSession.

`run_benchmarks` measures, in one run on the same deterministic synthetic trades (one UTC day,
`synthetic_trades`), each figure the median of `repeats` timings:

- ``1m``: the 1m level from the trades' Parquet files, written as Parquet;
- ``cascade``: 1m, then 5m from the 1m files, 30m from 5m, 1h from 30m and 1d from 1h;
- ``direct``: every level aggregated straight from the trades (the seed's approach);
- ``duckdb 1m``: the same exact 1m bars computed by DuckDB from the same files (and checked
  equal, column for column, to Spark's);
- ``incremental``: one cycle of five minutes of new trades appended to the Iceberg trades
  table and propagated through every level by `rollup.runner.run_cascade`, with 1 day and
  with 30 days of history;
- ``scaling``: the cascade, the 1m level and the direct approach at several sizes, as time
  per trade, with the peak memory;
- ``scattered``: on the long incremental history, one late batch touching
  `BenchConfig.scattered_windows` separate 1m windows over every day, one timed cascade run,
  its peak memory and a check against DuckDB (`rollup.bench_scattered`);
- ``ingest``: rows per second of `rollup.ingest.ingest_file` for a CSV and a Parquet file of
  `BenchConfig.ingest_rows` trades into an empty trades table, and the same late batch
  ingested into the short and the long history (`rollup.bench_ingest`).

`BenchConfig.parts` restricts a run to some of these (``plan``: the first four figures,
``incremental``: incremental and scattered, ``scaling``, ``ingest``).

Plan-level figures write Parquet, not Iceberg, so they time the computation and one columnar
write and leave Iceberg commit costs to the incremental figure. Times are wall-clock seconds;
`cpu` is the CPU time of the local Spark JVM plus this process (where DuckDB runs), read from
/proc. `BenchReport.ratios()` holds the ratios the goals in docs/benchmarks.md are set on.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from rollup.errors import ConfigError
from rollup.identifiers import check_identifier

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from rollup.bench_ingest import IngestResult
    from rollup.bench_scattered import ScatteredResult
    from rollup.tables import Tables

Progress = Callable[[str], None]

GOALS: dict[str, tuple[str, float]] = {
    "cascade_over_1m": ("<=", 1.15),
    "direct_over_cascade": (">=", 4.0),
    "spark_over_duckdb": ("<=", 3.0),
    "incremental_30d_over_1d": ("<=", 1.2),
    "per_trade_spread": ("<=", 1.10),
    "ingest_30d_over_1d": ("<=", 1.2),
    "csv_rows_per_s": (">=", 100_000),
    "parquet_rows_per_s": (">=", 200_000),
}
"""The issues' goals per ratio and per rate (`BenchReport.rates`): (comparison, bound)."""

PARTS = ("plan", "incremental", "scaling", "ingest")
"""What a run can be restricted to (`BenchConfig.parts`)."""

HISTORY_DAYS = (1, 30)
_FIRST_DAY = date(2024, 1, 2)
_CYCLE_DAY = date(2024, 1, 31)  # incremental cycles add trades to this day, after the history
_MIB = 1024 * 1024


def _positive(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"bench {attribute.name} must be an integer >= 1, got {value!r}")


def _sizes(_: object, attribute: attrs.Attribute[Any], value: tuple[int, ...]) -> None:
    if not value:
        raise ConfigError("bench sizes must name at least one number of trades")
    for size in value:
        _positive(None, attribute, size)


def _as_tuple(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


@attrs.frozen
class BenchConfig:
    """What to measure: sizes in trades, repetitions and the incremental history density."""

    trades: int = attrs.field(default=5_000_000, validator=_positive)
    symbols: int = attrs.field(default=20, validator=_positive)
    sizes: tuple[int, ...] = attrs.field(default=(1_000_000, 5_000_000, 20_000_000),
                                         converter=_as_tuple, validator=_sizes)
    repeats: int = attrs.field(default=3, validator=_positive)
    history_per_day: int = attrs.field(default=200_000, validator=_positive)
    """Trades per day of incremental history (30 days hold 30 times as many)."""
    history_days: tuple[int, ...] = attrs.field(default=HISTORY_DAYS, converter=_as_tuple)
    """The short and the long incremental history, in days (the ratio is long over short)."""
    warmups: int = attrs.field(default=4, validator=_positive)
    """Untimed rounds of every plan-level step before the timed ones. The JVM keeps compiling
    Spark's own code for many queries (on 2 cores the JIT competes with the tasks), so fewer
    rounds measure a half-warm session; a long-running process (`rollup serve`) is warm."""
    cycles: int = attrs.field(default=3, validator=_positive)
    cycle_minutes: int = attrs.field(default=5, validator=_positive)
    rows_per_file: int = attrs.field(default=250_000, validator=_positive)
    duckdb_threads: int | None = attrs.field(default=None)
    """DuckDB threads; default the number of cores of Spark's local master."""
    scattered_windows: int = attrs.field(default=10_000)
    """Separate 1m windows of the scattered late batch over the long history (0: skip it)."""

    ingest_rows: int = attrs.field(default=1_000_000)
    """Trades of the CSV and the Parquet file of the ingest figures (0: no ingest figures)."""
    late_batch: int = attrs.field(default=10_000, validator=_positive)
    """Trades of the late batch ingested into the short and the long history."""
    parts: tuple[str, ...] = attrs.field(default=PARTS, converter=tuple)
    """The parts of the suite to run (see `PARTS`)."""

    @ingest_rows.validator
    def _check_ingest_rows(self, attribute: attrs.Attribute[Any], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"bench ingest_rows must be an integer >= 0, got {value!r}")

    @parts.validator
    def _check_parts(self, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
        unknown = [p for p in value if p not in PARTS]
        if unknown or not value:
            raise ConfigError(f"bench parts must be some of {', '.join(PARTS)}, "
                              f"got {', '.join(value) or 'none'}")

    @scattered_windows.validator
    def _check_scattered(self, attribute: attrs.Attribute[Any], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"bench scattered_windows must be an integer >= 0, got {value!r}")

    @history_days.validator
    def _check_history(self, attribute: attrs.Attribute[Any], value: tuple[int, ...]) -> None:
        if len(value) != 2 or value[0] >= value[1]:
            raise ConfigError(f"bench history_days must be two day counts, short then long, "
                              f"got {value!r}")
        for days in value:
            _positive(None, attribute, days)

    @classmethod
    def quick(cls) -> BenchConfig:
        """A smoke configuration (a few thousand trades): checks the structure, not speed."""
        return cls(trades=4_000, symbols=3, sizes=(1_000, 4_000), repeats=1, warmups=1,
                   history_per_day=400, history_days=(1, 2), cycles=1, rows_per_file=1_000,
                   scattered_windows=200, ingest_rows=3_000, late_batch=300)


def parse_count(text: str) -> int:
    """'200k', '5M', '20m' or '1500000' -> an int number of trades."""
    value = text.strip().lower().replace("_", "")
    scale = 1
    if value.endswith("k"):
        scale, value = 1_000, value[:-1]
    elif value.endswith("m"):
        scale, value = 1_000_000, value[:-1]
    try:
        number = float(value) * scale
    except ValueError:
        raise ConfigError(f"invalid number of trades {text!r}: expected e.g. 200k, 5M "
                          "or 1500000") from None
    if number < 1 or number != int(number):
        raise ConfigError(f"invalid number of trades {text!r}: expected a whole number >= 1")
    return int(number)


# -- measuring ---------------------------------------------------------------------------


@attrs.frozen
class Timing:
    """Repeated measurements of one thing: wall seconds and CPU seconds per repeat."""

    name: str
    wall: tuple[float, ...]
    cpu: tuple[float | None, ...]
    trades: int = 0

    @property
    def seconds(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_seconds(self) -> float | None:
        known = [c for c in self.cpu if c is not None]
        return statistics.median(known) if known else None


def _proc_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_peak_mib(pid: int | str) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak(pid: int | str) -> None:
    try:  # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM)
        with open(f"/proc/{pid}/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _jvm_pid(spark: SparkSession) -> int | None:
    master = spark.sparkContext.master or ""
    if not master.startswith("local"):
        return None  # executors live elsewhere: their CPU is not ours to read
    try:
        return int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - any JVM without ProcessHandle: no CPU figures
        return None


class _Clock:
    """Times a call: wall seconds and CPU seconds of the local JVM plus this process."""

    def __init__(self, spark: SparkSession) -> None:
        self.jvm = _jvm_pid(spark)

    def _cpu(self) -> float | None:
        times = os.times()
        own = times.user + times.system
        if self.jvm is None:
            return None
        jvm = _proc_cpu(self.jvm)
        return None if jvm is None else jvm + own

    def measure(self, fn: Callable[[], object]) -> tuple[float, float | None]:
        cpu_before = self._cpu()
        began = time.perf_counter()
        fn()
        wall = time.perf_counter() - began
        cpu_after = self._cpu()
        cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
        return wall, cpu

    def peak_mib(self) -> dict[str, float | None]:
        own = _proc_peak_mib("self")
        if own is None:  # no /proc: the lifetime peak (KiB on Linux, bytes on macOS)
            own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {"jvm": _proc_peak_mib(self.jvm) if self.jvm else None, "python": own}

    def reset_peaks(self) -> None:
        if self.jvm:
            _reset_peak(self.jvm)
        _reset_peak("self")


def _local_cores(spark: SparkSession) -> int:
    master = spark.sparkContext.master or ""
    inside = master[master.find("[") + 1:master.find("]")] if "[" in master else "1"
    if master.startswith("local") and inside.isdigit():
        return int(inside)
    return os.cpu_count() or 1


# -- data ----------------------------------------------------------------------------------


def write_trades(
    directory: Path, trades: int, symbols: int, rows_per_file: int, *, day: date = _FIRST_DAY,
    days: int = 1, seed: int = 0,
) -> list[Path]:
    """Deterministic synthetic trades as Parquet files part-*.parquet in `directory`."""
    from rollup.synthetic import synthetic_trades, write_trades_parquet

    table = synthetic_trades(trades, symbols=symbols, day=day, days=days, seed=seed)
    return write_trades_parquet(table, directory, rows_per_file, overwrite=True)


# -- plan-level measurements ------------------------------------------------------------


def _spark_level(spark: SparkSession, level_name: str, source: Path, target: Path, *,
                 from_trades: bool) -> None:
    from rollup.plans import Rollup
    from rollup.timeframes import Dag

    rollup = Rollup(Dag.standard().level(level_name))
    # The schema is given, as a table format would: no footer is read to infer it.
    frame = spark.read.schema(_TRADES_SCHEMA if from_trades else _BARS_SCHEMA).parquet(
        str(source))
    bars = rollup.plan_direct(frame) if from_trades else rollup.plan(frame)
    bars.write.mode("overwrite").parquet(str(target))


_TRADES_SCHEMA = ("exchange STRING, symbol STRING, trade_id BIGINT, ts TIMESTAMP, "
                  "price DECIMAL(18,8), quantity DECIMAL(20,8), side STRING")
_BARS_SCHEMA = ("exchange STRING, symbol STRING, window_start TIMESTAMP, window_end TIMESTAMP, "
                "window_date DATE, open DECIMAL(18,8), high DECIMAL(18,8), low DECIMAL(18,8), "
                "close DECIMAL(18,8), volume DECIMAL(38,8), quote_volume DECIMAL(38,16), "
                "trade_count BIGINT, vwap DECIMAL(18,8)")


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
           count(*) AS trade_count
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
                                     * 0.00000001 AS DECIMAL(18,8)) END AS vwap
  FROM u
) TO '{target}' (FORMAT parquet)
"""
"""The same exact 1m bars in DuckDB, as a single-machine user would write them.

Sums are exact DECIMAL(38,*) (DuckDB 2.0 overflows DECIMAL(18,8) x DECIMAL(18,8), so both
sides are widened to DECIMAL(38,8) first); ties are broken by (ts, trade_id). DuckDB divides
decimals in DOUBLE, so vwap is rounded half-up on the integer units of each bar instead."""


def duckdb_connection(threads: int) -> Any:
    """An in-memory DuckDB connection with `threads` threads and UTC time zone."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET TimeZone = 'UTC'")
    return con


def duckdb_1m(con: Any, files: Sequence[Path], target: Path) -> None:
    """DuckDB's exact 1m bars of the trades Parquet `files`, written to the file `target`."""
    # COPY takes no parameter for its target: it is rollup's own scratch file, checked here.
    if "'" in str(target):
        raise ConfigError(f"bench work directory {target.parent} must not contain a quote")
    sql = DUCKDB_1M_SQL.replace("{target}", str(target))
    con.execute(sql, {"files": [str(f) for f in files]})


_DIFFERENT_BARS = """
WITH s AS (SELECT exchange, symbol, window_start, window_end, window_date, open, high, low,
                  close, volume, quote_volume, trade_count, vwap FROM read_parquet($spark)),
     d AS (SELECT exchange, symbol, window_start, window_end, window_date, open, high, low,
                  close, volume, quote_volume, trade_count, vwap FROM read_parquet($duck))
SELECT (SELECT count(*) FROM (FROM s EXCEPT ALL FROM d))
     + (SELECT count(*) FROM (FROM d EXCEPT ALL FROM s))
"""


def _same_bars(con: Any, spark_dir: Path, duckdb_file: Path) -> bool:
    """True when Spark's 1m Parquet files and DuckDB's hold exactly the same bars."""
    params = {"spark": [str(p) for p in sorted(spark_dir.glob("*.parquet"))],
              "duck": str(duckdb_file)}
    return bool(con.execute(_DIFFERENT_BARS, params).fetchone()[0] == 0)


# -- incremental ---------------------------------------------------------------------------


def _append_trades(tables: Tables, files: Sequence[Path]) -> None:
    from pyspark.sql import functions as F

    from rollup.bar import TRADE_COLUMNS

    frame = tables.spark.read.parquet(*[str(f) for f in files])
    frame.select(
        *[F.col(c.name) for c in TRADE_COLUMNS if c.name not in ("ingested_at", "trade_ref")],
        F.lit(datetime.now(UTC)).cast("timestamp").alias("ingested_at"),
        F.lit(None).cast("string").alias("trade_ref"),
    ).writeTo(tables.trades).append()


def _cycle_trades(config: BenchConfig, cycle: int) -> pa.Table:
    """The trades of the `cycle`-th `cycle_minutes` of the cycle day (same for every history)."""
    import pyarrow.compute as pc

    from rollup.synthetic import synthetic_trades

    day = synthetic_trades(config.history_per_day, symbols=config.symbols, day=_CYCLE_DAY,
                           seed=1_000)
    start = datetime.combine(_CYCLE_DAY, datetime.min.time(), UTC)
    lo = start + timedelta(minutes=cycle * config.cycle_minutes)
    hi = lo + timedelta(minutes=config.cycle_minutes)
    ts = day.column("ts")
    return day.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))


@attrs.frozen
class IncrementalResult:
    """One history size: its initial full cascade and the timed incremental cycles."""

    days: int
    history_trades: int
    initial_seconds: float
    cycle: Timing
    levels: dict[str, float]  # median seconds per level over the cycles


def _incremental(
    spark: SparkSession, catalog: str, namespace: str, days: int, config: BenchConfig,
    clock: _Clock, work: Path, progress: Progress, appended: list[Path] | None = None,
) -> IncrementalResult:
    """The history and the timed cycles of one history size; the trades files appended to the
    table are added to `appended`."""
    import pyarrow.parquet as pq

    from rollup.runner import run_cascade
    from rollup.tables import Tables

    tables = Tables(spark, catalog, namespace)
    tables.create_all()
    first = _CYCLE_DAY - timedelta(days=days)
    history = work / f"history_{days}d"
    for offset in range(days):  # one append (one snapshot) per day, as a daily feed makes
        files = write_trades(history / f"day{offset:02d}", config.history_per_day,
                             config.symbols, config.rows_per_file,
                             day=first + timedelta(days=offset), seed=offset)
        _append_trades(tables, files)
        if appended is not None:
            appended.extend(files)
    progress(f"incremental, {days} day(s) of history: initial cascade ...")
    began = time.perf_counter()
    run_cascade(tables)
    initial = time.perf_counter() - began
    walls, cpus, per_level = [], [], []
    for cycle in range(config.cycles):
        path = work / f"cycle_{days}d_{cycle}.parquet"
        pq.write_table(_cycle_trades(config, cycle), path)
        _append_trades(tables, [path])
        if appended is not None:
            appended.append(path)
        results: list[Any] = []
        wall, cpu = clock.measure(functools.partial(_run_into, tables, results))
        walls.append(wall)
        cpus.append(cpu)
        per_level.append({r.level: r.seconds for r in results})
        progress(f"  cycle {cycle + 1}: {wall:.2f}s ("
                 + ", ".join(f"{r.level} {r.status}" for r in results) + ")")
    levels = {name: statistics.median(p[name] for p in per_level) for name in per_level[0]}
    return IncrementalResult(days, days * config.history_per_day, initial,
                             Timing(f"incremental {days}d", tuple(walls), tuple(cpus)), levels)


def _run_into(tables: Tables, results: list[Any]) -> None:
    from rollup.runner import run_cascade

    results.extend(run_cascade(tables))


def _drop_namespace(spark: SparkSession, catalog: str, namespace: str) -> None:
    from rollup.identifiers import qualified

    for row in spark.sql(f"SHOW TABLES IN {qualified(catalog, namespace)}").collect():
        check_identifier(row.tableName, "table name")
        spark.sql(f"DROP TABLE IF EXISTS {qualified(catalog, namespace, row.tableName)} PURGE")
    spark.sql(f"DROP NAMESPACE IF EXISTS {qualified(catalog, namespace)}")


# -- the report ----------------------------------------------------------------------------


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


def _over(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def linear_fit(points: Sequence[tuple[int, float]]) -> tuple[float, float] | None:
    """Least-squares `seconds = fixed + per_trade * trades`; None for fewer than two sizes."""
    if len({n for n, _ in points}) < 2:
        return None
    mean_n = statistics.fmean(n for n, _ in points)
    mean_s = statistics.fmean(s for _, s in points)
    slope = (sum((n - mean_n) * (s - mean_s) for n, s in points)
             / sum((n - mean_n) ** 2 for n, _ in points))
    return mean_s - slope * mean_n, slope


@attrs.frozen
class BenchReport:
    """Everything one run measured; `ratios()` and `json_line()` summarise it."""

    config: BenchConfig
    master: str
    timings: dict[str, Timing]
    cascade_levels: dict[str, float]
    duckdb_equal: bool | None
    incremental: tuple[IncrementalResult, ...]
    scaling: tuple[ScalePoint, ...]
    scattered: ScatteredResult | None = None
    ingest: IngestResult | None = None

    def ordinary_cycle(self) -> Timing | None:
        """The ordinary incremental cycle on the history the scattered batch ran on."""
        if self.scattered is None:
            return None
        return next((r.cycle for r in self.incremental
                     if r.days == self.scattered.history_days), None)

    def ratios(self) -> dict[str, float | None]:
        """The ratios of GOALS; None for a figure this run did not measure."""
        short, long = self.config.history_days
        inc = {r.days: r.cycle.seconds for r in self.incremental}
        per_trade = [p.ns_per_trade for p in self.scaling]
        seconds = {name: timing.seconds for name, timing in self.timings.items()}
        return {
            "cascade_over_1m": _over(seconds.get("cascade"), seconds.get("1m")),
            "direct_over_cascade": _over(seconds.get("direct"), seconds.get("cascade")),
            "spark_over_duckdb": _over(seconds.get("1m"), seconds.get("duckdb 1m")),
            "incremental_30d_over_1d": inc[long] / inc[short] if len(inc) == 2 else None,
            "per_trade_spread": max(per_trade) / min(per_trade) if per_trade else None,
            "ingest_30d_over_1d": self.ingest.late_over() if self.ingest else None,
        }

    def rates(self) -> dict[str, float | None]:
        """The rows-per-second figures of GOALS; None when not measured."""
        ingest = self.ingest
        return {"csv_rows_per_s": ingest.csv_rows_per_s if ingest else None,
                "parquet_rows_per_s": ingest.parquet_rows_per_s if ingest else None}

    def scaling_fit(self) -> dict[str, float] | None:
        """The cascade's fixed seconds and marginal ns per trade, fitted over the sizes."""
        fit = linear_fit([(p.trades, p.cascade.seconds) for p in self.scaling])
        if fit is None:
            return None
        return {"fixed_s": fit[0], "marginal_ns_per_trade": fit[1] * 1e9}

    def cpu_ratios(self) -> dict[str, float | None]:
        """The same ratios on CPU seconds (steadier than wall time on a shared machine)."""
        over = _over
        cpu = {name: timing.cpu_seconds for name, timing in self.timings.items()}
        short, long = self.config.history_days
        inc = {r.days: r.cycle.cpu_seconds for r in self.incremental}
        return {
            "cascade_over_1m": over(cpu.get("cascade"), cpu.get("1m")),
            "direct_over_cascade": over(cpu.get("direct"), cpu.get("cascade")),
            "spark_over_duckdb": over(cpu.get("1m"), cpu.get("duckdb 1m")),
            "incremental_30d_over_1d": over(inc.get(long), inc.get(short)),
            "scattered_over_ordinary": over(
                self.scattered.cycle.cpu_seconds if self.scattered else None,
                ordinary.cpu_seconds if (ordinary := self.ordinary_cycle()) else None),
            "ingest_30d_over_1d": self.ingest.late_over_cpu() if self.ingest else None,
        }

    def goals(self) -> dict[str, bool | None]:
        met: dict[str, bool | None] = {}
        for name, value in {**self.ratios(), **self.rates()}.items():
            op, bound = GOALS[name]
            met[name] = None if value is None else (value <= bound if op == "<=" else
                                                    value >= bound)
        return met

    def json_line(self) -> str:
        def rounded(values: dict[str, float | None]) -> dict[str, float | None]:
            return {k: None if v is None else round(v, 3) for k, v in values.items()}

        fit = self.scaling_fit()
        rates = {k: None if v is None else round(v) for k, v in self.rates().items()}
        return json.dumps({**rounded(self.ratios()), **rates, "trades": self.config.trades,
                           "history_days": list(self.config.history_days),
                           "duckdb_equal": self.duckdb_equal, "goals_met": self.goals(),
                           "cpu": rounded(self.cpu_ratios()),
                           "scaling_fit": None if fit is None else rounded(dict(fit)),
                           **(self.scattered.as_json(self.ordinary_cycle())
                              if self.scattered else {}),
                           **(self.ingest.as_json() if self.ingest else {})},
                          sort_keys=False)

    def table(self) -> str:
        parts = self.config.parts
        only = "" if set(parts) == set(PARTS) else f" ({', '.join(parts)} only)"
        size = f"{self.config.trades:,} trades, " if "plan" in parts else ""
        lines = [f"rollup bench{only}: {size}{self.config.symbols} symbols, 1 day; "
                 f"Spark {self.master}; median of {self.config.repeats} repeat(s)", ""]
        lines.append(f"{'measure':<28}{'wall s':>10}{'cpu s':>10}{'ns/trade':>10}")
        for timing in self.timings.values():
            cpu = timing.cpu_seconds
            per = timing.seconds / timing.trades * 1e9 if timing.trades else None
            lines.append(f"{timing.name:<28}{timing.seconds:>10.3f}"
                         f"{'-' if cpu is None else f'{cpu:.3f}':>10}"
                         f"{'-' if per is None else f'{per:.0f}':>10}")
        if self.cascade_levels:
            lines.append("  cascade per level: " + ", ".join(
                f"{name} {s:.3f}s" for name, s in self.cascade_levels.items()))
        if self.duckdb_equal is not None:
            lines.append(f"  DuckDB 1m bars equal to Spark's: {self.duckdb_equal}")
        for inc in self.incremental:
            cpu = inc.cycle.cpu_seconds
            lines.append(f"{f'incremental {inc.days}d':<28}{inc.cycle.seconds:>10.3f}"
                         f"{'-' if cpu is None else f'{cpu:.3f}':>10}"
                         f"   history {inc.history_trades:,} trades, initial cascade "
                         f"{inc.initial_seconds:.1f}s")
            lines.append("  per level: " + ", ".join(
                f"{name} {s:.3f}s" for name, s in inc.levels.items()))
        if self.scattered is not None:
            lines += self.scattered.lines(self.ordinary_cycle())
        if self.ingest is not None:
            lines += self.ingest.lines()
        if self.scaling:
            lines.append("")
            lines.append(f"{'scaling (cascade)':<28}{'wall s':>10}{'ns/trade':>10}"
                         f"{'1m ns/tr':>10}{'casc/1m':>10}{'dir/casc':>10}{'JVM MiB':>10}"
                         f"{'py MiB':>10}")
            for p in self.scaling:
                jvm, py = p.peak_mib.get("jvm"), p.peak_mib.get("python")
                direct = None if p.direct is None else p.direct.seconds / p.cascade.seconds
                lines.append(f"{f'{p.trades:,} trades':<28}{p.cascade.seconds:>10.3f}"
                             f"{p.ns_per_trade:>10.0f}"
                             f"{p.one_minute.seconds / p.trades * 1e9:>10.0f}"
                             f"{p.cascade.seconds / p.one_minute.seconds:>10.2f}"
                             f"{'-' if direct is None else f'{direct:.2f}':>10}"
                             f"{'-' if jvm is None else f'{jvm:.0f}':>10}"
                             f"{'-' if py is None else f'{py:.0f}':>10}")
            fit = self.scaling_fit()
            if fit is not None:
                lines.append(f"  fit: cascade = {fit['fixed_s']:.2f} s fixed + "
                             f"{fit['marginal_ns_per_trade']:.0f} ns per trade")
        lines.append("")
        goals = self.goals()
        rates = self.rates()
        for name, value in {**self.ratios(), **rates}.items():
            op, bound = GOALS[name]
            state = {True: "met", False: "NOT met", None: "n/a"}[goals[name]]
            if name in rates:
                shown = "-" if value is None else f"{value:,.0f}"
                lines.append(f"{name:<28}{shown:>10}   goal {op} {bound:,.0f}: {state}")
                continue
            shown = "-" if value is None else f"{value:.3f}"
            lines.append(f"{name:<28}{shown:>10}   goal {op} {bound}: {state}")
        return "\n".join(lines)


# -- the run -------------------------------------------------------------------------------


@contextmanager
def _workdir(parent: str | Path | None, keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rollup-bench-", dir=parent))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def _interleaved(clock: _Clock, steps: dict[str, Callable[[], object]], repeats: int,
                 warmups: int) -> dict[str, tuple[list[float], list[float | None]]]:
    """Time each step `repeats` times, round-robin (so drift hits every step alike)."""
    for _ in range(warmups):
        for fn in steps.values():
            fn()
    measured: dict[str, tuple[list[float], list[float | None]]] = {k: ([], []) for k in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            wall, cpu = clock.measure(fn)
            measured[name][0].append(wall)
            measured[name][1].append(cpu)
    return measured


def _plan_level(
    spark: SparkSession, clock: _Clock, config: BenchConfig, work: Path, threads: int,
    say: Progress,
) -> tuple[dict[str, Timing], dict[str, float], bool | None]:
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
    labels = {"1m": "1m (Spark)", "cascade": "cascade 1m..1d (Spark)",
              "direct": "direct, 5 levels (Spark)", "duckdb 1m": "1m (DuckDB)"}
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
    measured = _interleaved(clock, steps, config.repeats, config.warmups)
    level_runs = level_runs[config.warmups:]
    timings = {name: Timing(labels[name], tuple(walls), tuple(cpus), config.trades)
               for name, (walls, cpus) in measured.items()}
    cascade_levels = {name: statistics.median(run[name] for run in level_runs)
                      for name in level_runs[0]}
    duckdb_equal = None
    if con is not None:
        duckdb_equal = _same_bars(con, out / "1m", duck_out)
        con.close()
    return timings, cascade_levels, duckdb_equal


def _scale_point(
    spark: SparkSession, clock: _Clock, config: BenchConfig, work: Path, size: int,
    keep: bool, say: Progress,
) -> ScalePoint:
    say(f"scaling: {size:,} trades ...")
    trades = work / f"trades_{size}"
    shared = size == config.trades and (work / "trades").is_dir()  # the plan-level files
    if shared:
        trades = work / "trades"
    else:
        write_trades(trades, size, config.symbols, config.rows_per_file, seed=size)
    out = work / f"out_{size}"
    clock.reset_peaks()
    measured = _interleaved(clock, {
        "cascade": functools.partial(_cascade, spark, trades, out),
        "1m": functools.partial(_spark_level, spark, "1m", trades, out / "1m", from_trades=True),
        "direct": functools.partial(_direct, spark, trades, out),
    }, config.repeats, warmups=1)

    def timing(name: str) -> Timing:
        walls, cpus = measured[name]
        return Timing(f"{name} {size:,}", tuple(walls), tuple(cpus), size)

    point = ScalePoint(size, timing("cascade"), timing("1m"), clock.peak_mib(),
                       timing("direct"))
    if not shared and not keep:
        shutil.rmtree(trades, ignore_errors=True)
    return point


def run_benchmarks(
    spark: SparkSession,
    config: BenchConfig | None = None,
    *,
    catalog: str = "rollup",
    namespace: str | None = None,
    workdir: str | Path | None = None,
    keep: bool = False,
    progress: Progress | None = None,
) -> BenchReport:
    """Run the whole suite on `spark` and return its report.

    Args:
        spark: a SparkSession with rollup's Iceberg `catalog` (e.g. `rollup.engine.get_spark`).
        config: sizes and repetitions (default `BenchConfig()`; `BenchConfig.quick()` for a
            smoke run).
        namespace: prefix of the scratch namespaces of the incremental and the ingest figures
            (default a fresh `bench_<hex>`); all are dropped at the end unless `keep`.
        workdir: parent directory of the scratch Parquet files (default the system temp).
        keep: keep the scratch files and namespaces.

    Raises:
        ConfigError: an invalid configuration or namespace.
    """
    from rollup.engine import configure_session

    config = config or BenchConfig()
    say = progress or (lambda _message: None)
    configure_session(spark, catalog=catalog)
    prefix = check_identifier(namespace or f"bench_{uuid.uuid4().hex[:8]}", "namespace")
    clock = _Clock(spark)
    threads = config.duckdb_threads or _local_cores(spark)
    parts = set(config.parts)
    with _workdir(workdir, keep) as work:
        timings: dict[str, Timing] = {}
        cascade_levels: dict[str, float] = {}
        duckdb_equal = None
        if "plan" in parts:
            timings, cascade_levels, duckdb_equal = _plan_level(spark, clock, config, work,
                                                                threads, say)
        incremental = []
        scattered = None
        for days in config.history_days if "incremental" in parts else ():
            ns = f"{prefix}_h{days}d"
            try:
                appended: list[Path] = []
                incremental.append(_incremental(spark, catalog, ns, days, config, clock, work,
                                                say, appended))
                if days == config.history_days[-1] and config.scattered_windows:
                    from rollup.bench_scattered import measure_scattered
                    from rollup.tables import Tables

                    scattered = measure_scattered(
                        Tables(spark, catalog, ns), config, clock, work, appended,
                        _CYCLE_DAY - timedelta(days=days), days, say, threads=threads)
            finally:
                if not keep:
                    _drop_namespace(spark, catalog, ns)
        scaling = [_scale_point(spark, clock, config, work, size, keep, say)
                   for size in sorted(set(config.sizes)) if "scaling" in parts]
        ingest = None
        if "ingest" in parts and config.ingest_rows:
            from rollup.bench_ingest import measure_ingest

            ingest = measure_ingest(spark, catalog, prefix, config, clock, work, keep, say)
    return BenchReport(config, spark.sparkContext.master or "?", timings, cascade_levels,
                       duckdb_equal, tuple(incremental), tuple(scaling), scattered, ingest)
