"""Run levels: find what changed in the parent, recompute those windows, write, record.

Every run recomputes whole windows (merge levels) or whole partitions (overwrite levels)
from the parent level and never increments a stored value, so running twice, crashing
half-way or overlapping with another run all converge to the exact bars.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

import attrs
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rollup import retention, state
from rollup.errors import ConcurrentRunError, InputError
from rollup.plans import Rollup, TimeRange, bucket, dates_in, merge_ranges
from rollup.sink import WriteResult, merge_bars, overwrite_partitions
from rollup.tables import Tables
from rollup.timeframes import Level, Timeframe
from rollup.times import from_micros

log = logging.getLogger("rollup")

# Iceberg's messages when another writer committed first (a ValidationException can also
# mean a malformed request, which must not be retried as a conflict).
_CONFLICT_MARKERS = (
    "CommitFailedException",
    "Found conflicting files",
    "Found new conflicting delete files",
    "conflicting",
)


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@attrs.frozen
class LevelResult:
    """What one level run did."""

    level: str
    status: str  # 'written', 'unchanged', 'up-to-date', 'no-input'
    run_id: str
    parent_snapshot: int | None
    windows: int = 0
    changed: int = 0
    deleted: int = 0
    partitions: int = 0
    full: bool = False
    seconds: float = 0.0
    skipped: int = 0  # changed windows before the retention horizon, left unchanged

    def describe(self) -> str:
        if self.skipped:
            return attrs.evolve(self, skipped=0).describe() + (
                f"; {self.skipped} windows before the retention horizon left unchanged")
        scope = "full" if self.full else f"{self.windows} windows"
        if self.status == "written":
            return (f"{self.level}: wrote {self.changed} bars ({scope}"
                    + (f", {self.partitions} partitions" if self.partitions else "")
                    + f") in {self.seconds:.1f}s")
        return f"{self.level}: {self.status} in {self.seconds:.1f}s"


Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _partition_ranges(starts: Sequence[datetime], level: Level) -> list[TimeRange]:
    """Whole partitions (days or months of window_date) holding the given window starts."""
    spans: set[TimeRange] = set()
    for start in starts:
        day = datetime(start.year, start.month, start.day, tzinfo=UTC)
        if level.partitioning == "days":
            spans.add((day, day + timedelta(days=1)))
        else:
            first = day.replace(day=1)
            nxt = (first + timedelta(days=32)).replace(day=1)
            spans.add((first, nxt))
    merged: list[TimeRange] = []
    for lo, hi in sorted(spans):
        if merged and merged[-1][1] >= lo:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def _dates(ranges: Sequence[TimeRange]) -> list[date]:
    return [d.date() for d in dates_in(ranges)]


def _is_conflict(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in _CONFLICT_MARKERS)


LOCAL_KEYS = 100_000
"""Up to this many changed (exchange, symbol, window) keys are collected to the driver in the
job that finds them; more stay in Spark (one job more)."""


@attrs.frozen
class Changes:
    """Windows of a level touched by new parent rows; `full` means recompute everything."""

    full: bool
    keys: DataFrame | None = None
    starts: tuple[datetime, ...] = ()


def changed_windows(
    tables: Tables, level: Level, since: int | None, until: int
) -> Changes:
    """The level's windows that parent snapshots after `since` (up to `until`) touched."""
    spark = tables.spark
    parent = tables.parent_of(level)
    reads_source = level.parent is None and tables.source is not None
    if since is None:
        if reads_source:
            _quarantine_source_rows(tables, spark.table(parent))
        return Changes(full=True)
    chain = state.snapshots_since(spark, parent, since, until)
    if chain is None:
        if reads_source:
            _quarantine_source_rows(tables, spark.table(parent))
        log.warning("position %s of %s is not in the history of %s; recomputing all",
                    since, level.name, parent)
        return Changes(full=True)
    ids = [s.snapshot_id for s in chain if s.operation in state.DATA_OPERATIONS]
    files = state.added_data_files(spark, parent, ids)
    if not files:
        return Changes(full=False)
    rows = state.read_files(spark, files)
    if reads_source:
        _quarantine_source_rows(tables, rows)
    if level.parent is None:
        rows = tables.canonical_trades(rows)
    time_col = "ts" if level.parent is None else "window_start"
    # Window starts as epoch microseconds: collected TIMESTAMPs would come back in local time.
    windows = (
        bucket(rows.select("exchange", "symbol", time_col), time_col, level.timeframe)
        .select("exchange", "symbol", F.unix_micros("window_start").alias("micros"))
        .distinct()
    )
    collected = windows.limit(LOCAL_KEYS + 1).collect()
    if len(collected) <= LOCAL_KEYS:  # the usual case: one job, keys kept on the driver
        micros = {r.micros for r in collected}
        local = spark.createDataFrame(collected, "exchange STRING, symbol STRING, micros BIGINT")
    else:  # a large late batch: keep the keys in Spark
        local = windows.localCheckpoint()
        micros = {r.micros for r in local.select("micros").distinct().collect()}
    keys = local.select("exchange", "symbol",
                        F.timestamp_micros("micros").alias("window_start"))
    return Changes(full=False, keys=keys, starts=tuple(from_micros(m) for m in sorted(micros)))


def _quarantine_source_rows(tables: Tables, rows: DataFrame) -> None:
    """Set aside the invalid rows of newly read source files, with their reasons."""
    from rollup.ingest import quarantine_rows

    assert tables.source is not None
    rejected = tables.source.rejected(rows).localCheckpoint()
    count = rejected.count()
    if count:
        log.warning("%d invalid rows in %s quarantined (see `rollup rejects`)",
                    count, ".".join(tables.source.table))
        quarantine_rows(tables, rejected, ingest_id=f"source-{new_run_id()}")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def run_level(
    tables: Tables,
    level: Level | str,
    *,
    run_id: str | None = None,
    full: bool = False,
    max_attempts: int = 3,
    progress: Progress | None = None,
) -> LevelResult:
    """Bring one level up to date with its parent; retried when a concurrent run wins."""
    lv = tables.dag.level(level) if isinstance(level, str) else level
    run_id = run_id or new_run_id()
    for attempt in range(1, max_attempts + 1):
        try:
            return _run_level_once(tables, lv, run_id=run_id, full=full, progress=progress)
        except Exception as exc:  # noqa: BLE001 - classify Iceberg commit conflicts
            if not _is_conflict(exc):
                raise
            if attempt == max_attempts:
                raise ConcurrentRunError(
                    f"level {lv.name}: another run kept committing to {lv.table} "
                    f"({attempt} attempts); the tables are consistent, run again later"
                ) from exc
            wait = 0.5 * attempt
            (progress or _stderr)(
                f"{lv.name}: concurrent commit detected, retrying in {wait:.1f}s"
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


def _run_level_once(
    tables: Tables, level: Level, *, run_id: str, full: bool, progress: Progress | None
) -> LevelResult:
    spark = tables.spark
    started = time.monotonic()
    now = datetime.now(UTC)
    target = tables.bars(level)
    parent = tables.parent_of(level)
    parent_snapshot = state.current_snapshot(spark, parent)

    def done(status: str, **kw: object) -> LevelResult:
        return LevelResult(level.name, status, run_id, parent_snapshot,
                           seconds=time.monotonic() - started, **kw)  # type: ignore[arg-type]

    if parent_snapshot is None:
        return done("no-input")
    since = None if full else state.position(spark, target)
    if since == parent_snapshot:
        return done("up-to-date")
    target_snapshot = state.current_snapshot(spark, target)
    changes = changed_windows(tables, level, since, parent_snapshot)
    horizon = retention.horizon(tables, level)
    changes, skipped = retention.clip_changes(level, changes, horizon, progress)
    stamp = now.isoformat()
    if not changes.full and not changes.starts:
        state.set_position(spark, target, parent_snapshot, run_id, stamp)
        return done("up-to-date", skipped=skipped)

    source = retention.after_horizon(tables.parent_frame(level), level, horizon)
    rollup = Rollup(level)
    if progress:
        what = "all windows" if changes.full else f"{len(changes.starts)} window starts"
        progress(f"{level.name}: recomputing {what} from {level.parent_name}")
    result: WriteResult
    partitions = 0
    if level.write_mode == "merge":
        if changes.full:
            bars = rollup.plan(source)
            result = merge_bars(spark, target, bars, run_id=run_id, now=now)
        else:
            ranges = merge_ranges([_aware(s) for s in changes.starts], level.timeframe)
            bars = rollup.plan(source, ranges, changes.keys)
            result = merge_bars(spark, target, bars, run_id=run_id, now=now,
                                target_dates=_dates(ranges))
    else:
        partition_dates: list[date] | None = None
        if changes.full:
            bars = rollup.plan(source)
        else:
            part_ranges = _partition_ranges([_aware(s) for s in changes.starts], level)
            bars = rollup.plan(source, part_ranges)
            partitions = len(part_ranges)
            partition_dates = _dates(part_ranges)
        result = overwrite_partitions(
            spark, target, bars, run_id=run_id, now=now,
            partition_dates=partition_dates, validate_from_snapshot=target_snapshot,
        )
    state.set_position(spark, target, parent_snapshot, run_id, stamp)
    windows = 0 if changes.full else len(changes.starts)
    return done(
        "written" if result.committed else "unchanged",
        windows=windows, changed=result.changed, deleted=result.deleted,
        partitions=partitions, full=changes.full, skipped=skipped,
    )


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
    for lv in order:
        result = run_level(tables, lv, run_id=run_id, full=full, progress=progress)
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
    start, end = _aware(start), _aware(end)
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
        tf = level.timeframe
        lo = tf.floor(start)
        hi = tf.floor(end - timedelta(microseconds=1)) + tf.duration
        if level.write_mode == "overwrite":
            ranges = _partition_ranges(
                [lo + timedelta(days=d) for d in range((hi - lo).days + 1)], level)
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
    """Make the level's bars in `ranges` equal `bars`: upsert changed, delete vanished."""
    from rollup.sink import replace_bars

    now = datetime.now(UTC)
    if level.write_mode == "merge":
        return merge_bars(tables.spark, tables.bars(level), bars, run_id=run_id, now=now,
                          target_dates=_dates(ranges), delete_ranges=ranges)
    return replace_bars(tables.spark, tables.bars(level), bars, ranges, run_id=run_id, now=now)
