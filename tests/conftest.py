"""Shared fixtures: one SparkSession (with an Iceberg catalog ``rollup``) per test run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

CATALOG = "rollup"


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Iceberg warehouse directory of the test run's SparkSession."""
    return tmp_path_factory.mktemp("warehouse")


@pytest.fixture(scope="session")
def spark(warehouse: Path) -> Iterator[SparkSession]:
    """One local SparkSession for the whole run (catalog ``rollup`` at ``warehouse``)."""
    from rollup.engine import get_spark

    session = get_spark(
        warehouse,
        catalog=CATALOG,
        app_name="rollup-tests",
        conf={"spark.sql.shuffle.partitions": "2"},
    )
    yield session
    session.stop()


@pytest.fixture
def namespace(spark: SparkSession) -> str:
    """A fresh, empty Iceberg namespace in catalog ``rollup`` (e.g. ``t_1a2b3c4d``); not dropped."""
    name = f"t_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {CATALOG}.{name}")
    return name


@pytest.fixture
def tables(spark: SparkSession, namespace: str):  # type: ignore[no-untyped-def]
    """A `rollup.tables.Tables` in a fresh namespace with every table created (standard DAG)."""
    from rollup.tables import Tables

    result = Tables(spark, CATALOG, namespace)
    result.create_all()
    return result


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Keep py4j's shutdown chatter out of handlers whose streams pytest has closed."""
    import logging

    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.raiseExceptions = False
