"""Trade validation: every raw row becomes a canonical trade or a quarantine row with a reason.

Works on raw text columns (`exchange`, `symbol`, `trade_id`, `ts`, `price`, `quantity`,
`side`) as read from CSV or Parquet; decimal text is taken exactly, never through floats.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from rollup.errors import InputError

TIME_UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/ +\-]{0,63}$"
_PLAIN_DECIMAL = r"^\+?[0-9]{1,30}(\.[0-9]{0,8}0*)?$"
_ANY_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_INTEGER = r"^[+-]?[0-9]{1,19}$"
_SIDES = ("buy", "sell")
MAX_PRICE = "9999999999.99999999"
MAX_QUANTITY = "999999999999.99999999"


@attrs.frozen
class TimeBounds:
    """Accepted trade times: [earliest, now + ahead)."""

    earliest: datetime = datetime(2009, 1, 1, tzinfo=UTC)
    ahead: timedelta = timedelta(days=1)

    def latest(self, now: datetime | None = None) -> datetime:
        return (now or datetime.now(UTC)) + self.ahead


def parse_ts(raw: Column, time_unit: str | None) -> Column:
    """Timestamp from ISO-8601 text (UTC when no offset) or epoch numbers in `time_unit`."""
    if time_unit is None:
        text = F.trim(raw)
        return F.when(text.rlike(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"), text.cast("timestamp"))
    if time_unit not in TIME_UNITS:
        raise InputError(f"invalid time unit {time_unit!r}: expected one of s, ms, us, ns")
    number = F.trim(raw).cast("decimal(38,9)")
    if time_unit == "ns":
        micros = number / F.lit(1000)
    else:
        micros = number * F.lit(TIME_UNITS[time_unit])
    whole = micros.cast("decimal(38,0)")
    return F.when(
        F.trim(raw).rlike(_ANY_NUMBER) & (micros == whole),
        F.timestamp_micros(whole.cast("long")),
    )


def _decimal(raw: Column, precision_type: str) -> tuple[Column, Column, Column]:
    """(value, parsable, exact-within-8-decimals) for a decimal given as text."""
    text = F.trim(raw)
    wide = text.cast("decimal(38,18)")
    narrow = wide.cast(precision_type)
    plain = text.rlike(_PLAIN_DECIMAL)
    scientific = text.rlike(_ANY_NUMBER)
    parsable = (plain | scientific) & wide.isNotNull()
    exact = plain | (scientific & (wide == narrow.cast("decimal(38,18)")))
    return narrow, parsable, exact


def validate(raw: DataFrame, *, time_unit: str | None, bounds: TimeBounds,
             now: datetime | None = None) -> DataFrame:
    """Add canonical typed columns and `reason` (null for a good row) to raw text rows."""
    now = now or datetime.now(UTC)
    price, price_ok, price_exact = _decimal(F.col("price"), "decimal(18,8)")
    qty, qty_ok, qty_exact = _decimal(F.col("quantity"), "decimal(20,8)")
    ts = parse_ts(F.col("ts"), time_unit)
    trade_id = F.when(F.trim(F.col("trade_id")).rlike(_INTEGER),
                      F.trim(F.col("trade_id")).cast("long"))
    side = F.lower(F.trim(F.col("side")))
    missing = [
        (F.col(c).isNull() | (F.trim(F.col(c)) == ""), f"missing {c}")
        for c in ("exchange", "symbol", "trade_id", "ts", "price", "quantity")
    ]
    checks: list[tuple[Column, str]] = [
        *missing,
        (~F.trim(F.col("exchange")).rlike(_NAME), "malformed exchange"),
        (~F.trim(F.col("symbol")).rlike(_NAME), "malformed symbol"),
        (trade_id.isNull(), "trade_id is not a 64-bit integer"),
        (ts.isNull(), "unparsable ts"),
        (ts < F.lit(bounds.earliest), f"ts before {bounds.earliest:%Y-%m-%d}"),
        (ts >= F.lit(bounds.latest(now)), "ts in the future"),
        (~price_ok, "price is not a finite decimal number"),
        (~price_exact, "price has more than 8 decimals"),
        (price.isNull(), f"price above {MAX_PRICE}"),
        (price <= 0, "price is not positive"),
        (~qty_ok, "quantity is not a finite decimal number"),
        (~qty_exact, "quantity has more than 8 decimals"),
        (qty.isNull(), f"quantity above {MAX_QUANTITY}"),
        (qty < 0, "quantity is negative"),
        ((price >= F.lit(1_000_000_000)) & (qty >= F.lit(100_000_000_000)),
         "notional above 1e20 (price >= 1e9 with quantity >= 1e11)"),
        (side.isNotNull() & (side != "") & ~side.isin(*_SIDES), "side is not buy or sell"),
    ]
    reason: Column = F.lit(None).cast("string")
    for failed, text in reversed(checks):
        reason = F.when(F.coalesce(failed, F.lit(False)), F.lit(text)).otherwise(reason)
    return raw.select(
        "*",
        F.trim(F.col("exchange")).alias("_exchange"),
        F.trim(F.col("symbol")).alias("_symbol"),
        trade_id.alias("_trade_id"),
        ts.alias("_ts"),
        price.alias("_price"),
        qty.alias("_quantity"),
        F.when(side.isin(*_SIDES), side).alias("_side"),
        reason.alias("reason"),
    )


def canonical(validated: DataFrame) -> DataFrame:
    """The good rows of `validate` in the trades-table column order (without ingested_at)."""
    return validated.where(F.col("reason").isNull()).select(
        F.col("_exchange").alias("exchange"),
        F.col("_symbol").alias("symbol"),
        F.col("_trade_id").alias("trade_id"),
        F.col("_ts").alias("ts"),
        F.col("_price").alias("price"),
        F.col("_quantity").alias("quantity"),
        F.col("_side").alias("side"),
    )
