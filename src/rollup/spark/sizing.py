"""Spark sizing from data volume: shuffle partitions and file sizes for a cascade run.

Adaptive query execution (AQE) is on in every rollup session, so the shuffle partition count
is only the *initial* split that AQE coalesces; what matters is that it is large enough that no
partition is oversized, and that the coalescing target spreads small runs over every core.
Estimates use `BYTES_PER_TRADE` (a trade row in Spark's memory) and
`PARQUET_BYTES_PER_TRADE` (on disk, zstd); both are rough, deliberately on the high side.
"""

from __future__ import annotations

import math

import attrs

from rollup.errors import ConfigError

MIB = 1024 * 1024
BYTES_PER_TRADE = 128
PARQUET_BYTES_PER_TRADE = 24
MAX_SHUFFLE_PARTITION_BYTES = 128 * MIB  # an initial shuffle partition should not exceed this
MIN_ADVISORY_BYTES = 1 * MIB
MAX_ADVISORY_BYTES = 128 * MIB
MAX_SHUFFLE_PARTITIONS = 8192
# write.target-file-size-bytes by data written per run (parquet bytes): up to the bound, this size
FILE_SIZE_TIERS = ((1024 * MIB, 64 * MIB), (64 * 1024 * MIB, 128 * MIB))
LARGEST_FILE_SIZE = 256 * MIB


def _positive(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"invalid {what} {value!r}: expected a whole number >= 1")
    return value


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


@attrs.frozen
class Sizing:
    """Spark settings for runs of ``trades_per_run`` trades on ``cores`` executor cores."""

    trades_per_run: int
    cores: int
    shuffle_partitions: int
    advisory_partition_bytes: int
    target_file_bytes: int

    @property
    def shuffle_bytes(self) -> int:
        """Estimated in-memory size of one run's trades."""
        return self.trades_per_run * BYTES_PER_TRADE

    def spark_conf(self) -> dict[str, str]:
        """Spark conf entries (AQE on; coalescing to the advisory size, not to parallelism)."""
        return {
            "spark.sql.adaptive.enabled": "true",
            "spark.sql.adaptive.coalescePartitions.enabled": "true",
            "spark.sql.adaptive.coalescePartitions.parallelismFirst": "false",
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.sql.adaptive.advisoryPartitionSizeInBytes": str(self.advisory_partition_bytes),
            "spark.default.parallelism": str(2 * self.cores),
            # Iceberg's write shuffle: one task writes about this much, i.e. about one file.
            "spark.sql.iceberg.advisory-partition-size": str(self.target_file_bytes),
        }

    def table_properties(self) -> dict[str, str]:
        """Iceberg table properties to match (``ALTER TABLE ... SET TBLPROPERTIES``)."""
        return {"write.target-file-size-bytes": str(self.target_file_bytes)}


def suggest_sizing(trades_per_run: int, cores: int) -> Sizing:
    """Choose shuffle partitions, AQE's coalescing target and the file size from the volume.

    Args:
        trades_per_run: trades one run reads (a backfill: the whole range).
        cores: executor cores of the cluster (``--total-executor-cores``).

    Raises:
        ConfigError: a count is not a whole number >= 1.
    """
    _positive(trades_per_run, "trades per run")
    _positive(cores, "number of cores")
    shuffle_bytes = trades_per_run * BYTES_PER_TRADE
    # Initial partitions: none larger than the cap, at least two waves over the cores.
    partitions = max(2 * cores, math.ceil(shuffle_bytes / MAX_SHUFFLE_PARTITION_BYTES))
    partitions = min(_round_up(partitions, cores), max(MAX_SHUFFLE_PARTITIONS, 2 * cores))
    # Coalescing target: small runs still give every core about two partitions.
    advisory = min(MAX_ADVISORY_BYTES, max(MIN_ADVISORY_BYTES, shuffle_bytes // (2 * cores)))
    written = trades_per_run * PARQUET_BYTES_PER_TRADE
    target = next((size for bound, size in FILE_SIZE_TIERS if written <= bound),
                  LARGEST_FILE_SIZE)
    return Sizing(trades_per_run, cores, partitions, advisory, target)


def suggest_spark_conf(trades_per_run: int, cores: int) -> dict[str, str]:
    """Spark conf for runs of ``trades_per_run`` trades on ``cores`` cores (see `Sizing`)."""
    return suggest_sizing(trades_per_run, cores).spark_conf()
