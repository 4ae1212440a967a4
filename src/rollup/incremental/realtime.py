"""Real-time reads: a level's stored bars merged with bars computed on the fly from the parent
rows that no run has applied yet. Nothing here writes.

The levels are walked from the root to the level asked for. For each level L:

- `plan_level(L)` names the parent snapshot, L's own snapshot and the windows of L touched by
  parent changes since L's position (what the next run of L would recompute);
- the windows of L covering every parent window recomputed on the fly one level below (the
  parent's *provisional* windows, bars that vanished included) are touched too;
- the touched windows at or after L's retention horizon are recomputed from the parent rows
  as this walk sees them (the trades at the plan's snapshot for the root; the parent's stored
  bars with its provisional windows replaced, above), and flagged `provisional`; every other
  stored bar is kept as it is. A level without a position (never run), or whose plan is a full
  recompute, is computed whole from that parent (windows before the horizon keep their stored
  values, as in runs).

Exactness: a run leaves L's bars at its snapshot equal to the rollup of the parent at L's
position (docs/incremental.md). Between that parent and the parent this walk sees, rows differ
only in the windows the plan touched and in the parent's provisional windows, so the bars of
every other window are unchanged and the touched ones are recomputed from exact input: by
induction from the trades up, the result equals a full rebuild at the trades snapshot of the
root plan. The walk checks that every level was planned against the parent snapshot the level
below read (and that no table moved while planning); another run committing in between makes
it plan again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import attrs
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rollup.errors import ConcurrentRunError
from rollup.incremental import retention
from rollup.incremental.changes import LOCAL_KEYS, Touched, collect_keys, touched_keys
from rollup.incremental.planning import LevelPlan, plan_level
from rollup.specs.bar import BAR_COLUMNS, KEY_COLUMNS, LINEAGE_COLUMNS
from rollup.specs.times import TimeRange, from_micros, to_micros
from rollup.storage import state
from rollup.storage.tables import Tables
from rollup.timeframes import Level, Timeframe
from rollup.transforms.bars import Rollup, bucket

__all__ = ["PROVISIONAL", "RealtimeLevel", "realtime_bars", "realtime_levels"]

PROVISIONAL = "provisional"
"""The boolean column of a real-time read: True for a bar computed on the fly."""

Key = tuple[str, str, datetime]
"""(exchange, symbol, window_start UTC)"""

ATTEMPTS = 3
"""Walks made before giving up when runs keep committing while the walk plans."""

_COLUMNS = tuple(c.name for c in BAR_COLUMNS)
_LINEAGE_TYPES = {c.name: c.type for c in BAR_COLUMNS if c.name in LINEAGE_COLUMNS}


@attrs.frozen
class RealtimeLevel:
    """One level of a real-time read: its bars (BAR_COLUMNS and `provisional`), the windows
    recomputed on the fly (`provisional`: full, or keys with their starts) and the plan."""

    level: Level
    bars: DataFrame = attrs.field(eq=False, repr=False)
    provisional: Touched = attrs.field(repr=False)
    plan: LevelPlan = attrs.field(repr=False)
    horizon: datetime | None = None
    keys: frozenset[Key] | None = attrs.field(default=None, repr=False)
    """The provisional windows as a set, when few (None: full, or only in Spark)."""

    def describe(self) -> str:
        if self.provisional.full:
            scope = "every window" + (f" from {self.horizon.isoformat()}" if self.horizon
                                      else "")
        else:
            scope = f"{len(self.provisional.starts)} window start(s)"
        return f"{self.level.name}: {self.plan.status}, provisional {scope}"


def realtime_bars(tables: Tables, level: Level | str | Timeframe) -> DataFrame:
    """A level's stored bars merged with bars computed on the fly from the parent rows newer
    than its position (lazy; writes nothing), with the boolean column `provisional`.

    Raises:
        ConcurrentRunError: runs kept committing while the levels were planned.
    """
    return realtime_levels(tables, level)[-1].bars


def realtime_levels(
    tables: Tables, level: Level | str | Timeframe, *, attempts: int = ATTEMPTS
) -> list[RealtimeLevel]:
    """Every level from the root to `level`, each read in real time (see the module).

    Raises:
        MissingTableError: a level of the chain has no table.
        ConcurrentRunError: on every attempt a table committed while the walk planned.
    """
    name = level.name if isinstance(level, Level) else level
    chain = tables.dag.ancestors(name)
    for lv in chain:
        tables.require(lv.table)
    for _ in range(attempts):
        steps = _walk(tables, chain)
        if steps is not None:
            return steps
    raise ConcurrentRunError(
        f"real-time read of {chain[-1].name}: runs kept committing while its levels were "
        f"planned ({attempts} attempts); read again")


def _walk(tables: Tables, chain: Sequence[Level]) -> list[RealtimeLevel] | None:
    """One walk up `chain`, or None when a table moved while it planned."""
    steps: list[RealtimeLevel] = []
    for lv in chain:
        plan = plan_level(tables, lv)
        if plan.status == "no-input":  # such a plan does not read the level's own snapshot
            plan = attrs.evolve(plan, level_snapshot=state.current_snapshot(
                tables.spark, tables.bars(lv)))
        below = steps[-1] if steps else None
        if below is not None and plan.parent_snapshot != below.plan.level_snapshot:
            return None  # the level below committed after it was planned
        steps.append(_level(tables, plan, below, materialize=lv != chain[-1]))
    if not _unmoved(tables, steps):
        return None
    return steps


def _unmoved(tables: Tables, steps: Sequence[RealtimeLevel]) -> bool:
    """No table of the walk committed since it was planned (metadata reads only)."""
    spark = tables.spark
    root = steps[0].plan
    if state.current_snapshot(spark, root.parent_table) != root.parent_snapshot:
        return False
    return all(state.current_snapshot(spark, tables.bars(s.level)) == s.plan.level_snapshot
               for s in steps)


def _level(tables: Tables, plan: LevelPlan, below: RealtimeLevel | None, *,
           materialize: bool) -> RealtimeLevel:
    """The level's real-time bars; computed bars are checkpointed when `materialize` (a level
    below the one asked for: its bars feed the next level, with a short plan)."""
    lv = plan.level
    horizon = (plan.horizon if plan.status in ("recompute", "nothing-touched")
               else retention.horizon(tables, lv))
    stored = _stored(tables, plan)
    rollup = Rollup(lv)
    if (plan.status == "no-input" or plan.full or plan.position is None
            or (below is not None and below.provisional.full)):
        computed = rollup.plan(_parent_rows(tables, plan, below, None, horizon))
        kept = stored.where(F.lit(False))
        if horizon is not None:  # windows before the horizon keep their stored values
            computed = computed.where(F.col("window_start") >= F.lit(horizon))
            kept = stored.where(F.col("window_start") < F.lit(horizon))
        if materialize:
            computed = computed.localCheckpoint()
        return RealtimeLevel(lv, _merge(kept, computed), Touched(True), plan, horizon)
    touched, keys_set = _touched(tables, plan, below, horizon)
    if touched.empty:
        return RealtimeLevel(lv, _merge(stored, None), touched, plan, horizon, keys_set)
    keys = touched.keys
    assert keys is not None
    small = len(touched.starts) <= LOCAL_KEYS
    parent = _parent_rows(tables, plan, below, rollup.window_ranges(touched.starts), horizon)
    computed = rollup.plan_windows(parent, keys, touched.starts, broadcast=small)
    if materialize:
        computed = computed.localCheckpoint()
    kept = stored.join(F.broadcast(keys) if small else keys, list(KEY_COLUMNS), "left_anti")
    return RealtimeLevel(lv, _merge(kept, computed), touched, plan, horizon, keys_set)


def _touched(tables: Tables, plan: LevelPlan, below: RealtimeLevel | None,
             horizon: datetime | None) -> tuple[Touched, frozenset[Key] | None]:
    """The windows the plan touches and those covering the provisional windows below, at or
    after `horizon`; also as a set when few (found on the driver, without a Spark job)."""
    tf = plan.level.timeframe
    local: set[Key] = set()
    frames: list[DataFrame] = []
    if plan.status == "recompute" and plan.touched.keys is not None:
        keys = plan.touched.keys
        rows = keys.select("exchange", "symbol", F.unix_micros("window_start").alias("micros")
                           ).limit(LOCAL_KEYS + 1).collect()  # usually a local relation
        if len(rows) > LOCAL_KEYS:
            frames.append(keys)
        else:
            local.update((r.exchange, r.symbol, from_micros(r.micros)) for r in rows)
    if below is not None and below.provisional.starts:
        if below.keys is not None:
            local.update((e, s, tf.floor(start)) for e, s, start in below.keys)
        else:
            assert below.provisional.keys is not None
            frames.append(covering_keys(below.provisional.keys, tf))
    if frames:  # many keys: found and kept in Spark
        if local:
            frames.append(_keys_frame(tables, local))
        union = frames[0]
        for part in frames[1:]:
            union = union.unionByName(part)
        return collect_keys(union.distinct(), horizon), None
    kept = frozenset(k for k in local if horizon is None or k[2] >= horizon)
    if not kept:
        return Touched(False), kept
    skipped = len(local) - len(kept)
    return Touched(False, _keys_frame(tables, kept), tuple(sorted({k[2] for k in kept})),
                   skipped), kept


def _keys_frame(tables: Tables, keys: Iterable[Key]) -> DataFrame:
    """Window keys as a small DataFrame (exchange, symbol, window_start)."""
    frame = touched_keys(tables.spark, [(e, s, to_micros(start)) for e, s, start in sorted(keys)]
                         ).keys
    assert frame is not None
    return frame


def covering_keys(keys: DataFrame, tf: Timeframe) -> DataFrame:
    """The windows of `tf` (exchange, symbol, window_start) holding the windows `keys`."""
    moved = keys.select("exchange", "symbol", F.col("window_start").alias("_child_start"))
    return bucket(moved, "_child_start", tf).select(*KEY_COLUMNS)


def _stored(tables: Tables, plan: LevelPlan) -> DataFrame:
    """The level's bars at the snapshot its plan read (none for a table never written)."""
    rows = state.read_at(tables.spark, tables.bars(plan.level), plan.level_snapshot)
    if plan.level_snapshot is None:
        rows = rows.where(F.lit(False))
    return rows.select(*_COLUMNS)


def _parent_rows(
    tables: Tables, plan: LevelPlan, below: RealtimeLevel | None,
    ranges: Sequence[TimeRange] | None, horizon: datetime | None,
) -> DataFrame:
    """The parent rows of the level as this walk sees them: the trades at the plan's snapshot
    (only in `ranges` when given), or the real-time bars of the level below."""
    lv = plan.level
    if below is None:
        raw = state.read_at(tables.spark, plan.parent_table, plan.parent_snapshot)
        rows = tables.canonical_trades(raw, ranges=ranges, after=horizon)
    else:
        rows = below.bars.drop(PROVISIONAL, *LINEAGE_COLUMNS)
    return retention.after_horizon(rows, lv, horizon)


def _merge(kept: DataFrame, computed: DataFrame | None) -> DataFrame:
    """Stored bars (not provisional) and computed ones (provisional, no lineage), in the
    columns of a bar table plus `provisional`."""
    out = kept.withColumn(PROVISIONAL, F.lit(False))
    if computed is None:
        return out
    lineage = [F.lit(None).cast(kind).alias(name) for name, kind in _LINEAGE_TYPES.items()]
    fresh = computed.select("*", *lineage, F.lit(True).alias(PROVISIONAL))
    return out.unionByName(fresh.select(*_COLUMNS, PROVISIONAL))
