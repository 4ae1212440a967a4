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

The column names, types and nullability agree with `rollup.bar.TRADE_COLUMNS` (minus
``ingested_at``, which is stamped at ingestion and not by an adapter).
"""

from __future__ import annotations

import pyarrow as pa

PRICE_TYPE: pa.DataType = pa.decimal128(18, 8)
QUANTITY_TYPE: pa.DataType = pa.decimal128(20, 8)
VOLUME_TYPE: pa.DataType = pa.decimal128(38, 8)
TS_TYPE: pa.DataType = pa.timestamp("us", tz="UTC")

TRADES_SCHEMA = pa.schema(
    [
        pa.field("exchange", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("trade_id", pa.int64(), nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),
        pa.field("price", PRICE_TYPE, nullable=False),
        pa.field("quantity", QUANTITY_TYPE, nullable=False),
        pa.field("side", pa.string(), nullable=True),
    ]
)
"""The pyarrow schema of the trades frame produced by every adapter and by `rollup.synthetic`."""

from rollup.adapters.lean import (  # noqa: E402  (needs the constants above)
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
