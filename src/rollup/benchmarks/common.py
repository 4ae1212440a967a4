"""What every part of `rollup bench` shares: the configuration, the clock, timings, their
printed rows, and the scratch trades (synthetic Parquet files appended to Iceberg).

Times are wall-clock seconds; `cpu` is the CPU time of the local Spark JVM plus this process
(where DuckDB runs), read from /proc.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from rollup.errors import ConfigError
from rollup.specs.identifiers import check_identifier, qualified

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from rollup.storage.tables import Tables

Progress = Callable[[str], None]

PARTS = ("plan", "incremental", "scaling", "ingest", "follow")
"""What a run can be restricted to (`BenchConfig.parts`)."""

HISTORY_DAYS = (1, 30)
FIRST_DAY = date(2024, 1, 2)
"""The day of the plan-level and scaling trades."""
_EPOCH = date(1970, 1, 1)


def _whole(_: object, attribute: attrs.Attribute[Any], value: object, least: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"bench {attribute.name} must be an integer >= {least}, got {value!r}")


def _positive(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _whole(_, attribute, value)


def _not_negative(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _whole(_, attribute, value, least=0)


def _seconds(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"bench {attribute.name} must be a number of seconds > 0, "
                          f"got {value!r}")


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
    warmups: int = attrs.field(default=4, validator=_not_negative)
    """Untimed rounds of every plan-level step before the timed ones (scaling and the ingest
    figures warm up once when this is at least 1; 0 skips every warm-up). The JVM keeps
    compiling Spark's own code for many queries (on 2 cores the JIT competes with the tasks),
    so fewer rounds measure a half-warm session; a long-running process (`rollup serve`) is
    warm."""
    cycles: int = attrs.field(default=3, validator=_positive)
    cycle_minutes: int = attrs.field(default=5, validator=_positive)
    rows_per_file: int = attrs.field(default=250_000, validator=_positive)
    duckdb_threads: int | None = attrs.field(default=None)
    """DuckDB threads; default the number of cores of Spark's local master."""
    scattered_windows: int = attrs.field(default=10_000, validator=_not_negative)
    """Separate 1m windows of the scattered late batch over the long history (0: skip it)."""

    ingest_rows: int = attrs.field(default=1_000_000, validator=_not_negative)
    """Trades of the CSV and the Parquet file of the ingest figures (0: no ingest figures)."""
    late_batch: int = attrs.field(default=10_000, validator=_positive)
    """Trades of the late batch ingested into the short and the long history."""
    parts: tuple[str, ...] = attrs.field(default=PARTS, converter=tuple)
    """The parts of the suite to run (see `PARTS`)."""
    follow_commits: int = attrs.field(default=24, validator=_positive)
    """Commits of the external writer of the follow_lag figure (24 every 5 s: two minutes)."""
    follow_interval: float = attrs.field(default=5.0, validator=_seconds)
    """Seconds between two commits of the external writer."""
    follow_trades: int = attrs.field(default=5_000, validator=_positive)
    """Trades per commit of the external writer."""
    follow_poll: float = attrs.field(default=0.5, validator=_seconds)
    """Seconds between two polls of the follower when idle."""

    @parts.validator
    def _check_parts(self, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
        unknown = [p for p in value if p not in PARTS]
        if unknown or not value:
            raise ConfigError(f"bench parts must be some of {', '.join(PARTS)}, "
                              f"got {', '.join(value) or 'none'}")

    @history_days.validator
    def _check_history(self, attribute: attrs.Attribute[Any], value: tuple[int, ...]) -> None:
        if len(value) != 2 or value[0] >= value[1]:
            raise ConfigError(f"bench history_days must be two day counts, short then long, "
                              f"got {value!r}")
        for days in value:
            _positive(None, attribute, days)

    @classmethod
    def quick(cls) -> BenchConfig:
        """A smoke configuration: every figure's code path once, on a few hundred trades,
        without warm-ups (checks the structure, not speed)."""
        return cls(trades=600, symbols=2, sizes=(300, 600), repeats=1, warmups=0,
                   history_per_day=1_000, history_days=(1, 2), cycles=1, rows_per_file=1_000,
                   scattered_windows=40, ingest_rows=300, late_batch=50, follow_commits=2,
                   follow_interval=1.0, follow_trades=100)


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


class Timings:
    """Collects wall and CPU seconds per key, repeat after repeat, into `Timing`s."""

    def __init__(self) -> None:
        self._walls: dict[Any, list[float]] = {}
        self._cpus: dict[Any, list[float | None]] = {}

    def add(self, key: Any, wall: float, cpu: float | None) -> None:
        self._walls.setdefault(key, []).append(wall)
        self._cpus.setdefault(key, []).append(cpu)

    def timing(self, key: Any, name: str, trades: int = 0) -> Timing:
        return Timing(name, tuple(self._walls[key]), tuple(self._cpus[key]), trades)


def over(a: float | None, b: float | None) -> float | None:
    """a / b; None when either is unknown or b is 0."""
    return None if a is None or b is None or b == 0 else a / b


def timing_row(label: str, timing: Timing, note: str = "", *, per_trade: bool = True) -> str:
    """A row of the printed table: label, wall s, cpu s, [ns/trade], [note]."""
    cpu = timing.cpu_seconds
    row = f"{label:<28}{timing.seconds:>10.3f}{'-' if cpu is None else f'{cpu:.3f}':>10}"
    if per_trade:
        per = timing.seconds / timing.trades * 1e9 if timing.trades else None
        row += f"{'-' if per is None else f'{per:.0f}':>10}"
    return f"{row}   {note}" if note else row


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


class Clock:
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


def interleaved(clock: Clock, steps: dict[str, Callable[[], object]], repeats: int,
                warmups: int) -> Timings:
    """Time each step `repeats` times, round-robin (so drift hits every step alike), after
    `warmups` untimed rounds."""
    for _ in range(warmups):
        for fn in steps.values():
            fn()
    measured = Timings()
    for _ in range(repeats):
        for name, fn in steps.items():
            measured.add(name, *clock.measure(fn))
    return measured


def local_cores(spark: SparkSession) -> int:
    master = spark.sparkContext.master or ""
    inside = master[master.find("[") + 1:master.find("]")] if "[" in master else "1"
    if master.startswith("local") and inside.isdigit():
        return int(inside)
    return os.cpu_count() or 1


@contextmanager
def scratch_dir(parent: str | Path | None, keep: bool) -> Iterator[Path]:
    """A fresh scratch directory, removed afterwards unless `keep`."""
    path = Path(tempfile.mkdtemp(prefix="rollup-bench-", dir=parent))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def duckdb_connection(threads: int) -> Any:
    """An in-memory DuckDB connection with `threads` threads and UTC time zone."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET TimeZone = 'UTC'")
    return con


# -- scratch trades --------------------------------------------------------------------------


def write_trades(
    directory: Path, trades: int, symbols: int, rows_per_file: int, *, day: date = FIRST_DAY,
    days: int = 1, seed: int = 0,
) -> list[Path]:
    """Deterministic synthetic trades as Parquet files part-*.parquet in `directory`."""
    from rollup.adapters.synthetic import synthetic_trades, write_trades_parquet

    table = synthetic_trades(trades, symbols=symbols, day=day, days=days, seed=seed)
    return write_trades_parquet(table, directory, rows_per_file, overwrite=True)


def append_trades(tables: Tables, files: Sequence[Path]) -> None:
    """Append trades Parquet files (the feed's columns) to the trades table, as one commit,
    stamped as ingested now (straight to Iceberg, not through ingest)."""
    from pyspark.sql import functions as F

    from rollup.specs.bar import TRADE_COLUMNS
    from rollup.specs.columns import spark_type

    frame = tables.spark.read.parquet(*[str(f) for f in files])
    stamped = {"ingested_at": F.lit(datetime.now(UTC))}
    frame.select(*[
        F.col(c.name) if c.name in frame.columns
        else stamped.get(c.name, F.lit(None)).cast(spark_type(c.type)).alias(c.name)
        for c in TRADE_COLUMNS
    ]).writeTo(tables.trades).append()


def write_history(directory: Path, first: date, days: int, config: BenchConfig
                  ) -> list[tuple[date, list[Path]]]:
    """`days` days of `config.history_per_day` trades from `first`, one directory of Parquet
    files a day (a day's trades depend only on the day: the same in every history)."""
    out = []
    for day in (first + timedelta(days=offset) for offset in range(days)):
        out.append((day, write_trades(directory / f"{day:%Y%m%d}", config.history_per_day,
                                      config.symbols, config.rows_per_file, day=day,
                                      seed=(day - _EPOCH).days)))
    return out


def fresh_tables(spark: SparkSession, catalog: str, namespace: str) -> Tables:
    """rollup's tables in `namespace`, created empty."""
    from rollup.storage.tables import Tables

    tables = Tables(spark, catalog, namespace)
    tables.create_all()
    return tables


def drop_namespace(spark: SparkSession, catalog: str, namespace: str) -> None:
    """Drop every table of `namespace` (purged) and the namespace."""
    for row in spark.sql(f"SHOW TABLES IN {qualified(catalog, namespace)}").collect():
        check_identifier(row.tableName, "table name")
        spark.sql(f"DROP TABLE IF EXISTS {qualified(catalog, namespace, row.tableName)} PURGE")
    spark.sql(f"DROP NAMESPACE IF EXISTS {qualified(catalog, namespace)}")
