"""`connect`: one call from settings to a ready `Tables` (SparkSession + catalog + DAG)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rollup.config import Settings, load_settings
from rollup.tables import Tables

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def connect(
    warehouse: str | None = None,
    *,
    spark: SparkSession | None = None,
    settings: Settings | None = None,
    config: str | None = None,
    create: bool = True,
) -> Tables:
    """Open rollup's tables, starting a local Spark with Iceberg unless `spark` is given.

    Args:
        warehouse: warehouse directory or URI (default `$ROLLUP_WAREHOUSE` or `./warehouse`).
        spark: a SparkSession of your own (notebook, spark-submit) with the catalog configured.
        settings: explicit settings; otherwise read from `config` / rollup.toml / environment.
        create: create the namespace and tables when missing (idempotent).
    """
    from rollup.engine import configure_session, get_spark

    settings = settings or load_settings(config, warehouse=warehouse)
    if spark is None:
        spark = get_spark(settings.warehouse, catalog=settings.catalog, master=settings.master,
                          conf=dict(settings.spark_conf))
    else:
        configure_session(spark, catalog=settings.catalog, warehouse=warehouse)
    tables = Tables(spark, settings.catalog, settings.namespace, settings.dag,
                    settings.trades_table)
    if create:
        tables.create_all()
    return tables
