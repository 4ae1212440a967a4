"""Sinks: the only code that writes bars. MERGE for fast levels, partition overwrite for slow.

Both sinks keep lineage honest: a bar whose values did not change keeps its created_at,
updated_at and run_id, so re-running a job leaves every table identical.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime

import attrs
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from rollup.bar import BAR_COLUMNS, KEY_COLUMNS, LINEAGE_COLUMNS, VALUE_COLUMNS


@attrs.frozen
class WriteResult:
    """What a sink did: rows inserted or changed, rows deleted, and whether it committed."""

    changed: int
    deleted: int
    committed: bool


def _with_lineage(bars: DataFrame, run_id: str, now: datetime) -> DataFrame:
    return (
        bars.withColumn("created_at", F.lit(now).cast("timestamp"))
        .withColumn("updated_at", F.lit(now).cast("timestamp"))
        .withColumn("run_id", F.lit(run_id))
        .select(*[c.name for c in BAR_COLUMNS])
    )


def _same_values(left: str, right: str) -> Column:
    cond = F.lit(True)
    for name in VALUE_COLUMNS:
        cond = cond & F.col(f"{left}.{name}").eqNullSafe(F.col(f"{right}.{name}"))
    return cond


def _reconcile(new: DataFrame, old: DataFrame) -> tuple[DataFrame, int, int]:
    """Join recomputed bars with stored ones: keep lineage of unchanged bars, count changes.

    Returns the rows to write, the number of new or changed bars and of stored bars that
    have no recomputed counterpart (which the write removes). One join, computed once.
    """
    joined = new.alias("s").join(old.alias("t"), list(KEY_COLUMNS), "full_outer")
    recomputed = F.col("s.trade_count").isNotNull()
    same = recomputed & F.col("t.trade_count").isNotNull() & _same_values("s", "t")
    merged = joined.select(
        *[F.col(k) for k in KEY_COLUMNS],
        *[F.col(f"s.{c.name}") for c in BAR_COLUMNS
          if c.name not in KEY_COLUMNS and c.name not in LINEAGE_COLUMNS],
        F.coalesce(F.col("t.created_at"), F.col("s.created_at")).alias("created_at"),
        F.when(same, F.col("t.updated_at")).otherwise(F.col("s.updated_at")).alias("updated_at"),
        F.when(same, F.col("t.run_id")).otherwise(F.col("s.run_id")).alias("run_id"),
        same.alias("_same"),
        recomputed.alias("_recomputed"),
    ).localCheckpoint()
    counts = merged.agg(
        F.count(F.when(F.col("_recomputed") & ~F.col("_same"), 1)).alias("changed"),
        F.count(F.when(~F.col("_recomputed"), 1)).alias("deleted"),
    ).first()
    assert counts is not None
    return merged.where(F.col("_recomputed")), int(counts.changed), int(counts.deleted)


def partition_filter(dates: Sequence[date]) -> Column:
    """window_date within the given days, as closed ranges of consecutive days.

    Iceberg can only replace a data file in an overwrite when it can prove every row of the
    file matches; it proves that for ranges aligned to partitions (days or months), not for
    an IN list over a month partition.
    """
    ordered = sorted(set(dates))
    if not ordered:
        return F.lit(False)
    spans: list[tuple[date, date]] = []
    for day in ordered:
        if spans and (day - spans[-1][1]).days == 1:
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    cond: Column | None = None
    for lo, hi in spans:
        term = (F.col("window_date") >= F.lit(lo)) & (F.col("window_date") <= F.lit(hi))
        cond = term if cond is None else (cond | term)
    assert cond is not None
    return cond


def _date_list_sql(dates: Sequence[date]) -> str:
    # Dates are `datetime.date` values produced by rollup, rendered by isoformat: no user text.
    return ", ".join(f"DATE '{d.isoformat()}'" for d in sorted(set(dates)))


def merge_bars(
    spark: SparkSession,
    table: str,
    bars: DataFrame,
    *,
    run_id: str,
    now: datetime,
    target_dates: Sequence[date] | None = None,
    delete_ranges: Sequence[tuple[datetime, datetime]] | None = None,
) -> WriteResult:
    """MERGE recomputed bars into `table`: insert new windows, update changed ones.

    `target_dates` limits the target scan to the partitions the bars can touch. With
    `delete_ranges`, stored bars in those ranges that are absent from `bars` are deleted in
    the same commit (backfill of restated trades).
    """
    source = _with_lineage(bars, run_id, now).localCheckpoint()
    target = spark.table(table)
    if target_dates is not None:
        target = target.where(F.col("window_date").isin(list(target_dates)))
    changed = (
        source.alias("s")
        .join(target.alias("t"), list(KEY_COLUMNS), "left")
        .where(F.col("t.trade_count").isNull() | ~_same_values("s", "t"))
        .count()
    )
    deleted = 0
    scope = None
    if delete_ranges:
        from rollup.plans import in_ranges

        scope = _ranges_sql(delete_ranges)
        deleted = target.where(in_ranges("window_start", delete_ranges)).join(
            source, list(KEY_COLUMNS), "left_anti").count()
    if changed == 0 and deleted == 0:
        return WriteResult(0, 0, False)
    view = f"rollup_src_{uuid.uuid4().hex}"
    source.createOrReplaceTempView(view)
    on = " AND ".join(f"t.{k} = s.{k}" for k in KEY_COLUMNS)
    if target_dates:
        on += f" AND t.window_date IN ({_date_list_sql(target_dates)})"
    differs = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in VALUE_COLUMNS)
    updates = ", ".join(f"t.{c} = s.{c}" for c in (*VALUE_COLUMNS, "updated_at", "run_id"))
    try:
        spark.sql(
            f"MERGE INTO {table} t USING {view} s ON {on} "
            f"WHEN MATCHED AND ({differs}) THEN UPDATE SET {updates} "
            f"WHEN NOT MATCHED THEN INSERT *"
            + (f" WHEN NOT MATCHED BY SOURCE AND ({scope}) THEN DELETE" if scope else "")
        )
    finally:
        spark.catalog.dropTempView(view)
    return WriteResult(changed, deleted, True)


def _ranges_sql(ranges: Sequence[tuple[datetime, datetime]]) -> str:
    # Instants are aware datetimes produced by rollup, rendered as UTC literals: no user text.
    def lit(value: datetime) -> str:
        text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return f"TIMESTAMP '{text}Z'"

    terms = [f"(t.window_start >= {lit(lo)} AND t.window_start < {lit(hi)})" for lo, hi in ranges]
    return " OR ".join(terms)


def overwrite_partitions(
    spark: SparkSession,
    table: str,
    bars: DataFrame,
    *,
    run_id: str,
    now: datetime,
    partition_dates: Sequence[date] | None,
    validate_from_snapshot: int | None,
) -> WriteResult:
    """Replace whole partitions of `table` with `bars`, recomputed in full for them.

    Unchanged bars keep their lineage. Nothing is committed when no bar changed. The commit
    fails (and can be retried) if another writer changed the same partitions since
    `validate_from_snapshot`. `partition_dates` None means the bars cover the whole table.
    """
    old = spark.table(table)
    if partition_dates is not None:
        old = old.where(partition_filter(partition_dates))
    new = _with_lineage(bars, run_id, now)
    merged, changed, deleted = _reconcile(new, old)
    if changed == 0 and deleted == 0:
        return WriteResult(0, 0, False)
    writer = merged.select(*[c.name for c in BAR_COLUMNS]).writeTo(table)
    writer = writer.option("isolation-level", "serializable")
    if validate_from_snapshot is not None:
        writer = writer.option("validate-from-snapshot-id", str(validate_from_snapshot))
    if partition_dates is None:
        writer.overwritePartitions()
    else:
        writer.overwrite(partition_filter(partition_dates))
    return WriteResult(changed, deleted, True)


def replace_bars(
    spark: SparkSession,
    table: str,
    bars: DataFrame,
    ranges: Sequence[tuple[datetime, datetime]],
    *,
    run_id: str,
    now: datetime,
) -> WriteResult:
    """In one commit, make the rows of `table` in whole-partition `ranges` equal `bars`.

    Unchanged bars keep their lineage; bars absent from `bars` are deleted. Used by backfill
    (restated trades) of overwrite levels, where windows may vanish.
    """
    from rollup.plans import dates_in, in_ranges

    dates = [d.date() for d in dates_in(ranges)]
    in_scope = in_ranges("window_start", ranges) & F.col("window_date").isin(dates)
    old = spark.table(table).where(in_scope)
    new = _with_lineage(bars.where(in_ranges("window_start", ranges)), run_id, now)
    merged, changed, deleted = _reconcile(new, old)
    if changed == 0 and deleted == 0:
        return WriteResult(0, 0, False)
    # Ranges here are whole partitions, so the overwrite filter is on the partition column.
    merged.select(*[c.name for c in BAR_COLUMNS]).writeTo(table).overwrite(
        partition_filter(dates))
    return WriteResult(changed, deleted, True)
