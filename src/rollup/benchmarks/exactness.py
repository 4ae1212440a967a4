"""The benchmarks' independent exactness check: stored bars against DuckDB's bars of the very
trade files, window by window (never rollup's own plans).

Windows are UTC-aligned and `width_us` microseconds wide (a minute, an hour, a day): a
window's start is `epoch_us - epoch_us % width_us`, computed the same way by DuckDB and in
Python for the keys asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollup.specs.bar import COMBINED_COLUMNS

if TYPE_CHECKING:
    from rollup.storage.tables import Tables

__all__ = ["Key", "Row", "differences", "duckdb_bars", "stored_bars"]

Key = tuple[str, str, int]
"""(exchange, symbol, window_start in epoch microseconds)"""
Row = tuple[Any, ...]
"""open .. trade_count, window_end in epoch microseconds, vwap"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ORACLE_SQL = """
WITH t AS (
  SELECT exchange, symbol, ts, trade_id, price, quantity,
         epoch_us(ts) - epoch_us(ts) % $width AS start_us
  FROM read_parquet($files, union_by_name = true)
)
SELECT t.exchange, t.symbol, t.start_us,
       arg_min(price, (ts, trade_id)) AS open, max(price) AS high, min(price) AS low,
       arg_max(price, (ts, trade_id)) AS close,
       sum(CAST(quantity AS DECIMAL(38,8))) AS volume,
       sum(CAST(price AS DECIMAL(38,8)) * CAST(quantity AS DECIMAL(38,8))) AS quote_volume,
       count(*) AS trade_count
FROM t JOIN oracle_keys k
  ON t.exchange = k.exchange AND t.symbol = k.symbol AND t.start_us = k.start_us
GROUP BY t.exchange, t.symbol, t.start_us
"""
"""Exact bars of the keyed UTC windows of `$width` microseconds, in DuckDB, straight from the
trades' Parquet files (DuckDB runs in UTC)."""


def duckdb_bars(con: Any, files: Sequence[Path], keys: set[Key], width_us: int
                ) -> dict[Key, Row]:
    """DuckDB's bars of the windows `keys` (of `width_us` microseconds) over the trades in
    `files`; a key without trades has no row."""
    import pyarrow as pa

    from rollup.specs.bar import vwap_of

    ordered = sorted(keys)
    frame = pa.table({"exchange": [k[0] for k in ordered], "symbol": [k[1] for k in ordered],
                      "start_us": pa.array([k[2] for k in ordered], pa.int64())})
    con.register("oracle_keys", frame)
    try:
        rows = con.execute(_ORACLE_SQL, {"files": [str(f) for f in files],
                                         "width": width_us}).fetchall()
    finally:
        con.unregister("oracle_keys")
    return {(ex, sym, int(start)): (o, h, lo, c, Decimal(vol), Decimal(quote), int(count),
                                    int(start) + width_us, vwap_of(quote, vol))
            for ex, sym, start, o, h, lo, c, vol, quote, count in rows}


def stored_bars(tables: Tables, level: str, keys: set[Key]) -> dict[Key, Row]:
    """The level's stored bars of the windows `keys` (pruned to their window_dates)."""
    from pyspark.sql import functions as F

    spark = tables.spark
    wanted = spark.createDataFrame(sorted(keys), "exchange STRING, symbol STRING, start_us BIGINT")
    days = sorted({(_EPOCH + timedelta(microseconds=k[2])).date() for k in keys})
    bars = (tables.read_bars(level).where(F.col("window_date").isin(days))
            .withColumn("start_us", F.unix_micros("window_start"))
            .join(F.broadcast(wanted), ["exchange", "symbol", "start_us"], "left_semi")
            .select("exchange", "symbol", "start_us", *COMBINED_COLUMNS,
                    F.unix_micros("window_end").alias("end_us"), "vwap"))
    return {(r.exchange, r.symbol, int(r.start_us)):
            (r.open, r.high, r.low, r.close, r.volume, r.quote_volume, int(r.trade_count),
             int(r.end_us), r.vwap) for r in bars.collect()}


def differences(level: str, expected: dict[Key, Row], actual: dict[Key, Row]) -> list[str]:
    """One line per window whose stored bar differs from (or is missing in) the expected."""
    out = []
    for key in sorted(set(expected) | set(actual)):
        want, got = expected.get(key), actual.get(key)
        if want != got:
            at = _EPOCH + timedelta(microseconds=key[2])
            out.append(f"{level} {key[0]}/{key[1]}@{at:%Y-%m-%dT%H:%M}: "
                       f"expected {want}, stored {got}")
    return out
