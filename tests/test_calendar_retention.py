"""Retention under calendar levels: label partitions expire whole, horizons follow local
windows, late trades before a horizon are left alone and after it end exact (oracle)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from rollup.incremental.retention import enforce_retention, retained_from
from rollup.incremental.runner import run_cascade
from rollup.storage.tables import Tables
from rollup.timeframes import Dag
from tests.calendar_scenario import append_trades, spread_trades, utc
from tests.helpers import snapshot_ids
from tests.oracle import assert_matches_oracle

pytestmark = pytest.mark.spark
DAY = timedelta(days=1)


def test_calendar_levels_keep_their_horizons_after_retention(spark, namespace) -> None:  # type: ignore[no-untyped-def]
    dag = (Dag.from_spec({"1m": None, "1h": "1m", "1d@America/New_York": "1h",
                          "1d@America/Chicago+17:00": "1h"})
           .replace("1h", retention=10 * DAY)
           .replace("1d@America/New_York", write_mode="merge", partitioning="days")
           .replace("1d@America/Chicago+17:00", retention=5 * DAY))
    tables = Tables(spark, "rollup", namespace, dag)
    tables.create_all()
    append_trades(tables, spread_trades(0, 200, utc(2026, 3, 1), utc(2026, 4, 16), seed=7))
    run_cascade(tables)
    removed = {r.timeframe: r for r in
               enforce_retention(tables, now=utc(2026, 4, 20), orphan_age=3 * DAY)}
    # 1h keeps days from April 10; the sessions (month partitions) keep April's labels.
    assert retained_from(spark, tables.bars("1h")) == date(2026, 4, 10)
    assert retained_from(spark, tables.bars("1d@America/Chicago+17:00")) == date(2026, 4, 1)
    assert removed["1d@America/Chicago+17:00"].partitions == (date(2026, 3, 1),)
    sessions = tables.read_bars("1d@America/Chicago+17:00").select("window_date").collect()
    assert min(r.window_date for r in sessions) == date(2026, 4, 1)

    # Late trades: before every horizon (March 20); after 1h's (April 10, 00:00Z) but in the
    # New York day of April 9, before its horizon (April 10, 04:00Z); and after all of them.
    before = snapshot_ids(tables)
    append_trades(tables, spread_trades(10_000, 10, utc(2026, 3, 20), utc(2026, 3, 21), seed=8)
                  + spread_trades(15_000, 3, utc(2026, 4, 10, 2), utc(2026, 4, 10, 3), seed=9)
                  + spread_trades(20_000, 10, utc(2026, 4, 14), utc(2026, 4, 15), seed=10))
    results = {r.level: r for r in run_cascade(tables)}
    assert results["1h"].skipped > 0 and results["1d@America/New_York"].skipped > 0
    assert results["1d@America/New_York"].status == "written"
    # The sessions replace whole months: April's input is partial, so May is the horizon.
    assert results["1d@America/Chicago+17:00"].skipped > 0
    assert snapshot_ids(tables)["1d@America/Chicago+17:00"] == before["1d@America/Chicago+17:00"]
    assert assert_matches_oracle(tables) > 0
