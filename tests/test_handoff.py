"""The handoff between levels of one cascade: a level plans from the bars its parent level
just committed instead of reading that commit back, only when that commit is the parent's
only change since the level's position; every result is checked against the oracle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from rollup.incremental.changes import Handoff
from rollup.incremental.planning import plan_level
from rollup.incremental.runner import run_cascade, run_level
from rollup.storage import sink
from tests.helpers import append_trades, assert_exact

pytestmark = pytest.mark.spark

DAY = datetime(2024, 5, 6, tzinfo=UTC)


def trades(first_id: int, n: int, start: datetime, step_s: int = 53) -> list:  # type: ignore[type-arg]
    return [("X", ("BTC", "ETH", "SOL")[i % 3], first_id + i,
             start + timedelta(seconds=i * step_s), Decimal(100 + i % 17) + Decimal(i % 9) / 8,
             Decimal(i % 4 + 1) / 2) for i in range(n)]


def test_covers_only_the_single_commit_after_the_position() -> None:
    parents = {11: 10, 12: 11}
    h = Handoff("1m", "cat.ns.bars_1m", before=10, after=11, keys=())
    assert h.covers("cat.ns.bars_1m", 10, 11, parents.get)
    assert not h.covers("cat.ns.bars_5m", 10, 11, parents.get)  # another table
    assert not h.covers("cat.ns.bars_1m", 9, 11, parents.get)  # the level was behind
    assert not h.covers("cat.ns.bars_1m", None, 11, parents.get)  # no position: full
    assert not h.covers("cat.ns.bars_1m", 10, 12, parents.get)  # another commit since
    assert not h.covers("cat.ns.bars_1m", 10, 11, {11: 7}.get)  # a commit between before and after


def test_cascade_levels_plan_from_the_handoff_and_stay_exact(tables) -> None:  # type: ignore[no-untyped-def]
    append_trades(tables, trades(0, 600, DAY))
    run_cascade(tables)
    reasons: list[str] = []
    real = plan_level

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        plan = real(*args, **kwargs)
        reasons.append(f"{plan.level.name}: {plan.reason}")
        return plan

    import rollup.incremental.runner as runner_module

    original = runner_module.plan_level
    runner_module.plan_level = spy
    try:
        # late trades in old windows, a trade at a window edge, a new symbol
        late = trades(10_000, 40, DAY + timedelta(minutes=7), step_s=611)
        edge = [("X", "BTC", 20_000, DAY + timedelta(hours=1), Decimal("1.5"), Decimal("2")),
                ("Y", "NEW", 20_001, DAY + timedelta(hours=5, seconds=1), Decimal("3"),
                 Decimal("1"))]
        append_trades(tables, late + edge)
        results = run_cascade(tables)
    finally:
        runner_module.plan_level = original
    assert [r.status for r in results] == ["written"] * 5
    assert all(r.handoff is not None for r in results)
    assert reasons[0].startswith("1m: snapshots since the position")
    for line, below in zip(reasons[1:], ["1m", "5m", "30m", "1h"], strict=True):
        assert f"bars {below} just wrote" in line, line
    assert assert_exact(tables) > 0


def test_a_commit_between_is_not_skipped(tables) -> None:  # type: ignore[no-untyped-def]
    """Forced interleaving: 1m commits twice before 5m plans with the first handoff; the
    handoff no longer covers the parent's changes, so 5m reads them back."""
    append_trades(tables, trades(0, 300, DAY))
    run_cascade(tables)
    append_trades(tables, trades(5_000, 10, DAY + timedelta(minutes=2)))
    first = run_level(tables, "1m")
    assert first.handoff is not None
    append_trades(tables, trades(6_000, 10, DAY + timedelta(hours=3)))  # other windows
    second = run_level(tables, "1m")
    assert second.status == "written"
    plan = plan_level(tables, "5m", below=first.handoff)
    assert "just wrote" not in plan.reason  # read back: both commits count
    starts = {s.isoformat() for s in plan.touched.starts}
    assert any(s.startswith("2024-05-06T03:") for s in starts), starts
    run_level(tables, "5m", below=first.handoff)
    run_cascade(tables)
    assert assert_exact(tables) > 0


def test_too_many_changed_bars_fall_back_to_reading_the_commit(tables, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sink, "LOCAL_DIFF", 3)
    append_trades(tables, trades(0, 200, DAY))
    results = run_cascade(tables)
    assert results[0].handoff is None  # dozens of 1m bars: counted, not listed
    assert results[-1].handoff is not None  # 1d: three bars
    append_trades(tables, trades(9_000, 50, DAY + timedelta(minutes=1), step_s=301))
    run_cascade(tables)
    assert assert_exact(tables) > 0
