"""Row validation: every rule gives its reason; good rows become exact canonical trades."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rollup.errors import ConfigError, InputError
from rollup.specs.bar import FEED_NAMES
from rollup.transforms import validate as V

NOW = datetime(2024, 6, 1, tzinfo=UTC)
GOOD = {"exchange": "X", "symbol": "BTC-USD", "trade_id": "1", "ts": "2024-01-02T00:00:01Z",
        "price": "100.5", "quantity": "2", "side": "buy"}

# (case id, overrides of GOOD, expected reason or None for a good row)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("good", {}, None),
    ("no side", {"side": None}, None),
    ("side case and blanks", {"side": " SELL "}, None),
    ("zero quantity", {"quantity": "0"}, None),
    ("scientific price", {"price": "1e2"}, None),
    ("trailing zeros", {"price": "100.50000000000"}, None),
    ("leading dot", {"price": ".5"}, None),
    ("double text quantity", {"quantity": "1.0E-5"}, None),
    ("integral float id", {"trade_id": "7.0"}, None),
    ("micro ts", {"ts": "2024-01-02 00:00:01.123456"}, None),
    ("offset ts", {"ts": "2024-01-02T01:00:01+01:00"}, None),
    ("nanos all zero", {"ts": "2024-01-02T00:00:01.123456000Z"}, None),
    ("blank padded", {"exchange": " X ", "price": " 100.5 "}, None),
    ("missing exchange", {"exchange": None}, "missing exchange"),
    ("blank exchange", {"exchange": "   "}, "missing exchange"),
    ("missing symbol", {"symbol": ""}, "missing symbol"),
    ("missing trade_id", {"trade_id": None}, "missing trade_id"),
    ("missing ts", {"ts": None}, "missing ts"),
    ("missing price", {"price": None}, "missing price"),
    ("missing quantity", {"quantity": ""}, "missing quantity"),
    ("sql in exchange", {"exchange": "X'; DROP TABLE t; --"}, "malformed exchange"),
    ("sql in symbol", {"symbol": "x' OR '1'='1"}, "malformed symbol"),
    ("long symbol", {"symbol": "A" * 65}, "malformed symbol"),
    ("newline symbol", {"symbol": "BTC\nUSD"}, "malformed symbol"),
    ("backtick symbol", {"symbol": "a`b"}, "malformed symbol"),
    ("text id", {"trade_id": "abc"}, V.R_TRADE_ID),
    ("id over 64 bits", {"trade_id": "9223372036854775808"}, V.R_TRADE_ID),
    ("fractional id", {"trade_id": "1.5"}, V.R_TRADE_ID),
    ("epoch without unit", {"ts": "1704153600"}, V.R_TS_NUMBER),
    ("text ts", {"ts": "yesterday"}, V.R_TS),
    ("impossible date", {"ts": "2024-02-30T00:00:00"}, V.R_TS),
    ("hour 25", {"ts": "2024-01-02T25:00:00"}, V.R_TS),
    ("nanosecond ts", {"ts": "2024-01-02T00:00:00.1234567Z"}, V.R_TS_FINE),
    ("before 2009", {"ts": "2008-12-31T23:59:59Z"}, "ts before 2009-01-01T00:00:00Z"),
    ("far future", {"ts": "2024-06-02T00:00:01Z"}, "ts later than now + 1d"),
    ("text price", {"price": "abc"}, V.R_PRICE_NUMBER),
    ("thousands separator", {"price": "1,000.5"}, V.R_PRICE_NUMBER),
    ("hex price", {"price": "0x10"}, V.R_PRICE_NUMBER),
    ("NaN price", {"price": "NaN"}, V.R_PRICE_NAN),
    ("infinite price", {"price": "Infinity"}, V.R_PRICE_NAN),
    ("minus inf price", {"price": "-inf"}, V.R_PRICE_NAN),
    ("9 decimals", {"price": "1.123456789"}, V.R_PRICE_SCALE),
    ("tiny scientific", {"price": "1e-9"}, V.R_PRICE_SCALE),
    ("tiny plain", {"price": "0.000000001"}, V.R_PRICE_SCALE),
    ("price too large", {"price": "10000000000"}, V.R_PRICE_MAX),
    ("price 1e30", {"price": "1e30"}, V.R_PRICE_MAX),
    ("zero price", {"price": "0"}, V.R_PRICE_SIGN),
    ("negative price", {"price": "-1"}, V.R_PRICE_SIGN),
    ("minus zero price", {"price": "-0.0"}, V.R_PRICE_SIGN),
    ("text quantity", {"quantity": "x"}, V.R_QTY_NUMBER),
    ("NaN quantity", {"quantity": "nan"}, V.R_QTY_NAN),
    ("infinite quantity", {"quantity": "+Infinity"}, V.R_QTY_NAN),
    ("quantity 1e-20", {"quantity": "1e-20"}, V.R_QTY_SCALE),
    ("quantity too large", {"quantity": "1000000000000"}, V.R_QTY_MAX),
    ("negative quantity", {"quantity": "-0.5"}, V.R_QTY_SIGN),
    ("notional overflow", {"price": "1000000000", "quantity": "100000000000"}, V.R_NOTIONAL),
    ("bad side", {"side": "hold"}, V.R_SIDE),
    ("first rule wins", {"exchange": None, "price": "abc"}, "missing exchange"),
]


@pytest.fixture(scope="module")
def results(spark):  # type: ignore[no-untyped-def]
    """Validate all CASES in one DataFrame; case id -> result row."""
    rows = [(case, *[{**GOOD, **over}[c] for c in FEED_NAMES]) for case, over, _ in CASES]
    df = spark.createDataFrame(rows, "case string, " + ", ".join(
        f"{c} string" for c in FEED_NAMES))
    checked = V.validate(df, time_unit=None, bounds=V.TimeBounds(), now=NOW)
    return {row["case"]: row for row in checked.collect()}


@pytest.mark.spark
@pytest.mark.parametrize(("case", "expected"), [(c, r) for c, _, r in CASES],
                         ids=[c for c, _, _ in CASES])
def test_reason(results: dict[str, Any], case: str, expected: str | None) -> None:
    assert results[case]["reason"] == expected


@pytest.mark.spark
def test_good_rows_are_exact(results: dict[str, Any]) -> None:
    assert results["good"]["_price"] == Decimal("100.5")
    assert results["scientific price"]["_price"] == Decimal("100")
    assert results["double text quantity"]["_quantity"] == Decimal("0.00001")
    assert results["leading dot"]["_price"] == Decimal("0.5")
    assert results["integral float id"]["_trade_id"] == 7
    assert results["side case and blanks"]["_side"] == "sell"
    assert results["no side"]["_side"] is None
    assert results["zero quantity"]["_quantity"] == Decimal(0)
    assert results["blank padded"]["_exchange"] == "X"
    # Spark returns naive datetimes in the session zone (UTC).
    assert results["offset ts"]["_ts"] == datetime(2024, 1, 2, 0, 0, 1)
    assert results["micro ts"]["_ts"] == datetime(2024, 1, 2, 0, 0, 1, 123456)


@pytest.mark.spark
@pytest.mark.parametrize(("unit", "ts", "expected", "reason"), [
    ("ms", "1704153600123", datetime(2024, 1, 2, 0, 0, 0, 123000), None),
    ("s", "1704153600.5", datetime(2024, 1, 2, 0, 0, 0, 500000), None),
    ("us", "1704153600000001", datetime(2024, 1, 2, 0, 0, 0, 1), None),
    ("ns", "1704153600123456000", datetime(2024, 1, 2, 0, 0, 0, 123456), None),
    ("ns", "1704153600123456789", None, V.R_TS_FINE),
    ("us", "1704153600000000.5", None, V.R_TS_FINE),
    ("s", "abc", None, V.R_TS),
    ("ms", "2024-01-02T00:00:00Z", None, V.R_TS),
    ("s", "100", None, "ts before 2009-01-01T00:00:00Z"),
])
def test_epoch_time_units(spark, unit: str, ts: str, expected: datetime | None,  # type: ignore[no-untyped-def]
                          reason: str | None) -> None:
    df = spark.createDataFrame([tuple({**GOOD, "ts": ts}[c] for c in FEED_NAMES)],
                               ", ".join(f"{c} string" for c in FEED_NAMES))
    row = V.validate(df, time_unit=unit, bounds=V.TimeBounds(), now=NOW).first()
    assert row["reason"] == reason
    if reason is None:
        assert row["_ts"] == expected


@pytest.mark.spark
def test_validate_trades_on_typed_columns(spark) -> None:  # type: ignore[no-untyped-def]
    """Doubles (NaN, infinity, 0.1), longs and timestamps from a typed source are checked too."""
    from pyspark.sql import types as T

    schema = T.StructType([
        T.StructField("exchange", T.StringType()), T.StructField("symbol", T.StringType()),
        T.StructField("trade_id", T.LongType()), T.StructField("ts", T.TimestampType()),
        T.StructField("price", T.DoubleType()), T.StructField("quantity", T.DoubleType()),
    ])
    ts = datetime(2024, 1, 2, 0, 0, 1, 5)
    rows = [("X", "A", 1, ts, 0.1, 1e-5), ("X", "A", 2, ts, float("nan"), 1.0),
            ("X", "A", 3, ts, float("inf"), 1.0), ("X", "A", 4, ts, 1.0, float("-inf")),
            ("X", "A", 5, ts, 1.0, -2.0), ("X", "A", 6, datetime(2001, 1, 1), 1.0, 1.0)]
    checked = V.validate_trades(spark.createDataFrame(rows, schema), time_unit="ms", now=NOW)
    got = {r["_trade_id"]: r for r in checked.collect()}
    assert got[1]["reason"] is None
    assert (got[1]["_price"], got[1]["_quantity"]) == (Decimal("0.1"), Decimal("0.00001"))
    assert got[1]["_ts"] == ts  # a timestamp column ignores time_unit
    assert got[2]["reason"] == V.R_PRICE_NAN
    assert got[3]["reason"] == V.R_PRICE_NAN
    assert got[4]["reason"] == V.R_QTY_NAN
    assert got[5]["reason"] == V.R_QTY_SIGN
    assert got[6]["reason"] == "ts before 2009-01-01T00:00:00Z"
    assert V.canonical(checked).count() == 1


def test_time_bounds_defaults_and_config() -> None:
    default = V.TimeBounds()
    assert default.earliest == datetime(2009, 1, 1, tzinfo=UTC)
    assert default.latest(NOW) == NOW + timedelta(days=1)
    custom = V.TimeBounds.from_config({"earliest": date(2015, 3, 1), "max_ahead": "6h"})
    assert custom.earliest == datetime(2015, 3, 1, tzinfo=UTC)
    assert custom.ahead == timedelta(hours=6)
    assert custom.ahead_text == "6h"
    text = V.TimeBounds.from_config({"earliest": "2015-03-01T12:00:00+02:00"})
    assert text.earliest == datetime(2015, 3, 1, 10, tzinfo=UTC)
    assert V.TimeBounds.from_config(None) == default


@pytest.mark.parametrize("section", [
    {"earliest": "not a date"},
    {"max_ahead": "tomorrow"},
    {"max_ahead": "-1d"},
    {"earliest": 5},
    {"latest": "2030-01-01"},
])
def test_time_bounds_config_errors(section: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        V.TimeBounds.from_config(section)
    assert "\n" not in str(info.value)


@pytest.mark.spark
def test_unknown_time_unit(spark) -> None:  # type: ignore[no-untyped-def]
    df = spark.createDataFrame([tuple(GOOD[c] for c in FEED_NAMES)],
                               ", ".join(f"{c} string" for c in FEED_NAMES))
    with pytest.raises(InputError, match="invalid time unit 'minutes'"):
        V.validate(df, time_unit="minutes", bounds=V.TimeBounds())


def test_systematic_reasons() -> None:
    assert V.is_systematic(V.R_TS_NUMBER)
    assert V.is_systematic("ts later than now + 1d")
    assert not V.is_systematic(V.R_PRICE_SIGN)
    assert not V.is_systematic("missing price")
