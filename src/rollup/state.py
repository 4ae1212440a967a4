"""Where each level stands: Iceberg snapshots, table properties and what changed since.

A level's position is the id of the parent-table snapshot it has consumed, kept as the table
property `rollup.parent-snapshot-id` of the level's own table. It is written only after the
bars computed from that snapshot are committed, so a crash can make a run redo work (which
is harmless: windows are recomputed in full, never incremented) but never skip input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
from pyspark.sql import functions as F

from rollup.times import from_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

POSITION = "rollup.parent-snapshot-id"
LAST_RUN_ID = "rollup.last-run-id"
LAST_RUN_AT = "rollup.last-run-at"
CURRENT_SNAPSHOT = "current-snapshot-id"  # reported by Iceberg's Spark tables

# Snapshot operations that bring new rows; 'replace' (compaction) and 'delete' bring none.
DATA_OPERATIONS = ("append", "overwrite")


@attrs.frozen
class Snapshot:
    snapshot_id: int
    parent_id: int | None
    operation: str | None
    committed_at: object


def snapshots(spark: SparkSession, table: str) -> dict[int, Snapshot]:
    rows = spark.table(f"{table}.snapshots").select(
        "snapshot_id", "parent_id", "operation", "committed_at"
    ).collect()
    return {
        r.snapshot_id: Snapshot(r.snapshot_id, r.parent_id, r.operation,
                                from_spark(r.committed_at) if r.committed_at else None)
        for r in rows
    }


def current_snapshot(spark: SparkSession, table: str) -> int | None:
    """Id of the table's current snapshot, or None for a table never written."""
    # Iceberg's Spark tables report it as a property: no Spark job (the history table was one).
    reported = table_properties(spark, table).get(CURRENT_SNAPSHOT)
    if reported is not None:
        return None if reported == "none" else int(reported)
    rows = (
        spark.table(f"{table}.history")
        .where(F.col("is_current_ancestor"))
        .orderBy(F.col("made_current_at").desc())
        .select("snapshot_id")
        .limit(1)
        .collect()
    )
    return int(rows[0].snapshot_id) if rows else None


def snapshots_since(
    spark: SparkSession, table: str, since: int, until: int
) -> list[Snapshot] | None:
    """Snapshots after `since` up to and including `until` on `until`'s lineage.

    None when `since` is not an ancestor of `until` (expired, or the table was rolled back):
    the caller must then treat everything as changed.
    """
    known = snapshots(spark, table)
    chain: list[Snapshot] = []
    cursor: int | None = until
    while cursor is not None and cursor != since:
        snap = known.get(cursor)
        if snap is None:
            return None
        chain.append(snap)
        cursor = snap.parent_id
    return chain[::-1] if cursor == since else None


def added_data_files(spark: SparkSession, table: str, snapshot_ids: Sequence[int]) -> list[str]:
    """Paths of live data files added by the given snapshots."""
    if not snapshot_ids:
        return []
    rows = (
        spark.table(f"{table}.entries")
        .where((F.col("status") != 2) & (F.col("data_file.content") == 0))
        .where(F.col("snapshot_id").isin(list(snapshot_ids)))
        .select(F.col("data_file.file_path").alias("path"))
        .distinct()
        .collect()
    )
    return sorted(r.path for r in rows)


def table_properties(spark: SparkSession, table: str) -> dict[str, str]:
    return {r.key: r.value for r in spark.sql(f"SHOW TBLPROPERTIES {table}").collect()}


def position(spark: SparkSession, table: str) -> int | None:
    value = table_properties(spark, table).get(POSITION)
    return int(value) if value else None


def set_position(
    spark: SparkSession, table: str, snapshot_id: int, run_id: str, run_at: str
) -> None:
    """Record the consumed parent snapshot (ids and times are generated here, never user text)."""
    values = {POSITION: str(int(snapshot_id)), LAST_RUN_ID: run_id, LAST_RUN_AT: run_at}
    for value in values.values():
        if "'" in value or "\\" in value:
            raise ValueError(f"unsafe property value {value!r}")
    props = ", ".join(f"'{k}'='{v}'" for k, v in values.items())
    spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ({props})")


def read_files(spark: SparkSession, paths: Sequence[str]) -> DataFrame:
    """The raw rows of Iceberg data files (deleted rows included: a superset is fine here)."""
    return spark.read.parquet(*paths)
