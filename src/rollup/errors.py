"""The error hierarchy of rollup: every error raised on purpose derives from RollupError."""

from __future__ import annotations


class RollupError(Exception):
    """Root of all errors raised by rollup."""


class TimeframeError(RollupError, ValueError):
    """A timeframe string or timeframe DAG is invalid."""


class ConfigError(RollupError, ValueError):
    """A configuration value (identifier, path, option) is invalid."""


class InputError(RollupError, ValueError):
    """Input data (a file, a filter value, a time) cannot be used."""


class EngineError(RollupError):
    """Spark, Java or the Iceberg runtime could not be set up."""


class ConcurrentRunError(RollupError):
    """Another run committed to the same table first; the run can be retried."""


class OrchestrationError(RollupError):
    """The Prefect server, a flow run or a submitted Spark job failed."""
