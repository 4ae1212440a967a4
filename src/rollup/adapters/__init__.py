"""Adapters: turn vendor files into rollup's trades frame (a `pyarrow.Table`).

Every adapter returns a table with exactly the columns of `TRADES_SCHEMA`, in that order
(optionally followed by documented vendor-specific extra columns):

- ``exchange``  string, not null: venue code
- ``symbol``    string, not null: instrument code
- ``trade_id``  int64, not null: unique and increasing per (exchange, symbol); the tie-break
  for trades with equal ``ts``
- ``ts``        timestamp[us, tz=UTC], not null
- ``price``     decimal128(18, 8), not null
- ``quantity``  decimal128(20, 8), not null, >= 0
- ``side``      string, nullable: "buy", "sell" or null

`TRADES_SCHEMA` is derived from `rollup.specs.bar.FEED_COLUMNS` (the trades table's columns without
``ingested_at`` and ``trade_ref``, which rollup stamps at ingestion).
"""

from __future__ import annotations

from rollup.adapters.frame import (
    PRICE_TYPE,
    QUANTITY_TYPE,
    TRADES_SCHEMA,
    TS_TYPE,
    VOLUME_TYPE,
)
from rollup.adapters.lean import (
    MINUTE_BARS_SCHEMA,
    lean_data_dir,
    read_lean_minute_bars,
    read_lean_trades,
)

__all__ = [
    "MINUTE_BARS_SCHEMA",
    "PRICE_TYPE",
    "QUANTITY_TYPE",
    "TRADES_SCHEMA",
    "TS_TYPE",
    "VOLUME_TYPE",
    "lean_data_dir",
    "read_lean_minute_bars",
    "read_lean_trades",
]
