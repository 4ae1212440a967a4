"""Where each level stands: its position (the parent snapshot its bars reflect) and snapshots.

A level's position is written **in the same commit as its bars**: every commit a run makes
carries, in its Iceberg snapshot summary,

- `rollup.parent-snapshot-id`: the parent snapshot the run read (pinned), and
- `rollup.base-snapshot-id`: the snapshot of the level's own table the run planned from.

The claim of such a commit S is: "the bars at S equal a rebuild from the parent at P". It holds
when nothing but compaction (`replace`) happened to the level's table between the base and S.
When another writer committed in between (two overlapping runs), S only reflects the earlier
of its own P and the position of the state it was applied to, so a stale run can make the
position go back (more work next time) but never past what was written.

A run that finds nothing to change commits nothing; it records `rollup.verified` =
"<level snapshot>:<parent snapshot>" as a table property, which counts only while the level's
table is still at that snapshot. Tables written before positions moved into summaries keep
their `rollup.parent-snapshot-id` table property, used when no summary says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from rollup.storage.iceberg import Snapshot, Table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

POSITION = "rollup.parent-snapshot-id"
BASE = "rollup.base-snapshot-id"
RUN_ID = "rollup.run-id"
VERIFIED = "rollup.verified"
LAST_RUN_ID = "rollup.last-run-id"
LAST_RUN_AT = "rollup.last-run-at"

_NONE = "none"
_MAX_WALK = 10_000

__all__ = ["Snapshot", "POSITION", "BASE", "RUN_ID", "VERIFIED", "position", "snapshots"]


def snapshots(spark: SparkSession, table: str) -> dict[int, Snapshot]:
    """Every snapshot in the table's metadata, by id (no Spark job)."""
    return Table(spark, table).snapshots()


def current_snapshot(spark: SparkSession, table: str) -> int | None:
    """Id of the table's current snapshot, or None for a table never written."""
    return Table(spark, table).current_snapshot_id()


def table_properties(spark: SparkSession, table: str) -> dict[str, str]:
    return Table(spark, table).properties()


def lineage(
    snaps: Mapping[int, Snapshot], snapshot_id: int | None, stop: int | None = None,
    *, partial: bool = False,
) -> list[int] | None:
    """`snapshot_id` and its ancestors, newest first, down to `stop` (included) or the first
    snapshot; None if the history has expired before reaching either (with `partial`: the
    ancestors still known)."""
    out: list[int] = []
    cursor = snapshot_id
    while cursor is not None:
        if cursor == stop:
            out.append(cursor)
            return out
        snap = snaps.get(cursor)
        if snap is None:
            return out if partial and out else None
        out.append(cursor)
        cursor = snap.parent_id
        if len(out) > _MAX_WALK:
            return None
    return out


def ancestry(snaps: Mapping[int, Snapshot]) -> Callable[[int, int], bool | None]:
    """`is_ancestor(a, b)`: a is b or one of b's ancestors (None when the history is gone)."""
    cache: dict[int, set[int] | None] = {}

    def is_ancestor(a: int, b: int) -> bool | None:
        if b not in cache:
            chain = lineage(snaps, b)
            cache[b] = None if chain is None else set(chain)
        known = cache[b]
        if known is None:
            return True if a == b else None
        return a in known

    return is_ancestor


def earlier(a: int | None, b: int | None,
            is_ancestor: Callable[[int, int], bool | None]) -> int | None:
    """The older of two parent snapshots on one lineage; None when either is unknown or they
    are on different lineages (then only a full recompute is safe)."""
    if a is None or b is None:
        return None
    if is_ancestor(a, b):
        return a
    if is_ancestor(b, a):
        return b
    return None


def _claim_valid(snaps: Mapping[int, Snapshot], snap: Snapshot) -> bool:
    """Whether only compactions happened between the snapshot a run planned from and its commit."""
    raw = snap.summary.get(BASE)
    if raw is None:
        return False
    base = None if raw == _NONE else int(raw)
    cursor = snap.parent_id
    for _ in range(_MAX_WALK):
        if cursor == base:
            return True
        prior = snaps.get(cursor) if cursor is not None else None
        if prior is None or prior.operation != "replace":
            return False
        cursor = prior.parent_id
    return False


def resolve_position(
    snaps: Mapping[int, Snapshot],
    current: int | None,
    verified: tuple[int, int] | None,
    legacy: int | None,
    is_ancestor: Callable[[int, int], bool | None],
) -> int | None:
    """The parent snapshot that the level's bars at `current` reflect (pure; see module doc).

    Walks back from `current`: snapshots without rollup's summary (compaction, retention,
    backfill) leave the position as it was; a commit whose claim holds ends the walk; a commit
    that raced with another writer counts with the earlier of its position and the older state.
    """
    found: list[int | None] = []
    cursor = current
    for _ in range(_MAX_WALK):
        if verified is not None and cursor is not None and cursor == verified[0]:
            found.append(verified[1])
            break
        snap = snaps.get(cursor) if cursor is not None else None
        if snap is None:  # no snapshot, or history expired: only a legacy position is left
            found.append(legacy)
            break
        value = snap.summary.get(POSITION)
        if value is None:
            cursor = snap.parent_id
            continue
        found.append(int(value))
        if _claim_valid(snaps, snap):
            break
        cursor = snap.parent_id
    else:
        return None
    result = found[0]
    for other in found[1:]:
        result = earlier(result, other, is_ancestor)
    return result


def _verified(props: Mapping[str, str]) -> tuple[int, int] | None:
    raw = props.get(VERIFIED)
    if not raw or ":" not in raw:
        return None
    level_snap, parent_snap = raw.split(":", 1)
    return int(level_snap), int(parent_snap)


def position(spark: SparkSession, table: str, parent: str) -> int | None:
    """The snapshot of `parent` that the bars now in `table` reflect (None: recompute all)."""
    own = Table(spark, table)
    props = own.properties()
    legacy = props.get(POSITION)
    snaps = own.history()
    parent_check: Callable[[int, int], bool | None] | None = None

    def is_ancestor(a: int, b: int) -> bool | None:
        nonlocal parent_check
        if parent_check is None:
            parent_check = ancestry(Table(spark, parent).history())
        return parent_check(a, b)

    return resolve_position(snaps, own.current_snapshot_id(), _verified(props),
                            int(legacy) if legacy else None, is_ancestor)


def position_snapshot(spark: SparkSession, table: str) -> int | None:
    """The newest snapshot of `table` whose summary carries a position (keep it on expiry)."""
    own = Table(spark, table)
    snaps = own.history()
    cursor = own.current_snapshot_id()
    while cursor is not None:
        snap = snaps.get(cursor)
        if snap is None:
            return None
        if POSITION in snap.summary:
            return cursor
        cursor = snap.parent_id
    return None


def commit_properties(
    parent_snapshot: int, base_snapshot: int | None, run_id: str
) -> dict[str, str]:
    """The snapshot summary a level run's commit carries (see the module doc)."""
    return {POSITION: str(int(parent_snapshot)),
            BASE: _NONE if base_snapshot is None else str(int(base_snapshot)),
            RUN_ID: run_id}


def _set_properties(spark: SparkSession, table: str, values: Mapping[str, str]) -> None:
    # Values are ids and times rollup generated, never user text; checked anyway.
    for value in values.values():
        if "'" in value or "\\" in value:
            raise ValueError(f"unsafe property value {value!r}")
    props = ", ".join(f"'{k}'='{v}'" for k, v in values.items())
    spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ({props})")


def record_verified(
    spark: SparkSession, table: str, level_snapshot: int, parent_snapshot: int,
    run_id: str, run_at: str,
) -> None:
    """Record that the bars at `level_snapshot` already equal a rebuild from `parent_snapshot`
    (a run that found nothing to change); it counts while the table stays at that snapshot."""
    _set_properties(spark, table, {
        VERIFIED: f"{int(level_snapshot)}:{int(parent_snapshot)}",
        LAST_RUN_ID: run_id, LAST_RUN_AT: run_at,
    })


def last_run(spark: SparkSession, table: str) -> tuple[str | None, str | None]:
    """(run id, ISO time) of the last run that wrote or verified `table`."""
    own = Table(spark, table)
    props = own.properties()
    snaps = own.history()
    cursor = own.current_snapshot_id()
    while cursor is not None and (snap := snaps.get(cursor)) is not None:
        cursor = snap.parent_id
        if RUN_ID in snap.summary:
            at = snap.committed_at.isoformat()
            if props.get(LAST_RUN_AT, "") > at:
                return props.get(LAST_RUN_ID), props.get(LAST_RUN_AT)
            return snap.summary[RUN_ID], at
    return props.get(LAST_RUN_ID), props.get(LAST_RUN_AT)


def read_at(spark: SparkSession, table: str, snapshot_id: int | None) -> DataFrame:
    """The rows of `table` as of `snapshot_id` (the current rows when None)."""
    if snapshot_id is None:
        return spark.table(table)
    return spark.read.option("snapshot-id", str(int(snapshot_id))).table(table)


def read_files(spark: SparkSession, paths: list[str]) -> DataFrame:
    """The raw rows of Iceberg data files (deleted rows included: a superset is fine here)."""
    return spark.read.parquet(*paths)
