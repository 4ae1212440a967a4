"""The `Bar` value, its combine operation and the one definition of trade and bar columns.

The bar semantics are the contract of rollup (see docs/semantics.md):
open/close are the prices of the earliest/latest trade by (ts, trade_id); high/low are the
max/min price; volume is the sum of quantities; quote_volume the exact sum of price x quantity;
trade_count the number of trades; vwap = quote_volume / volume rounded half-up to 8 decimals
(None when volume is zero); buy_volume/sell_volume and buy_count/sell_count the quantity and
number of the trades whose side is buy/sell (a trade without a side counts in neither);
open_ts/close_ts the times of the opening/closing trades. Combining bars of adjacent windows
gives exactly the bar of the union window, which is what makes every level of the cascade
exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal

import attrs

PRICE_SCALE = 8
_EIGHT = Decimal(1).scaleb(-PRICE_SCALE)
_WIDE = Context(prec=80)


@attrs.frozen
class Column:
    """A neutral column description from which Spark and Iceberg schemas are derived."""

    name: str
    type: str  # 'string', 'long', 'timestamp', 'date' or 'decimal(p,s)'
    nullable: bool = True
    doc: str = ""


PRICE = "decimal(18,8)"
QUANTITY = "decimal(20,8)"
VOLUME = "decimal(38,8)"
QUOTE = "decimal(38,16)"

FEED_COLUMNS: tuple[Column, ...] = (
    Column("exchange", "string", False, "venue code"),
    Column("symbol", "string", False, "instrument code"),
    Column("trade_id", "long", False, "64-bit key, unique per (exchange, symbol); tie-break"),
    Column("ts", "timestamp", False, "trade time, UTC, microseconds"),
    Column("price", PRICE, False, "trade price, up to 8 decimals"),
    Column("quantity", QUANTITY, False, "trade quantity, up to 8 decimals"),
    Column("side", "string", True, "buy, sell or null"),
)
"""The trade columns a feed supplies: a trade file's columns, an adapter's frame."""

TRADE_COLUMNS: tuple[Column, ...] = (
    *FEED_COLUMNS,
    Column("ingested_at", "timestamp", True, "when rollup ingested the row"),
    Column("trade_ref", "string", True, "the feed's own trade id text (string and daily ids)"),
)
"""The columns of the trades table: the feed's, then those rollup stamps."""

FEED_NAMES: tuple[str, ...] = tuple(c.name for c in FEED_COLUMNS)
REQUIRED_TRADE_COLUMNS: tuple[str, ...] = tuple(c.name for c in FEED_COLUMNS if not c.nullable)
"""The feed columns every trade must have (all but `side`)."""
TRADE_KEY: tuple[str, ...] = ("exchange", "symbol", "trade_id")
"""What identifies a trade; its other columns are its content."""

REJECTED_COLUMNS: tuple[Column, ...] = (
    *(Column(name, "string", True, "original text") for name in FEED_NAMES),
    Column("source_file", "string", True, "file the row came from"),
    Column("source_row", "long", True, "1-based data row within the file"),
    Column("reason", "string", False, "why the row was set aside"),
    Column("rejected_at", "timestamp", False, "when it was quarantined"),
    Column("ingest_id", "string", True, "id of the ingest run"),
)

RICH_COLUMNS: tuple[Column, ...] = (
    Column("buy_volume", VOLUME, True, "sum of quantities of trades whose side is buy"),
    Column("sell_volume", VOLUME, True, "sum of quantities of trades whose side is sell"),
    Column("buy_count", "long", True, "number of trades whose side is buy"),
    Column("sell_count", "long", True, "number of trades whose side is sell"),
    Column("open_ts", "timestamp", True, "ts of the earliest trade by (ts, trade_id)"),
    Column("close_ts", "timestamp", True, "ts of the latest trade by (ts, trade_id)"),
)
"""The bar columns added after version 0.1 (issue 15). Nullable: bars written before a table
was upgraded read them as null (unknown) until a backfill recomputes them."""

BAR_COLUMNS: tuple[Column, ...] = (
    Column("exchange", "string", False, "venue code"),
    Column("symbol", "string", False, "instrument code"),
    Column("window_start", "timestamp", False, "window start, inclusive, UTC"),
    Column("window_end", "timestamp", False, "window end, exclusive, UTC"),
    Column("window_date", "date", False, "UTC date of window_start (partition key)"),
    Column("open", PRICE, False, "price of the earliest trade by (ts, trade_id)"),
    Column("high", PRICE, False, "highest price"),
    Column("low", PRICE, False, "lowest price"),
    Column("close", PRICE, False, "price of the latest trade by (ts, trade_id)"),
    Column("volume", VOLUME, False, "sum of quantities"),
    Column("quote_volume", QUOTE, False, "exact sum of price x quantity"),
    Column("trade_count", "long", False, "number of trades"),
    Column("vwap", PRICE, True, "quote_volume / volume, half-up to 8 decimals; null if volume 0"),
    *RICH_COLUMNS,
    Column("created_at", "timestamp", False, "when the bar was first written"),
    Column("updated_at", "timestamp", False, "when the bar's values last changed"),
    Column("run_id", "string", False, "id of the run that last changed the bar"),
)

VALUE_COLUMNS: tuple[str, ...] = (
    "open", "high", "low", "close", "volume", "quote_volume", "trade_count", "vwap",
    *(c.name for c in RICH_COLUMNS),
)
COMBINED_COLUMNS: tuple[str, ...] = tuple(c for c in VALUE_COLUMNS if c != "vwap")
"""The value columns that combining bars computes (vwap is derived from two of them)."""
KEY_COLUMNS: tuple[str, ...] = ("exchange", "symbol", "window_start")
LINEAGE_COLUMNS: tuple[str, ...] = ("created_at", "updated_at", "run_id")
PLANNED_BAR_COLUMNS: tuple[Column, ...] = tuple(
    c for c in BAR_COLUMNS if c.name not in LINEAGE_COLUMNS)
"""The bar columns a plan computes (all but the lineage the sink stamps)."""


def vwap_of(quote_volume: Decimal, volume: Decimal) -> Decimal | None:
    """quote_volume / volume rounded half-up to 8 decimals; None for zero volume."""
    if volume == 0:
        return None
    return _WIDE.divide(quote_volume, volume).quantize(_EIGHT, rounding=ROUND_HALF_UP)


def _add(left: Decimal | None, right: Decimal | None) -> Decimal | None:
    """Exact sum of two known amounts; None (unknown) if either is unknown."""
    return None if left is None or right is None else _WIDE.add(left, right)


def _count(left: int | None, right: int | None) -> int | None:
    """Sum of two known counts; None (unknown) if either is unknown."""
    return None if left is None or right is None else left + right


@attrs.frozen
class Bar:
    """One OHLCV bar of one instrument over [window_start, window_end).

    The columns of `RICH_COLUMNS` default to None, unknown (as in a bar written before its
    table was upgraded); a combination with an unknown sum is unknown, never partial.
    """

    exchange: str
    symbol: str
    window_start: datetime
    window_end: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trade_count: int
    buy_volume: Decimal | None = None
    sell_volume: Decimal | None = None
    buy_count: int | None = None
    sell_count: int | None = None
    open_ts: datetime | None = None
    close_ts: datetime | None = None

    @property
    def vwap(self) -> Decimal | None:
        return vwap_of(self.quote_volume, self.volume)

    @classmethod
    def of_trade(
        cls, exchange: str, symbol: str, window_start: datetime, window_end: datetime,
        price: Decimal, quantity: Decimal, side: str | None = None, ts: datetime | None = None,
    ) -> Bar:
        """The bar of a single trade; `side` is 'buy', 'sell' or None, `ts` its time
        (default `window_start`)."""
        zero = Decimal(0).scaleb(-PRICE_SCALE)
        at = window_start if ts is None else ts
        return cls(exchange, symbol, window_start, window_end, price, price, price, price,
                   quantity, _WIDE.multiply(price, quantity), 1,
                   quantity if side == "buy" else zero, quantity if side == "sell" else zero,
                   int(side == "buy"), int(side == "sell"), at, at)

    def combine(self, later: Bar) -> Bar:
        """The bar of the union of two adjacent windows; `later` must follow `self`.

        Associative: (a + b) + c == a + (b + c).
        """
        if (self.exchange, self.symbol) != (later.exchange, later.symbol):
            raise ValueError(
                f"cannot combine bars of {self.exchange}/{self.symbol} and "
                f"{later.exchange}/{later.symbol}"
            )
        if later.window_start < self.window_end:
            raise ValueError(
                f"cannot combine bar at {later.window_start} before the end {self.window_end}"
            )
        return Bar(
            self.exchange, self.symbol, self.window_start, later.window_end,
            self.open, max(self.high, later.high), min(self.low, later.low), later.close,
            self.volume + later.volume, _WIDE.add(self.quote_volume, later.quote_volume),
            self.trade_count + later.trade_count,
            _add(self.buy_volume, later.buy_volume), _add(self.sell_volume, later.sell_volume),
            _count(self.buy_count, later.buy_count), _count(self.sell_count, later.sell_count),
            self.open_ts, later.close_ts,
        )


def combine_all(bars: Iterable[Bar]) -> Bar | None:
    """Fold bars (in any order) into one by window order; None for no bars (the identity)."""
    ordered = sorted(bars, key=lambda b: b.window_start)
    if not ordered:
        return None
    result = ordered[0]
    for bar in ordered[1:]:
        result = result.combine(bar)
    return result
