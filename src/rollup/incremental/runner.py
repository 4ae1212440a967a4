"""Run levels: plan (`rollup.incremental.planning`), then execute: recompute, write, record.

Every run recomputes whole windows (merge levels) or whole partitions (overwrite levels)
from the parent level and never increments a stored value, so running twice, crashing
half-way or overlapping with another run all converge to the exact bars. A run of a level is
a `LevelPlan` (decided without writing) carried out by `execute_plan`; `run_level` plans and
executes again when another writer's commit made Iceberg refuse its own.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import attrs
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rollup.errors import ConcurrentRunError, InputError, LevelRunError, RollupError, one_line
from rollup.incremental import retention
from rollup.incremental.changes import LOCAL_KEYS, Handoff
from rollup.incremental.planning import LevelPlan, partitions_in, plan_cascade, plan_level
from rollup.spark.engine import is_commit_conflict
from rollup.specs.bar import KEY_COLUMNS
from rollup.specs.times import TimeRange, as_utc, iso, merge_intervals
from rollup.storage import state
from rollup.storage.sink import WriteResult, merge_changes, overwrite_partitions, partition_filter
from rollup.storage.tables import Tables
from rollup.timeframes import Level, Timeframe
from rollup.transforms.bars import (
    Rollup,
    dates_of,
    in_ranges,
    partition_of_date,
    partition_span,
    window_dates,
)

__all__ = [  # planning is re-exported: callers plan and run through the runner
    "LevelPlan", "LevelResult", "backfill", "execute_plan", "new_run_id", "plan_cascade",
    "plan_level", "planned_bars", "replace_ranges", "run_cascade", "run_level",
]

log = logging.getLogger("rollup")

def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@attrs.frozen
class LevelResult:
    """What one level run did."""

    level: str
    status: str  # 'written', 'unchanged', 'up-to-date', 'no-input' ('expired': backfill)
    run_id: str
    parent_snapshot: int | None
    windows: int = 0
    changed: int = 0
    deleted: int = 0
    partitions: int = 0
    full: bool = False
    seconds: float = 0.0
    skipped: int = 0  # changed windows before the retention horizon, left unchanged
    retries: int = 0
    """Plans made again because another writer's commit made Iceberg refuse this run's."""
    handoff: Handoff | None = attrs.field(default=None, eq=False, repr=False)
    """What the commit changed, for planning the level above (None: no commit, or too many
    bars changed to list)."""

    def describe(self) -> str:
        if self.skipped:
            return attrs.evolve(self, skipped=0).describe() + (
                f"; {self.skipped} windows before the retention horizon left unchanged")
        if self.retries:
            return attrs.evolve(self, retries=0).describe() + (
                f" (planned again {self.retries}x after concurrent commits)")
        scope = "full" if self.full else f"{self.windows} windows"
        if self.status == "written":
            return (f"{self.level}: wrote {self.changed} bars ({scope}"
                    + (f", {self.partitions} partitions" if self.partitions else "")
                    + f") in {self.seconds:.1f}s")
        return f"{self.level}: {self.status} in {self.seconds:.1f}s"


Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _is_spark_error(exc: BaseException) -> bool:
    """A failure inside Spark or the JVM (as opposed to a bug or an interrupt in Python)."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    return isinstance(exc, Py4JError | PySparkException)


def _warn_skipped(plan: LevelPlan, progress: Progress | None) -> None:
    touched = plan.touched
    if not touched.skipped or plan.horizon is None:
        return
    message = (f"{plan.level.name}: {touched.skipped} window(s) with new "
               f"{plan.level.parent_name} rows start before the retention horizon "
               f"{iso(plan.horizon)} and were left unchanged (not applied): "
               + ", ".join(touched.skipped_samples))
    if progress is not None:
        progress(message)
    else:
        log.warning(message)


def _quarantine_source_rows(tables: Tables, plan: LevelPlan) -> None:
    """Set aside the invalid rows of the source files the plan reads first (all of the source
    at the plan's snapshot when `plan.new_files` is None): execution's first write."""
    from rollup.ingestion.batch import quarantine_rows

    source = tables.source
    if source is None or plan.level.parent is not None or plan.new_files == ():
        return
    spark = tables.spark
    rows = (state.read_at(spark, source.name, plan.parent_snapshot) if plan.new_files is None
            else state.read_files(spark, list(plan.new_files)))
    rejected = source.rejected(rows).localCheckpoint()
    count = rejected.count()
    if count:
        quarantine_rows(tables, rejected, ingest_id=f"source-{new_run_id()}")
        log.warning("%d invalid rows in %s quarantined (see `rollup rejects`)",
                    count, ".".join(source.table))


def execute_plan(
    tables: Tables, plan: LevelPlan, *, run_id: str, progress: Progress | None = None,
    started: float | None = None,
) -> LevelResult:
    """Carry out a plan: write exactly what it says, from the parent read at its snapshot.

    Quarantines the invalid source rows it reads first, then recomputes the plan's windows
    (or partitions), reconciles them with the level's bars at the plan's own snapshot and
    commits the differences with the position; a plan with nothing to change records
    `rollup.verified` (a table property) instead.

    Raises:
        InputError: a plan from `plan_cascade` that predicts the writes of the level below
            (`plan.after`): it shows a dry run and cannot be executed.
    """
    if plan.after is not None:
        raise InputError(f"the plan of {plan.level.name} predicts what {plan.after} will "
                         "write (a dry run's plan): plan the level again after it ran")
    spark = tables.spark
    level = plan.level
    began = time.monotonic() if started is None else started
    now = datetime.now(UTC)

    def done(status: str, **kw: object) -> LevelResult:
        return LevelResult(level.name, status, run_id, plan.parent_snapshot,
                           seconds=time.monotonic() - began,
                           skipped=plan.touched.skipped, **kw)  # type: ignore[arg-type]

    _warn_skipped(plan, progress)
    if plan.status == "no-input":
        return done("no-input")
    if plan.status == "up-to-date":
        return done("up-to-date")
    assert plan.parent_snapshot is not None
    _quarantine_source_rows(tables, plan)
    target = tables.bars(level)
    if plan.status == "nothing-touched":
        if plan.level_snapshot is not None:
            state.record_verified(spark, target, plan.level_snapshot, plan.parent_snapshot,
                                  run_id, now.isoformat())
        return done("up-to-date")
    if progress:
        what = "all windows" if plan.full else f"{plan.window_count} windows"
        progress(f"{level.name}: recomputing {what} from {level.parent_name}")
    bars = planned_bars(tables, plan)
    stored = state.read_at(spark, target, plan.level_snapshot)
    props = state.commit_properties(plan.parent_snapshot, plan.level_snapshot, run_id)
    if plan.full:
        old = stored
        if plan.horizon is not None:
            old = old.where(F.col("window_start") >= F.lit(plan.horizon))
    if level.write_mode == "merge":
        if not plan.full:
            keys = plan.touched.keys
            assert keys is not None
            small = len(plan.touched.starts) <= LOCAL_KEYS
            days = dates_of(plan.touched.starts, level.timeframe)
            old = stored.where(F.col("window_date").isin(days)).join(
                F.broadcast(keys) if small else keys, list(KEY_COLUMNS), "left_semi")
        result = merge_changes(spark, target, bars, old, run_id=run_id, now=now,
                               commit_properties=props)
    else:
        if plan.full:
            first = (dates_of([plan.horizon], level.timeframe)[0] if plan.horizon is not None
                     else None)
            where = (F.col("window_date") >= F.lit(first)) if first else F.lit(True)
        else:
            where = partition_filter(plan.partitions, level.partitioning)
            old = stored.where(partition_of_date("window_date", level.partitioning)
                               .isin(list(plan.partitions)))
        result = overwrite_partitions(
            spark, target, bars, old, run_id=run_id, now=now, where=where,
            validate_from_snapshot=plan.level_snapshot, commit_properties=props)
    if not result.committed and plan.level_snapshot is not None:
        state.record_verified(spark, target, plan.level_snapshot, plan.parent_snapshot,
                              run_id, now.isoformat())
    handoff = None
    if result.committed and result.keys is not None:
        after = state.current_snapshot(spark, target)
        if after is not None:
            handoff = Handoff(level.name, target, plan.level_snapshot, after, result.keys)
    return done(
        "written" if result.committed else "unchanged",
        windows=0 if plan.full else plan.window_count, changed=result.changed,
        deleted=result.deleted, partitions=len(plan.partitions), full=plan.full,
        handoff=handoff,
    )


def parent_input(tables: Tables, plan: LevelPlan) -> DataFrame:
    """The parent rows a recompute plan reads, pinned at its parent snapshot.

    For an external source only the plan's windows (or partitions, or times after the
    horizon) are read: the filter is on the source's own time column, so it reaches the
    Iceberg scan ahead of renaming and validation.
    """
    level = plan.level
    rows = state.read_at(tables.spark, plan.parent_table, plan.parent_snapshot)
    if level.parent is None:
        rollup = Rollup(level)
        ranges = (None if plan.full
                  else rollup.window_ranges(plan.touched.starts) if level.write_mode == "merge"
                  else rollup.partition_ranges(plan.partitions))
        rows = tables.canonical_trades(rows, ranges=ranges, after=plan.horizon)
    return retention.after_horizon(rows, level, plan.horizon)


def planned_bars(tables: Tables, plan: LevelPlan) -> DataFrame:
    """The bars a recompute plan writes (lazy): its touched windows (merge levels), its
    partitions (overwrite levels), or every window from the horizon on (full)."""
    assert plan.status == "recompute", plan.status
    level = plan.level
    rollup = Rollup(level)
    parent_rows = parent_input(tables, plan)
    if plan.full:
        bars = rollup.plan(parent_rows)
        if plan.horizon is not None:
            bars = bars.where(F.col("window_start") >= F.lit(plan.horizon))
        return bars
    if level.write_mode == "merge":
        keys = plan.touched.keys
        assert keys is not None
        small = len(plan.touched.starts) <= LOCAL_KEYS
        return rollup.plan_windows(parent_rows, keys, plan.touched.starts, broadcast=small)
    return rollup.plan_partitions(parent_rows, plan.partitions)


def run_level(
    tables: Tables,
    level: Level | str,
    *,
    run_id: str | None = None,
    full: bool = False,
    max_attempts: int = 3,
    progress: Progress | None = None,
    below: Handoff | None = None,
) -> LevelResult:
    """Bring one level up to date with its parent: plan, execute.

    `below` is the handoff of the parent level's run just before (`LevelResult.handoff`):
    the plan uses it instead of reading that commit back when it is the only change.

    When Iceberg refuses the commit because another writer committed first
    (`rollup.spark.engine.is_commit_conflict`), the level is planned and executed again, up to
    `max_attempts` attempts in all (`LevelResult.retries` counts the repeats).

    Raises:
        ConcurrentRunError: the commit was refused on every attempt.
        LevelRunError: Spark failed (one line naming the level); nothing was committed.
    """
    lv = tables.dag.level(level) if isinstance(level, str) else level
    run_id = run_id or new_run_id()
    for attempt in range(1, max_attempts + 1):
        started = time.monotonic()
        try:
            plan = plan_level(tables, lv, full=full, below=below if attempt == 1 else None)
            result = execute_plan(tables, plan, run_id=run_id, progress=progress,
                                  started=started)
            return attrs.evolve(result, retries=attempt - 1)
        except RollupError:
            raise
        except Exception as exc:  # noqa: BLE001 - classify Iceberg commit conflicts
            if not is_commit_conflict(exc):
                if not _is_spark_error(exc):
                    raise
                raise LevelRunError(
                    f"level {lv.name} failed in Spark: {one_line(exc)}; nothing was "
                    f"committed for it: fix the cause and run `rollup run` again"
                ) from exc
            if attempt == max_attempts:
                raise ConcurrentRunError(
                    f"level {lv.name}: another run kept committing to {lv.table} "
                    f"({attempt} attempts); the tables are consistent, run again later"
                ) from exc
            wait = 0.5 * attempt
            (progress or _stderr)(
                f"{lv.name}: concurrent commit detected, planning again in {wait:.1f}s"
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


def run_cascade(
    tables: Tables,
    *,
    up_to: str | Timeframe | None = None,
    levels: Sequence[str] | None = None,
    run_id: str | None = None,
    full: bool = False,
    progress: Progress | None = None,
) -> list[LevelResult]:
    """Run every level (or those needed for `up_to`, or the named `levels`) in DAG order."""
    run_id = run_id or new_run_id()
    if levels is not None:
        chosen = [tables.dag.level(name) for name in levels]
        order = [lv for lv in tables.dag.order() if lv in chosen]
    elif up_to is not None:
        order = tables.dag.up_to(up_to)
    else:
        order = tables.dag.order()
    results = []
    handoffs: dict[str, Handoff | None] = {}
    for lv in order:
        result = run_level(tables, lv, run_id=run_id, full=full, progress=progress,
                           below=handoffs.get(lv.parent_name))
        handoffs[lv.name] = result.handoff
        if progress:
            progress(result.describe())
        results.append(result)
    return results


def backfill(
    tables: Tables,
    start: datetime,
    end: datetime,
    *,
    timeframe: str | Timeframe | None = None,
    run_id: str | None = None,
    progress: Progress | None = None,
) -> list[LevelResult]:
    """Recompute [start, end) of one level (default: the root levels) from its parent and
    propagate upward, deleting bars whose windows no longer have any input (restated data).
    Windows whose parent rows retention already dropped are rebuilt from the trades.

    Positions are not moved: a later incremental run only redoes work, never skips it.
    """
    run_id = run_id or new_run_id()
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise InputError(f"backfill end {end.isoformat()} is not after start {start.isoformat()}")
    if timeframe is None:
        roots = [lv for lv in tables.dag.order() if lv.parent is None]
    else:
        roots = [tables.dag.level(timeframe)]
    todo: list[Level] = []
    for root in roots:
        todo += [lv for lv in tables.dag.descendants(root.name) if lv not in todo]
    order = [lv for lv in tables.dag.order() if lv in todo]
    results = []
    for level in order:
        began = time.monotonic()
        ((lo, hi),) = Rollup(level).covering([(start, end)])
        if level.write_mode == "overwrite":
            ranges = merge_intervals(partition_span(p, level.partitioning, level.timeframe)
                                     for p in partitions_in([(lo, hi)], level))
        else:
            ranges = [(lo, hi)]
        ranges = retention.clip_ranges(ranges, retention.own_horizon(tables, level))
        if not ranges:  # the level already dropped these partitions: nothing to rebuild
            results.append(LevelResult(level.name, "expired", run_id, None))
            continue
        if progress:
            progress(f"{level.name}: backfilling {ranges[0][0]:%Y-%m-%d %H:%M} .. "
                     f"{ranges[-1][1]:%Y-%m-%d %H:%M}")
        bars = retention.complete_plan(tables, level, ranges)  # trades where parent expired
        result = replace_ranges(tables, level, bars, ranges, run_id=run_id)
        results.append(LevelResult(level.name, "written" if result.committed else "unchanged",
                                   run_id, None, changed=result.changed, deleted=result.deleted,
                                   partitions=len(ranges),
                                   seconds=time.monotonic() - began))
        if progress:
            progress(results[-1].describe())
    return results


def replace_ranges(
    tables: Tables, level: Level, bars: DataFrame, ranges: Sequence[TimeRange], *, run_id: str
) -> WriteResult:
    """Make the level's bars in `ranges` (few, whole partitions for overwrite levels) equal
    `bars`: upsert changed, delete vanished. The commit does not move the position."""
    spark = tables.spark
    table = tables.bars(level)
    now = datetime.now(UTC)
    days = window_dates(ranges, level.timeframe)
    old = spark.table(table).where(F.col("window_date").isin(days)).where(
        in_ranges("window_start", ranges))
    bars = bars.where(in_ranges("window_start", ranges))
    if level.write_mode == "merge":
        return merge_changes(spark, table, bars, old, run_id=run_id, now=now)
    partitions = partitions_in(ranges, level)
    return overwrite_partitions(spark, table, bars, old, run_id=run_id, now=now,
                                where=partition_filter(partitions, level.partitioning),
                                validate_from_snapshot=None, validate=False)
