"""Table maintenance: compact files, rewrite manifests, expire snapshots, remove orphan files.

A 1m MERGE every five minutes adds a data file and a position delete file per touched
partition, so without maintenance the bar tables (and the trades table, one file per ingest)
pile up small files. `maintain` runs, for the trades table and every bar table:

1. `rewrite_data_files` (bin-pack to the tables' 64 MB target; files with deletes are
   rewritten so the deletes are applied, then dangling delete files are dropped);
2. `rewrite_position_delete_files` (small delete files merged, dangling deletes dropped);
3. `rewrite_manifests`;
4. snapshot expiry and 5. orphan removal, both from `rollup.incremental.retention` (`_expire`,
   `_orphans`), which never expire the snapshot a level's position points at.

Rewrites commit `replace` snapshots: the same rows in other files. The change detection of
the runner (`rollup.incremental.changes`) lists the files each snapshot after a level's position
added
or removed and skips `replace` snapshots, so rows appended after a position and compacted
since are still found: compaction is safe while a coarser level lags (1d reads 1h once a
day). A level's position is a snapshot of its parent that expiry keeps (see retention).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from rollup.errors import ConcurrentRunError, InputError, RollupError, one_line
from rollup.incremental.retention import (
    DEFAULT_ORPHAN_AGE,
    DEFAULT_RETAIN_LAST,
    DEFAULT_SNAPSHOT_AGE,
    MIN_ORPHAN_AGE,
    _expirable,
    _expire,
    _orphans,
    _procedure_table,
)
from rollup.storage import state
from rollup.storage.tables import TABLE_PROPERTIES, Tables
from rollup.timeframes import Level

if TYPE_CHECKING:
    from pyspark.sql import Row

log = logging.getLogger("rollup")

TARGET_FILE_SIZE = int(TABLE_PROPERTIES["write.target-file-size-bytes"])
"""Bytes per compacted file: the tables' own write target (64 MB)."""
MIN_INPUT_FILES = 2
"""A partition with at least this many files to rewrite is compacted (Iceberg's default 5)."""
_REWRITE = "replace"  # the snapshot operation of every rewrite: no change of content
_CONFLICT_MARKERS = ("CommitFailedException", "conflicting", "Cannot commit")


class MaintenanceError(RollupError):
    """An Iceberg maintenance procedure failed."""


# ---------------------------------------------------------------------------------------------
# Settings




def _whole(value: object, what: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"invalid {what} {value!r}: expected a whole number >= {minimum}")


def _check(snapshot_age: object, retain_last: object, orphan_age: object) -> None:
    if not isinstance(snapshot_age, timedelta) or snapshot_age < timedelta(0):
        raise InputError(f"invalid snapshot age {snapshot_age!r}: expected a timedelta >= 0")
    _whole(retain_last, "retain_last", 1)
    if not isinstance(orphan_age, timedelta) or orphan_age < MIN_ORPHAN_AGE:
        raise InputError(f"invalid orphan age {orphan_age!r}: expected a timedelta of at least "
                         "1 day (younger files may belong to a commit in progress)")


# ---------------------------------------------------------------------------------------------
# Results


@attrs.frozen
class FileCounts:
    """Live files of a table's current snapshot (from its summary)."""

    data_files: int = 0
    delete_files: int = 0
    bytes: int = 0

    def as_json(self) -> dict[str, int]:
        return {"data_files": self.data_files, "delete_files": self.delete_files,
                "bytes": self.bytes}


def _size(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB" if n >= 100_000 else f"{n / 1000:.1f} kB"


@attrs.frozen
class MaintenanceResult:
    """What maintenance did to one table (or would do, for a dry run)."""

    table: str
    timeframe: str | None
    dry_run: bool
    before: FileCounts
    after: FileCounts
    rewritten_data_files: int = 0
    added_data_files: int = 0
    rewritten_delete_files: int = 0
    rewritten_manifests: int = 0
    snapshots: tuple[int, ...] = ()
    files_deleted: int = 0
    orphan_files: tuple[str, ...] = ()
    seconds: float = 0.0

    def describe(self) -> str:
        b, a = self.before, self.after
        verb = "would expire" if self.dry_run else "expired"
        if self.dry_run:
            files = [f"{b.data_files} data files, {b.delete_files} delete files, "
                     f"{_size(b.bytes)} (nothing rewritten)"]
        else:
            files = [f"data files {b.data_files} -> {a.data_files}",
                     f"delete files {b.delete_files} -> {a.delete_files}",
                     f"{_size(b.bytes)} -> {_size(a.bytes)}"]
        parts = [*files,
                 f"{verb} {len(self.snapshots)} snapshot(s)"
                 + ("" if self.dry_run else f" ({self.files_deleted} files deleted)"),
                 f"{'would remove' if self.dry_run else 'removed'} "
                 f"{len(self.orphan_files)} orphan file(s)"]
        return f"{self.table}: " + "; ".join(parts) + f"; {self.seconds:.1f}s"

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table, "timeframe": self.timeframe, "dry_run": self.dry_run,
            "before": self.before.as_json(), "after": self.after.as_json(),
            "rewritten_data_files": self.rewritten_data_files,
            "added_data_files": self.added_data_files,
            "rewritten_delete_files": self.rewritten_delete_files,
            "rewritten_manifests": self.rewritten_manifests,
            "snapshots": list(self.snapshots), "files_deleted": self.files_deleted,
            "orphan_files": list(self.orphan_files),
            "seconds": round(self.seconds, 3),
        }


# ---------------------------------------------------------------------------------------------
# Steps


def file_counts(tables: Tables, table: str) -> FileCounts:
    """Data files, delete files and bytes of `table`'s current snapshot (zeros when empty)."""
    spark = tables.spark
    current = state.current_snapshot(spark, table)
    if current is None:
        return FileCounts()
    row = (spark.table(f"{table}.snapshots").where(f"snapshot_id = {int(current)}")
           .select("summary").first())
    summary: dict[str, str] = dict(row.summary or {}) if row is not None else {}
    return FileCounts(int(summary.get("total-data-files", 0)),
                      int(summary.get("total-delete-files", 0)),
                      int(summary.get("total-files-size", 0)))


def _call(tables: Tables, table: str, step: str, sql: str) -> Row | None:
    """Run one Iceberg procedure; a failure becomes one line naming the table and step."""
    try:
        return tables.spark.sql(sql).first()
    except Exception as exc:  # noqa: BLE001 - Spark and Iceberg errors arrive as py4j errors
        text = f"{type(exc).__name__}: {exc}"
        if any(marker in text for marker in _CONFLICT_MARKERS):
            raise ConcurrentRunError(
                f"{table}: {step} conflicted with another commit ({one_line(exc)}); the table "
                "is unchanged, run `rollup maintain` again") from exc
        raise MaintenanceError(f"{table}: {step} failed: {one_line(exc)}") from exc


def _options(values: Mapping[str, object]) -> str:
    # Keys and values are constants or integers of this module, never user text.
    return "map(" + ", ".join(f"'{k}', '{v}'" for k, v in values.items()) + ")"


def _rewrite_data(tables: Tables, name: str, target_file_size: int,
                  min_input_files: int) -> tuple[int, int]:
    """Bin-pack small files and files with deletes; (rewritten, added) data files."""
    options = _options({
        "min-input-files": min_input_files,
        "target-file-size-bytes": target_file_size,
        "delete-file-threshold": 1,  # apply any merge-on-read deletes
        "remove-dangling-deletes": "true",
    })
    row = _call(tables, name, "rewrite_data_files",
                f"CALL `{tables.catalog}`.system.rewrite_data_files(table => "
                f"'{_procedure_table(tables, name)}', options => {options})")
    if row is None:
        return 0, 0
    values = row.asDict()
    return int(values.get("rewritten_data_files_count") or 0), int(
        values.get("added_data_files_count") or 0)


def _rewrite_deletes(tables: Tables, name: str) -> int:
    """Rewrite every position delete file: dangling deletes (their data file was compacted,
    which Iceberg's sequence-number rule does not always see) are dropped, small ones merged."""
    options = _options({"rewrite-all": "true"})
    row = _call(tables, name, "rewrite_position_delete_files",
                f"CALL `{tables.catalog}`.system.rewrite_position_delete_files(table => "
                f"'{_procedure_table(tables, name)}', options => {options})")
    return int(row.asDict().get("rewritten_delete_files_count") or 0) if row is not None else 0


def _rewrite_manifests(tables: Tables, name: str) -> int:
    row = _call(tables, name, "rewrite_manifests",
                f"CALL `{tables.catalog}`.system.rewrite_manifests(table => "
                f"'{_procedure_table(tables, name)}')")
    return int(row.asDict().get("rewritten_manifests_count") or 0) if row is not None else 0


# ---------------------------------------------------------------------------------------------
# The command


def maintain(
    tables: Tables,
    *,
    compact: bool = True,
    rewrite_deletes: bool = True,
    rewrite_manifests: bool = True,
    expire: bool = True,
    orphans: bool = True,
    snapshot_age: timedelta = DEFAULT_SNAPSHOT_AGE,
    retain_last: int = DEFAULT_RETAIN_LAST,
    orphan_age: timedelta = DEFAULT_ORPHAN_AGE,
    target_file_size: int = TARGET_FILE_SIZE,
    min_input_files: int = MIN_INPUT_FILES,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
) -> list[MaintenanceResult]:
    """Compact and clean the trades table and every bar table, one table after another.

    Args:
        tables: the tables (trades, then each level in DAG order).
        compact: bin-pack data files (`rewrite_data_files`), applying delete files.
        rewrite_deletes: merge small position delete files, drop dangling ones.
        rewrite_manifests: rewrite the manifests (faster scan planning).
        expire: expire snapshots older than `snapshot_age`, keeping `retain_last` and every
            snapshot at or after a level's position.
        orphans: remove unreferenced files older than `orphan_age`.
        snapshot_age, retain_last, orphan_age: as for `rollup retention`.
        target_file_size: bytes per compacted file.
        min_input_files: compact a partition once it has this many files to rewrite.
        dry_run: count files, list what expiry and orphan removal would remove; change nothing.
        progress: called with each table's one-line result.

    Raises:
        InputError: an argument outside its range (the message names it).
        ConcurrentRunError: a rewrite conflicted with another writer (run again).
        MaintenanceError: an Iceberg procedure failed (one line naming table and step).
    """
    _check(snapshot_age, retain_last, orphan_age)
    _whole(target_file_size, "target_file_size", 1)
    _whole(min_input_files, "min_input_files", 2)
    spark = tables.spark
    wall = datetime.now(UTC)
    targets: list[tuple[str, Level | None]] = [(tables.trades_table, None)]
    targets += [(lv.table, lv) for lv in tables.dag.order()]
    for name, _ in targets:
        tables.require(name)
    results = []
    for name, level in targets:
        began = time.monotonic()
        table = tables.name(name)
        before = file_counts(tables, table)
        counts: dict[str, int] = {}
        written = state.current_snapshot(spark, table) is not None
        if written and not dry_run:
            if compact:
                counts["data"], counts["added"] = _rewrite_data(
                    tables, name, target_file_size, min_input_files)
            if rewrite_deletes:
                counts["deletes"] = _rewrite_deletes(tables, name)
        if rewrite_manifests and written and not dry_run:
            counts["manifests"] = _rewrite_manifests(tables, name)
        expired: tuple[int, ...] = ()
        files_deleted = 0
        if expire and dry_run:
            expired = tuple(_expirable(tables, table, wall - snapshot_age, retain_last,
                                       pending_delete=False))
        elif expire:
            expired, files_deleted = _expire(tables, name, wall - snapshot_age, retain_last)
        removed = _orphans(tables, name, wall - orphan_age, dry_run=dry_run) if orphans else ()
        result = MaintenanceResult(
            table=name, timeframe=level.name if level else None, dry_run=dry_run,
            before=before, after=before if dry_run else file_counts(tables, table),
            rewritten_data_files=counts.get("data", 0), added_data_files=counts.get("added", 0),
            rewritten_delete_files=counts.get("deletes", 0),
            rewritten_manifests=counts.get("manifests", 0), snapshots=expired,
            files_deleted=files_deleted, orphan_files=removed,
            seconds=time.monotonic() - began,
        )
        if progress is not None:
            progress(result.describe())
        else:
            log.info(result.describe())
        results.append(result)
    return results
