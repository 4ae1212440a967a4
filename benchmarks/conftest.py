"""Fixtures of the pytest-benchmark micro-benchmarks: one SparkSession, one trades dataset."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TRADES = int(os.environ.get("ROLLUP_BENCH_TRADES", "200000"))


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from rollup.spark.engine import get_spark

    session = get_spark(tmp_path_factory.mktemp("warehouse"), app_name="rollup-benchmarks")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def trades_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ROLLUP_BENCH_TRADES` (default 200k) synthetic trades, 20 symbols, one day, as Parquet."""
    from rollup.benchmarks.common import write_trades

    path = tmp_path_factory.mktemp("trades")
    write_trades(path, TRADES, 20, 50_000)
    return path
