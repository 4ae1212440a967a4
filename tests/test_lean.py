"""The LEAN adapter: faithful loading, and 1m bars rebuilt from ticks == the published bars."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rollup.adapters import TRADES_SCHEMA
from rollup.adapters.lean import (
    DROPPED_ROWS_METADATA_KEY,
    LEAN_DATA_ENV,
    MINUTE_BARS_SCHEMA,
    lean_data_dir,
    read_lean_minute_bars,
    read_lean_trades,
)
from rollup.errors import ConfigError, InputError

RAW_TICK_ROWS = 157_849  # rows in the 27 tick CSVs, as published
TICK_FILES = 27  # each ends with a byte-for-byte duplicate of its previous row
TICKS = RAW_TICK_ROWS - TICK_FILES  # 157,822 trades
PUBLISHED_BARS = 4_681
MINUTE = timedelta(minutes=1)


# Tests of the real data take the `lean_data` fixture (tests/conftest.py): skipped without the
# data, a failure under CI.


@pytest.fixture(scope="module")
def trades(lean_data: Path) -> pa.Table:
    return read_lean_trades(lean_data)


@pytest.fixture(scope="module")
def bars(lean_data: Path) -> pa.Table:
    return read_lean_minute_bars(lean_data)


def _rebuild_minute_bars(trades: pa.Table) -> dict[tuple[str, datetime], tuple[Decimal, ...]]:
    """OHLCV per (symbol, minute) in plain Python; open/close by (ts, trade_id)."""
    rows = sorted(
        zip(
            trades["symbol"].to_pylist(),
            trades["ts"].to_pylist(),
            trades["trade_id"].to_pylist(),
            trades["price"].to_pylist(),
            trades["quantity"].to_pylist(),
            strict=True,
        ),
        key=lambda r: (r[0], r[1], r[2]),
    )
    out: dict[tuple[str, datetime], list[Decimal]] = {}
    for symbol, ts, _, price, quantity in rows:
        key = (symbol, ts.replace(second=0, microsecond=0))
        bar = out.get(key)
        if bar is None:
            out[key] = [price, price, price, price, quantity]
        else:
            bar[1] = max(bar[1], price)
            bar[2] = min(bar[2], price)
            bar[3] = price
            bar[4] += quantity
    return {k: tuple(v) for k, v in out.items()}


# --------------------------------------------------------------------------- real data


def test_rebuilt_bars_equal_all_published_bars(trades: pa.Table, bars: pa.Table) -> None:
    rebuilt = _rebuild_minute_bars(trades)
    published = {
        (r["symbol"], r["window_start"]): (r["open"], r["high"], r["low"], r["close"], r["volume"])
        for r in bars.to_pylist()
    }
    assert len(published) == bars.num_rows == PUBLISHED_BARS
    assert rebuilt.keys() == published.keys()
    mismatches = {k: (rebuilt[k], v) for k, v in published.items() if rebuilt[k] != v}
    assert not mismatches, f"{len(mismatches)} bars differ, e.g. {next(iter(mismatches.items()))}"


def test_tick_count_drops_exactly_the_duplicated_last_rows(trades: pa.Table,
                                                          lean_data: Path) -> None:
    raw = 0
    for zip_path in sorted((lean_data / "tick").glob("*_trade.zip")):
        with zipfile.ZipFile(zip_path) as archive:
            for name in archive.namelist():
                lines = archive.read(name).splitlines()
                assert lines[-1] == lines[-2], name
                raw += len(lines)
    assert raw == RAW_TICK_ROWS
    assert trades.num_rows == TICKS == 157_822
    assert trades.schema.metadata[DROPPED_ROWS_METADATA_KEY] == str(TICK_FILES).encode()


def test_trades_frame_shape(trades: pa.Table) -> None:
    assert trades.schema.equals(TRADES_SCHEMA)
    assert set(trades["exchange"].to_pylist()) == {"COMEX"}
    assert trades["side"].null_count == trades.num_rows
    symbols = set(trades["symbol"].to_pylist())
    assert {"GC 201310", "GC 201312", "GC 201512"} <= symbols
    assert len(symbols) == 11
    # zero-quantity ticks are kept: 459 in the raw files, 7 of them in dropped duplicate rows
    assert pc.sum(pc.equal(trades["quantity"], Decimal(0))).as_py() == 452
    first = trades.slice(0, 1).to_pylist()[0]  # 20131007_gc_tick_trade_201310.csv, line 1
    assert first["symbol"] == "GC 201310"
    assert first["ts"] == datetime(2013, 10, 7, 1, 22, 13, 381000, tzinfo=UTC)  # 4933381 ms
    assert first["price"] == Decimal("1313.8")
    assert first["trade_id"] == 15985 * 10**9  # days since 1970 * 1e9 + row 0


def test_trade_ids_unique_increasing_in_file_order(trades: pa.Table) -> None:
    previous: dict[str, tuple[int, datetime]] = {}
    for symbol, trade_id, ts in zip(
        trades["symbol"].to_pylist(),
        trades["trade_id"].to_pylist(),
        trades["ts"].to_pylist(),
        strict=True,
    ):
        if symbol in previous:
            last_id, last_ts = previous[symbol]
            assert trade_id > last_id
            assert ts >= last_ts  # the files are time-ordered
        previous[symbol] = (trade_id, ts)


def test_prices_unscaled_and_consistent_between_ticks_and_bars(
    trades: pa.Table, bars: pa.Table
) -> None:
    # gold traded near 1,300 USD/oz: neither file is scaled (LEAN equity files are, by 1e4)
    for table, column in ((trades, "price"), (bars, "open"), (bars, "close")):
        low, high = pc.min_max(table[column]).values()
        assert Decimal(1200) < low.as_py() <= high.as_py() < Decimal(1400), column
    assert bars.schema.equals(MINUTE_BARS_SCHEMA)


def test_single_zip_gives_the_same_rows_and_ids(trades: pa.Table, lean_data: Path) -> None:
    one = read_lean_trades(lean_data / "tick" / "20131008_trade.zip")
    day_index = (datetime(2013, 10, 8) - datetime(1970, 1, 1)).days
    ids = trades["trade_id"]
    same_day = trades.filter(
        pc.and_(pc.greater_equal(ids, day_index * 10**9), pc.less(ids, (day_index + 1) * 10**9))
    )
    assert one.num_rows > 50_000
    assert one.equals(same_day)


def test_vendor_columns_are_opt_in(lean_data: Path) -> None:
    table = read_lean_trades(lean_data / "tick" / "20131009_trade.zip", vendor_columns=True)
    assert table.column_names[: len(TRADES_SCHEMA)] == TRADES_SCHEMA.names
    assert table.column_names[len(TRADES_SCHEMA) :] == ["lean_exchange", "condition", "suspicious"]
    assert set(table["lean_exchange"].to_pylist()) == {"usa"}
    assert table["condition"].null_count == table.num_rows
    assert not pc.any(table["suspicious"]).as_py()


# --------------------------------------------------------------------------- synthetic files


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


TICK = "20200102_es_tick_trade_202003.csv"
BARS = "20200102_es_minute_trade_202003.csv"


def test_dropping_only_an_exact_repeat_of_the_last_row(tmp_path: Path) -> None:
    text = "60000,3250.25,1,usa,,0\n60000,3250.25,1,usa,,0\n61000,3250.5,0,usa,,0\n"
    kept = read_lean_trades(_zip(tmp_path / "20200102_trade.zip", {TICK: text}))
    assert kept.num_rows == 3  # the inner identical rows are two trades; last row is unique
    assert kept.schema.metadata[DROPPED_ROWS_METADATA_KEY] == b"0"

    dup = text + "61000,3250.5,0,usa,,0\n"
    (tmp_path / "b").mkdir()
    table = read_lean_trades(_zip(tmp_path / "b" / "20200102_trade.zip", {TICK: dup}), "CME")
    assert table.num_rows == 3
    assert table["symbol"].to_pylist() == ["ES 202003"] * 3
    assert table["exchange"].to_pylist() == ["CME"] * 3
    assert table["quantity"].to_pylist() == [Decimal(1), Decimal(1), Decimal(0)]
    assert table["trade_id"].to_pylist() == [18263 * 10**9 + i for i in range(3)]
    assert table["ts"][2].as_py() == datetime(2020, 1, 2, 0, 1, 1, tzinfo=UTC)


def test_decimals_are_exact_and_text_is_not_scaled(tmp_path: Path) -> None:
    text = "0,0.12345678,12345678901.5,usa,,0\n1,-37.63,0.00000001,usa,,1\n"
    table = read_lean_trades(_zip(tmp_path / "20200102_trade.zip", {TICK: text}))
    assert table["price"].to_pylist() == [Decimal("0.12345678"), Decimal("-37.63")]
    assert table["quantity"].to_pylist() == [Decimal("12345678901.5"), Decimal("1E-8")]


def test_minute_bars_from_a_small_file(tmp_path: Path) -> None:
    text = "0,1.5,2,1,1.75,10\n120000,1.75,1.75,1.25,1.5,3\n"
    table = read_lean_minute_bars(_zip(tmp_path / "20200102_trade.zip", {BARS: text}))
    assert table.schema.equals(MINUTE_BARS_SCHEMA)
    row = table.to_pylist()[1]
    assert row["symbol"] == "ES 202003"
    assert row["window_start"] == datetime(2020, 1, 2, 0, 2, tzinfo=UTC)
    assert (row["open"], row["low"], row["volume"]) == (Decimal("1.75"), Decimal("1.25"), 3)


def _one_line_input_error(
    path: Path, match: str, reader: Callable[[Path], pa.Table] = read_lean_trades
) -> str:
    with pytest.raises(InputError, match=match) as info:
        reader(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0,1.5,1,usa,,0\n1,1.5,1,usa,0\n", r"line 2: expected 6 columns, got 5"),
        ("0,1.5,1,usa,,0,7\n", r"line 1: expected 6 columns, got 7"),
        ("0,1.123456789,1,usa,,0\n", r"line 1: price '1.123456789' does not fit"),
        ("0,1e3,1,usa,,0\n", r"line 1: bad price '1e3'"),
        ("0,1.5,-1,usa,,0\n", r"line 1: bad quantity '-1'"),
        ("86400000,1.5,1,usa,,0\n", r"line 1: ms_since_midnight 86400000 >= 1 day"),
        ("0,1.5,1,usa,,yes\n", r"line 1: bad suspicious flag 'yes'"),
    ],
)
def test_malformed_tick_rows(tmp_path: Path, text: str, match: str) -> None:
    path = _zip(tmp_path / "20200102_trade.zip", {TICK: text})
    message = _one_line_input_error(path, match)
    assert TICK in message


def test_bad_zip_and_bad_member_names(tmp_path: Path) -> None:
    bad = tmp_path / "20200102_trade.zip"
    bad.write_bytes(b"this is not a zip")
    _one_line_input_error(bad, "not a readable zip archive")

    (tmp_path / "odd").mkdir()
    odd = _zip(tmp_path / "odd" / "20200102_trade.zip", {"trades.csv": "0,1,1,usa,,0\n"})
    _one_line_input_error(odd, "member name is not")

    (tmp_path / "m").mkdir()
    minute = _zip(tmp_path / "m" / "20200102_trade.zip", {BARS: "0,1,1,1,1,1\n"})
    _one_line_input_error(minute, "a minute file where tick files are expected")

    (tmp_path / "d").mkdir()
    wrong_day = _zip(tmp_path / "d" / "20200103_trade.zip", {TICK: "0,1,1,usa,,0\n"})
    _one_line_input_error(wrong_day, "member date differs")

    with pytest.raises(InputError, match="no such file"):
        read_lean_trades(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no LEAN"):
        read_lean_trades(tmp_path / "empty")


def test_malformed_minute_rows(tmp_path: Path) -> None:
    path = _zip(tmp_path / "20200102_trade.zip", {BARS: "0,1,1,1,1,1\n30000,1,1,1,1,1\n"})
    _one_line_input_error(
        path, "line 2: bar start 30000 ms is not on a whole minute", read_lean_minute_bars
    )
    (tmp_path / "c").mkdir()
    path = _zip(tmp_path / "c" / "20200102_trade.zip", {BARS: "0,1,1,1,1\n"})
    _one_line_input_error(path, "line 1: expected 6 columns, got 5", read_lean_minute_bars)


# --------------------------------------------------------------------------- data location


def _fake_dataset(root: Path) -> Path:
    for sub in ("tick", "minute"):
        (root / sub).mkdir(parents=True)
    return root


def test_lean_data_dir_honours_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = _fake_dataset(tmp_path / "lean_comex_gc_1m_2013-10")
    monkeypatch.setenv(LEAN_DATA_ENV, str(dataset))
    assert lean_data_dir() == dataset.resolve()
    monkeypatch.setenv(LEAN_DATA_ENV, str(tmp_path))  # the parent works too
    assert lean_data_dir() == dataset.resolve()
    monkeypatch.setenv(LEAN_DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=LEAN_DATA_ENV):
        lean_data_dir()


def test_lean_data_dir_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LEAN_DATA_ENV, raising=False)
    dataset = _fake_dataset(tmp_path / "shared" / "data" / "lean_comex_gc_1m_2013-10")
    assert lean_data_dir(tmp_path / "shared" / "data") == dataset.resolve()
