"""Sinks: the only code that writes bars. MERGE for fast levels, partition overwrite for slow.

Both reconcile: recomputed bars are compared with the stored bars of the same scope, bars
whose input vanished are deleted, unchanged bars are not rewritten (they keep created_at,
updated_at and run_id), and nothing is committed when nothing changed. Commits can carry
snapshot summary properties (the level's position, see rollup.storage.state).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import TypeVar

import attrs
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from rollup.specs.bar import BAR_COLUMNS, KEY_COLUMNS, LINEAGE_COLUMNS, VALUE_COLUMNS
from rollup.specs.times import merge_intervals, to_micros
from rollup.storage.iceberg import with_commit_properties

T = TypeVar("T")


LOCAL_DIFF = 20_000
"""Up to this many changed bars are listed on the driver by the job that counts them (their
keys feed the level above, see `rollup.incremental.changes.Handoff`); more are only counted."""

Key = tuple[str, str, int]
"""A bar's key: exchange, symbol, window_start in epoch microseconds."""


@attrs.frozen
class WriteResult:
    """What a sink did: rows inserted or changed, rows deleted, and whether it committed.

    `keys` lists the bars upserted or deleted (None: more than `LOCAL_DIFF`, or not listed).
    """

    changed: int
    deleted: int
    committed: bool
    keys: tuple[Key, ...] | None = None


@attrs.frozen
class Reconciled:
    """Recomputed bars joined with the stored ones: every row of the scope with its `_op`,
    the counts of upserts and deletes, the window_dates they fall on and (when few) keys."""

    rows: DataFrame
    changed: int
    deleted: int
    dates: tuple[date, ...]
    keys: tuple[Key, ...] | None


def _with_lineage(bars: DataFrame, run_id: str, now: datetime) -> DataFrame:
    micros = to_micros(now)
    return bars.selectExpr(
        *[c.name for c in BAR_COLUMNS if c.name not in LINEAGE_COLUMNS],
        f"timestamp_micros({micros}) AS created_at", f"timestamp_micros({micros}) AS updated_at",
    ).withColumn("run_id", F.lit(run_id))


def _merged_columns() -> list[str]:
    """The reconciled row as SQL over the join of `s` (recomputed) and `t` (stored); built
    from the constant column names of `rollup.specs.bar` only (one parse on the JVM instead of
    hundreds of Column calls)."""
    recomputed = "s.trade_count IS NOT NULL"
    same = " AND ".join([recomputed, "t.trade_count IS NOT NULL",
                         *[f"s.{c} <=> t.{c}" for c in VALUE_COLUMNS]])
    values = [c.name for c in BAR_COLUMNS if c.name not in KEY_COLUMNS
              and c.name not in LINEAGE_COLUMNS]
    keep = f"({same}) OR NOT ({recomputed})"
    return [
        *KEY_COLUMNS,
        *[f"CASE WHEN {recomputed} THEN s.{c} ELSE t.{c} END AS {c}" for c in values],
        "coalesce(t.created_at, s.created_at) AS created_at",
        f"CASE WHEN {keep} THEN t.updated_at ELSE s.updated_at END AS updated_at",
        f"CASE WHEN {keep} THEN t.run_id ELSE s.run_id END AS run_id",
        f"CASE WHEN {same} THEN 'same' WHEN {recomputed} THEN 'upsert' ELSE 'delete' END AS _op",
    ]


def reconcile(new: DataFrame, old: DataFrame) -> Reconciled:
    """Join recomputed bars with the stored bars of the same scope (one checkpointed job),
    then list the differences (a second, small job over the checkpoint).

    Every row of the scope gets `_op`: 'same' (unchanged, stored lineage kept), 'upsert'
    (new or changed) or 'delete' (stored, not recomputed).
    """
    joined = new.alias("s").join(old.alias("t"), list(KEY_COLUMNS), "full_outer")
    merged = joined.selectExpr(*_merged_columns()).localCheckpoint()
    diff = merged.where(F.col("_op") != "same")
    listed = diff.select("exchange", "symbol", F.unix_micros("window_start").alias("micros"),
                         "window_date", "_op").limit(LOCAL_DIFF + 1).collect()
    if len(listed) <= LOCAL_DIFF:
        deleted = sum(1 for r in listed if r._op == "delete")
        return Reconciled(merged, len(listed) - deleted, deleted,
                          tuple(sorted({r.window_date for r in listed})),
                          tuple((r.exchange, r.symbol, int(r.micros)) for r in listed))
    counts = diff.agg(
        F.count(F.when(F.col("_op") == "upsert", 1)).alias("changed"),
        F.count(F.when(F.col("_op") == "delete", 1)).alias("deleted"),
    ).first()
    assert counts is not None
    dates = tuple(sorted(r.window_date for r in diff.select("window_date").distinct().collect()))
    return Reconciled(merged, int(counts.changed), int(counts.deleted), dates, None)


def _committing(spark: SparkSession, props: Mapping[str, str] | None,
                action: Callable[[], T]) -> T:
    return with_commit_properties(spark, props, action) if props else action()


def _date_list_sql(dates: Sequence[date]) -> str:
    # Dates are `datetime.date` values produced by rollup, rendered by isoformat: no user text.
    return ", ".join(f"DATE '{d.isoformat()}'" for d in sorted(set(dates)))


def merge_changes(
    spark: SparkSession,
    table: str,
    new: DataFrame,
    old: DataFrame,
    *,
    run_id: str,
    now: datetime,
    commit_properties: Mapping[str, str] | None = None,
) -> WriteResult:
    """Make the stored bars `old` (a scope of `table`) equal the recomputed bars `new` with
    one MERGE of the differences only: upserts of new or changed bars, deletes of vanished
    ones. The MERGE's target scan is pruned to the partitions of the differences."""
    found = reconcile(_with_lineage(new, run_id, now), old)
    if found.changed == 0 and found.deleted == 0:
        return WriteResult(0, 0, False, ())
    diff = found.rows.where(F.col("_op") != "same")
    view = f"rollup_src_{uuid.uuid4().hex}"
    diff.createOrReplaceTempView(view)
    on = " AND ".join(f"t.{k} = s.{k}" for k in KEY_COLUMNS)
    on += f" AND t.window_date IN ({_date_list_sql(found.dates)})"
    updates = ", ".join(f"t.{c} = s.{c}" for c in (*VALUE_COLUMNS, "updated_at", "run_id"))
    # Column names come from rollup.specs.bar.BAR_COLUMNS (constants), never from user text.
    columns = ", ".join(c.name for c in BAR_COLUMNS)
    values = ", ".join(f"s.{c.name}" for c in BAR_COLUMNS)
    insert = "INSERT (" + columns + ") VALUES (" + values + ")"  # noqa: S608 - constants
    statement = (
        f"MERGE INTO {table} t USING {view} s ON {on} "
        "WHEN MATCHED AND s._op = 'delete' THEN DELETE "
        f"WHEN MATCHED THEN UPDATE SET {updates} "
        f"WHEN NOT MATCHED AND s._op = 'upsert' THEN {insert}"
    )
    try:
        _committing(spark, commit_properties, lambda: spark.sql(statement))
    finally:
        spark.catalog.dropTempView(view)
    return WriteResult(found.changed, found.deleted, True, found.keys)


def partition_filter(dates: Sequence[date], partitioning: str = "days") -> Column:
    """window_date within the partitions starting on `dates`, as a balanced OR of closed
    ranges of consecutive partitions (Iceberg proves whole-file deletes for ranges aligned
    to partitions)."""
    from rollup.transforms.bars import any_of, partition_span

    spans = merge_intervals(  # [first day, day after the last]
        (lo.date(), hi.date()) for lo, hi in (partition_span(d, partitioning) for d in dates))
    day = timedelta(days=1)
    return any_of([(F.col("window_date") >= F.lit(lo)) & (F.col("window_date") <= F.lit(hi - day))
                   for lo, hi in spans])


def overwrite_partitions(
    spark: SparkSession,
    table: str,
    new: DataFrame,
    old: DataFrame,
    *,
    run_id: str,
    now: datetime,
    where: Column,
    validate_from_snapshot: int | None,
    validate: bool = True,
    commit_properties: Mapping[str, str] | None = None,
) -> WriteResult:
    """Replace the partitions selected by `where` (whole partitions) with `new`.

    `old` must be the stored bars under `where`. Unchanged bars keep their lineage, vanished
    ones are dropped (a partition may become empty), nothing is committed when no bar
    changed, and (with `validate`) the commit fails, to be retried, if another writer
    changed those partitions since `validate_from_snapshot` (None: since the table was empty).
    """
    found = reconcile(_with_lineage(new, run_id, now), old)
    if found.changed == 0 and found.deleted == 0:
        return WriteResult(0, 0, False, ())
    rows = found.rows.where(F.col("_op") != "delete").drop("_op")
    writer = rows.writeTo(table)
    if validate:
        writer = writer.option("isolation-level", "serializable")
    if validate and validate_from_snapshot is not None:
        writer = writer.option("validate-from-snapshot-id", str(validate_from_snapshot))
    _committing(spark, commit_properties, lambda: writer.overwrite(where))
    return WriteResult(found.changed, found.deleted, True, found.keys)
