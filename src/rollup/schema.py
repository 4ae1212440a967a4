"""Spark and Iceberg schemas, both derived from the column definitions in `rollup.bar`."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from rollup.bar import BAR_COLUMNS, TRADE_COLUMNS, Column

if TYPE_CHECKING:
    from pyspark.sql.types import DataType, StructType

_DECIMAL = re.compile(r"^decimal\((\d+),(\d+)\)$")


def spark_type(type_name: str) -> DataType:
    from pyspark.sql import types as T

    simple: dict[str, DataType] = {
        "string": T.StringType(),
        "long": T.LongType(),
        "timestamp": T.TimestampType(),
        "date": T.DateType(),
    }
    if type_name in simple:
        return simple[type_name]
    match = _DECIMAL.match(type_name)
    if match is None:
        raise ValueError(f"unknown column type {type_name!r}")
    return T.DecimalType(int(match.group(1)), int(match.group(2)))


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

    def to_iceberg(type_name: str) -> Any:
        simple = {
            "string": I.StringType(),
            "long": I.LongType(),
            "timestamp": I.TimestamptzType(),
            "date": I.DateType(),
        }
        if type_name in simple:
            return simple[type_name]
        match = _DECIMAL.match(type_name)
        assert match is not None
        return I.DecimalType(int(match.group(1)), int(match.group(2)))

    fields = [
        I.NestedField(i, c.name, to_iceberg(c.type), required=not c.nullable, doc=c.doc or None)
        for i, c in enumerate(columns, start=1)
    ]
    return Schema(*fields)


TRADES_SCHEMA_COLUMNS = TRADE_COLUMNS
