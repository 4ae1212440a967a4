"""Iceberg tables: schemas derived from one definition, partitioning, properties, idempotent."""

from __future__ import annotations

import pytest

from rollup.specs.bar import BAR_COLUMNS, FEED_COLUMNS, TRADE_COLUMNS
from rollup.specs.columns import arrow_schema, iceberg_schema, spark_schema, spark_type
from rollup.storage.tables import TABLE_PROPERTIES

pytestmark = pytest.mark.spark


def test_spark_and_iceberg_schemas_come_from_one_definition() -> None:
    spark_fields = spark_schema(BAR_COLUMNS).fields
    ice_fields = iceberg_schema(BAR_COLUMNS).fields
    assert [f.name for f in spark_fields] == [c.name for c in BAR_COLUMNS]
    assert [f.name for f in ice_fields] == [c.name for c in BAR_COLUMNS]
    assert [f.required for f in ice_fields] == [not c.nullable for c in BAR_COLUMNS]
    assert str(ice_fields[[c.name for c in BAR_COLUMNS].index("quote_volume")].field_type) == \
        "decimal(38, 16)"
    arrow = arrow_schema(BAR_COLUMNS)
    assert arrow.names == [c.name for c in BAR_COLUMNS]
    assert [f.nullable for f in arrow] == [c.nullable for c in BAR_COLUMNS]
    assert str(arrow.field("quote_volume").type) == "decimal128(38, 16)"
    assert str(arrow.field("window_start").type) == "timestamp[us, tz=UTC]"


def test_the_trades_frame_is_the_feed_part_of_the_trades_table() -> None:
    from rollup.adapters import TRADES_SCHEMA

    assert TRADE_COLUMNS[:len(FEED_COLUMNS)] == FEED_COLUMNS
    assert TRADES_SCHEMA.equals(arrow_schema(FEED_COLUMNS))
    assert TRADES_SCHEMA.names == [c.name for c in TRADE_COLUMNS
                                   if c.name not in ("ingested_at", "trade_ref")]
    with pytest.raises(ValueError, match="unknown column type 'float'"):
        spark_type("float")


def test_tables_created_with_seed_layout_and_properties(tables) -> None:  # type: ignore[no-untyped-def]
    spark = tables.spark
    stored = spark.table(tables.bars("1m")).schema
    assert [(f.name, f.dataType) for f in stored.fields] == [
        (c.name, spark_type(c.type)) for c in BAR_COLUMNS
    ]
    assert [f.name for f in spark.table(tables.trades).schema.fields] == [
        c.name for c in TRADE_COLUMNS]
    for level in tables.dag:
        partitions = spark.sql(f"DESCRIBE TABLE {tables.bars(level)}").collect()
        text = " ".join(f"{r.col_name} {r.data_type}" for r in partitions)
        assert f"{level.partitioning}(window_date)" in text, (level.name, text)
        props = {r.key: r.value for r in spark.sql(
            f"SHOW TBLPROPERTIES {tables.bars(level)}").collect()}
        for key, value in TABLE_PROPERTIES.items():
            if key == "format-version":
                continue  # reported as the table's format, checked below
            assert props.get(key) == value, (level.name, key)
        assert props.get("format-version", "2") == "2"
    assert tables.create_all() == []  # idempotent: nothing new the second time
