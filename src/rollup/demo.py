"""`rollup demo`: a deterministic synthetic day ingested and rolled up through every level."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rollup.adapters.synthetic import synthetic_trades, write_trades_parquet
from rollup.incremental.runner import Progress, run_cascade
from rollup.ingestion.batch import ingest_file
from rollup.storage.tables import Tables


def run_demo(tables: Tables, *, trades: int = 200_000, symbols: int = 5,
             progress: Progress = print) -> None:
    """Generate trades, ingest them through validation, run the cascade, show daily bars."""
    progress(f"generating {trades} synthetic trades for {symbols} symbols ...")
    table = synthetic_trades(trades, symbols=symbols)
    with tempfile.TemporaryDirectory(prefix="rollup-demo-") as tmp:
        files = write_trades_parquet(table, Path(tmp) / "trades", rows_per_file=trades)
        for file in files:
            report = ingest_file(tables, file)
            progress(report.describe())
    run_cascade(tables, progress=progress)
    bars = tables.read_bars("1d").orderBy("exchange", "symbol").select(
        "exchange", "symbol", "window_start", "open", "high", "low", "close", "volume",
        "trade_count", "vwap")
    frame: Any = bars.toPandas()
    print(frame.to_string(index=False))
