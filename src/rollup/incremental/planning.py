"""What a level run will do, decided before anything is written: `LevelPlan`, `plan_level`.

A plan names the parent table and the snapshot it is read at, the level's own snapshot and
position, the kind of run (incremental, full or nothing to do), the touched windows as merged
UTC ranges (and the partitions of an overwrite level), and why. Planning reads table metadata
and the changed rows only: it writes no rows, no table property and no commit.
`rollup.incremental.runner.execute_plan` carries a plan out; `rollup run --dry-run` prints the
plans.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

import attrs

from rollup.incremental import retention
from rollup.incremental.changes import (
    Handoff,
    ParentDelta,
    Touched,
    parent_delta,
    touched_from_handoff,
    touched_windows,
)
from rollup.specs.times import TimeRange, iso, merge_intervals
from rollup.storage import state
from rollup.storage.iceberg import Table, one_read
from rollup.storage.tables import Tables
from rollup.timeframes import Level, Timeframe
from rollup.transforms.bars import Rollup, dates_of, merge_ranges, partition_span

SHOWN_RANGES = 5
"""Ranges listed by `LevelPlan.describe` (the rest are counted)."""

JSON_RANGES = 1000
"""Ranges listed by `LevelPlan.as_json` (`range_count` has them all)."""


def partitions_of(starts: Sequence[datetime], level: Level) -> tuple[date, ...]:
    """First days of the level's partitions (days or months of window_date) holding the
    windows starting at `starts`."""
    return tuple(sorted({retention.partition_start(d, level.partitioning)
                         for d in dates_of(starts, level.timeframe)}))


def partitions_in(ranges: Sequence[TimeRange], level: Level) -> tuple[date, ...]:
    """First days of the level's partitions holding windows that overlap the UTC `ranges`."""
    days: set[date] = set()
    tf = level.timeframe
    if tf.is_calendar:
        return tuple(sorted({retention.partition_start(w.date, level.partitioning)
                             for lo, hi in ranges for w in tf.windows(lo, hi)}))
    for lo, hi in ranges:
        day = lo.astimezone(UTC).date()
        while datetime(day.year, day.month, day.day, tzinfo=UTC) < hi:
            days.add(retention.partition_start(day, level.partitioning))
            day += timedelta(days=1)
    return tuple(sorted(days))


def window_count(lo: datetime, hi: datetime, tf: Timeframe) -> int:
    """How many windows of `tf` start in [lo, hi) (both on the grid)."""
    if tf.is_calendar:
        return sum(1 for w in tf.windows(lo, hi) if w.start >= lo)
    return (hi - lo) // tf.duration


def _span(lo: datetime, hi: datetime) -> str:
    return f"{iso(lo)}..{iso(hi)}"


@attrs.frozen
class LevelPlan:
    """What one run of a level will do, decided before anything is written.

    The parent (`parent_table`) is read at `parent_snapshot` and the level's own table at
    `level_snapshot`; `touched` holds the keys of the windows to recompute, `windows` the same
    windows as merged UTC ranges, `partitions` the partitions an overwrite level replaces.
    """

    level: Level
    status: str  # 'no-input', 'up-to-date', 'nothing-touched' or 'recompute'
    parent_table: str
    parent_snapshot: int | None = None
    level_snapshot: int | None = None
    position: int | None = None
    touched: Touched = attrs.field(factory=lambda: Touched(False))
    windows: tuple[TimeRange, ...] = ()
    """The touched windows as merged UTC ranges (empty for a full recompute)."""
    window_count: int = 0
    partitions: tuple[date, ...] = ()
    horizon: datetime | None = None
    reason: str = ""
    new_files: tuple[str, ...] | None = ()
    """Source files to validate first (None: the whole source)."""
    after: str | None = None
    """Set only by `plan_cascade`: the level below, pending in the same cascade, whose writes
    this plan includes as predicted windows (an upper bound). Such a plan is shown, never
    executed: a real run plans each level after the one below has committed."""

    @property
    def full(self) -> bool:
        return self.touched.full

    @property
    def kind(self) -> str:
        """'incremental', 'full' or 'nothing' (to do)."""
        if self.status != "recompute":
            return "nothing"
        return "full" if self.full else "incremental"

    def as_json(self) -> dict[str, object]:
        return {
            "level": self.level.name, "kind": self.kind, "status": self.status,
            "parent_table": self.parent_table, "parent_snapshot": self.parent_snapshot,
            "level_snapshot": self.level_snapshot, "position": self.position,
            "full": self.full, "reason": self.reason, "after": self.after,
            "windows": self.window_count,
            "ranges": [[iso(lo), iso(hi)] for lo, hi in self.windows[:JSON_RANGES]],
            "range_count": len(self.windows),
            "partitions": [p.isoformat() for p in self.partitions],
            "skipped": self.touched.skipped,
            "horizon": iso(self.horizon) if self.horizon else None,
        }

    def _ranges(self) -> str:
        shown = ", ".join(_span(lo, hi) for lo, hi in self.windows[:SHOWN_RANGES])
        more = len(self.windows) - SHOWN_RANGES
        return shown + (f" and {more} more" if more > 0 else "")

    def describe(self) -> str:
        name, parent = self.level.name, self.parent_table.rsplit(".", 1)[-1].strip("`")
        if self.status == "no-input":
            return f"{name}: nothing to do ({parent} is empty)"
        if self.status == "up-to-date":
            return f"{name}: nothing to do (up to date with {parent} snapshot {self.position})"
        if self.status == "nothing-touched":
            return (f"{name}: nothing to do ({parent} changed after snapshot {self.position} "
                    f"without touching any window; {self.reason})")
        source = (f"after {self.after} is written (reads {parent}, now at snapshot "
                  f"{self.parent_snapshot})" if self.after
                  else f"from {parent} snapshot {self.parent_snapshot}")
        why = f" ({self.reason})" if self.reason else ""
        if self.full:
            scope = "all windows" + (f" from {iso(self.horizon)}" if self.horizon else "")
            return f"{name}: full, recompute {scope} {source}{why}"
        since = "" if self.after else f", position {self.position}"
        count = ("up to " if self.after else "") + f"{self.window_count} windows"
        text = (f"{name}: incremental {source}{since}{why}: {count} in "
                f"{len(self.windows)} range(s) {self._ranges()}")
        if self.partitions:
            days = ", ".join(p.isoformat() for p in self.partitions[:SHOWN_RANGES])
            more = len(self.partitions) - SHOWN_RANGES
            text += (f"; replaces {len(self.partitions)} partition(s) {days}"
                     + (f" and {more} more" if more > 0 else ""))
        return text


def _parent_id(tables: Tables, table: str) -> Callable[[int], int | None]:
    def parent_of(snapshot_id: int) -> int | None:
        snap = Table(tables.spark, table).snapshot(snapshot_id)
        return None if snap is None else snap.parent_id

    return parent_of


def plan_level(
    tables: Tables, level: Level | str, *, full: bool = False, below: Handoff | None = None,
) -> LevelPlan:
    """Decide what a run of `level` must recompute from its parent's current snapshot.

    Reads metadata and the changed rows; writes nothing. `below`, what the run of the parent
    level just committed, replaces reading that commit's rows when it is the only change
    since the level's position (`Handoff.covers`); otherwise it is ignored.
    """
    lv = tables.dag.level(level) if isinstance(level, str) else level
    with one_read():  # one consistent read of each table's metadata
        return _plan_level(tables, lv, full=full, below=below)


def _plan_level(tables: Tables, lv: Level, *, full: bool, below: Handoff | None) -> LevelPlan:
    spark = tables.spark
    target = tables.bars(lv)
    parent = tables.parent_of(lv)
    parent_snapshot = state.current_snapshot(spark, parent)
    if parent_snapshot is None:
        return LevelPlan(lv, "no-input", parent)
    level_snapshot = state.current_snapshot(spark, target)
    position = state.position(spark, target, parent)
    base = LevelPlan(lv, "up-to-date", parent, parent_snapshot, level_snapshot, position)
    if position == parent_snapshot and not full:
        return base
    horizon = retention.horizon(tables, lv)
    if (not full and below is not None and lv.parent is not None
            and below.covers(parent, position, parent_snapshot, _parent_id(tables, parent))):
        delta = ParentDelta(False, f"the {len(below.keys)} bars {below.level} just wrote")
        touched = touched_from_handoff(tables, lv, below, horizon)
    else:
        delta = (ParentDelta(True, "--full") if full
                 else parent_delta(tables, lv, position, parent_snapshot, horizon))
        touched = touched_windows(tables, lv, delta, parent_snapshot=parent_snapshot,
                                  level_snapshot=level_snapshot, horizon=horizon,
                                  position=position)
    new_files = None if full or position is None else delta.new_files
    if touched.empty:
        return attrs.evolve(base, status="nothing-touched", touched=touched, horizon=horizon,
                            reason=delta.reason, new_files=new_files)
    partitions = () if touched.full or lv.write_mode == "merge" else partitions_of(
        touched.starts, lv)
    windows = () if touched.full else tuple(merge_ranges(touched.starts, lv.timeframe))
    return attrs.evolve(base, status="recompute", touched=touched, windows=windows,
                        window_count=len(touched.starts), partitions=partitions,
                        horizon=horizon, reason=delta.reason, new_files=new_files)


def after_level_below(plan: LevelPlan, below: LevelPlan, horizon: datetime | None) -> LevelPlan:
    """`plan` widened by the windows that the pending run of `below` (its parent level, in
    the same cascade) will rewrite: an upper bound, for showing only (pure).

    The windows of `below` (or its whole partitions, for an overwrite level) are widened to
    this level's windows and clipped to its `horizon`; a full run below, or no position of
    this level, makes this one full.
    """
    level = plan.level
    if below.kind == "nothing":
        return plan
    reason = f"{plan.reason}; " if plan.kind != "nothing" and plan.reason else ""
    reason += f"windows {below.level.name} rewrites"
    if plan.full or below.full or plan.position is None:
        if plan.position is None and not plan.full:
            reason = "no position"
        return attrs.evolve(plan, status="recompute", touched=Touched(True), windows=(),
                            window_count=0, partitions=(), horizon=horizon, reason=reason,
                            after=below.level.name)
    spans = (below.windows if below.level.write_mode == "merge"
             else tuple(partition_span(p, below.level.partitioning, below.level.timeframe)
                        for p in below.partitions))
    widened = merge_intervals([*Rollup(level).covering(spans), *plan.windows])
    windows = tuple(retention.clip_ranges(widened, horizon))
    if not windows:
        return plan
    return attrs.evolve(
        plan, status="recompute", windows=windows,
        window_count=sum(window_count(lo, hi, level.timeframe) for lo, hi in windows),
        partitions=() if level.write_mode == "merge" else partitions_in(windows, level),
        horizon=horizon, reason=reason, after=below.level.name)


def plan_cascade(
    tables: Tables, *, up_to: str | Timeframe | None = None, full: bool = False
) -> list[LevelPlan]:
    """What a cascade run would do, level by level in DAG order; nothing is written.

    Each level is planned from its parent's current snapshot; a level whose parent level is
    pending in the same cascade also shows the windows that run will rewrite (`after`).
    """
    order = tables.dag.up_to(up_to) if up_to is not None else tables.dag.order()
    plans: dict[str, LevelPlan] = {}
    for lv in order:
        plan = plan_level(tables, lv, full=full)
        below = plans.get(lv.parent_name)
        if below is not None and below.kind != "nothing":
            plan = after_level_below(plan, below, retention.horizon(tables, lv))
        plans[lv.name] = plan
    return list(plans.values())
