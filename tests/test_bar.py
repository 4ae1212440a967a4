"""The Bar value: combine is associative with an identity and matches a direct fold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollup.specs.bar import BAR_COLUMNS, Bar, combine_all, vwap_of
from tests.strategies import prices, small_quantities

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def bar_at(i: int, price: Decimal, qty: Decimal) -> Bar:
    return Bar.of_trade("X", "BTC", T0 + i * MINUTE, T0 + (i + 1) * MINUTE, price, qty)


bars = st.builds(bar_at, st.integers(0, 1000), prices, small_quantities)


@given(st.lists(bars, min_size=3, max_size=3, unique_by=lambda b: b.window_start))
def test_combine_is_associative(three: list[Bar]) -> None:
    a, b, c = sorted(three, key=lambda x: x.window_start)
    assert a.combine(b).combine(c) == a.combine(b.combine(c))


@given(st.lists(bars, min_size=1, max_size=20, unique_by=lambda b: b.window_start))
def test_identity_and_fold_in_any_order(items: list[Bar]) -> None:
    folded = combine_all(items)
    assert combine_all([]) is None  # the identity: no trades, no bar
    assert folded == combine_all(reversed(items))
    first = min(items, key=lambda b: b.window_start)
    last = max(items, key=lambda b: b.window_start)
    assert folded is not None
    assert folded.open == first.open and folded.close == last.close
    assert folded.high == max(b.high for b in items)
    assert folded.low == min(b.low for b in items)
    assert folded.volume == sum(b.volume for b in items)
    with localcontext(Context(prec=80)):
        assert folded.quote_volume == sum(b.quote_volume for b in items)
    assert folded.trade_count == len(items)


def test_vwap_rounds_half_up_to_8_decimals_and_is_none_for_zero_volume() -> None:
    assert vwap_of(Decimal("1"), Decimal("3")) == Decimal("0.33333333")
    assert vwap_of(Decimal("2"), Decimal("3")) == Decimal("0.66666667")
    assert vwap_of(Decimal("0.000000005"), Decimal("1")) == Decimal("0.00000001")
    assert vwap_of(Decimal("5"), Decimal("0")) is None


def test_combine_rejects_other_instrument_and_overlap() -> None:
    a = bar_at(0, Decimal(1), Decimal(1))
    other = Bar.of_trade("X", "ETH", T0 + MINUTE, T0 + 2 * MINUTE, Decimal(1), Decimal(1))
    with pytest.raises(ValueError, match="X/BTC and X/ETH"):
        a.combine(other)
    with pytest.raises(ValueError, match="before the end"):
        a.combine(a)


def test_bar_columns_extend_the_seed_schema() -> None:
    names = [c.name for c in BAR_COLUMNS]
    seed = ["symbol", "exchange", "window_start", "window_end", "window_date", "open", "high",
            "low", "close", "volume", "trade_count", "vwap", "created_at", "updated_at"]
    assert set(seed) <= set(names)
    assert "quote_volume" in names
    types = {c.name: c.type for c in BAR_COLUMNS}
    assert types["volume"] == "decimal(38,8)" and types["quote_volume"] == "decimal(38,16)"


@settings(max_examples=50)
@given(prices, small_quantities)
def test_single_trade_notional_is_exact(price: Decimal, qty: Decimal) -> None:
    bar = Bar.of_trade("X", "BTC", T0, T0 + MINUTE, price, qty)
    with localcontext(Context(prec=80)):
        assert bar.quote_volume == price * qty  # exact: at most 16 decimals
