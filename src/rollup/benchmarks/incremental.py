"""The incremental figure of `rollup bench`: cycles of new trades through every Iceberg level.

For each history size of `BenchConfig.history_days`, `measure_incremental` appends the history
to a fresh trades table (one commit a day, as a daily feed makes), runs the whole cascade once
untimed, then times `BenchConfig.cycles` cycles: `BenchConfig.cycle_minutes` minutes of new
trades on `CYCLE_DAY` appended and propagated through every level by
`rollup.incremental.runner.run_cascade`.
"""

from __future__ import annotations

import functools
import statistics
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from rollup.benchmarks.common import (
    BenchConfig,
    Clock,
    Progress,
    Timing,
    Timings,
    append_trades,
    fresh_tables,
    timing_row,
    write_history,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from rollup.storage.tables import Tables

CYCLE_DAY = date(2024, 1, 31)
"""The day the cycles add trades to, right after every history."""


def cycle_trades(config: BenchConfig, cycle: int) -> pa.Table:
    """The trades of the `cycle`-th `cycle_minutes` of the cycle day (same for every history)."""
    import pyarrow.compute as pc

    from rollup.adapters.synthetic import synthetic_trades

    day = synthetic_trades(config.history_per_day, symbols=config.symbols, day=CYCLE_DAY,
                           seed=1_000)
    start = datetime.combine(CYCLE_DAY, datetime.min.time(), UTC)
    lo = start + timedelta(minutes=cycle * config.cycle_minutes)
    hi = lo + timedelta(minutes=config.cycle_minutes)
    ts = day.column("ts")
    return day.filter(pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi)))


def run_into(tables: Tables, results: list[Any]) -> None:
    """Run the cascade on `tables`, adding its level results to `results`."""
    from rollup.incremental.runner import run_cascade

    results.extend(run_cascade(tables))


@attrs.frozen
class IncrementalResult:
    """One history size: its initial full cascade and the timed incremental cycles."""

    days: int
    history_trades: int
    initial_seconds: float
    cycle: Timing
    levels: dict[str, float]  # median seconds per level over the cycles

    def lines(self) -> list[str]:
        """The rows of the printed table."""
        return [timing_row(f"incremental {self.days}d", self.cycle,
                           f"history {self.history_trades:,} trades, initial cascade "
                           f"{self.initial_seconds:.1f}s", per_trade=False),
                "  per level: " + ", ".join(f"{name} {s:.3f}s"
                                            for name, s in self.levels.items())]


def measure_incremental(
    spark: SparkSession, catalog: str, namespace: str, days: int, config: BenchConfig,
    clock: Clock, work: Path, progress: Progress, appended: list[Path] | None = None,
) -> IncrementalResult:
    """The history and the timed cycles of one history size in `namespace`; the trades files
    appended to the table are added to `appended`."""
    import pyarrow.parquet as pq

    tables = fresh_tables(spark, catalog, namespace)
    for _, files in write_history(work / f"history_{days}d", CYCLE_DAY - timedelta(days=days), days,
                                  config):
        append_trades(tables, files)  # one commit a day
        if appended is not None:
            appended.extend(files)
    progress(f"incremental, {days} day(s) of history: initial cascade ...")
    began = time.perf_counter()
    run_into(tables, [])
    initial = time.perf_counter() - began
    measured, per_level = Timings(), []
    for cycle in range(config.cycles):
        path = work / f"cycle_{days}d_{cycle}.parquet"
        pq.write_table(cycle_trades(config, cycle), path)
        append_trades(tables, [path])
        if appended is not None:
            appended.append(path)
        results: list[Any] = []
        wall, cpu = clock.measure(functools.partial(run_into, tables, results))
        measured.add(days, wall, cpu)
        per_level.append({r.level: r.seconds for r in results})
        progress(f"  cycle {cycle + 1}: {wall:.2f}s ("
                 + ", ".join(f"{r.level} {r.status}" for r in results) + ")")
    levels = {name: statistics.median(p[name] for p in per_level) for name in per_level[0]}
    return IncrementalResult(days, days * config.history_per_day, initial,
                             measured.timing(days, f"incremental {days}d"), levels)
