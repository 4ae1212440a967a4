"""`rollup status`: per level, the last run, the parent snapshot consumed, newest bar and lag."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs
from pyspark.sql import functions as F

from rollup.specs.times import from_spark, iso
from rollup.storage import state
from rollup.storage.tables import Tables


@attrs.frozen
class LevelStatus:
    level: str
    parent: str
    table: str
    last_run_id: str | None
    last_run_at: str | None
    position: int | None
    parent_snapshot: int | None
    pending: bool
    bars: int
    newest_window_start: datetime | None
    covered_until: datetime | None
    parent_newest: datetime | None
    lag_seconds: float | None

    def as_json(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = iso(value)
        return out


def _collected(value: datetime | None) -> datetime | None:
    """A collected TIMESTAMP (local naive, see `from_spark`) as aware UTC."""
    return None if value is None else from_spark(value)


def level_status(tables: Tables) -> list[LevelStatus]:
    spark = tables.spark
    out = []
    for level in tables.dag.order():
        table = tables.bars(level)
        parent = tables.parent_of(level)
        position = state.position(spark, table, parent)
        last_run_id, last_run_at = state.last_run(spark, table)
        agg = spark.table(table).agg(
            F.count(F.lit(1)).alias("n"), F.max("window_start").alias("s"),
            F.max("window_end").alias("e"),
        ).first()
        parent_col = "ts" if level.parent is None else "window_end"
        newest_row = tables.parent_frame(level).agg(F.max(parent_col)).first()
        parent_newest = _collected(newest_row[0] if newest_row is not None else None)
        covered = _collected(agg["e"]) if agg else None
        lag = None
        if parent_newest is not None:
            lag = max(0.0, (parent_newest - covered).total_seconds()) if covered else None
        parent_snapshot = state.current_snapshot(spark, parent)
        out.append(LevelStatus(
            level=level.name, parent=level.parent_name, table=level.table,
            last_run_id=last_run_id, last_run_at=last_run_at,
            position=position, parent_snapshot=parent_snapshot,
            pending=parent_snapshot is not None and parent_snapshot != position,
            bars=int(agg["n"]) if agg else 0,
            newest_window_start=_collected(agg["s"]) if agg else None,
            covered_until=covered, parent_newest=parent_newest, lag_seconds=lag,
        ))
    return out
