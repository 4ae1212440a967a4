"""The Spark conf of an Iceberg catalog, built where a SparkSession starts.

`rollup.settings.catalogs` describes a catalog (`CatalogConfig`, pure settings); this module turns
it
into Spark conf and checks that the jars on hand can serve it (the REST client needs the
official Iceberg runtime). Nothing here runs when settings are only loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rollup.settings.catalogs import HADOOP, REST, CatalogConfig
from rollup.settings.config import warehouse_location
from rollup.settings.secrets import SECRET_KEY_PATTERN, is_secret_key
from rollup.spark.engine import ICEBERG_EXTENSIONS, SESSION_CONF, validate_catalog
from rollup.spark.jars import ICEBERG_VERSION, check_rest_jars

if TYPE_CHECKING:
    from rollup.settings.config import Settings

AWS_BUNDLE_PACKAGE = f"org.apache.iceberg:iceberg-aws-bundle:{ICEBERG_VERSION}"



def catalog_packages(config: CatalogConfig) -> list[str]:
    """Maven coordinates `config` needs besides the Iceberg Spark runtime."""
    return [AWS_BUNDLE_PACKAGE] if config.s3 is not None else []


def session_spark_conf(settings: Settings) -> dict[str, str]:
    """Spark conf for a session with `settings`: the catalog's, then `[spark]` (no jars)."""
    return {**session_catalog_conf(settings.catalog, settings.warehouse, settings.iceberg),
            **settings.engine.spark_conf}


def catalog_spark_conf(
    catalog: str, warehouse: str | None, config: CatalogConfig | None = None
) -> dict[str, str]:
    """Complete Spark conf for an Iceberg catalog named ``catalog`` (extensions included).

    A Hadoop warehouse given as a local path is made absolute (not created: the session
    that starts does that, see `rollup.spark.engine.get_spark`); REST warehouses are passed as
    given.
    """
    config = config or CatalogConfig()
    validate_catalog(catalog)
    if config.type == HADOOP:
        warehouse = warehouse_location(warehouse)
    prefix = f"spark.sql.catalog.{catalog}"
    conf = {
        "spark.sql.extensions": ICEBERG_EXTENSIONS,
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        **{f"{prefix}.{key}": value for key, value in config.catalog_properties(warehouse).items()},
        **SESSION_CONF,
    }
    if any(is_secret_key(key) for key in conf):
        conf["spark.redaction.regex"] = SECRET_KEY_PATTERN
    return conf


def session_catalog_conf(
    catalog: str, warehouse: str | None, config: CatalogConfig | None
) -> dict[str, str]:
    """Conf a session needs beyond `rollup.spark.engine`'s default Hadoop catalog ({} if none).

    Pure: the jars a REST catalog needs are checked where the session starts
    (`rollup.spark.engine.get_spark`, `check_rest_jars`).
    """
    if config is None or config.is_default:
        return {}
    return catalog_spark_conf(catalog, warehouse, config)


def check_rest_client(config: CatalogConfig, jars: Sequence[str], packages: str | None) -> None:
    """`check_rest_jars` when `config` is a REST catalog; nothing for Hadoop."""
    if config.type == REST:
        check_rest_jars(jars, packages)
