"""rollup: exact cascading OHLCV aggregation on Apache Spark and Apache Iceberg.

`import rollup` is cheap: Spark-facing names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from rollup.bar import Bar
from rollup.errors import RollupError
from rollup.timeframes import Dag, Level, Timeframe

__version__ = "0.1.0"

_LAZY = {
    "connect": "rollup.session",
    "Settings": "rollup.config",
    "load_settings": "rollup.config",
    "Tables": "rollup.tables",
    "Rollup": "rollup.plans",
    "run_cascade": "rollup.runner",
    "run_level": "rollup.runner",
    "backfill": "rollup.runner",
    "ingest_file": "rollup.ingest",
    "get_spark": "rollup.engine",
    "read_bars": "rollup.read",
    "read_bars_arrow": "rollup.read",
    "plot": "rollup.charts",
}

__all__ = ["Bar", "Dag", "Level", "RollupError", "Timeframe", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rollup' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
