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


class IngestConflictError(ConcurrentRunError):
    """Concurrent writers kept committing to the trades table; the ingest stored nothing."""


class LevelRunError(RollupError):
    """Spark failed while a level was recomputed; nothing was committed for that level."""


class OrchestrationError(RollupError):
    """The Prefect server, a flow run or a submitted Spark job failed."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """One line describing `exc`: for a Spark (py4j) error, the root Java cause's message."""
    message = None
    java = getattr(exc, "java_exception", None)
    depth = 0
    while java is not None and depth < 20:
        try:
            message = java.getMessage() or java.getClass().getName()
            java = java.getCause()
        except Exception:  # the JVM may be gone
            break
        depth += 1
    lines = (message or str(exc) or type(exc).__name__).strip().splitlines()
    line = next((text.strip() for text in lines if text.strip()), type(exc).__name__)
    return line[:limit]


class MissingTableError(RollupError):
    """A table rollup needs has not been created yet."""


class RealtimeReadError(RollupError):
    """A real-time read was asked of a reader that cannot compute bars exactly (no Spark)."""
