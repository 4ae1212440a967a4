"""The benchmark suite: the cascade against its peers, on one warm SparkSession.

`run_benchmarks` measures, in one run on the same deterministic synthetic trades (one UTC day,
`synthetic_trades`), each figure the median of `repeats` timings:

- ``1m``: the 1m level from the trades' Parquet files, written as Parquet;
- ``cascade``: 1m, then 5m from the 1m files, 30m from 5m, 1h from 30m and 1d from 1h;
- ``direct``: every level aggregated straight from the trades (the seed's approach);
- ``duckdb 1m``: the same exact 1m bars computed by DuckDB from the same files (and checked
  equal, column for column, to Spark's);
- ``incremental``: one cycle of five minutes of new trades appended to the Iceberg trades
  table and propagated through every level by `rollup.incremental.runner.run_cascade`, with 1 day
  and
  with 30 days of history;
- ``scaling``: the cascade, the 1m level and the direct approach at several sizes, as time
  per trade, with the peak memory;
- ``scattered``: on the long incremental history, one late batch touching
  `BenchConfig.scattered_windows` separate 1m windows over every day, one timed cascade run,
  its peak memory and a check against DuckDB (`rollup.benchmarks.scattered`);
- ``ingest``: rows per second of `rollup.ingestion.batch.ingest_file` for a CSV and a Parquet file
of
  `BenchConfig.ingest_rows` trades into an empty trades table, and the same late batch
  ingested into the short and the long history (`rollup.benchmarks.ingest`);
- ``follow``: the lag from each commit of an external writer (pyiceberg, its own process) to
  the end of the follow cycle that brought every level up to it (`rollup.benchmarks.follow_lag`).

`BenchConfig.parts` restricts a run to some of these (``plan``: the first four figures,
``incremental``: incremental and scattered, ``scaling``, ``ingest``, ``follow``). The report's
`cycle_s` is the median ordinary incremental cycle on the short history.

One module a concern: `rollup.benchmarks.common` (configuration, clock, timings, scratch trades),
`rollup.benchmarks.plan` (plan-level and scaling figures, on Parquet),
`rollup.benchmarks.incremental`,
`rollup.benchmarks.scattered`, `rollup.benchmarks.ingest`, `rollup.benchmarks.follow_lag`
(with its writer `rollup.benchmarks.writer`), and `rollup.benchmarks.report`
(`BenchReport`:
the ratios the goals in docs/benchmarks.md are set on, the table and the JSON line). This
module runs them in order.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rollup.benchmarks.common import (
    PARTS,
    BenchConfig,
    Clock,
    Progress,
    drop_namespace,
    local_cores,
    scratch_dir,
)
from rollup.benchmarks.follow_lag import FollowLagResult, hadoop_warehouse, measure_follow_lag
from rollup.benchmarks.incremental import CYCLE_DAY, IncrementalResult, measure_incremental
from rollup.benchmarks.ingest import measure_ingest
from rollup.benchmarks.plan import PlanResult, measure_plan, measure_scale_point
from rollup.benchmarks.report import BenchReport
from rollup.benchmarks.scattered import ScatteredResult, measure_scattered
from rollup.errors import ConfigError
from rollup.specs.identifiers import check_identifier

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


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
        spark: a SparkSession with rollup's Iceberg `catalog` (e.g.
        `rollup.spark.engine.get_spark`).
        config: sizes and repetitions (default `BenchConfig()`; `BenchConfig.quick()` for a
            smoke run).
        namespace: prefix of the scratch namespaces of the incremental and the ingest figures
            (default a fresh `bench_<hex>`); all are dropped at the end unless `keep`.
        workdir: parent directory of the scratch Parquet files (default the system temp).
        keep: keep the scratch files and namespaces.

    Raises:
        ConfigError: an invalid configuration or namespace, or the follow part asked for by
            name on a catalog other than a local Hadoop catalog (with every part, it is
            skipped).
    """
    from rollup.spark.engine import configure_session

    config = config or BenchConfig()
    say = progress or (lambda _message: None)
    configure_session(spark, catalog=catalog)
    prefix = check_identifier(namespace or f"bench_{uuid.uuid4().hex[:8]}", "namespace")
    clock = Clock(spark)
    threads = config.duckdb_threads or local_cores(spark)
    parts = set(config.parts)
    if "follow" in parts:
        try:
            hadoop_warehouse(spark, catalog)  # before any part runs: the writer needs it
        except ConfigError as exc:
            if parts != set(PARTS):
                raise  # asked for by name
            say(f"follow: skipped ({exc})")
            parts.discard("follow")
    with scratch_dir(workdir, keep) as work:
        plan = (measure_plan(spark, clock, config, work, threads, say) if "plan" in parts
                else PlanResult({}, {}, None))
        incremental: list[IncrementalResult] = []
        scattered = None
        if "incremental" in parts:
            scattered = _incremental(spark, catalog, prefix, config, clock, work, threads, keep,
                                     say, incremental)
        scaling = [measure_scale_point(spark, clock, config, work, size, keep, say)
                   for size in sorted(set(config.sizes)) if "scaling" in parts]
        ingest = None
        if "ingest" in parts and config.ingest_rows:
            ingest = measure_ingest(spark, catalog, prefix, config, clock, work, keep, say)
        follow = (_follow(spark, catalog, prefix, config, work, threads, keep, say)
                  if "follow" in parts else None)
    return BenchReport(config, spark.sparkContext.master or "?", plan.timings,
                       plan.cascade_levels, plan.duckdb_equal, tuple(incremental),
                       tuple(scaling), scattered, ingest, follow)


def _follow(spark: SparkSession, catalog: str, prefix: str, config: BenchConfig, work: Path,
            threads: int, keep: bool, say: Progress) -> FollowLagResult:
    """The follow_lag figure in its own namespace, dropped afterwards unless `keep`."""
    ns = f"{prefix}_follow"
    try:
        return measure_follow_lag(spark, catalog, ns, config, work, say, threads=threads)
    finally:
        if not keep:
            drop_namespace(spark, catalog, ns)


def _incremental(
    spark: SparkSession, catalog: str, prefix: str, config: BenchConfig, clock: Clock,
    work: Path, threads: int, keep: bool, say: Progress, results: list[IncrementalResult],
) -> ScatteredResult | None:
    """The incremental figure of each history size (added to `results`), then the scattered
    batch on the long history; each history's namespace is dropped unless `keep`."""
    from rollup.storage.tables import Tables

    scattered = None
    for days in config.history_days:
        ns = f"{prefix}_h{days}d"
        try:
            appended: list[Path] = []
            results.append(measure_incremental(spark, catalog, ns, days, config, clock, work,
                                               say, appended))
            if days == config.history_days[-1] and config.scattered_windows:
                scattered = measure_scattered(
                    Tables(spark, catalog, ns), config, clock, work, appended,
                    CYCLE_DAY - timedelta(days=days), days, say, threads=threads)
        finally:
            if not keep:
                drop_namespace(spark, catalog, ns)
    return scattered
