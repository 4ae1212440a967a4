"""The synthetic trades generator: deterministic, exact, realistic enough to exercise edge cases."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollup.adapters import PRICE_TYPE, QUANTITY_TYPE, TRADES_SCHEMA
from rollup.adapters.synthetic import (
    SYMBOL_PROFILES,
    _decimal_from_units,
    synthetic_trades,
    write_trades_parquet,
)
from rollup.errors import ConfigError

N = 50_000


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return synthetic_trades(N, symbols=len(SYMBOL_PROFILES) + 2, days=2, seed=7)


def test_same_seed_same_table_other_seed_other_table() -> None:
    a = synthetic_trades(10_000, seed=3)
    assert a.equals(synthetic_trades(10_000, seed=3))
    assert not a.equals(synthetic_trades(10_000, seed=4))


def test_schema_and_count(table: pa.Table) -> None:
    assert table.schema.equals(TRADES_SCHEMA)
    assert table.num_rows == N
    assert synthetic_trades(0).num_rows == 0
    assert synthetic_trades(0).schema.equals(TRADES_SCHEMA)
    for name in ("exchange", "symbol", "trade_id", "ts", "price", "quantity"):
        assert table[name].null_count == 0, name
    assert set(table["exchange"].to_pylist()) == {"SYNTH"}
    assert set(table["side"].drop_null().to_pylist()) == {"buy", "sell"}
    assert 0 < table["side"].null_count < N // 10


def test_schema_agrees_with_the_bar_module_trade_columns() -> None:
    bar = pytest.importorskip("rollup.specs.bar")
    types = {"string": pa.string(), "long": pa.int64(), "timestamp": TRADES_SCHEMA.field("ts").type}
    columns = {c.name: c for c in bar.TRADE_COLUMNS}
    for field in TRADES_SCHEMA:
        column = columns[field.name]
        expected = types.get(column.type) or pa.decimal128(
            *(int(x) for x in column.type[len("decimal(") : -1].split(","))
        )
        assert field.type == expected, field.name
        assert field.nullable == column.nullable, field.name


def test_symbols_time_range_and_ordering(table: pa.Table) -> None:
    names = [p.name for p in SYMBOL_PROFILES]
    assert set(table["symbol"].to_pylist()) == {*names, f"{names[0]}-1", f"{names[1]}-1"}
    low, high = pc.min_max(table["ts"]).values()
    assert low.as_py() >= datetime(2024, 1, 2, tzinfo=UTC)
    assert high.as_py() < datetime(2024, 1, 4, tzinfo=UTC)
    ts = table["ts"].cast(pa.int64()).to_numpy()
    assert (np.diff(ts) >= 0).all()  # rows come in time order


def test_trade_ids_unique_and_increasing_per_symbol(table: pa.Table) -> None:
    for symbol in set(table["symbol"].to_pylist()):
        rows = table.filter(pc.equal(table["symbol"], symbol))
        ts = rows["ts"].cast(pa.int64()).to_numpy()
        ids = rows["trade_id"].to_numpy()
        assert (np.diff(ids) > 0).all(), symbol  # in (ts, trade_id) order, strictly increasing
        assert (np.diff(ts) >= 0).all(), symbol


def test_ties_and_minute_boundaries_present(table: pa.Table) -> None:
    for symbol in set(table["symbol"].to_pylist()):
        rows = table.filter(pc.equal(table["symbol"], symbol))
        ts = rows["ts"].cast(pa.int64()).to_numpy()
        ties = int((np.diff(ts) == 0).sum())
        boundaries = int((ts % 60_000_000 == 0).sum())
        assert ties >= 1 and boundaries >= 1, symbol
    ts = table["ts"].cast(pa.int64()).to_numpy()
    assert 0.02 * N < (np.diff(ts) == 0).sum() < 0.1 * N
    assert 0.005 * N < (ts % 60_000_000 == 0).sum() < 0.05 * N
    # even tiny tables carry a tie on a boundary for every symbol with two trades
    tiny = synthetic_trades(12, symbols=2, seed=1)
    for symbol in set(tiny["symbol"].to_pylist()):
        ts = tiny.filter(pc.equal(tiny["symbol"], symbol))["ts"].cast(pa.int64()).to_numpy()
        if ts.size >= 2:
            assert ts[0] == ts[1] and ts[0] % 60_000_000 == 0


def test_decimals_exact_and_on_each_profiles_grid(table: pa.Table) -> None:
    profiles = {p.name: p for p in SYMBOL_PROFILES}
    for symbol in set(table["symbol"].to_pylist()):
        profile = profiles[symbol.rsplit("-", 1)[0] if symbol.endswith("-1") else symbol]
        rows = table.filter(pc.equal(table["symbol"], symbol)).slice(0, 2_000)
        price_tick = Decimal(1).scaleb(-profile.price_decimals)
        qty_step = Decimal(1).scaleb(-profile.quantity_decimals)
        for price, quantity in zip(
            rows["price"].to_pylist(), rows["quantity"].to_pylist(), strict=True
        ):
            assert price > 0 and price % price_tick == 0, (symbol, price)
            assert quantity > 0 and quantity % qty_step == 0, (symbol, quantity)
            # the text round trip is exact: what Arrow stores is what Python sees
            assert Decimal(str(price)) == price
        start = Decimal(profile.start_price_units).scaleb(-8)
        first = rows["price"][0].as_py()
        assert start / 2 < first < start * 2, symbol


def test_extremes_of_scale(table: pa.Table) -> None:
    btc = table.filter(pc.equal(table["symbol"], "BTC-USD"))
    pepe = table.filter(pc.equal(table["symbol"], "PEPE-USD"))
    assert Decimal(30_000) < pc.min(btc["price"]).as_py()
    assert pc.max(btc["quantity"]).as_py() < Decimal(100)
    assert pc.max(pepe["price"]).as_py() < Decimal("0.0001")
    assert pc.max(pepe["quantity"]).as_py() > Decimal(10**9)
    assert pc.min(pepe["price"]).as_py().as_tuple().exponent == -8


@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=50))
def test_decimal_from_units_is_exact(units: list[int]) -> None:
    array = _decimal_from_units(np.array(units, dtype=np.int64), pa.decimal128(38, 8))
    assert array.to_pylist() == [Decimal(u).scaleb(-8) for u in units]
    fitting = [u for u in units if abs(u) < 10**18]
    price = _decimal_from_units(np.array(fitting, dtype=np.int64), PRICE_TYPE)
    assert (
        price.to_pylist()
        == pa.array([Decimal(u).scaleb(-8) for u in fitting], PRICE_TYPE).to_pylist()
    )
    price.validate(full=True)


def test_write_trades_parquet(tmp_path: Path, table: pa.Table) -> None:
    files = write_trades_parquet(table, tmp_path / "out", rows_per_file=20_000)
    assert [f.name for f in files] == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    back = pa.concat_tables(pq.read_table(f) for f in files)
    assert back.schema.equals(TRADES_SCHEMA)
    assert back.equals(table)
    with pytest.raises(ConfigError, match="already holds"):
        write_trades_parquet(table, tmp_path / "out")
    again = write_trades_parquet(table.slice(0, 10), tmp_path / "out", overwrite=True)
    assert len(again) == 1 and len(list((tmp_path / "out").iterdir())) == 1
    empty = write_trades_parquet(table.slice(0, 0), tmp_path / "empty")
    assert pq.read_table(empty[0]).num_rows == 0


def test_argument_errors() -> None:
    with pytest.raises(ConfigError):
        synthetic_trades(-1)
    with pytest.raises(ConfigError):
        synthetic_trades(10, symbols=0)
    with pytest.raises(ConfigError):
        synthetic_trades(10, days=0)
    with pytest.raises(ConfigError):
        synthetic_trades(10, exchange="")
    with pytest.raises(ConfigError):
        write_trades_parquet(synthetic_trades(1), "unused", rows_per_file=0)


def test_other_day_exchange_and_types() -> None:
    table = synthetic_trades(1_000, symbols=1, day=date(2020, 2, 29), exchange="X", seed=9)
    assert set(table["exchange"].to_pylist()) == {"X"}
    assert table["price"].type == PRICE_TYPE and table["quantity"].type == QUANTITY_TYPE
    assert pc.min(table["ts"]).as_py().date() == date(2020, 2, 29)


def test_generation_speed_one_million(capsys: pytest.CaptureFixture[str]) -> None:
    began = time.perf_counter()
    table = synthetic_trades(1_000_000)
    seconds = time.perf_counter() - began
    assert table.num_rows == 1_000_000
    with capsys.disabled():
        print(f"\nsynthetic_trades(1_000_000): {seconds:.2f} s ({1e6 / seconds:,.0f} trades/s)")
