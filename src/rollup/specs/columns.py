"""Spark, Iceberg, Arrow and DDL schemas, all derived from the column definitions in
`rollup.specs.bar` (`FEED_COLUMNS`, `TRADE_COLUMNS`, `REJECTED_COLUMNS`, `BAR_COLUMNS`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from rollup.specs.bar import BAR_COLUMNS, Column

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import DataType, StructType

_DECIMAL = re.compile(r"^decimal\((\d+),(\d+)\)$")
_T = TypeVar("_T")


def _of(type_name: str, simple: Mapping[str, _T], decimal: Callable[[int, int], _T]) -> _T:
    """A column type in one engine: from `simple` by name, or `decimal(precision, scale)`."""
    if type_name in simple:
        return simple[type_name]
    match = _DECIMAL.match(type_name)
    if match is None:
        raise ValueError(f"unknown column type {type_name!r}: expected string, long, "
                         "timestamp, date or decimal(p,s)")
    return decimal(int(match.group(1)), int(match.group(2)))


def spark_type(type_name: str) -> DataType:
    from pyspark.sql import types as T

    simple: dict[str, DataType] = {
        "string": T.StringType(),
        "long": T.LongType(),
        "timestamp": T.TimestampType(),
        "date": T.DateType(),
    }
    return _of(type_name, simple, T.DecimalType)


def spark_schema(columns: tuple[Column, ...] = BAR_COLUMNS) -> StructType:
    from pyspark.sql import types as T

    return T.StructType(
        [T.StructField(c.name, spark_type(c.type), c.nullable, {"comment": c.doc}) for c in columns]
    )


def ddl_columns(columns: tuple[Column, ...]) -> str:
    """Column list for CREATE TABLE; names and types come from our own definitions only."""
    parts = []
    for c in columns:
        null = "" if c.nullable else " NOT NULL"
        comment = c.doc.replace("'", "")
        parts.append(f"{c.name} {c.type.upper()}{null} COMMENT '{comment}'")
    return ",\n  ".join(parts)


def iceberg_schema(columns: tuple[Column, ...] = BAR_COLUMNS) -> Any:
    """The pyiceberg Schema of a bar (or trades) table."""
    from pyiceberg import types as I
    from pyiceberg.schema import Schema

    simple = {
        "string": I.StringType(),
        "long": I.LongType(),
        "timestamp": I.TimestamptzType(),
        "date": I.DateType(),
    }
    fields = [
        I.NestedField(i, c.name, _of(c.type, simple, I.DecimalType), required=not c.nullable,
                      doc=c.doc or None)
        for i, c in enumerate(columns, start=1)
    ]
    return Schema(*fields)


def arrow_type(type_name: str) -> pa.DataType:
    """The pyarrow type of a column type (timestamps in microseconds, UTC)."""
    import pyarrow as pa

    simple = {
        "string": pa.string(),
        "long": pa.int64(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
    }
    return _of(type_name, simple, pa.decimal128)


def arrow_schema(columns: tuple[Column, ...] = BAR_COLUMNS) -> pa.Schema:
    """The pyarrow schema of `columns` (names, types and nullability)."""
    import pyarrow as pa

    return pa.schema([pa.field(c.name, arrow_type(c.type), nullable=c.nullable)
                      for c in columns])


def columns_named(columns: tuple[Column, ...], names: tuple[str, ...]) -> tuple[Column, ...]:
    """The definitions of `names` (in that order) among `columns`; KeyError names a stranger."""
    by_name = {c.name: c for c in columns}
    return tuple(by_name[name] for name in names)
