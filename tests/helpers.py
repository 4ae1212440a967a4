"""Test helpers: trade frames, snapshot ids, and the oracle comparison for a warehouse."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame

from rollup.specs.bar import REQUIRED_TRADE_COLUMNS, TRADE_COLUMNS
from rollup.specs.columns import spark_schema
from rollup.storage.tables import Tables


def trades_frame(spark: Any, rows: list[tuple]) -> DataFrame:  # type: ignore[type-arg]
    """Canonical trades (exchange, symbol, trade_id, ts, price, quantity) as a DataFrame."""
    blanks = (None,) * (len(TRADE_COLUMNS) - len(REQUIRED_TRADE_COLUMNS))  # side, lineage
    return spark.createDataFrame([(*r, *blanks) for r in rows], spark_schema(TRADE_COLUMNS))


def append_trades(tables: Tables, rows: list[tuple]) -> None:  # type: ignore[type-arg]
    trades_frame(tables.spark, rows).writeTo(tables.trades).append()


def snapshot_ids(tables: Tables) -> dict[str, int | None]:
    from rollup.storage.state import current_snapshot

    return {lv.name: current_snapshot(tables.spark, tables.bars(lv)) for lv in tables.dag}


def assert_exact(tables: Tables) -> int:
    """Every stored level equals the independent oracle (tests/oracle.py) of the trades, on
    every window and every column; returns the number of bars checked."""
    from tests.oracle import assert_matches_oracle

    return assert_matches_oracle(tables, horizon_aware=False)
