"""The independent oracle of tests/oracle.py: hand-computed bars, comparison and horizons."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from rollup.timeframes import Dag, Timeframe
from tests.oracle import Trade, compare_level, level_horizon, oracle_bars

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
D = Decimal


def trade(tid: int, seconds: float, price: str, qty: str, symbol: str = "BTC") -> Trade:
    return Trade("X", symbol, tid, T0 + timedelta(seconds=seconds), D(price), D(qty))


TRADES = [
    # minute 10:00, listed out of order; ids 7 and 3 tie on ts at 10:00:00 (3 opens)
    trade(7, 0, "101", "1"),
    trade(3, 0, "100", "2"),
    trade(9, 30, "105.5", "0.5"),
    trade(5, 59.999999, "99", "1"),  # last microsecond of the minute: closes 10:00
    # minute 10:01: ids 2 and 8 tie at the end (8 closes), one zero quantity
    trade(8, 65, "98", "0"),
    trade(2, 65, "97", "3"),
    trade(4, 60, "96.12345678", "1.5"),
    # another symbol in the same minute
    trade(1, 10, "2000", "0.1", symbol="ETH"),
]


def test_one_minute_bars_by_hand() -> None:
    bars = oracle_bars(TRADES, Timeframe.parse("1m"))
    assert set(bars) == {("X", "BTC", T0), ("X", "BTC", T0 + timedelta(minutes=1)),
                         ("X", "ETH", T0)}
    first = bars[("X", "BTC", T0)]
    assert first == {
        "exchange": "X", "symbol": "BTC", "window_start": T0,
        "window_end": T0 + timedelta(minutes=1), "window_date": date(2024, 3, 4),
        "open": D("100"), "high": D("105.5"), "low": D("99"), "close": D("99"),
        "volume": D("4.5"), "quote_volume": D("200") + D("101") + D("52.75") + D("99"),
        "trade_count": 4,
        # 452.75 / 4.5 = 100.6111111... -> half-up to 8 decimals
        "vwap": D("100.61111111"),
        # no trade has a side: it counts in neither; ids 3 (of the tie) and 5 open and close
        "buy_volume": D("0"), "sell_volume": D("0"), "buy_count": 0, "sell_count": 0,
        "open_ts": T0, "close_ts": T0 + timedelta(seconds=59.999999),
    }
    second = bars[("X", "BTC", T0 + timedelta(minutes=1))]
    assert (second["open"], second["close"]) == (D("96.12345678"), D("98"))
    assert (second["high"], second["low"]) == (D("98"), D("96.12345678"))
    assert second["volume"] == D("4.5")
    assert second["quote_volume"] == D("96.12345678") * D("1.5") + D("291")
    assert second["trade_count"] == 3
    # (144.18518517 + 291) / 4.5 = 96.70781892666... -> 96.70781893
    assert second["vwap"] == D("96.70781893")
    eth = bars[("X", "ETH", T0)]
    assert (eth["open"], eth["close"], eth["trade_count"], eth["vwap"]) == (
        D("2000"), D("2000"), 1, D("2000"))


def test_coarser_levels_aggregate_straight_from_trades() -> None:
    for name in ("5m", "30m", "1h", "1d"):
        tf = Timeframe.parse(name)
        bars = oracle_bars(TRADES, tf)
        start = tf.floor(T0)
        btc = bars[("X", "BTC", start)]
        assert btc["window_end"] - btc["window_start"] == tf.duration
        assert (btc["open"], btc["close"]) == (D("100"), D("98"))
        assert (btc["high"], btc["low"]) == (D("105.5"), D("96.12345678"))
        assert btc["volume"] == D("9") and btc["trade_count"] == 7
    assert oracle_bars(TRADES, Timeframe.parse("1d"))[("X", "BTC", datetime(
        2024, 3, 4, tzinfo=UTC))]["window_date"] == date(2024, 3, 4)


def test_zero_volume_has_no_vwap_and_windows_align_to_the_epoch() -> None:
    late = T0 + timedelta(hours=5, minutes=7, seconds=3)
    bars = oracle_bars([Trade("X", "A", 1, late, D("5"), D("0"))], Timeframe.parse("5m"))
    [(key, bar)] = bars.items()
    assert key[2] == datetime(2024, 3, 4, 15, 5, tzinfo=UTC)
    assert bar["vwap"] is None and bar["volume"] == 0


def _stored(bars: dict) -> list[dict]:  # type: ignore[type-arg]
    return [dict(v) for v in bars.values()]


def test_compare_level_reports_missing_extra_wrong_and_duplicates() -> None:
    expected = oracle_bars(TRADES, Timeframe.parse("1m"))
    assert compare_level("1m", _stored(expected), expected) == []
    stored = _stored(expected)
    stored[0]["close"] = D("1")
    dropped = stored.pop(1)
    stored.append({**dropped, "window_start": dropped["window_start"] + timedelta(hours=1)})
    stored.append(dict(stored[-1]))
    problems = compare_level("1m", stored, expected)
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert "1 duplicate bars" in text and "1 of 3 bars missing" in text
    assert "1 extra bars" in text and "1 wrong bars" in text and "close stored 1" in text


def test_compare_level_ignores_windows_before_the_horizon() -> None:
    expected = oracle_bars(TRADES, Timeframe.parse("1m"))
    stored = [b for b in _stored(expected) if b["window_start"] > T0]  # first minute dropped
    assert compare_level("1m", stored, expected)
    assert compare_level("1m", stored, expected, horizon=T0 + timedelta(minutes=1)) == []


@pytest.mark.parametrize(("name", "chain", "horizon"), [
    ("1m", [None], None),
    ("1m", [date(2024, 3, 4)], datetime(2024, 3, 4, tzinfo=UTC)),
    ("5m", [None, date(2024, 3, 4)], datetime(2024, 3, 4, tzinfo=UTC)),  # parent dropped
    ("30m", [date(2024, 3, 2), None, date(2024, 3, 5)], datetime(2024, 3, 5, tzinfo=UTC)),
    ("1d", [None, None, None, None, date(2024, 3, 4)], datetime(2024, 4, 1, tzinfo=UTC)),
    ("1d", [date(2024, 3, 1), None, None, None, None], datetime(2024, 3, 1, tzinfo=UTC)),
])
def test_level_horizon(name: str, chain: list, horizon: datetime | None) -> None:  # type: ignore[type-arg]
    level = Dag.standard().level(name)
    assert level_horizon(level, chain) == horizon


# ---------------------------------------------------------------------------------------------
# Against a warehouse (Spark): the cascade on fresh appends agrees; tampering is caught


@pytest.mark.spark
def test_oracle_agrees_with_the_cascade_on_tricky_trades(spark) -> None:  # type: ignore[no-untyped-def]
    from hypothesis import HealthCheck, given, settings

    from rollup.incremental.runner import run_cascade
    from rollup.storage.tables import Tables
    from tests.helpers import append_trades
    from tests.oracle import assert_matches_oracle
    from tests.strategies import trade_rows

    @settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(rows=trade_rows(max_trades=30))
    def check(rows: list) -> None:  # type: ignore[type-arg]
        import uuid

        tables = Tables(spark, "rollup", f"t_{uuid.uuid4().hex[:10]}")
        tables.create_all()
        append_trades(tables, rows)
        run_cascade(tables)
        assert assert_matches_oracle(tables) > 0

    check()


@pytest.mark.spark
def test_oracle_catches_wrong_missing_and_extra_bars(tables) -> None:  # type: ignore[no-untyped-def]
    from rollup.incremental.runner import run_cascade
    from tests.helpers import append_trades
    from tests.oracle import assert_matches_oracle

    append_trades(tables, [(t.exchange, t.symbol, t.trade_id, t.ts, t.price, t.quantity)
                           for t in TRADES])
    run_cascade(tables)
    assert assert_matches_oracle(tables) == 3 + 2 * 4
    spark = tables.spark
    spark.sql(f"UPDATE {tables.bars('30m')} SET close = close + 1 WHERE symbol = 'BTC'")  # noqa: S608
    with pytest.raises(AssertionError, match=r"30m: 1 wrong bars: X/BTC@2024-03-04T10:00"):
        assert_matches_oracle(tables)
    spark.sql(f"UPDATE {tables.bars('30m')} SET close = close - 1 WHERE symbol = 'BTC'")  # noqa: S608
    spark.sql(f"DELETE FROM {tables.bars('1m')} WHERE symbol = 'ETH'")  # noqa: S608
    spark.sql(f"UPDATE {tables.bars('1d')} SET window_start = window_start - INTERVAL 1 DAYS, "  # noqa: S608
              "window_date = date_sub(window_date, 1) WHERE symbol = 'ETH'")
    with pytest.raises(AssertionError) as caught:
        assert_matches_oracle(tables)
    text = str(caught.value)
    assert "1m: 1 of 3 bars missing: X/ETH@2024-03-04T10:00" in text
    assert "1d: 1 of 2 bars missing" in text and "1d: 1 extra bars" in text
    assert "5m:" not in text and "30m:" not in text
