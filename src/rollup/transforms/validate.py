"""Trade validation: every raw row becomes a canonical trade or a quarantine row with a reason.

Works on raw text columns (`exchange`, `symbol`, `trade_id`, `ts`, `price`, `quantity`,
`side`) as read from CSV or Parquet; decimal text is checked and converted exactly, never
through floats. The rules and the reason texts are documented in docs/input.md; a row gets
the reason of the first rule it breaks (the `R_...` constants are in that order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import attrs
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from rollup.errors import ConfigError, InputError, TimeframeError
from rollup.specs.bar import FEED_COLUMNS, FEED_NAMES, PRICE, QUANTITY, REQUIRED_TRADE_COLUMNS
from rollup.specs.trade_ids import R_DAILY, R_INTEGER, TradeIds
from rollup.timeframes import Timeframe

TIME_UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}
CORRUPT_COLUMN = "_corrupt_record"
"""Set by the CSV reader to the raw line when a row has too few or too many fields."""

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/ +\-]{0,63}$"
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?$"
_PLAIN = r"^\+?([0-9]{1,30}(\.[0-9]{0,8}0*)?|\.[0-9]{1,8}0*)$"  # fast path: fits 8 decimals
_NOT_FINITE = r"^(?i)[+-]?(nan|inf|infinity)$"
_INTEGER = r"^[+-]?[0-9]{1,19}(\.0*)?$"
_EPOCH_NUMBER = r"^[+-]?[0-9]+(\.[0-9]+)?$"
_SUB_MICRO = r":[0-9]{2}[.,][0-9]{6}[0-9]*[1-9]"  # a 7th..nth fraction digit that is not 0
_SIDES = ("buy", "sell")
SCALE = 8
MAX_PRICE = "9999999999.99999999"
MAX_QUANTITY = "999999999999.99999999"

# Reasons in the order the rules are applied (a row gets the first one it breaks).
R_FIELDS = "row has the wrong number of fields"
R_TRADE_ID = R_INTEGER
R_TS_NUMBER = "ts is a number but no time unit was given (--time-unit)"
R_TS = "unparsable ts"
R_TS_FINE = "ts finer than microseconds"
R_PRICE_NUMBER = "price is not a decimal number"
R_PRICE_NAN = "price is NaN or infinite"
R_PRICE_SCALE = f"price has more than {SCALE} decimals"
R_PRICE_MAX = f"price above {MAX_PRICE}"
R_PRICE_SIGN = "price is not positive"
R_QTY_NUMBER = "quantity is not a decimal number"
R_QTY_NAN = "quantity is NaN or infinite"
R_QTY_SCALE = f"quantity has more than {SCALE} decimals"
R_QTY_MAX = f"quantity above {MAX_QUANTITY}"
R_QTY_SIGN = "quantity is negative"
R_NOTIONAL = "notional above 1e20 (price >= 1e9 with quantity >= 1e11)"
R_SIDE = "side is not buy or sell"
R_CONFLICT_FILE = "trade_id repeated in this file with different content"
R_CONFLICT_STORED = "trade_id already stored with different content"

TYPE_REASONS = frozenset({R_TRADE_ID, R_DAILY, R_TS_NUMBER, R_TS, R_PRICE_NUMBER, R_QTY_NUMBER})


def is_systematic(reason: str) -> bool:
    """True for reasons that, when every row of a file has the same one, mean the file is wrong.

    A column of the wrong type or order gives every row the same parse failure; a wrong time
    unit puts every row outside the accepted time range.
    """
    return reason in TYPE_REASONS or reason.startswith(("ts before ", "ts later than now"))


def _missing(column: str) -> str:
    return f"missing {column}"


def _malformed(column: str) -> str:
    return f"malformed {column}"


def _ts_early(bounds: TimeBounds) -> str:
    return f"ts before {bounds.earliest:%Y-%m-%dT%H:%M:%SZ}"


def _ts_late(bounds: TimeBounds) -> str:
    return f"ts later than now + {bounds.ahead_text}"


def _to_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ConfigError(f"invalid earliest trade time {value!r}: expected a date or a datetime")


@attrs.frozen
class TimeBounds:
    """Accepted trade times: [earliest, now + ahead), both configurable.

    Defaults: 2009-01-01T00:00Z (nothing traded electronically in crypto before) to one day
    ahead of the clock (clock skew of feeds, never a real future trade).
    """

    earliest: datetime = attrs.field(default=datetime(2009, 1, 1, tzinfo=UTC), converter=_to_utc)
    ahead: timedelta = attrs.field(default=timedelta(days=1))

    @ahead.validator
    def _check_ahead(self, _: object, value: timedelta) -> None:
        if not isinstance(value, timedelta) or value < timedelta(0):
            raise ConfigError(f"invalid max_ahead {value!r}: expected a duration >= 0")

    def latest(self, now: datetime | None = None) -> datetime:
        return (now or datetime.now(UTC)) + self.ahead

    @property
    def ahead_text(self) -> str:
        seconds = int(self.ahead.total_seconds())
        for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
            if seconds and seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> TimeBounds:
        """Bounds from the `[ingest]` TOML section: `earliest` (date) and `max_ahead` ("1d")."""
        section = dict(section or {})
        unknown = sorted(set(section) - {"earliest", "max_ahead", "trade_ids", "trade_id_zone"})
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)} in [ingest]: expected "
                              "earliest, max_ahead, trade_ids and trade_id_zone")
        kwargs: dict[str, Any] = {}
        if "earliest" in section:
            value = section["earliest"]
            if isinstance(value, str):
                from rollup.specs.times import parse_instant

                try:
                    value = parse_instant(value, "earliest trade time")
                except InputError as exc:
                    raise ConfigError(str(exc)) from None
            kwargs["earliest"] = value
        if "max_ahead" in section:
            text = section["max_ahead"]
            try:
                kwargs["ahead"] = Timeframe.parse(str(text)).duration
            except TimeframeError:
                raise ConfigError(f"invalid max_ahead {text!r} in [ingest]: expected a duration "
                                  "such as '30m', '6h' or '1d'") from None
        return cls(**kwargs)


def is_timestamp_type(kind: T.DataType) -> bool:
    """Whether a column of this type holds timestamps (and skips ts text parsing)."""
    return isinstance(kind, T.TimestampType | T.TimestampNTZType)


def with_trade_columns(df: DataFrame) -> DataFrame:
    """`df` with every trade column present (a missing one is null text); types are kept."""
    missing = [F.lit(None).cast("string").alias(c) for c in FEED_NAMES if c not in df.columns]
    return df.select("*", *missing) if missing else df


def _typed_decimal(raw: Column, kind: T.DataType | None,
                   precision_type: str) -> tuple[Column, Column, Column, Column] | None:
    """The fast path of `_decimal` for an integer or decimal column of at most 8 decimals."""
    exact = isinstance(kind, T.DecimalType) and kind.scale <= SCALE
    if not (exact or isinstance(kind, T.IntegralType)):
        return None
    yes, no = F.lit(True), F.lit(False)
    return raw.cast(precision_type), yes, no, yes


def parse_ts(raw: Column, time_unit: str | None) -> Column:
    """Timestamp from ISO-8601 text (UTC when no offset) or epoch numbers in `time_unit`."""
    if time_unit is None:
        text = F.trim(raw)
        return F.when(text.rlike(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"), text.cast("timestamp"))
    return F.when(_epoch_exact(raw, time_unit), F.timestamp_micros(_epoch_micros(raw, time_unit)
                                                                  .cast("long")))


def _check_unit(time_unit: str | None) -> None:
    if time_unit is not None and time_unit not in TIME_UNITS:
        raise InputError(f"invalid time unit {time_unit!r}: expected one of s, ms, us, ns")


def _epoch_micros(raw: Column, time_unit: str) -> Column:
    number = F.trim(raw).cast("decimal(38,9)")
    scale = TIME_UNITS[time_unit]
    return number / F.lit(1000) if scale is None else number * F.lit(scale)


def _epoch_exact(raw: Column, time_unit: str) -> Column:
    micros = _epoch_micros(raw, time_unit)
    return F.trim(raw).rlike(_EPOCH_NUMBER) & (micros == micros.cast("decimal(38,0)"))


def _decimal(text: Column, precision_type: str) -> tuple[Column, Column, Column, Column]:
    """(value, is-a-number, is NaN/inf, fits in 8 decimals) for trimmed decimal text.

    Plain text such as `100.5` takes one regular expression. Otherwise the number of
    decimals is counted on the text itself (mantissa digits and exponent), so `1e-20` or
    `0.000000001` are caught instead of being rounded to zero by a cast.
    """
    plain = text.rlike(_PLAIN)
    mantissa = F.regexp_extract(text, r"^[+-]?([0-9]*)\.?([0-9]*)", 0)
    fraction = F.regexp_extract(text, r"^[+-]?[0-9]*\.([0-9]*)", 1)
    digits = F.regexp_replace(mantissa, r"[^0-9]", "")
    significant = F.regexp_replace(digits, r"0+$", "")
    exponent = F.coalesce(F.regexp_extract(text, r"[eE]([+-]?[0-9]+)$", 1).cast("int"), F.lit(0))
    decimals = (F.length(fraction) - exponent - (F.length(digits) - F.length(significant)))
    number = F.when(plain, F.lit(True)).otherwise(text.rlike(_NUMBER))
    not_finite = F.when(plain, F.lit(False)).otherwise(text.rlike(_NOT_FINITE))
    fits = F.when(plain, F.lit(True)).otherwise(
        (decimals <= SCALE) | (F.regexp_replace(digits, "0", "") == ""))
    value = F.when(number & fits, text.cast(f"decimal(38,{SCALE})").cast(precision_type))
    return value, number, not_finite, fits


def validate(raw: DataFrame, *, time_unit: str | None, bounds: TimeBounds,
             now: datetime | None = None, trade_ids: TradeIds | None = None) -> DataFrame:
    """Add canonical typed columns (`_exchange` ... `_side`, `_trade_ref`) and `reason`.

    `raw` has the trade columns of `FEED_NAMES`, as text or already typed (a timestamp `ts`,
    decimal or integer `price`/`quantity`/`trade_id`: those skip text parsing), and
    optionally CORRUPT_COLUMN; every other column is kept. `reason` is null for good rows.
    `_trade_id` is the stored key of the `trade_ids` scheme (null for the `none` scheme,
    whose key needs the row order: `rollup.ingestion.batch` adds it). Built in three projections
    (trimmed text, parsed values and flags, reason) so each expression is computed once.
    """
    _check_unit(time_unit)
    ids = trade_ids or TradeIds()
    now = now or datetime.now(UTC)
    raw = with_trade_columns(raw)
    kinds = {f.name: f.dataType for f in raw.schema.fields}
    texts = [F.trim(F.col(c).cast("string")).alias(f"_t_{c}") for c in FEED_NAMES]
    trimmed = raw.select("*", *texts)
    t = {c: F.col(f"_t_{c}") for c in FEED_NAMES}
    price = (_typed_decimal(F.col("price"), kinds["price"], PRICE) or _decimal(t["price"], PRICE))
    qty = (_typed_decimal(F.col("quantity"), kinds["quantity"], QUANTITY)
           or _decimal(t["quantity"], QUANTITY))
    if is_timestamp_type(kinds["ts"]):
        ts_value, ts_unit_problem, sub_micro = (F.col("ts").cast("timestamp"), F.lit(False),
                                                F.lit(False))
    else:
        ts_value = parse_ts(t["ts"], time_unit)
        # the regular expressions run only where they can matter: a fraction of more than
        # six digits, a value that did not parse
        sub_micro = F.when(F.length(F.substring_index(t["ts"], ".", -1)) > 6,
                           t["ts"].rlike(_SUB_MICRO)).otherwise(F.lit(False))
        if time_unit is None:
            ts_unit_problem = F.when(ts_value.isNull(), t["ts"].rlike(_EPOCH_NUMBER)).otherwise(
                F.lit(False))
        else:
            ts_unit_problem = t["ts"].rlike(_EPOCH_NUMBER) & ~_epoch_exact(t["ts"], time_unit)
    if ids.scheme == "integer" and isinstance(kinds["trade_id"], T.IntegralType):
        id_key, id_problem = F.col("trade_id").cast("long"), None
    else:
        id_key, id_problem = ids.key(t["trade_id"], F.col("_ts"))
    parsed = trimmed.select(
        "*", ts_value.alias("_ts"), ts_unit_problem.alias("_f_ts_unit"),
        sub_micro.alias("_f_ts_fine"),
        price[0].alias("_price"), price[1].alias("_f_price_number"),
        price[2].alias("_f_price_nan"), price[3].alias("_f_price_fits"),
        qty[0].alias("_quantity"), qty[1].alias("_f_qty_number"),
        qty[2].alias("_f_qty_nan"), qty[3].alias("_f_qty_fits"),
        F.lower(t["side"]).alias("_f_side"),
    ).select("*", id_key.alias("_trade_id"),
             (id_problem if id_problem is not None else F.lit(None).cast("string"))
             .alias("_f_id_problem"))
    c = F.col
    side = c("_f_side")
    required = [n for n in REQUIRED_TRADE_COLUMNS if n != "trade_id" or ids.scheme != "none"]
    checks: list[tuple[Column, str | Column]] = []
    if CORRUPT_COLUMN in raw.columns:
        checks.append((c(CORRUPT_COLUMN).isNotNull(), R_FIELDS))
    checks += [(t[name].isNull() | (t[name] == ""), _missing(name)) for name in required]
    checks += [
        (~t["exchange"].rlike(_NAME), _malformed("exchange")),
        (~t["symbol"].rlike(_NAME), _malformed("symbol")),
        (c("_f_id_problem").isNotNull(), c("_f_id_problem")),
        (c("_f_ts_unit"), R_TS_NUMBER if time_unit is None else R_TS_FINE),
        (c("_ts").isNull(), R_TS),
        (c("_f_ts_fine"), R_TS_FINE),
        (c("_ts") < F.lit(bounds.earliest), _ts_early(bounds)),
        (c("_ts") >= F.lit(bounds.latest(now)), _ts_late(bounds)),
        (c("_f_price_nan"), R_PRICE_NAN),
        (~c("_f_price_number"), R_PRICE_NUMBER),
        (~c("_f_price_fits"), R_PRICE_SCALE),
        (c("_price").isNull(), R_PRICE_MAX),
        (c("_price") <= 0, R_PRICE_SIGN),
        (c("_f_qty_nan"), R_QTY_NAN),
        (~c("_f_qty_number"), R_QTY_NUMBER),
        (~c("_f_qty_fits"), R_QTY_SCALE),
        (c("_quantity").isNull(), R_QTY_MAX),
        (c("_quantity") < 0, R_QTY_SIGN),
        ((c("_price") >= F.lit(1_000_000_000)) & (c("_quantity") >= F.lit(100_000_000_000)),
         R_NOTIONAL),
        (side.isNotNull() & (side != "") & ~side.isin(*_SIDES), R_SIDE),
    ]
    reason: Column = F.lit(None).cast("string")
    for failed, text in reversed(checks):
        value = text if isinstance(text, Column) else F.lit(text)
        reason = F.when(F.coalesce(failed, F.lit(False)), value).otherwise(reason)
    return parsed.select(
        *raw.columns,
        t["exchange"].alias("_exchange"),
        t["symbol"].alias("_symbol"),
        "_trade_id", "_ts", "_price", "_quantity",
        F.when(side.isin(*_SIDES), side).alias("_side"),
        (t["trade_id"] if ids.keeps_ref else F.lit(None).cast("string")).alias("_trade_ref"),
        reason.alias("reason"),
    )


def with_ordinal_keys(checked: DataFrame, ids: TradeIds, *, within: Sequence[str],
                      order: Sequence[str]) -> DataFrame:
    """`validate`'s rows with the keys of the `none` scheme: each good trade's rank among
    the good trades of its exchange, symbol, microsecond and `within` columns, by `order`."""
    from pyspark.sql import Window

    good = F.col("reason").isNull()
    rank = F.row_number().over(Window.partitionBy(
        good, *within, "_exchange", "_symbol", "_ts").orderBy(*order)) - 1
    ranked = checked.withColumn("_rank", rank)
    key, crowded = ids.ordinal_key(F.col("_ts"), F.col("_rank"))
    return ranked.withColumn("_trade_id", F.when(good, key)).withColumn(
        "reason", F.when(good, crowded).otherwise(F.col("reason"))).drop("_rank")


def canonical(validated: DataFrame) -> DataFrame:
    """The good rows of `validate` in the trades-table column order (without ingested_at)."""
    return validated.where(F.col("reason").isNull()).select(
        *[F.col(f"_{c.name}").alias(c.name) for c in FEED_COLUMNS])


def validate_trades(df: DataFrame, *, time_unit: str | None = None,
                    bounds: TimeBounds | None = None,
                    now: datetime | None = None,
                    trade_ids: TradeIds | None = None) -> DataFrame:
    """Validate a frame of trades with any column types (e.g. an external trades table).

    Returns `validate`'s result: the original columns, the typed `_...` columns and
    `reason`. Use `canonical` for the good rows; rows with a reason are the ones to
    quarantine. A timestamp-typed `ts` ignores `time_unit`. With the `none` trade-id scheme
    a table has no row order, so the trades of one microsecond are ranked by price,
    quantity and side.
    """
    df = with_trade_columns(df)
    unit = None if is_timestamp_type(df.schema["ts"].dataType) else time_unit
    ids = trade_ids or TradeIds()
    checked = validate(df, time_unit=unit, bounds=bounds or TimeBounds(), now=now,
                       trade_ids=ids)
    if ids.needs_order:
        checked = with_ordinal_keys(checked, ids, within=[],
                                    order=["_price", "_quantity", "_side"])
    return checked
