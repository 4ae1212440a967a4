"""What changed in a level's parent between two snapshots, and which of the level's windows
that touches.

Every kind of snapshot is handled:

- `append`, `overwrite`, `delete`: the rows of added and of removed data files give the
  touched windows; a delete file (position or equality deletes) touches every window of its
  partition, whose time span comes from the partition value.
- `replace` (rewrite_data_files, rewrite_position_delete_files, rewrite_manifests) changes
  no content and is skipped. Files are listed per snapshot from the manifests that snapshot
  wrote, so rows appended after the position and compacted since are still found.
- a position that is no longer an ancestor of the current snapshot (rollback, branch
  replace, cherry-pick): the changes on both sides of their common ancestor count, the
  undone ones included; with no common ancestor, or an expired history, everything is
  recomputed.

The touched windows are a DataFrame of keys (exchange, symbol, window_start), never an
expression that grows with their number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import attrs
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from rollup.specs.bar import TRADE_KEY
from rollup.specs.times import TimeRange, from_micros, iso, to_micros
from rollup.storage import state
from rollup.storage.iceberg import POSITION_DELETES, FileInfo, Table
from rollup.storage.tables import Tables
from rollup.timeframes import Level
from rollup.transforms.bars import bucket, coarsen, in_ranges

LOCAL_KEYS = 100_000
"""Up to this many touched keys are collected to the driver in the job that finds them; more
stay in Spark (checkpointed)."""

MAX_SPANS = 64
"""Partition spans of delete files are merged down to this many (a superset)."""


@attrs.frozen
class ParentDelta:
    """The parent's changes between a level's position and the parent snapshot it will read."""

    full: bool
    reason: str = ""
    """Why: the reason for a full recompute, else the kinds of snapshots read."""
    row_files: tuple[str, ...] = ()
    """Data files whose rows were added, removed or restored."""
    position_deletes: tuple[str, ...] = ()
    """Position delete files (Parquet): the rows they point at are touched."""
    spans: tuple[TimeRange, ...] = ()
    """Time spans (of the parent's time column) of partitions touched by other delete files."""
    new_files: tuple[str, ...] = ()
    """Data files added on the current lineage (source rows to validate and quarantine)."""
    snapshots: int = 0

    @property
    def empty(self) -> bool:
        return not self.full and not self.row_files and not self.spans \
            and not self.position_deletes


def _time_column(tables: Tables, level: Level) -> str | None:
    if level.parent is not None:
        return "window_date"
    if tables.source is not None:
        return tables.source.column("ts")
    return "ts"


LABEL_SLACK = timedelta(days=2)
"""How far a calendar window's start lies from its window_date (at most a day and a half)."""


def _rows_of_partition(span: TimeRange, level: Level) -> TimeRange:
    """Where the parent rows of a window_date partition `span` start: the span itself for
    a fixed parent, widened by LABEL_SLACK for a calendar parent (a session labelled D
    starts on D - 1; a Tokyo day labelled D starts at 15:00 UTC on D - 1)."""
    if level.parent is None or not level.parent.is_calendar:
        return span
    return span[0] - LABEL_SLACK, span[1] + LABEL_SLACK


def parent_delta(
    tables: Tables, level: Level, since: int | None, until: int,
    horizon: datetime | None = None,
) -> ParentDelta:
    """The files and partitions that changed in the level's parent from `since` to `until`.

    Files and partitions wholly before `horizon` are left out (nothing there is recomputed).
    """
    if since is None:
        return ParentDelta(True, "no position")
    if since == until:
        return ParentDelta(False)
    meta = Table(tables.spark, tables.parent_of(level), _time_column(tables, level))
    snaps = meta.history()
    ahead = state.lineage(snaps, until, stop=since, partial=True)
    if ahead is None:
        return ParentDelta(True, f"snapshot {until} is not in the table's history")
    if ahead[-1] == since:
        new, undone = ahead[:-1], []
    else:  # not an ancestor: rolled back, replaced or cherry-picked; or expired
        behind = state.lineage(snaps, since, partial=True)
        if behind is None:
            return ParentDelta(True, f"position {since} is no longer in the table's history")
        on_current = set(ahead)
        common = next((s for s in behind if s in on_current), None)
        if common is None:
            return ParentDelta(True, f"position {since} shares no known history with {until}")
        new, undone = ahead[: ahead.index(common)], behind[: behind.index(common)]

    def relevant(info: FileInfo) -> bool:
        return (horizon is None or info.span is None
                or _rows_of_partition(info.span, level)[1] > horizon)

    # Added rows before the horizon are still read (they are reported as skipped); removed
    # files and delete files wholly before it (retention drops) are not.

    rows: set[str] = set()
    positions: set[str] = set()
    spans: list[TimeRange] = []
    added: list[str] = []
    kinds = Counter(str(snaps[sid].operation) for sid in new)
    for sid in [*new, *undone]:
        if snaps[sid].operation == "replace":
            continue
        changes = meta.file_changes(sid)
        rows.update(f.path for f in changes.added_data)
        rows.update(f.path for f in changes.removed_data if relevant(f))
        if sid in new:
            added += [f.path for f in changes.added_data]
        for info in (*changes.added_deletes, *changes.removed_deletes):
            if not relevant(info):
                continue
            if info.content == POSITION_DELETES and info.format.upper() == "PARQUET":
                positions.add(info.path)  # the deleted (or restored) rows themselves
                continue
            if info.span is None:
                return ParentDelta(True, f"delete file {info.path} is not in a time partition")
            spans.append(_rows_of_partition(info.span, level))
    parts = [f"{n} {kind}" for kind, n in sorted(kinds.items())]
    if undone:
        parts.append(f"{len(undone)} undone (rollback or replaced branch)")
    return ParentDelta(False, "snapshots since the position: " + ", ".join(parts),
                       tuple(sorted(rows)),
                       tuple(sorted(positions)), tuple(coarsen(spans, MAX_SPANS)),
                       tuple(sorted(set(added))), len(new) + len(undone))


@attrs.frozen
class Touched:
    """Windows of a level to recompute: `full`, or `keys` (exchange, symbol, window_start)
    with their distinct `starts`."""

    full: bool
    keys: DataFrame | None = None
    starts: tuple[datetime, ...] = ()
    skipped: int = 0
    """Touched windows before the retention horizon, left unchanged."""
    skipped_samples: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.full and not self.starts


def _keys(rows: DataFrame, time_col: str, level: Level) -> DataFrame:
    return (bucket(rows.select("exchange", "symbol", time_col), time_col, level.timeframe)
            .select("exchange", "symbol", "window_start"))


def touched_windows(
    tables: Tables, level: Level, delta: ParentDelta, *, parent_snapshot: int,
    level_snapshot: int | None, horizon: datetime | None, position: int | None = None,
) -> Touched:
    """The level's windows that `delta` (the changes since `position`) touches, at or after
    `horizon`.

    With a deduplicated source, every window holding any delivery of a changed trade id is
    touched (the delivery that counts may move), found by a key lookup over the source.
    """
    if delta.full:
        return Touched(True)
    if delta.empty:
        return Touched(False)
    spark = tables.spark
    root = level.parent is None
    source = tables.source if root else None
    time_col = "ts" if root else "window_start"
    parent_raw = state.read_at(spark, tables.parent_of(level), parent_snapshot)
    parts: list[DataFrame] = []
    changed: list[DataFrame] = []  # raw source rows whose trade ids changed (dedupe)
    if delta.row_files:
        rows = state.read_files(spark, list(delta.row_files))
        changed.append(rows)
        if root:
            rows = tables.canonical_trades(rows, dedupe=False)
        parts.append(_keys(rows, time_col, level))
    if delta.position_deletes:
        rows = _position_deleted_rows(spark, delta.position_deletes)
        changed.append(rows)
        if root:
            rows = tables.canonical_trades(rows, dedupe=False)
        parts.append(_keys(rows, time_col, level))
    if delta.spans:
        # Deleted rows are gone from the parent: windows with rows left, and stored bars.
        spans = list(delta.spans)
        now = (tables.canonical_trades(parent_raw, dedupe=False, ranges=spans) if root
               else parent_raw)
        parts.append(_keys(now.where(in_ranges(time_col, spans)), time_col, level))
        tf = level.timeframe
        widened = [(tf.floor(lo), hi) for lo, hi in spans]
        stored = state.read_at(spark, tables.bars(level), level_snapshot)
        parts.append(stored.where(in_ranges("window_start", widened))
                     .select("exchange", "symbol", "window_start"))
        if source is not None and source.dedupe:  # the ids in the spans, before and after
            for raw in (parent_raw, state.read_at(spark, tables.parent_of(level), position)):
                inside = source.time_filter(raw, spans)
                changed.append(raw if inside is None else raw.where(inside))
    if source is not None and source.dedupe and changed:
        # A re-delivered trade may move: every window holding any delivery is touched.
        keys = [source.column(c) for c in (*TRADE_KEY, "ts")]
        of = changed[0].select(*keys)
        for more in changed[1:]:
            of = of.unionByName(more.select(*keys))
        parts.append(_keys(source.deliveries(parent_raw, of), time_col, level))
    keys_df = parts[0]
    for part in parts[1:]:
        keys_df = keys_df.unionByName(part)
    return collect_keys(keys_df.distinct(), horizon)


def _plain_path(column: str) -> Column:
    """A file location without a `file:` scheme, as Iceberg records local paths."""
    return F.regexp_replace(F.col(column), r"^file:(//)?(?=/)", "")


def _position_deleted_rows(spark: SparkSession, delete_files: Sequence[str]) -> DataFrame:
    """The data rows that position delete files point at (read from their data files)."""
    deletes = spark.read.parquet(*delete_files).select(
        _plain_path("file_path").alias("_path"), F.col("pos").alias("_pos"))
    targets = sorted(r._path for r in deletes.select("_path").distinct().collect())
    rows = spark.read.parquet(*targets)
    located = rows.select("*", _plain_path("_metadata.file_path").alias("_path"),
                          F.col("_metadata.row_index").alias("_pos"))
    return located.join(deletes, ["_path", "_pos"], "left_semi").drop("_path", "_pos")


_KEY_SCHEMA = StructType([StructField("exchange", StringType()),
                          StructField("symbol", StringType()), StructField("micros", LongType())])


def touched_keys(spark: SparkSession, keys: Sequence[tuple[str, str, int]],
                 horizon: datetime | None = None) -> Touched:
    """Touched windows from keys (exchange, symbol, window_start micros) held on the driver,
    those before `horizon` counted as skipped (no Spark job: a local relation)."""
    limit = to_micros(horizon) if horizon is not None else None
    skipped = sorted(k for k in keys if limit is not None and k[2] < limit)
    kept = [k for k in keys if limit is None or k[2] >= limit]
    local = spark.createDataFrame(kept, _KEY_SCHEMA)
    frame = local.select("exchange", "symbol", F.timestamp_micros("micros").alias("window_start"))
    samples = tuple(f"{e}/{s}@{iso(from_micros(m))}" for e, s, m in skipped[:10])
    return Touched(False, frame, tuple(from_micros(m) for m in sorted({k[2] for k in kept})),
                   len(skipped), samples)


def collect_keys(keys: DataFrame, horizon: datetime | None = None) -> Touched:
    """Materialise touched keys (on the driver when few, checkpointed in Spark when many);
    keys before `horizon` are counted as skipped."""
    as_micros = keys.select("exchange", "symbol",
                            F.unix_micros("window_start").alias("micros"))
    collected = as_micros.limit(LOCAL_KEYS + 1).collect()
    if len(collected) <= LOCAL_KEYS:
        return touched_keys(keys.sparkSession,
                        [(r.exchange, r.symbol, int(r.micros)) for r in collected], horizon)
    limit = to_micros(horizon) if horizon is not None else None
    local = as_micros.localCheckpoint()
    count = 0
    skipped: list[tuple[str, str, int]] = []
    if limit is not None:
        old = local.where(F.col("micros") < limit)
        count = old.count()
        skipped = [(r.exchange, r.symbol, r.micros) for r in
                   old.orderBy("exchange", "symbol", "micros").limit(10).collect()]
        local = local.where(F.col("micros") >= limit)
    micros = {r.micros for r in local.select("micros").distinct().collect()}
    frame = local.select("exchange", "symbol", F.timestamp_micros("micros").alias("window_start"))
    samples = tuple(f"{e}/{s}@{iso(from_micros(m))}" for e, s, m in skipped[:10])
    return Touched(False, frame, tuple(from_micros(m) for m in sorted(micros)), count, samples)


@attrs.frozen
class Handoff:
    """What a level's run just committed, so that the level above can plan without reading
    the commit back: the bars it upserted or deleted (`keys`: exchange, symbol, window_start
    in epoch microseconds), the snapshot of its table the run started from (`before`) and
    the snapshot its commit made (`after`)."""

    level: str
    table: str
    before: int | None
    after: int
    keys: tuple[tuple[str, str, int], ...] = attrs.field(repr=lambda k: f"<{len(k)} keys>")

    def covers(self, table: str, position: int | None, current: int,
               parent_of: Callable[[int], int | None]) -> bool:
        """True when this commit is the only change of `table` between a level's `position`
        and the `current` snapshot it will read (`parent_of`: a snapshot's parent id)."""
        return (table == self.table and position is not None and position == self.before
                and current == self.after and parent_of(self.after) == self.before)


def touched_from_handoff(tables: Tables, level: Level, handoff: Handoff,
                         horizon: datetime | None) -> Touched:
    """The level's windows holding the parent bars a handoff lists (no Spark job)."""
    tf = level.timeframe
    keys = sorted({(e, s, tf.floor_micros(m)) for e, s, m in handoff.keys})
    return touched_keys(tables.spark, keys, horizon)
