"""Default values of rollup's settings, each defined once (no imports: any layer may use them)."""

from __future__ import annotations

from datetime import timedelta

DEFAULT_CATALOG = "rollup"
DEFAULT_NAMESPACE = "market_data"
DEFAULT_TRADES_TABLE = "trades"
DEFAULT_WAREHOUSE = "warehouse"
"""A local directory, relative to the working directory."""

DEFAULT_MASTER = "local[2]"
DEFAULT_DRIVER_MEMORY = "4g"
DEFAULT_SPARK_LOG_LEVEL = "ERROR"

DEFAULT_SNAPSHOT_AGE = timedelta(days=5)
DEFAULT_ORPHAN_AGE = timedelta(days=3)
DEFAULT_RETAIN_LAST = 1
MIN_ORPHAN_AGE = timedelta(days=1)
"""Younger unreferenced files may belong to a commit in progress."""
