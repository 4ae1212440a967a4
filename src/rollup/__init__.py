"""rollup: exact cascading OHLCV aggregation on Apache Spark and Apache Iceberg.

`import rollup` is cheap: Spark-facing names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from rollup.errors import RollupError
from rollup.specs.bar import Bar
from rollup.timeframes import Dag, Level, Timeframe

__version__ = "0.1.0"

_LAZY = {
    "connect": "rollup.storage.session",
    "Settings": "rollup.settings.config",
    "load_settings": "rollup.settings.config",
    "Tables": "rollup.storage.tables",
    "Rollup": "rollup.transforms.bars",
    "run_cascade": "rollup.incremental.runner",
    "run_level": "rollup.incremental.runner",
    "backfill": "rollup.incremental.runner",
    "realtime_bars": "rollup.incremental.realtime",
    "ingest_file": "rollup.ingestion.batch",
    "get_spark": "rollup.spark.engine",
    "read_bars": "rollup.readers.read",
    "read_bars_arrow": "rollup.readers.read",
    "plot": "rollup.readers.charts",
}

__all__ = ["Bar", "Dag", "Level", "RollupError", "Timeframe", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rollup' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
