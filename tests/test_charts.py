"""Tests for rollup.readers.charts and `rollup chart`: valid, non-blank candlestick PNGs."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

pytest.importorskip("mplfinance")

import matplotlib  # noqa: E402

matplotlib.use("Agg")

from rollup.errors import InputError  # noqa: E402
from rollup.readers.charts import DOWN, UP, candles, ohlcv_frame, save  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _bars(n: int = 30, symbol: str = "BTC-USD") -> pd.DataFrame:
    rows = []
    price = Decimal("100")
    for i in range(n):
        ws = pd.Timestamp("2024-01-02T00:00", tz="UTC") + pd.Timedelta(minutes=5 * i)
        step = Decimal(3 if i % 3 else -4)  # both rising and falling candles
        close = price + step
        rows.append({"exchange": "X", "symbol": symbol, "window_start": ws,
                     "open": price, "high": max(price, close) + 1,
                     "low": min(price, close) - 1, "close": close,
                     "volume": Decimal(10 + i), "trade_count": 5})
        price = close
    return pd.DataFrame(rows)


def _hex(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)


def assert_candlestick_png(path: Path, min_candle_pixels: int = 50) -> None:
    """A real PNG, not blank, with both up and down candle colours drawn."""
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    height, width, _ = pixels.shape
    assert width >= 600 and height >= 400
    assert pixels.std() > 10  # not a blank canvas
    for color in (UP, DOWN):
        near = (np.abs(pixels - _hex(color)).sum(axis=2) < 30).sum()
        assert near >= min_candle_pixels, f"too few pixels of {color}: {near}"


def test_candles_png(tmp_path: Path) -> None:
    fig = candles(_bars(), title="X/BTC-USD", moving_averages=(5,))
    out = save(fig, tmp_path / "c.png")
    assert_candlestick_png(out)
    assert len(fig.axes) >= 2  # price panel and volume panel
    assert fig.axes[0].get_title() == "X/BTC-USD"


def test_ohlcv_frame() -> None:
    frame = ohlcv_frame(_bars(4).iloc[::-1])
    assert list(frame.columns) == ["Open", "High", "Low", "Close", "Volume"]
    assert frame.index.is_monotonic_increasing and frame.index.tz is None
    assert frame["Close"].iloc[0] == pytest.approx(96.0)
    assert frame["Volume"].tolist() == [10.0, 11.0, 12.0, 13.0]


def test_chart_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no bars to chart"):
        candles(_bars().iloc[0:0])
    mixed = pd.concat([_bars(3), _bars(3, symbol="ETH-USD")])
    with pytest.raises(InputError, match="several instruments .*X/BTC-USD, X/ETH-USD"):
        candles(mixed)
    with pytest.raises(InputError, match="lack the column"):
        candles(_bars().drop(columns="volume"))
    fig = candles(_bars(5))
    with pytest.raises(InputError, match="expected a name ending in .png"):
        save(fig, tmp_path / "chart.gif")
    with pytest.raises(InputError, match="does not exist"):
        save(fig, tmp_path / "missing" / "chart.png")


# ------------------------------------------------------------------------------ Spark


@pytest.fixture(scope="module")
def chart_tables(spark: Any) -> Any:
    """Two hours of synthetic trades for two symbols, rolled up to 5m (read-only: shared by the
    tests of this module)."""
    from pyspark.sql import functions as F

    from rollup.adapters.synthetic import synthetic_trades
    from rollup.incremental.runner import run_cascade
    from rollup.storage.tables import Tables

    tables = Tables(spark, "rollup", f"charts_{uuid.uuid4().hex[:8]}")
    tables.create_all()
    trades = synthetic_trades(24_000, symbols=2, day=date(2024, 1, 2), seed=3)
    ts_type = trades.schema.field("ts").type
    cutoff = pa.scalar(pd.Timestamp("2024-01-02T02:00", tz="UTC"), type=ts_type)
    trades = trades.filter(pc.less(trades["ts"], cutoff))  # about 2,000 trades
    schema = spark.table(tables.trades).drop("ingested_at", "trade_ref").schema
    frame = spark.createDataFrame(trades.to_pandas(), schema=schema)
    frame.withColumn("ingested_at", F.current_timestamp()).withColumn(
        "trade_ref", F.lit(None).cast("string")).writeTo(tables.trades).append()
    run_cascade(tables, up_to="5m")
    return tables


def _argv(tables: Any, warehouse: Path, *rest: str) -> list[str]:
    return ["--catalog", "rollup", "--namespace", tables.namespace, "--warehouse",
            str(warehouse), *rest]


@pytest.mark.spark
def test_rollup_chart_command(chart_tables: Any, warehouse: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from rollup.cli import main

    out = tmp_path / "btc.png"
    code = main(_argv(chart_tables, warehouse, "chart", "5m", "--exchange", "SYNTH",
                      "--symbol", "BTC-USD", "--start", "2024-01-02T00:00", "--end",
                      "2024-01-02T02:00", "--mav", "6", "--output", str(out)))
    assert code == 0
    assert f"wrote {out} (24 bars)" in capsys.readouterr().out
    assert_candlestick_png(out)

    code = main(_argv(chart_tables, warehouse, "chart", "5m", "--exchange", "SYNTH",
                      "--symbol", "NOPE", "--output", str(tmp_path / "n.png")))
    assert code == 2
    assert "no 5m bars for SYNTH/NOPE" in capsys.readouterr().err
    assert not (tmp_path / "n.png").exists()
    code = main(_argv(chart_tables, warehouse, "chart", "5m", "--exchange", "SYNTH",
                      "--symbol", "BTC-USD", "--size", "big", "--output", str(out)))
    assert code == 2 and "invalid --size 'big'" in capsys.readouterr().err


@pytest.mark.spark
def test_plot_api(chart_tables: Any, warehouse: Path, tmp_path: Path) -> None:
    import rollup

    out = tmp_path / "pepe.png"
    fig = rollup.plot("5m", "SYNTH", "PEPE-USD", start="2024-01-02T00:30", end="2024-01-02T01:30",
                      warehouse=warehouse, namespace=chart_tables.namespace, output=out)
    assert_candlestick_png(out, min_candle_pixels=20)
    assert fig.axes[0].get_title() == "SYNTH/PEPE-USD 5m (UTC), 12 bars"
    with pytest.raises(InputError, match="several instruments"):
        rollup.plot("5m", warehouse=warehouse, namespace=chart_tables.namespace)
