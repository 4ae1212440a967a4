"""Real data: CME trading sessions of COMEX gold futures built by the cascade equal sessions
aggregated from the vendor's published minute bars.

The LEAN ticks of 2013-10-07..09 (`rollup.adapters.lean`) are appended to a trades table and
run through 1m <- trades, 30m <- 1m, 1h <- 30m, `1d@America/Chicago+17:00` <- 1h: sessions
from 17:00 Chicago time the day before to 17:00, labelled by the day they end. The oracle
never touches rollup code: it reads the vendor's own 1-minute bars (`read_lean_minute_bars`,
a faithful loader of the published files) and, in plain Python with zoneinfo, gives each
minute the session holding it and folds open, high, low, close and volume per session
(trade_count is not in the minute bars, so it is not compared).

Time zone: the adapter takes LEAN's ms-since-midnight values as UTC (unverified by the vendor;
see `rollup.adapters.lean`). The tick and the minute files come from the same pipeline and
share that zone, so both sides place every trade and every minute at the same instants, and
the comparison holds whatever the true zone is. (If the files were in New York time, the
sessions below would be offset from the real CME sessions, on both sides alike.)
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest

from rollup.adapters.lean import read_lean_minute_bars, read_lean_trades

pytestmark = pytest.mark.spark

SESSION = "1d@America/Chicago+17:00"
LEVELS = {"1m": None, "30m": "1m", "1h": "30m", SESSION: "1h"}
CHICAGO = ZoneInfo("America/Chicago")
OPEN = time(17)
VALUES = ("open", "high", "low", "close", "volume")


def session_of(instant: datetime) -> tuple[date, datetime, datetime]:
    """(trade date, start, end) of the CME session holding `instant`: a session opens at
    17:00 Chicago time and is labelled by the day it ends."""
    local = instant.astimezone(CHICAGO)
    trade_date = local.date() + timedelta(days=1) if local.time() >= OPEN else local.date()
    start = datetime.combine(trade_date - timedelta(days=1), OPEN, CHICAGO).astimezone(UTC)
    end = datetime.combine(trade_date, OPEN, CHICAGO).astimezone(UTC)
    return trade_date, start, end


def oracle_sessions(minute_bars: list[dict[str, Any]]) -> dict[tuple[str, date], dict[str, Any]]:
    """Sessions folded from the published minute bars: first open, max high, min low, last
    close, summed volume; window_start/window_end the session's bounds."""
    groups: dict[tuple[str, date], list[dict[str, Any]]] = defaultdict(list)
    for bar in minute_bars:
        groups[(bar["symbol"], session_of(bar["window_start"])[0])].append(bar)
    out = {}
    for (symbol, trade_date), bars in groups.items():
        bars.sort(key=lambda b: b["window_start"])
        _, start, end = session_of(bars[0]["window_start"])
        out[(symbol, trade_date)] = {
            "window_start": start, "window_end": end,
            "open": bars[0]["open"], "high": max(b["high"] for b in bars),
            "low": min(b["low"] for b in bars), "close": bars[-1]["close"],
            "volume": sum((b["volume"] for b in bars), Decimal(0)),
            "minutes": [b["window_start"] for b in bars],
        }
    return out


@pytest.fixture(scope="module")
def session_bars(spark: Any, lean_data: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> list[dict[str, Any]]:
    """The stored session bars after one run of the cascade over the LEAN ticks."""
    from pyspark.sql import functions as F

    from rollup.incremental.runner import run_cascade
    from rollup.storage.tables import Tables
    from rollup.timeframes import Dag

    path = tmp_path_factory.mktemp("lean_sessions") / "trades.parquet"
    pq.write_table(read_lean_trades(lean_data), path)
    ticks = spark.read.parquet(str(path))
    tables = Tables(spark, "rollup", f"lean_{uuid.uuid4().hex[:8]}", Dag.from_spec(LEVELS))
    tables.create_all()
    target = spark.table(tables.trades).schema
    ticks.select(*[F.col(f.name).cast(f.dataType) if f.name in ticks.columns
                   else F.lit(None).cast(f.dataType).alias(f.name) for f in target.fields]
                 ).writeTo(tables.trades).append()
    results = run_cascade(tables)
    assert [r.status for r in results] == ["written"] * len(LEVELS), results
    return [r.asDict() for r in tables.read_bars(SESSION).collect()]


def test_the_session_oracle_on_the_cme_clock() -> None:
    """17:00 Chicago is 22:00Z in October 2013 (CDT): a tick at 21:59Z belongs to the session
    of the same day, one at 22:00Z to the next day's."""
    assert session_of(datetime(2013, 10, 7, 21, 59, tzinfo=UTC)) == (
        date(2013, 10, 7), datetime(2013, 10, 6, 22, tzinfo=UTC),
        datetime(2013, 10, 7, 22, tzinfo=UTC))
    assert session_of(datetime(2013, 10, 7, 22, tzinfo=UTC))[0] == date(2013, 10, 8)
    assert session_of(datetime(2013, 12, 2, 23, tzinfo=UTC))[1:] == (  # CST: 23:00Z
        datetime(2013, 12, 2, 23, tzinfo=UTC), datetime(2013, 12, 3, 23, tzinfo=UTC))


def test_sessions_equal_the_published_minute_bars(session_bars: list[dict[str, Any]],
                                                  lean_data: Path) -> None:
    minutes = read_lean_minute_bars(lean_data).to_pylist()
    assert len(minutes) == 4_681
    expected = oracle_sessions(minutes)
    got = {(b["symbol"], b["window_date"]): b for b in session_bars}
    assert set(got) == set(expected)
    assert {b["exchange"] for b in session_bars} == {"COMEX"}
    problems = []
    for k, want in sorted(expected.items()):
        bar = got[k]
        window = (bar["window_start"].replace(tzinfo=UTC), bar["window_end"].replace(tzinfo=UTC))
        if window != (want["window_start"], want["window_end"]):
            problems.append(f"{k}: window {window} != {want['window_start'], want['window_end']}")
        problems += [f"{k}: {c} {bar[c]} != {want[c]}" for c in VALUES if bar[c] != want[c]]
    assert not problems, "\n".join(problems)
    # The comparison spans session boundaries: sessions holding minutes of two UTC days
    # (opened at 22:00Z), and the same contract in several sessions.
    spanning = [k for k, s in expected.items() if len({m.date() for m in s["minutes"]}) > 1]
    assert len(spanning) >= 5, spanning
    assert max(sum(1 for s, _ in expected if s == symbol) for symbol, _ in expected) >= 3
