"""Iceberg tables of a warehouse: names, DDL and idempotent creation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise
from typing import TYPE_CHECKING

import attrs

from rollup.errors import MissingTableError
from rollup.specs.bar import BAR_COLUMNS, REJECTED_COLUMNS, TRADE_COLUMNS
from rollup.specs.columns import ddl_columns
from rollup.specs.identifiers import check_identifier, qualified
from rollup.timeframes import Dag, Level
from rollup.transforms.source import Bound, TradeSource

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from rollup.transforms.bars import TimeRange

DEFAULT_CATALOG = "rollup"
DEFAULT_NAMESPACE = "market_data"
DEFAULT_TRADES_TABLE = "trades"
REJECTED_TABLE = "trades_rejected"

# Seed table properties: format v2, zstd parquet, 64 MB files, hash distribution,
# merge-on-read row-level changes, commit retries.
TABLE_PROPERTIES: dict[str, str] = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    "write.target-file-size-bytes": str(64 * 1024 * 1024),
    "write.distribution-mode": "hash",
    "write.delete.mode": "merge-on-read",
    "write.update.mode": "merge-on-read",
    "write.merge.mode": "merge-on-read",
    "commit.retry.num-retries": "10",
    "commit.retry.min-wait-ms": "100",
}


def spans(ranges: Sequence[TimeRange] | None, after: datetime | None) -> list[Bound]:
    """`ranges` (None: all time) cut to times at or after `after` (None: no cut)."""
    if ranges is None:
        return [(after, None)]
    if after is None:
        return list(ranges)
    return [(max(lo, after), hi) for lo, hi in ranges if hi > after]


def _properties_sql(props: dict[str, str]) -> str:
    return ", ".join(f"'{k}'='{v}'" for k, v in props.items())


@attrs.frozen
class Tables:
    """Where rollup's tables live: a Spark catalog, a namespace and the level DAG."""

    spark: SparkSession = attrs.field(eq=False, repr=False)
    catalog: str = attrs.field(default=DEFAULT_CATALOG)
    namespace: str = attrs.field(default=DEFAULT_NAMESPACE)
    dag: Dag = attrs.field(factory=Dag.standard)
    trades_table: str = attrs.field(default=DEFAULT_TRADES_TABLE)
    source: TradeSource | None = attrs.field(default=None)
    """An external trades table to read instead of `trades` (see rollup.transforms.source)."""

    def __attrs_post_init__(self) -> None:
        check_identifier(self.catalog, "catalog name")
        check_identifier(self.namespace, "namespace")
        check_identifier(self.trades_table, "table name")

    def name(self, table: str) -> str:
        """Fully qualified, quoted name of `table` in this namespace."""
        return qualified(self.catalog, self.namespace, table)

    @property
    def trades(self) -> str:
        return self.name(self.trades_table)

    def bars(self, level: Level | str) -> str:
        lv = self.dag.level(level) if isinstance(level, str) else level
        return self.name(lv.table)

    def parent_of(self, level: Level) -> str:
        """The table a level is built from: trades (or the source table) or its parent level."""
        if level.parent is not None:
            return self.bars(level.parent.name)
        return self.source.name if self.source is not None else self.trades

    def canonical_trades(
        self, df: DataFrame | None = None, *, dedupe: bool | None = None,
        ranges: Sequence[TimeRange] | None = None, after: datetime | None = None,
    ) -> DataFrame:
        """Trades (or the given raw source rows) with the canonical trade columns.

        `dedupe` overrides the source's setting (change detection wants every delivery).
        `ranges` and `after` restrict a source's rows to those times (a superset) with a
        filter on its own time column, ahead of validation, that reaches the Iceberg scan;
        deduplication still sees every delivery (`TradeSource.canonical_in`).
        """
        raw = df if df is not None else self.spark.table(self.parent_of(self.dag.order()[0]))
        if self.source is None:
            return raw
        if ranges is None and after is None:
            return self.source.to_canonical(raw, dedupe=dedupe)
        return self.source.canonical_in(raw, spans(ranges, after), dedupe=dedupe)

    def parent_frame(
        self, level: Level, ranges: Sequence[TimeRange] | None = None
    ) -> DataFrame:
        """The parent rows of a level as a DataFrame ready for `Rollup.plan` (for a source,
        read only in `ranges` when given: see `canonical_trades`)."""
        if level.parent is None:
            return self.canonical_trades(ranges=ranges)
        return self.spark.table(self.bars(level.parent.name))

    def exists(self, table: str) -> bool:
        return bool(self.spark.catalog.tableExists(f"{self.catalog}.{self.namespace}.{table}"))

    def create_all(self) -> list[str]:
        """Create the namespace, the trades table and every bar table; return new table names."""
        self.spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {qualified(self.catalog, self.namespace)}")
        created = []
        if not self.exists(self.trades_table):
            self.spark.sql(
                f"CREATE TABLE IF NOT EXISTS {self.trades} (\n  {ddl_columns(TRADE_COLUMNS)}\n) "
                f"USING iceberg PARTITIONED BY (days(ts)) "
                f"TBLPROPERTIES ({_properties_sql(TABLE_PROPERTIES)})"
            )
            created.append(self.trades_table)
        else:
            self.upgrade_trades()
        if not self.exists(REJECTED_TABLE):
            self.spark.sql(
                f"CREATE TABLE IF NOT EXISTS {self.name(REJECTED_TABLE)} (\n  "
                f"{ddl_columns(REJECTED_COLUMNS)}\n) USING iceberg "
                f"PARTITIONED BY (days(rejected_at)) "
                f"TBLPROPERTIES ({_properties_sql(TABLE_PROPERTIES)})"
            )
            created.append(REJECTED_TABLE)
        for level in self.dag.order():
            if self.exists(level.table):
                self.upgrade_bars(level)
                continue
            self.spark.sql(
                f"CREATE TABLE IF NOT EXISTS {self.bars(level)} (\n  {ddl_columns(BAR_COLUMNS)}\n) "
                f"USING iceberg PARTITIONED BY ({level.partitioning}(window_date)) "
                f"TBLPROPERTIES ({_properties_sql(TABLE_PROPERTIES)})"
            )
            created.append(level.table)
        return created

    def upgrade_trades(self) -> list[str]:
        """Add trade columns that a table created by an older rollup lacks (all nullable);
        return their names. Existing rows read them as null."""
        present = set(self.spark.table(self.trades).columns)
        added = [c for c in TRADE_COLUMNS if c.name not in present]
        for column in added:
            if not column.nullable:
                raise MissingTableError(
                    f"table {self.trades} has no column {column.name}: it was not created by "
                    "rollup; map it as an external [source] instead")
            self.spark.sql(f"ALTER TABLE {self.trades} ADD COLUMN {ddl_columns((column,))}")
        return [c.name for c in added]

    def upgrade_bars(self, level: Level) -> list[str]:
        """Add the bar columns that a level's table created by an older rollup lacks, in place
        (Iceberg schema evolution, each at its place in `BAR_COLUMNS`); return their names.

        Stored bars keep every value and read the new columns as null (unknown) until
        `rollup backfill` recomputes them (docs/runbook.md, upgrading to richer bars).
        """
        table = self.bars(level)
        present = set(self.spark.table(table).columns)
        added = []
        for previous, column in pairwise(BAR_COLUMNS):
            if column.name in present:
                continue
            if not column.nullable:
                raise MissingTableError(
                    f"table {table} has no column {column.name}: it was not created by rollup; "
                    "drop it or point the level at another table")
            try:
                self.spark.sql(f"ALTER TABLE {table} ADD COLUMN {ddl_columns((column,))} "
                               f"AFTER {previous.name}")
            except Exception:  # another process may have added it first (runs start together)
                self.spark.sql(f"REFRESH TABLE {table}")
                if column.name not in self.spark.table(table).columns:
                    raise
            present.add(column.name)
            added.append(column.name)
        return added

    def require(self, table: str) -> None:
        """Raise MissingTableError (one line, with the fix) if `table` does not exist."""
        if not self.exists(table):
            raise MissingTableError(
                f"table {self.catalog}.{self.namespace}.{table} does not exist: run "
                f"`rollup init` (and `rollup run` for bars) against this warehouse first")

    def read_trades(self) -> DataFrame:
        self.require(self.trades_table)
        return self.spark.table(self.trades)

    def read_bars(self, level: Level | str) -> DataFrame:
        """The stored bars of a level (with the bars not yet applied: `rollup.realtime_bars`,
        which plans like a run, a layer above storage)."""
        lv = self.dag.level(level) if isinstance(level, str) else level
        self.require(lv.table)
        return self.spark.table(self.bars(lv))
