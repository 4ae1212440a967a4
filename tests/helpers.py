"""Test helpers: trade frames, and the full-rebuild oracle comparison for a warehouse."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rollup.bar import TRADE_COLUMNS
from rollup.plans import BAR_OUTPUT, Rollup
from rollup.schema import spark_schema
from rollup.tables import Tables


def trades_frame(spark: Any, rows: list[tuple]) -> DataFrame:  # type: ignore[type-arg]
    """Canonical trades (exchange, symbol, trade_id, ts, price, quantity) as a DataFrame."""
    blanks = (None,) * (len(TRADE_COLUMNS) - 6)  # side, ingested_at, trade_ref
    return spark.createDataFrame([(*r, *blanks) for r in rows], spark_schema(TRADE_COLUMNS))


def append_trades(tables: Tables, rows: list[tuple]) -> None:  # type: ignore[type-arg]
    trades_frame(tables.spark, rows).writeTo(tables.trades).append()


def snapshot_ids(tables: Tables) -> dict[str, int | None]:
    from rollup.state import current_snapshot

    return {lv.name: current_snapshot(tables.spark, tables.bars(lv)) for lv in tables.dag}


def stored_vs_rebuild(tables: Tables) -> dict[str, tuple[dict, dict]]:  # type: ignore[type-arg]
    """Per level: (stored bars, bars rebuilt straight from the trades), in one Spark job."""
    trades = tables.canonical_trades()
    parts = []
    for level in tables.dag.order():
        stored = tables.read_bars(level).select(*BAR_OUTPUT)
        rebuilt = Rollup(level).plan_direct(trades)
        parts.append(stored.withColumn("_l", F.lit(level.name)).withColumn("_k", F.lit("s")))
        parts.append(rebuilt.withColumn("_l", F.lit(level.name)).withColumn("_k", F.lit("r")))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    out: dict[str, tuple[dict, dict]] = defaultdict(lambda: ({}, {}))  # type: ignore[type-arg]
    for row in union.collect():
        values = row.asDict()
        level, kind = values.pop("_l"), values.pop("_k")
        key = (values["exchange"], values["symbol"], values["window_start"].replace(tzinfo=UTC))
        target = out[level][0 if kind == "s" else 1]
        assert key not in target, f"duplicate bar {key} in {level} ({kind})"
        target[key] = tuple(values.values())
    return out


def assert_exact(tables: Tables) -> int:
    """Every level equals a full rebuild from the trades; returns the number of bars checked."""
    checked = 0
    compared = stored_vs_rebuild(tables)
    for level in tables.dag.order():
        stored, rebuilt = compared[level.name]
        missing = set(rebuilt) - set(stored)
        extra = set(stored) - set(rebuilt)
        assert not missing and not extra, (level.name, sorted(missing)[:3], sorted(extra)[:3])
        wrong = [k for k in rebuilt if rebuilt[k] != stored[k]]
        assert not wrong, (level.name, [(stored[k], rebuilt[k]) for k in wrong[:2]])
        checked += len(stored)
    return checked
