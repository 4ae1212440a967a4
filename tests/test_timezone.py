"""A Python process outside UTC. PySpark hands collected TIMESTAMPs back as naive local times,
not in Spark's session zone; rollup must still recompute the right windows and report the
right instants."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import functions as F

from rollup.incremental.runner import run_cascade
from rollup.operations.status import level_status
from rollup.specs.times import from_micros, from_spark
from rollup.storage import state
from tests.helpers import append_trades, assert_exact
from tests.test_cascade import DAY, day_trades


@pytest.fixture
def new_york() -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_from_spark_and_from_micros(new_york: None) -> None:
    local = datetime.fromtimestamp(0)  # how PySpark builds a TIMESTAMP value
    assert local.hour == 19  # 1969-12-31 19:00 in New York
    assert from_spark(local) == datetime(1970, 1, 1, tzinfo=UTC)
    assert from_micros(1_700_000_000_123_456) == datetime(2023, 11, 14, 22, 13, 20, 123_456,
                                                          tzinfo=UTC)
    # the repeated hour when clocks go back: fromtimestamp sets fold, so the instant survives
    second = datetime(2024, 11, 3, 6, 30, tzinfo=UTC)  # 01:30 EST, the second 01:30
    assert from_spark(datetime.fromtimestamp(second.timestamp())) == second


@pytest.mark.spark
def test_incremental_cascade_is_exact_outside_utc(tables, new_york: None) -> None:  # type: ignore[no-untyped-def]
    append_trades(tables, day_trades(DAY, 200))
    run_cascade(tables)
    # late trades: the runner must find their windows from collected window starts
    append_trades(tables, day_trades(DAY - timedelta(days=3), 30, first_id=50_000)
                  + day_trades(DAY, 40, first_id=60_000))
    results = run_cascade(tables)
    assert not results[0].full and results[0].status == "written"
    assert assert_exact(tables) > 0

    newest = tables.read_bars("1m").agg(F.max(F.unix_micros("window_start"))).first()[0]
    by_level = {s.level: s for s in level_status(tables)}
    assert by_level["1m"].newest_window_start == from_micros(newest)
    assert by_level["1m"].lag_seconds == 0
    for snap in state.snapshots(tables.spark, tables.bars("1m")).values():
        assert snap.committed_at is not None
        assert abs(datetime.now(UTC) - snap.committed_at) < timedelta(minutes=10)
