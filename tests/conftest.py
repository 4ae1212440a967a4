"""Shared fixtures: one SparkSession (with an Iceberg catalog ``rollup``) per test run.

Under CI (the ``CI`` environment variable set and not ``0``/``false``; .ci/run exports it):
Hypothesis runs the ``ci`` profile (derandomized: the same examples on every run), a test
whose shared LEAN data is missing fails instead of skipping (`require_in_ci`), and a test
skipped because an optional package cannot be imported fails too: `make test` installs the
dev extras of pyproject.toml, so such a skip can only mean a missing extra.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

CATALOG = "rollup"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""``../shared/data`` beside the checkout: CI lays a copy of shared/ beside its clone."""


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set (and not ``0`` or ``false``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# Same examples on every CI run (no example database, no random seed); locally, random.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev")
settings.load_profile("ci" if in_ci() else "dev")


def require_in_ci(found: Any, missing: str) -> Any:
    """`found` itself; when it is None, skip with the reason `missing`, or fail under CI."""
    if found is not None:
        return found
    if in_ci():
        pytest.fail(f"{missing}; CI must provide it, so the test fails instead of skipping",
                    pytrace=False)
    pytest.skip(missing)


@pytest.fixture(scope="session")
def lean_data() -> Path:
    """The LEAN COMEX gold sample (tick/ and minute/), from ``ROLLUP_LEAN_DATA`` or
    ``../shared/data``; skipped when absent, a failure under CI."""
    from rollup.adapters.lean import LEAN_DATA_ENV, lean_data_dir

    found = lean_data_dir(SHARED_DATA)
    path: Path = require_in_ci(
        found, f"LEAN sample data not found (set {LEAN_DATA_ENV} or provide {SHARED_DATA})")
    return path


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Iceberg warehouse directory of the test run's SparkSession."""
    return tmp_path_factory.mktemp("warehouse")


@pytest.fixture(scope="session")
def spark(warehouse: Path) -> Iterator[SparkSession]:
    """One local SparkSession for the whole run (catalog ``rollup`` at ``warehouse``)."""
    from rollup.spark.engine import get_spark

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
    """A `rollup.storage.tables.Tables` in a fresh namespace with every table created (standard
    DAG)."""
    from rollup.storage.tables import Tables

    result = Tables(spark, CATALOG, namespace)
    result.create_all()
    return result


# ---------------------------------------------------------------------------------------------
# Under CI, a skip for a package that cannot be imported is a failure


def _missing_import(message: str) -> bool:
    """Whether a skip message is `pytest.importorskip`'s "could not import ..."."""
    return "could not import" in message


def _as_failure(report: Any, message: str) -> None:
    report.outcome = "failed"
    report.longrepr = (f"{message} (a skip under CI: `make test` installs the dev extras of "
                       "pyproject.toml; add the package there)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and call.excinfo is not None:
        message = str(call.excinfo.value)
        if _missing_import(message):
            _as_failure(report, f"{item.nodeid}: {message}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped:
        message = str(report.longrepr[-1] if isinstance(report.longrepr, tuple)
                      else report.longrepr)
        if _missing_import(message):
            _as_failure(report, f"{collector.nodeid}: {message}")


# ---------------------------------------------------------------------------------------------
# `make test` (xdist, --dist loadfile): the longest files first, so none is left to run alone

SLOW_FILES = {  # seconds on a quiet 2-core machine, rounded (a full run's --durations)
    "tests/test_source_pushdown.py": 150, "tests/test_lakehouse_property.py": 120,
    "tests/test_bench.py": 115, "tests/integration/test_cluster.py": 90,
    "tests/test_notebook.py": 85, "tests/integration/test_prefect_server.py": 75,
    "tests/test_follow.py": 75, "tests/test_calendar_cascade.py": 60,
    "tests/test_calendar_cascade_london.py": 45, "tests/test_calendar_reads.py": 45,
    "tests/test_lean_sessions.py": 40, "tests/test_rich_bars.py": 40,
    "tests/test_retention.py": 40, "tests/test_calendar_retention.py": 35,
    "tests/test_lean_spark.py": 40,  # the pure-Python oracle of 157,822 LEAN ticks
    "tests/test_realtime.py": 80, "tests/test_follow_lag.py": 70,  # estimates (loaded runs)
    "tests/test_ingest_watch.py": 70, "tests/test_handoff.py": 50,
}
"""Files whose cost the markers understate; every other file is estimated from its markers."""


def estimated_seconds(path: str, items: list[pytest.Item]) -> float:
    """A file's expected run time: `SLOW_FILES`, else a few seconds a Spark test, more for a
    slow or integration one, a fraction of a second for a unit test."""
    if path in SLOW_FILES:
        return SLOW_FILES[path]
    marks = [{m.name for m in item.iter_markers()} for item in items]
    return sum(30 if {"slow", "integration"} & names else 6 if "spark" in names else 0.1
               for names in marks)


def pytest_configure(config: pytest.Config) -> None:
    """Under `--dist loadfile`, xdist takes the files in the order the workers collected them
    (see `pytest_collection_modifyitems`) instead of ordering them by test count, which put
    the one-test files, among them the slowest, last."""
    if getattr(config.option, "dist", "no") == "loadfile":
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, order the files longest first (each file's tests keep their
    order): the two workers end together, on short files."""
    if not hasattr(config, "workerinput"):
        return
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    order = sorted(files, key=lambda path: -estimated_seconds(path, files[path]))
    items[:] = [item for path in order for item in files[path]]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Keep py4j's shutdown chatter out of handlers whose streams pytest has closed."""
    import logging

    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.raiseExceptions = False
