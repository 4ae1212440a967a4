"""Trade sources: read an existing trades table with other column names or time encodings.

rollup's own `trades` table already has the canonical columns. An external Iceberg table can
be used instead by naming it and mapping its columns, e.g. the seed's table whose time is a
BIGINT of microseconds in a column called `timestamp`::

    [source]
    table = "lake.market_data.raw_trades"     # catalog.namespace.table
    time_unit = "us"                          # the time column holds epoch numbers
    dedupe = true                             # the feed may deliver a trade twice

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

    def to_canonical(self, df: DataFrame) -> DataFrame:
        """Rename and convert source rows to exchange, symbol, trade_id, ts, price, quantity."""
        from pyspark.sql import functions as F

        missing = [self.column(c) for c in CANONICAL if self.column(c) not in df.columns]
        if missing:
            raise ConfigError(
                f"source table {'.'.join(self.table)} has no column(s) {', '.join(missing)}; "
                f"it has {', '.join(df.columns)}")
        ts = F.col(self.column("ts"))
        if self.time_unit == "ns":
            ts = F.timestamp_micros(F.floor(ts.cast("decimal(38,0)") / 1000).cast("long"))
        elif self.time_unit is not None:
            ts = F.timestamp_micros(ts.cast("long") * F.lit(_UNIT_MICROS[self.time_unit]))
        out = df.select(
            F.col(self.column("exchange")).cast("string").alias("exchange"),
            F.col(self.column("symbol")).cast("string").alias("symbol"),
            F.col(self.column("trade_id")).cast("long").alias("trade_id"),
            ts.cast("timestamp").alias("ts"),
            F.col(self.column("price")).cast("decimal(18,8)").alias("price"),
            F.col(self.column("quantity")).cast("decimal(20,8)").alias("quantity"),
        )
        if self.dedupe:
            out = dedupe_trades(out)
        return out


def dedupe_trades(trades: DataFrame) -> DataFrame:
    """One row per (exchange, symbol, trade_id), chosen deterministically."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = Window.partitionBy("exchange", "symbol", "trade_id").orderBy("ts", "price", "quantity")
    return trades.withColumn("_n", F.row_number().over(key)).where(F.col("_n") == 1).drop("_n")
