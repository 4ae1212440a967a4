"""The Arrow types and schema of the trades frame every adapter returns."""

from __future__ import annotations

from rollup.specs.bar import FEED_COLUMNS, PRICE, QUANTITY, VOLUME
from rollup.specs.columns import arrow_schema, arrow_type

PRICE_TYPE = arrow_type(PRICE)
QUANTITY_TYPE = arrow_type(QUANTITY)
VOLUME_TYPE = arrow_type(VOLUME)
TS_TYPE = arrow_type("timestamp")

TRADES_SCHEMA = arrow_schema(FEED_COLUMNS)
"""The pyarrow schema of the trades frame produced by every adapter and by
`rollup.adapters.synthetic`."""
