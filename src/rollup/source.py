"""Trade sources: read an existing trades table with other column names or time encodings.

rollup's own `trades` table already has the canonical columns. An external Iceberg table can
be used instead by naming it and mapping its columns, e.g. the seed's table whose time is a
BIGINT of microseconds in a column called `timestamp`::

    [source]
    table = "lake.market_data.raw_trades"     # catalog.namespace.table
    time_unit = "us"                          # the time column holds epoch numbers
    dedupe = true                             # the feed may deliver a trade twice

Rows of the source go through the same validation as `rollup ingest`: invalid rows are left
out of the bars and quarantined in `trades_rejected` with their reason when a run first reads
the file that holds them.

    [source.columns]                          # canonical = source column
    ts = "timestamp"
    trade_id = "id"
    quantity = "size"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from rollup.errors import ConfigError
from rollup.identifiers import check_identifier, qualified

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

CANONICAL = ("exchange", "symbol", "trade_id", "ts", "price", "quantity")
_UNIT_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1}


def _check_columns(_: object, __: object, value: Mapping[str, str]) -> None:
    for canonical, column in value.items():
        if canonical not in CANONICAL:
            raise ConfigError(
                f"unknown trade column {canonical!r} in the source mapping: expected one of "
                f"{', '.join(CANONICAL)}"
            )
        check_identifier(column, f"source column for {canonical}")


@attrs.frozen
class TradeSource:
    """An Iceberg table of trades and how its columns map onto rollup's canonical ones."""

    table: tuple[str, str, str]
    columns: Mapping[str, str] = attrs.field(factory=dict, validator=_check_columns)
    time_unit: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(
            (*_UNIT_MICROS, "ns"))))
    dedupe: bool = False

    def __attrs_post_init__(self) -> None:
        for part in self.table:
            check_identifier(part, "source table name part")

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> TradeSource:
        name = section.get("table")
        parts = tuple(str(name).split(".")) if name else ()
        if len(parts) != 3:
            raise ConfigError(
                f"invalid source table {name!r}: expected catalog.namespace.table")
        return cls(parts, dict(section.get("columns") or {}),
                   section.get("time_unit"), bool(section.get("dedupe", False)))

    @property
    def name(self) -> str:
        return qualified(*self.table)

    def column(self, canonical: str) -> str:
        return self.columns.get(canonical, canonical)

    def _renamed(self, df: DataFrame) -> DataFrame:
        from pyspark.sql import functions as F

        missing = [self.column(c) for c in CANONICAL if self.column(c) not in df.columns]
        if missing:
            raise ConfigError(
                f"source table {'.'.join(self.table)} has no column(s) {', '.join(missing)}; "
                f"it has {', '.join(df.columns)}")
        side = self.columns.get("side", "side")
        return df.select(
            *[F.col(self.column(c)).alias(c) for c in CANONICAL],
            (F.col(side) if side in df.columns else F.lit(None).cast("string")).alias("side"),
            *[c for c in df.columns if c == "_file"],
        )

    def validated(self, df: DataFrame) -> DataFrame:
        """Source rows through rollup's trade validation (`reason` null for good rows)."""
        from rollup.validate import validate_trades

        return validate_trades(self._renamed(df), time_unit=self.time_unit)

    def to_canonical(self, df: DataFrame, *, dedupe: bool | None = None) -> DataFrame:
        """The valid source rows as exchange, symbol, trade_id, ts, price, quantity.

        Rows that fail validation (see docs/input.md) are left out here and quarantined by
        the run that first reads them (`rejected`).
        """
        from rollup.validate import canonical

        out = canonical(self.validated(df)).drop("side")
        if self.dedupe if dedupe is None else dedupe:
            out = dedupe_trades(out)
        return out

    def rejected(self, df: DataFrame) -> DataFrame:
        """Invalid source rows with their text, file and reason, shaped for quarantine."""
        from pyspark.sql import functions as F

        checked = self.validated(df.withColumn("_file", F.input_file_name()))
        return checked.where(F.col("reason").isNotNull()).select(
            *[F.col(c) for c in (*CANONICAL, "side")],
            F.col("_file").alias("source_file"),
            F.col("_trade_id").alias("source_row"),
            "reason",
        )


def dedupe_trades(trades: DataFrame) -> DataFrame:
    """One row per (exchange, symbol, trade_id), chosen deterministically."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = Window.partitionBy("exchange", "symbol", "trade_id").orderBy("ts", "price", "quantity")
    return trades.withColumn("_n", F.row_number().over(key)).where(F.col("_n") == 1).drop("_n")
