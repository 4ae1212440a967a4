"""An external trades table with other column names and BIGINT microsecond time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from rollup.errors import ConfigError
from rollup.incremental.runner import run_cascade
from rollup.settings.config import load_settings
from rollup.storage.tables import Tables
from rollup.transforms.source import TradeSource
from tests.helpers import assert_exact

pytestmark = pytest.mark.spark

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(ts: datetime) -> int:
    return (ts - EPOCH) // timedelta(microseconds=1)


def seed_source(spark, namespace, tmp_path, dag=None) -> tuple[str, Tables]:  # type: ignore[no-untyped-def]
    """The seed design's raw_trades table (BIGINT microseconds, other column names, dedupe)
    and rollup's tables reading it (of `dag`, else of the configured DAG)."""
    raw = f"rollup.{namespace}.raw_trades"
    spark.sql(f"CREATE TABLE {raw} (venue STRING, pair STRING, id BIGINT, `timestamp` BIGINT, "
              f"px DECIMAL(18,8), size DECIMAL(20,8)) USING iceberg")
    config = tmp_path / "rollup.toml"
    config.write_text(
        f'namespace = "{namespace}"\n[source]\ntable = "{raw}"\ntime_unit = "us"\n'
        'dedupe = true\n[source.columns]\nexchange = "venue"\nsymbol = "pair"\n'
        'trade_id = "id"\nts = "timestamp"\nprice = "px"\nquantity = "size"\n')
    settings = load_settings(config)
    tables = Tables(spark, "rollup", namespace, dag or settings.dag, source=settings.source)
    tables.create_all()
    return raw, tables


def test_seed_style_source_with_duplicates(spark, namespace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    raw, tables = seed_source(spark, namespace, tmp_path)
    t0 = datetime(2024, 5, 6, 12, tzinfo=UTC)
    rows = [("B", "BTC", i, micros(t0 + timedelta(seconds=17 * i)), Decimal(60000 + i),
             Decimal("0.01")) for i in range(120)]
    rows.append(rows[5])  # the feed delivers a trade twice
    rows.append(("B", "BTC", 9_001, micros(t0), Decimal(-5), Decimal(1)))  # invalid price
    rows.append(("B", "BTC", 9_002, micros(datetime(2001, 1, 1, tzinfo=UTC)), Decimal(5),
                 Decimal(1)))  # before 2009
    spark.createDataFrame(rows, spark.table(raw).schema).writeTo(raw).append()
    run_cascade(tables)
    assert_exact(tables)
    one_m = tables.read_bars("1m")
    assert one_m.groupBy().sum("trade_count").first()[0] == 120  # the duplicate counts once
    rejected = {(r.trade_id, r.reason) for r in spark.table(
        f"rollup.{namespace}.trades_rejected").collect()}
    assert {tid for tid, _ in rejected} == {"9001", "9002"}
    assert all(reason for _, reason in rejected)
    late = [("B", "BTC", 10_000, micros(t0 - timedelta(days=3)), Decimal(1), Decimal(1))]
    spark.createDataFrame(late, spark.table(raw).schema).writeTo(raw).append()
    results = run_cascade(tables)
    assert results[0].windows == 1
    assert_exact(tables)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"table": "raw"}, "expected catalog.namespace.table"),
        ({"table": "a.b.c; drop"}, "invalid source table name part"),
        ({"table": "a.b.c", "columns": {"price": "px`"}}, "invalid source column for price"),
        ({"table": "a.b.c", "columns": {"colour": "x"}}, "unknown trade column 'colour'"),
    ],
)
def test_source_config_errors(section, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message):
        TradeSource.from_config(section)


def test_source_maps_every_feed_column_side_included() -> None:
    source = TradeSource.from_config({"table": "a.b.c", "columns": {"side": "direction"}})
    assert (source.column("side"), source.column("price")) == ("direction", "price")
    with pytest.raises(ConfigError, match="expected one of exchange, symbol, trade_id, ts, "
                                          "price, quantity, side$"):
        TradeSource.from_config({"table": "a.b.c", "columns": {"ingested_at": "x"}})


def test_redelivered_trade_that_moved_counts_in_one_window(spark, namespace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """dedupe = true keeps the earliest delivery: when a re-delivery moves the trade to an
    earlier window, the window it left is recomputed too (issue 13, case 6)."""
    from pyspark.sql import functions as F

    raw, tables = seed_source(spark, namespace, tmp_path)
    t0 = datetime(2024, 5, 6, 12, tzinfo=UTC)
    schema = spark.table(raw).schema
    rows = [("B", "BTC", i, micros(t0 + timedelta(minutes=10 + i)), Decimal(100 + i),
             Decimal(1)) for i in range(5)]
    spark.createDataFrame(rows, schema).writeTo(raw).append()
    run_cascade(tables)
    moved = [("B", "BTC", 4, micros(t0), Decimal(104), Decimal(1))]  # trade 4, 14 min earlier
    spark.createDataFrame(moved, schema).writeTo(raw).append()
    run_cascade(tables)
    counts = {r.window_start.minute: r.trade_count for r in tables.read_bars("1m").where(
        F.col("window_date") == F.lit(t0.date())).collect()}
    assert counts == {0: 1, 10: 1, 11: 1, 12: 1, 13: 1}, counts  # minute 14 is gone
    assert tables.read_bars("1d").first().trade_count == 5
    assert_exact(tables)
