"""`connect`: one call from settings to a ready `Tables` (SparkSession + catalog + DAG)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rollup.errors import EngineError, RollupError, one_line
from rollup.settings.config import Settings, load_settings
from rollup.settings.secrets import redact, secret_env_values
from rollup.specs.identifiers import qualified
from rollup.storage.tables import Tables

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
    from rollup.spark.catalog_conf import session_spark_conf
    from rollup.spark.engine import configure_session, get_spark

    settings = settings or load_settings(config, warehouse=warehouse)
    if spark is None:
        spark = get_spark(settings.warehouse, catalog=settings.catalog,
                          conf=session_spark_conf(settings), engine=settings.engine)
    else:
        configure_session(spark, catalog=settings.catalog, warehouse=warehouse)
    tables = Tables(spark, settings.catalog, settings.namespace, settings.dag,
                    settings.trades_table, settings.source)
    try:
        if create:
            tables.create_all()
        else:  # fail here, in one line, when the catalog or warehouse cannot be reached
            spark.sql(f"SHOW NAMESPACES IN {qualified(settings.catalog)}").limit(1).collect()
    except RollupError:
        raise
    except Exception as exc:  # py4j / Spark analysis errors from the catalog
        conf = spark.conf
        where = (conf.get(f"spark.sql.catalog.{settings.catalog}.uri", None)
                 or conf.get(f"spark.sql.catalog.{settings.catalog}.warehouse", None) or "?")
        raise EngineError(redact(
            f"cannot use Iceberg catalog {settings.catalog!r} at {where} ({one_line(exc)}): "
            "check --warehouse / ROLLUP_WAREHOUSE or the catalog URI in rollup.toml",
            secret_env_values())) from None
    return tables
