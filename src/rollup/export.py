"""Reading bars with filters (as values, never SQL text) and writing them out."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollup.errors import InputError
from rollup.times import parse_instant

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

    from rollup.tables import Tables

FORMATS = ("table", "csv", "json", "parquet")


def select_bars(
    tables: Tables,
    timeframe: str,
    *,
    exchange: str | None = None,
    symbol: str | None = None,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
) -> DataFrame:
    """Bars of one level filtered by exchange, symbol and [start, end) on window_start."""
    from pyspark.sql import functions as F

    lo = parse_instant(start, "start") if start is not None else None
    hi = parse_instant(end, "end") if end is not None else None
    level = tables.dag.level(timeframe)
    if not tables.exists(level.table):
        raise InputError(
            f"no table {level.table} in namespace {tables.namespace!r} of catalog "
            f"{tables.catalog!r}: run `rollup init` and `rollup run`, or check --warehouse and "
            "--namespace")
    df = tables.read_bars(level)
    if exchange is not None:
        df = df.where(F.col("exchange") == F.lit(exchange))
    if symbol is not None:
        df = df.where(F.col("symbol") == F.lit(symbol))
    if lo is not None:
        df = df.where(F.col("window_start") >= F.lit(lo)).where(F.col("window_date") >= lo.date())
    if hi is not None:
        df = df.where(F.col("window_start") < F.lit(hi)).where(F.col("window_date") <= hi.date())
    return df.orderBy("exchange", "symbol", "window_start")


def to_pandas_utc(df: DataFrame) -> pd.DataFrame:
    """Collect bars to pandas with timestamp columns as UTC-aware values."""
    frame: Any = df.toPandas()
    for name, kind in df.dtypes:
        if kind == "timestamp":
            frame[name] = frame[name].dt.tz_localize("UTC")
    return frame


def write_frame(frame: pd.DataFrame, fmt: str, output: str | None) -> None:
    """Write bars as an aligned table, CSV, JSON lines or Parquet (to a file or stdout)."""
    if fmt not in FORMATS:
        raise InputError(f"invalid format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        if not output:
            raise InputError("--format parquet needs --output FILE")
        frame.to_parquet(Path(output), index=False)
        return
    if fmt == "table":
        text = frame.to_string(index=False) if len(frame) else "(no bars)"
        text += "\n"
    elif fmt == "csv":
        text = frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        copy = frame.copy()
        for col in copy.columns:
            if str(copy[col].dtype).startswith("datetime"):
                copy[col] = copy[col].map(lambda v: v.isoformat().replace("+00:00", "Z"))
            elif copy[col].dtype == object:
                copy[col] = copy[col].map(lambda v: str(v) if v is not None and
                                          not isinstance(v, str) else v)
        text = copy.to_json(orient="records", lines=True, date_format="iso")
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)
