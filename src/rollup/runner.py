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
from rollup.bar import KEY_COLUMNS
from rollup.changes import (
    LOCAL_KEYS,
    ParentDelta,
    Touched,
    parent_delta,
    quarantine_new_source_rows,
    touched_windows,
)
from rollup.errors import ConcurrentRunError, InputError, LevelRunError, RollupError, one_line
from rollup.plans import (
    Rollup,
    TimeRange,
    coarsen,
    dates_in,
    in_ranges,
    partition_span,
    window_partition,
)
from rollup.sink import WriteResult, merge_changes, overwrite_partitions, partition_filter
from rollup.tables import Tables
from rollup.timeframes import Level, Timeframe
from rollup.times import iso

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


def _is_conflict(exc: BaseException) -> bool:
    text = f"{type(exc).__name__}: {exc}"
    return any(marker in text for marker in _CONFLICT_MARKERS)


def _is_spark_error(exc: BaseException) -> bool:
    """A failure inside Spark or the JVM (as opposed to a bug or an interrupt in Python)."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    return isinstance(exc, Py4JError | PySparkException)


def _partitions(starts: Sequence[datetime], level: Level) -> tuple[date, ...]:
    """First days of the level's partitions (days or months of window_date) holding `starts`."""
    days = {s.astimezone(UTC).date() for s in starts}
    if level.partitioning == "months":
        days = {d.replace(day=1) for d in days}
    return tuple(sorted(days))


@attrs.frozen
class LevelPlan:
    """What one run of a level will do, decided before anything is written.

    The parent is read at `parent_snapshot` and the level's own table at `level_snapshot`;
    `touched` names the windows to recompute (`partitions` for overwrite levels).
    """

    level: Level
    status: str  # 'no-input', 'up-to-date', 'nothing-touched' or 'recompute'
    parent_snapshot: int | None = None
    level_snapshot: int | None = None
    position: int | None = None
    touched: Touched = attrs.field(factory=lambda: Touched(False))
    partitions: tuple[date, ...] = ()
    horizon: datetime | None = None
    reason: str = ""
    new_files: tuple[str, ...] | None = ()
    """Source files to validate first (None: the whole source)."""

    @property
    def full(self) -> bool:
        return self.touched.full

    def as_json(self) -> dict[str, object]:
        return {
            "level": self.level.name, "status": self.status,
            "parent_snapshot": self.parent_snapshot, "level_snapshot": self.level_snapshot,
            "position": self.position, "full": self.full, "reason": self.reason,
            "windows": len(self.touched.starts),
            "partitions": [p.isoformat() for p in self.partitions],
            "skipped": self.touched.skipped,
            "horizon": iso(self.horizon) if self.horizon else None,
        }

    def describe(self) -> str:
        name = self.level.name
        if self.status == "no-input":
            return f"{name}: no input ({self.level.parent_name} is empty)"
        if self.status == "up-to-date":
            return f"{name}: up to date with {self.level.parent_name} snapshot {self.position}"
        if self.status == "nothing-touched":
            return (f"{name}: {self.level.parent_name} changed after snapshot {self.position} "
                    "without touching any window; nothing to recompute")
        if self.full:
            scope = "all windows" + (f" from {iso(self.horizon)}" if self.horizon else "")
            why = f" ({self.reason})" if self.reason else ""
            return f"{name}: recompute {scope}{why} from {self.level.parent_name} " \
                   f"snapshot {self.parent_snapshot}"
        what = f"{len(self.touched.starts)} window starts"
        if self.partitions:
            what += f" in {len(self.partitions)} partitions"
        return (f"{name}: recompute {what} from {self.level.parent_name} snapshot "
                f"{self.parent_snapshot} (changes since {self.position})")


def plan_level(tables: Tables, level: Level | str, *, full: bool = False) -> LevelPlan:
    """Decide what a run of `level` must recompute (reads metadata and the changed rows)."""
    lv = tables.dag.level(level) if isinstance(level, str) else level
    spark = tables.spark
    target = tables.bars(lv)
    parent = tables.parent_of(lv)
    parent_snapshot = state.current_snapshot(spark, parent)
    if parent_snapshot is None:
        return LevelPlan(lv, "no-input")
    level_snapshot = state.current_snapshot(spark, target)
    since = None if full else state.position(spark, target, parent)
    base = LevelPlan(lv, "up-to-date", parent_snapshot, level_snapshot, since)
    if since == parent_snapshot:
        return base
    horizon = retention.horizon(tables, lv)
    delta = parent_delta(tables, lv, since, parent_snapshot, horizon)
    if full:
        delta = ParentDelta(True, "--full")
    touched = touched_windows(tables, lv, delta, parent_snapshot=parent_snapshot,
                              level_snapshot=level_snapshot, horizon=horizon, position=since)
    new_files = None if since is None else delta.new_files
    if touched.empty:
        return attrs.evolve(base, status="nothing-touched", touched=touched, horizon=horizon,
                            new_files=new_files)
    partitions = () if touched.full or lv.write_mode == "merge" else _partitions(
        touched.starts, lv)
    return attrs.evolve(base, status="recompute", touched=touched, partitions=partitions,
                        horizon=horizon, reason=delta.reason, new_files=new_files)


def plan_cascade(
    tables: Tables, *, up_to: str | Timeframe | None = None, full: bool = False
) -> list[LevelPlan]:
    """The plan of every level (or those needed for `up_to`) as of each parent's current
    snapshot; nothing is written (what `rollup run --dry-run` shows)."""
    order = tables.dag.up_to(up_to) if up_to is not None else tables.dag.order()
    return [plan_level(tables, lv, full=full) for lv in order]


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


def execute_plan(
    tables: Tables, plan: LevelPlan, *, run_id: str, progress: Progress | None = None,
    started: float | None = None,
) -> LevelResult:
    """Carry out a plan: recompute, reconcile and commit the bars with the position."""
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
    if tables.source is not None and level.parent is None and plan.new_files != ():
        count = quarantine_new_source_rows(tables, plan.new_files,
                                           ingest_id=f"source-{new_run_id()}")
        if count:
            log.warning("%d invalid rows in %s quarantined (see `rollup rejects`)",
                        count, ".".join(tables.source.table))
    target = tables.bars(level)
    if plan.status == "nothing-touched":
        if plan.level_snapshot is not None:
            state.record_verified(spark, target, plan.level_snapshot, plan.parent_snapshot,
                                  run_id, now.isoformat())
        return done("up-to-date")
    if progress:
        what = ("all windows" if plan.full
                else f"{len(plan.touched.starts)} window starts")
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
            days = sorted({s.astimezone(UTC).date() for s in plan.touched.starts})
            old = stored.where(F.col("window_date").isin(days)).join(
                F.broadcast(keys) if small else keys, list(KEY_COLUMNS), "left_semi")
        result = merge_changes(spark, target, bars, old, run_id=run_id, now=now,
                               commit_properties=props)
    else:
        if plan.full:
            first = plan.horizon.date() if plan.horizon is not None else None
            where = (F.col("window_date") >= F.lit(first)) if first else F.lit(True)
        else:
            where = partition_filter(plan.partitions, level.partitioning)
            old = stored.where(window_partition("window_start", level.partitioning)
                               .isin(list(plan.partitions)))
        result = overwrite_partitions(
            spark, target, bars, old, run_id=run_id, now=now, where=where,
            validate_from_snapshot=plan.level_snapshot, commit_properties=props)
    if not result.committed and plan.level_snapshot is not None:
        state.record_verified(spark, target, plan.level_snapshot, plan.parent_snapshot,
                              run_id, now.isoformat())
    windows = 0 if plan.full else len(plan.touched.starts)
    return done(
        "written" if result.committed else "unchanged",
        windows=windows, changed=result.changed, deleted=result.deleted,
        partitions=len(plan.partitions), full=plan.full,
    )


def parent_input(tables: Tables, plan: LevelPlan) -> DataFrame:
    """The parent rows a recompute plan reads, pinned at its parent snapshot.

    For an external source only the plan's windows (or partitions, or times after the
    horizon) are read: the filter is on the source's own time column, so it reaches the
    Iceberg scan ahead of renaming and validation.
    """
    level = plan.level
    rows = state.read_at(tables.spark, tables.parent_of(level), plan.parent_snapshot)
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
) -> LevelResult:
    """Bring one level up to date with its parent; retried when a concurrent run wins."""
    lv = tables.dag.level(level) if isinstance(level, str) else level
    run_id = run_id or new_run_id()
    for attempt in range(1, max_attempts + 1):
        started = time.monotonic()
        try:
            plan = plan_level(tables, lv, full=full)
            return execute_plan(tables, plan, run_id=run_id, progress=progress,
                                started=started)
        except RollupError:
            raise
        except Exception as exc:  # noqa: BLE001 - classify Iceberg commit conflicts
            if not _is_conflict(exc):
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
                f"{lv.name}: concurrent commit detected, retrying in {wait:.1f}s"
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
    for lv in order:
        result = run_level(tables, lv, run_id=run_id, full=full, progress=progress)
        if progress:
            progress(result.describe())
        results.append(result)
    return results


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
            days = [lo + timedelta(days=d) for d in range((hi - lo).days + 1)
                    if lo + timedelta(days=d) < hi]
            ranges = coarsen([partition_span(p, level.partitioning)
                              for p in _partitions(days, level)], 1)
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
    days = [d.date() for d in dates_in(ranges)]
    old = spark.table(table).where(F.col("window_date").isin(days)).where(
        in_ranges("window_start", ranges))
    bars = bars.where(in_ranges("window_start", ranges))
    if level.write_mode == "merge":
        return merge_changes(spark, table, bars, old, run_id=run_id, now=now)
    partitions = _partitions([lo + timedelta(days=d) for lo, hi in ranges
                              for d in range((hi - lo).days)], level)
    return overwrite_partitions(spark, table, bars, old, run_id=run_id, now=now,
                                where=partition_filter(partitions, level.partitioning),
                                validate_from_snapshot=None, validate=False)
