"""Hypothesis strategies for trades that stress exactness: ties, boundaries, extremes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st

# Instants that sit on or next to window boundaries of every standard level, including a
# Monday (week start), month ends and a day boundary.
_ANCHORS = [
    datetime(2024, 1, 1, tzinfo=UTC),  # Monday, 00:00, month start
    datetime(2024, 1, 1, 0, 59, 59, 999_999, tzinfo=UTC),
    datetime(2024, 1, 7, 23, 59, 59, 999_999, tzinfo=UTC),  # Sunday end of week
    datetime(2024, 1, 8, tzinfo=UTC),  # Monday
    datetime(2024, 1, 31, 23, 30, tzinfo=UTC),
    datetime(2024, 2, 1, tzinfo=UTC),  # month start
    datetime(2024, 2, 1, 3, 59, 59, tzinfo=UTC),
]
_OFFSETS = st.sampled_from([0, 1, 59_999_999, 60_000_000, 299_999_999, 300_000_000,
                            1_799_999_999, 1_800_000_000, 3_599_999_999, 3_600_000_000,
                            7 * 3_600_000_000 + 123])

PRICE_MIN = Decimal("0.00000001")


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    anchor = draw(st.sampled_from(_ANCHORS))
    micros = draw(_OFFSETS | st.integers(0, 3 * 86_400_000_000))
    sign = draw(st.sampled_from([1, 1, 1, -1]))
    return anchor + sign * timedelta(microseconds=micros)


def _units(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.integers(low, high).map(lambda u: Decimal(u).scaleb(-8))


# price in [1e-8, 1e10), quantity in [0, 1e12) with 8 decimals; extremes weighted in.
prices = st.one_of(
    _units(1, 10**8 * 10**4),  # up to 10,000
    st.sampled_from([PRICE_MIN, Decimal("0.00001234"), Decimal("999999999.99999999"),
                     Decimal("1000000000"), Decimal("9999999999.99999999")]),
)
small_quantities = _units(0, 10**8 * 10**6)
quantities = st.one_of(
    small_quantities,
    st.sampled_from([Decimal(0), Decimal("0.00000001"), Decimal("999999999999.99999999"),
                     Decimal("99999999999.99999999")]),
)


@st.composite
def trade_rows(draw: st.DrawFn, max_trades: int = 40) -> list[tuple]:  # type: ignore[type-arg]
    """Rows (exchange, symbol, trade_id, ts, price, quantity); ids unique per instrument.

    Timestamps repeat (ties broken by trade_id), order is shuffled, and at most a few trades
    carry the extreme notional so that a day's quote volume stays below 1e22.
    """
    n = draw(st.integers(1, max_trades))
    instruments = draw(st.lists(st.sampled_from([("X", "BTC"), ("X", "ETH"), ("Y", "BTC")]),
                                min_size=n, max_size=n))
    ids = draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n, unique=True))
    times = draw(st.lists(instants(), min_size=1, max_size=6))
    rows = []
    big = 0
    for i in range(n):
        price = draw(prices)
        qty = draw(quantities)
        if price >= Decimal(10**9) and qty >= Decimal(10**11):
            qty = draw(small_quantities)
        if price * qty >= Decimal(10**18):
            big += 1
            if big > 5:
                qty = Decimal("0.5")
        ex, sym = instruments[i]
        rows.append((ex, sym, ids[i], draw(st.sampled_from(times)), price, qty))
    return draw(st.permutations(rows))


def _notional_capped(price: Decimal, qty: Decimal, big: int) -> tuple[Decimal, int]:
    """`qty`, or 0.5 once more than five trades carried a notional >= 1e18; the new count."""
    if price * qty < Decimal(10**18):
        return qty, big
    return (qty if big < 5 else Decimal("0.5")), big + 1


@st.composite
def trade_history(draw: st.DrawFn, min_trades: int = 200, max_trades: int = 500
                  ) -> list[tuple]:  # type: ignore[type-arg]
    """Hundreds of rows like `trade_rows`, drawn from pools so that an example stays small for
    Hypothesis: instants (n/10 to n/4 of them, so several trades share each one: ties broken
    by trade_id), prices (n/8 to n/4: equal prices in a window) and three instruments;
    ids unique, rows in a drawn order."""
    n = draw(st.integers(min_trades, max_trades))
    times = draw(st.lists(instants(), min_size=max(1, n // 10), max_size=max(1, n // 4)))
    price_pool = draw(st.lists(prices, min_size=max(1, n // 8), max_size=max(1, n // 4)))
    qty_pool = draw(st.lists(quantities, min_size=max(1, n // 8), max_size=max(1, n // 4)))
    instruments = [("X", "BTC"), ("X", "ETH"), ("Y", "BTC")]
    rows = []
    used: set[int] = set()
    big = 0
    for _ in range(n):
        tid = draw(st.integers(-(2**63), 2**63 - 1))
        while tid in used:  # unique, still spread over the whole range
            tid = tid + 1 if tid < 2**63 - 1 else -(2**63)
        used.add(tid)
        price = price_pool[draw(st.integers(0, len(price_pool) - 1))]
        qty = qty_pool[draw(st.integers(0, len(qty_pool) - 1))]
        if price >= Decimal(10**9) and qty >= Decimal(10**11):
            qty = Decimal("123.45678901")
        qty, big = _notional_capped(price, qty, big)
        rows.append((*instruments[draw(st.integers(0, 2))], tid,
                     times[draw(st.integers(0, len(times) - 1))], price, qty))
    random.Random(draw(st.integers(0, 2**32 - 1))).shuffle(rows)
    return rows
