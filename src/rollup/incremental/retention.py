"""Retention: drop expired partitions, expire snapshots, remove orphan files, and the horizon.

Each level keeps its bars for `Level.retention` (SEED: 1m 90 days, 5m 180 days, 30m 1 year,
1h 3 years, 1d 5 years; `[retention]` in rollup.toml changes them). `enforce_retention`
deletes only whole partitions that lie entirely before `now - retention`, so nothing inside a
retention window is ever deleted; the deletes are metadata-only because they are aligned to the
partitioning. It then expires old snapshots and removes orphan files with safe defaults.

Before deleting, it records the first kept `window_date` as the table property
`rollup.retained-from`. The *horizon* of a level derives from that property: the earliest window
the runner may still (re)compute. A level whose parent lost old partitions must not rewrite its
own older bars from what is left of the parent (they would be partial), and a level must not
write into partitions it has already dropped. Windows before the horizon are left unchanged and
reported; `backfill` recomputes them exactly from the trades instead (see `complete_plan`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
from pyspark.sql import functions as F

from rollup.errors import InputError
from rollup.specs.identifiers import check_identifier
from rollup.specs.times import TimeRange, as_utc
from rollup.storage import state
from rollup.storage.tables import Tables
from rollup.timeframes import Level, Timeframe
from rollup.transforms.bars import Rollup, partition_of_date, partition_span

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("rollup")

RETAINED_FROM = "rollup.retained-from"
"""Table property: first window_date kept; every older partition was deleted by retention."""

DEFAULT_SNAPSHOT_AGE = timedelta(days=5)
DEFAULT_ORPHAN_AGE = timedelta(days=3)
DEFAULT_RETAIN_LAST = 1
MIN_ORPHAN_AGE = timedelta(days=1)
"""Iceberg refuses shorter orphan ages: younger files may belong to a commit in flight."""

_TICK = timedelta(microseconds=1)


# ---------------------------------------------------------------------------------------------
# Pure rules


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def partition_start(day: date, partitioning: str) -> date:
    """First day of the partition (a day or a month of window_date) holding `day`."""
    return day.replace(day=1) if partitioning == "months" else day


def cutoff(level: Level, now: datetime) -> date | None:
    """First window_date `level` keeps at `now`: older partitions are entirely expired.

    A partition is expired when all of it lies before `now - retention`; None when the level
    keeps its bars forever.
    """
    if level.retention is None:
        return None
    oldest_kept = (as_utc(now) - level.retention).date()
    return partition_start(oldest_kept, level.partitioning)


def ceil_to_grid(instant: datetime, tf: Timeframe) -> datetime:
    """The first window start of `tf` at or after `instant`."""
    if tf.is_calendar:
        return tf.window_end(as_utc(instant) - _TICK)
    return tf.floor(as_utc(instant) - _TICK) + tf.duration


def first_start(day: date, tf: Timeframe | None) -> datetime:
    """The first window start of `tf` whose window_date is `day` or later (`tf` None: the
    trades, midnight UTC of `day`)."""
    if tf is None or not tf.is_calendar:
        return _midnight(day) if tf is None else ceil_to_grid(_midnight(day), tf)
    return partition_span(day, "days", tf)[0]


def ceil_to_partition(instant: datetime, partitioning: str,
                      tf: Timeframe | None = None) -> datetime:
    """The first partition start (midnight, or the 1st of a month) at or after `instant`.

    For a calendar `tf` and a window start `instant`: the start of the first window at or
    after it that opens a partition (partitions hold the windows of their window_dates).
    """
    if tf is not None and tf.is_calendar:
        label = tf.window_date(instant)
        lo, hi = partition_span(partition_start(label, partitioning), partitioning, tf)
        return lo if lo == as_utc(instant) else hi
    day = as_utc(instant)
    start = _midnight(partition_start(day.date(), partitioning))
    if start == day:
        return start
    if partitioning == "months":
        return _midnight((start + timedelta(days=32)).date().replace(day=1))
    return start + timedelta(days=1)


def combine_horizon(
    level: Level, own: date | None, parent: date | None, *, whole_partitions: bool
) -> datetime | None:
    """Earliest window start of `level` that can be (re)computed exactly, or None for no limit.

    Args:
        level: the level to write.
        own: the level's own `rollup.retained-from` (its partitions before it are gone).
        parent: the parent's `rollup.retained-from` (parent windows before it are gone).
        whole_partitions: round up to the level's partitions (for partition overwrites).
    """
    bounds: list[datetime] = []
    if own is not None:
        bounds.append(first_start(own, level.timeframe))
    if parent is not None:
        bounds.append(ceil_to_grid(first_start(parent, level.parent), level.timeframe))
    if not bounds:
        return None
    horizon = max(bounds)
    if whole_partitions:
        horizon = ceil_to_partition(horizon, level.partitioning, level.timeframe)
    return horizon


def clip_ranges(ranges: Sequence[TimeRange], horizon: datetime | None) -> list[TimeRange]:
    """The parts of half-open `ranges` at or after `horizon`."""
    if horizon is None:
        return list(ranges)
    return [(max(as_utc(lo), horizon), as_utc(hi)) for lo, hi in ranges if as_utc(hi) > horizon]


def split_ranges(
    ranges: Sequence[TimeRange], at: datetime | None
) -> tuple[list[TimeRange], list[TimeRange]]:
    """(parts of `ranges` before `at`, parts at or after `at`)."""
    if at is None:
        return [], list(ranges)
    before = [(as_utc(lo), min(as_utc(hi), at)) for lo, hi in ranges if as_utc(lo) < at]
    return before, clip_ranges(ranges, at)


# ---------------------------------------------------------------------------------------------
# Horizons read from the tables (used by the runner, backfill and the quality checks)


def retained_from(spark: SparkSession, table: str) -> date | None:
    """The `rollup.retained-from` date of `table`, or None when retention never deleted rows."""
    value = state.table_properties(spark, table).get(RETAINED_FROM)
    return date.fromisoformat(value) if value else None


def _parent_retained_from(tables: Tables, level: Level) -> date | None:
    return retained_from(tables.spark, tables.parent_of(level))


def horizon(
    tables: Tables, level: Level, *, whole_partitions: bool | None = None
) -> datetime | None:
    """Earliest window start of `level` that the cascade may (re)write, or None for no limit.

    `whole_partitions` defaults to True for overwrite levels, which replace whole partitions.
    """
    if whole_partitions is None:
        whole_partitions = level.write_mode == "overwrite"
    own = retained_from(tables.spark, tables.bars(level))
    return combine_horizon(level, own, _parent_retained_from(tables, level),
                           whole_partitions=whole_partitions)


def own_horizon(tables: Tables, level: Level) -> datetime | None:
    """Earliest window start of `level` not in a partition retention already dropped."""
    own = retained_from(tables.spark, tables.bars(level))
    return combine_horizon(level, own, None, whole_partitions=level.write_mode == "overwrite")


def parent_horizon(tables: Tables, level: Level) -> datetime | None:
    """Earliest window start of `level` whose parent rows are all still stored."""
    return combine_horizon(level, None, _parent_retained_from(tables, level),
                           whole_partitions=False)


def after_horizon(source: DataFrame, level: Level, horizon: datetime | None) -> DataFrame:
    """Parent rows of `level` that feed windows at or after `horizon` (all rows when None)."""
    if horizon is None:
        return source
    time_col = "ts" if level.parent is None else "window_start"
    return source.where(F.col(time_col) >= F.lit(horizon))


def complete_plan(tables: Tables, level: Level, ranges: Sequence[TimeRange]) -> DataFrame:
    """The exact bars of `level` in `ranges`, from the parent where it is complete, else trades.

    Windows before the parent's horizon are aggregated straight from the trades (which
    retention never deletes); the cascade is exact, so both sources give identical bars.
    """
    rollup = Rollup(level)
    parent_df = tables.parent_frame(level, rollup.covering(ranges))
    before, after = split_ranges(ranges, parent_horizon(tables, level))
    if not before:
        return rollup.plan(parent_df, ranges)
    direct = rollup.plan_direct(tables.canonical_trades(ranges=rollup.covering(before)), before)
    if not after:
        return direct
    return rollup.plan(parent_df, after).unionByName(direct)


# ---------------------------------------------------------------------------------------------
# Enforcement


@attrs.frozen
class RetentionResult:
    """What retention removed from one table (or would remove, for a dry run)."""

    table: str
    timeframe: str | None
    dry_run: bool
    cutoff: date | None = None
    partitions: tuple[date, ...] = ()
    rows: int = 0
    snapshots: tuple[int, ...] = ()
    files_deleted: int = 0
    orphan_files: tuple[str, ...] = ()

    def describe(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        parts = []
        if self.cutoff is None:
            parts.append("keeps all bars" if self.timeframe else "no retention")
        elif self.partitions:
            days = ", ".join(d.isoformat() for d in self.partitions[:5])
            more = f" and {len(self.partitions) - 5} more" if len(self.partitions) > 5 else ""
            parts.append(f"{verb} {len(self.partitions)} partition(s) before "
                         f"{self.cutoff.isoformat()} ({days}{more}), {self.rows} rows")
        else:
            parts.append(f"nothing before {self.cutoff.isoformat()}")
        snaps = f"{verb.replace('remove', 'expire')} {len(self.snapshots)} snapshot(s)"
        if not self.dry_run:
            snaps += f" ({self.files_deleted} files deleted)"
        parts.append(snaps)
        parts.append(f"{verb} {len(self.orphan_files)} orphan file(s)")
        return f"{self.table}: " + "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table, "timeframe": self.timeframe, "dry_run": self.dry_run,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "partitions": [d.isoformat() for d in self.partitions], "rows": self.rows,
            "snapshots": list(self.snapshots), "files_deleted": self.files_deleted,
            "orphan_files": list(self.orphan_files),
        }


def _timestamp_sql(instant: datetime) -> str:
    # Rendered from a datetime rollup computed (never user text).
    return f"TIMESTAMP '{as_utc(instant).strftime('%Y-%m-%d %H:%M:%S.%f')}Z'"


def _expired_partitions(
    spark: SparkSession, table: str, level: Level, keep_from: date
) -> list[tuple[date, int]]:
    """(partition start, live rows) of the partitions entirely before `keep_from`."""
    old = spark.table(table).where(F.col("window_date") < F.lit(keep_from))
    part = partition_of_date("window_date", level.partitioning)
    rows = old.groupBy(part.alias("p")).agg(F.count(F.lit(1)).alias("n")).orderBy("p").collect()
    return [(r.p, int(r.n)) for r in rows]


def _readers(tables: Tables, table: str) -> list[Level]:
    """Levels built from `table` (their positions point at its snapshots)."""
    return [lv for lv in tables.dag.order() if tables.parent_of(lv) == table]


def _advance_positions(tables: Tables, table: str, before: int | None) -> None:
    """Move readers that had consumed `before` to the delete snapshot that followed it.

    A retention delete brings no rows into any window a reader may still write, so a reader
    at the snapshot just before it has nothing to do; recording that lets the older snapshot
    expire now instead of next time.
    """
    spark = tables.spark
    after = state.current_snapshot(spark, table)
    if before is None or after is None or after == before:
        return
    snap = state.snapshots(spark, table).get(after)
    if snap is None or snap.parent_id != before or snap.operation != "delete":
        return
    for reader in _readers(tables, table):
        target = tables.bars(reader)
        own = state.current_snapshot(spark, target)
        if own is not None and state.position(spark, target, table) == before:
            state.record_verified(spark, target, own, after, "retention",
                                  datetime.now(UTC).isoformat())


def _expirable(
    tables: Tables, table: str, older_than: datetime, retain_last: int, *, pending_delete: bool
) -> list[int]:
    """Ids of the snapshots `expire_snapshots(older_than, retain_last)` removes.

    Snapshots the readers' positions point at (and everything newer) are protected by
    lowering `older_than`, so a level never loses its place and recomputes everything.
    With `pending_delete` (dry run), a delete commit about to happen is taken into account.
    """
    spark = tables.spark
    snaps = state.snapshots(spark, table)
    current = state.current_snapshot(spark, table)
    if current is None:
        return []
    ancestors: list[int] = []
    cursor: int | None = current
    while cursor is not None and cursor in snaps:
        ancestors.append(cursor)
        cursor = snaps[cursor].parent_id
    keep = set(ancestors[: max(retain_last - (1 if pending_delete else 0), 0)])
    if not pending_delete:
        keep.add(current)
    limit = _protected_limit(tables, table, older_than, snaps,
                             moved_from=current if pending_delete else None)
    return sorted(
        sid for sid, snap in snaps.items()
        if sid not in keep and as_utc(snap.committed_at) < limit
    )


def _protected_limit(
    tables: Tables, table: str, older_than: datetime, snaps: dict[int, state.Snapshot],
    moved_from: int | None = None,
) -> datetime:
    """`older_than`, lowered so that expiry keeps the snapshots positions depend on: the
    readers' positions in `table`, and `table`'s own newest snapshot carrying a position."""
    limit = older_than
    keep: list[int] = []
    for reader in _readers(tables, table):
        pos = state.position(tables.spark, tables.bars(reader), table)
        if pos is not None and pos != moved_from:
            keep.append(pos)
    own = state.position_snapshot(tables.spark, table)
    if own is not None and not (moved_from is not None and own == moved_from):
        keep.append(own)  # (a pending retention delete carries the position forward)
    for sid in keep:
        if sid in snaps:
            limit = min(limit, as_utc(snaps[sid].committed_at))
    return limit


def _procedure_table(tables: Tables, name: str) -> str:
    """The `namespace.table` string argument of an Iceberg procedure (validated identifiers)."""
    return f"{check_identifier(tables.namespace)}.{check_identifier(name)}"


def _expire(
    tables: Tables, name: str, older_than: datetime, retain_last: int
) -> tuple[tuple[int, ...], int]:
    spark = tables.spark
    table = tables.name(name)
    before = set(state.snapshots(spark, table))
    limit = _protected_limit(tables, table, older_than, state.snapshots(spark, table))
    ident = _procedure_table(tables, name)
    row = spark.sql(
        f"CALL `{tables.catalog}`.system.expire_snapshots(table => '{ident}', "
        f"older_than => {_timestamp_sql(limit)}, retain_last => {int(retain_last)})"
    ).first()
    files = sum(int(v or 0) for v in row.asDict().values()) if row is not None else 0
    gone = tuple(sorted(before - set(state.snapshots(spark, table))))
    return gone, files


def _orphans(tables: Tables, name: str, older_than: datetime, *, dry_run: bool) -> tuple[str, ...]:
    ident = _procedure_table(tables, name)
    rows = tables.spark.sql(
        f"CALL `{tables.catalog}`.system.remove_orphan_files(table => '{ident}', "
        f"older_than => {_timestamp_sql(older_than)}, dry_run => {'true' if dry_run else 'false'})"
    ).collect()
    return tuple(sorted(r.orphan_file_location for r in rows))


def enforce_retention(
    tables: Tables,
    now: datetime | None = None,
    dry_run: bool = False,
    *,
    snapshot_age: timedelta = DEFAULT_SNAPSHOT_AGE,
    retain_last: int = DEFAULT_RETAIN_LAST,
    orphan_age: timedelta = DEFAULT_ORPHAN_AGE,
    progress: Callable[[str], None] | None = None,
) -> list[RetentionResult]:
    """Delete expired partitions of every level, then expire snapshots and remove orphans.

    Args:
        tables: the tables; each level's `retention` decides what expires.
        now: the clock for the retention windows (default: now, UTC); fixed for tests/replays.
        dry_run: report what would be removed and change nothing.
        snapshot_age: expire snapshots committed longer ago than this (wall clock).
        retain_last: always keep this many of the newest snapshots of each table.
        orphan_age: remove unreferenced files older than this (wall clock, at least 1 day).

    Raises:
        InputError: a negative `snapshot_age`, `retain_last` below 1 or `orphan_age` below 1 day.
    """
    if snapshot_age < timedelta(0):
        raise InputError(f"invalid snapshot age {snapshot_age}: expected a duration >= 0")
    if retain_last < 1:
        raise InputError(f"invalid retain_last {retain_last}: expected at least 1")
    if orphan_age < MIN_ORPHAN_AGE:
        raise InputError(f"invalid orphan age {orphan_age}: expected at least 1 day "
                         "(younger files may belong to a commit in progress)")
    spark = tables.spark
    now = as_utc(now) if now is not None else datetime.now(UTC)
    wall = datetime.now(UTC)
    results: list[RetentionResult] = []
    targets: list[tuple[str, Level | None]] = [(tables.trades_table, None)]
    targets += [(lv.table, lv) for lv in tables.dag.order()]
    for name, level in targets:
        table = tables.name(name)
        keep_from = cutoff(level, now) if level is not None else None
        expired: list[tuple[date, int]] = []
        if level is not None and keep_from is not None:
            expired = _expired_partitions(spark, table, level, keep_from)
        rows = sum(n for _, n in expired)
        if dry_run:
            snapshots = tuple(_expirable(tables, table, wall - snapshot_age, retain_last,
                                         pending_delete=rows > 0))
            files = 0
        else:
            if rows and keep_from is not None and level is not None:
                before = state.current_snapshot(spark, table)
                carried = state.position(spark, table, tables.parent_of(level))
                _delete_before(spark, table, keep_from, carried, before)
                _advance_positions(tables, table, before)
            snapshots, files = _expire(tables, name, wall - snapshot_age, retain_last)
        orphans = _orphans(tables, name, wall - orphan_age, dry_run=dry_run)
        result = RetentionResult(
            table=name, timeframe=level.name if level else None,
            dry_run=dry_run, cutoff=keep_from, partitions=tuple(p for p, _ in expired),
            rows=rows, snapshots=snapshots, files_deleted=files, orphan_files=orphans,
        )
        if progress is not None:
            progress(result.describe())
        results.append(result)
    return results


def _delete_before(
    spark: SparkSession, table: str, keep_from: date, position: int | None, base: int | None
) -> None:
    """Record the new horizon, then drop every partition before `keep_from` (metadata-only).

    The delete commit carries the level's position forward (it removes only windows no run
    may write again), so the snapshot that carried it before can expire.
    """
    from rollup.storage.iceberg import with_commit_properties

    previous = retained_from(spark, table)
    mark = max(keep_from, previous) if previous else keep_from
    spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ('{RETAINED_FROM}'='{mark.isoformat()}')")
    # `table` is built from validated identifiers and the date is a `datetime.date` we computed.
    statement = f"DELETE FROM {table} WHERE window_date < DATE '{keep_from.isoformat()}'"  # noqa: S608

    def delete() -> None:
        spark.sql(statement)

    if position is None:
        delete()
    else:
        carried = {state.POSITION: str(int(position)),
                   state.BASE: "none" if base is None else str(int(base))}
        with_commit_properties(spark, carried, delete)
