"""Continuous mode (`rollup run --follow`): picks up commits, batches them, stops cleanly,
resumes after a restart, and leaves every level equal to the independent oracle."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rollup.cli import main
from rollup.errors import ConcurrentRunError, InputError
from rollup.incremental import follow as follow_module
from rollup.incremental.follow import Cycle, follow, stop_on_signals
from rollup.storage import state
from tests.helpers import append_trades, assert_exact, snapshot_ids

DAY = datetime(2024, 5, 6, tzinfo=UTC)
WAIT = 180.0  # seconds: the bound of every wait on a condition


def trades(day: datetime, n: int, first_id: int, step: int = 53) -> list[tuple[Any, ...]]:
    return [("X", ("BTC", "ETH")[i % 2], first_id + i, day + timedelta(seconds=(i * step) % 86_400),
             Decimal(100 + (i * 7) % 13) + Decimal(i % 100) / 100, Decimal(1 + i % 4) / 4)
            for i in range(n)]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def trades_snapshot(tables: Any) -> int:
    snap = state.current_snapshot(tables.spark, tables.trades)
    assert snap is not None
    return snap


def caught_up(tables: Any) -> bool:
    """Every level's position is its parent's current snapshot (read from the tables)."""
    spark = tables.spark
    return all(
        state.position(spark, tables.bars(lv), tables.parent_of(lv))
        == state.current_snapshot(spark, tables.parent_of(lv)) for lv in tables.dag)


def test_flags_that_make_no_sense_with_follow_are_refused(capsys) -> None:  # type: ignore[no-untyped-def]
    for argv, expected in ((["run", "--follow", "--dry-run"], "--dry-run writes nothing"),
                           (["run", "--follow", "--full"], "every window on every cycle"),
                           (["run", "--poll", "1"], "--poll applies only"),
                           (["run", "--max-cycles", "2"], "--max-cycles applies only"),
                           (["run", "--follow", "--poll", "0"], "invalid --poll 0.0"),
                           (["run", "--follow", "--max-cycles", "0"], "invalid --max-cycles 0")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, (argv, err)
        assert "starting Spark" not in err  # refused before any session starts


def test_first_signal_stops_and_a_second_aborts() -> None:
    stop = threading.Event()
    told: list[str] = []
    with stop_on_signals(stop, notify=told.append) as received:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(5) and received == ["SIGTERM"]
        wait_for(lambda: bool(told), "the stop notice", timeout=5)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs in the main thread, between bytecodes
    assert "SIGTERM received" in told[0]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


@pytest.mark.spark
def test_follow_picks_up_commits_batches_them_and_resumes(tables, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="invalid poll interval 0"):
        follow(tables, poll_seconds=0)
    append_trades(tables, trades(DAY, 400, 0))
    first = trades_snapshot(tables)
    stop = threading.Event()
    cycles: list[Cycle] = []
    messages: list[str] = []
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["summary"] = follow(tables, poll_seconds=0.2, stop=stop,
                                        on_cycle=cycles.append, progress=messages.append,
                                        heartbeat_seconds=0.0)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            outcome["error"] = exc

    def reached(snapshot: int) -> Callable[[], bool]:
        def check() -> bool:
            assert "error" not in outcome, outcome["error"]
            return (any(c.snapshot == snapshot and not c.not_run for c in cycles)
                    and caught_up(tables))
        return check

    worker = threading.Thread(target=target, name="follower", daemon=True)
    worker.start()
    try:
        wait_for(reached(first), "the follower to build every level")
        assert_exact(tables)
        with pytest.raises(ConcurrentRunError, match="already followed in this process"):
            follow(tables, max_cycles=1)
        # Two commits back to back from this thread (one of them late, a day earlier): the
        # follower may take them in one cycle or two, and counts each commit once.
        append_trades(tables, trades(DAY, 150, 10_000, step=61))
        append_trades(tables, trades(DAY - timedelta(days=1), 60, 20_000))
        last = trades_snapshot(tables)
        wait_for(reached(last), "the follower to pick up two more commits")
        assert_exact(tables)
        assert sum(c.commits or 0 for c in cycles) == 3, [c.describe() for c in cycles]
        assert all(c.lag_seconds is not None and c.lag_seconds >= 0 for c in cycles
                   if c.commits), [c.describe() for c in cycles]
        late = next(c for c in cycles if c.snapshot == last)
        assert {r.level for r in late.touched} == {"1m", "5m", "30m", "1h", "1d"}
        assert f"trades@{last}" in late.describe() and "lag" in late.describe()
        # Idle polls run no level at all: no plan, no Spark job, no commit.
        before = snapshot_ids(tables)

        def no_run(*args: Any, **kw: Any) -> Any:
            raise AssertionError("an idle poll ran a level")

        monkeypatch.setattr(follow_module, "run_level", no_run)
        idle = len(messages)
        wait_for(lambda: sum("idle" in m for m in messages[idle:]) >= 3, "three idle polls")
        assert "error" not in outcome, outcome.get("error")
        assert snapshot_ids(tables) == before
        monkeypatch.undo()
    finally:
        stop.set()
        worker.join(timeout=WAIT)
    assert not worker.is_alive() and "error" not in outcome, outcome
    assert outcome["summary"].stopped and outcome["summary"].cycles == len(cycles)
    asked = follow(tables, stop=lambda: True)  # a callable stop request, already true
    assert asked.stopped and asked.polls == 0
    # A restarted follower resumes from the positions: only the new windows are recomputed.
    append_trades(tables, trades(DAY + timedelta(days=1), 40, 30_000))
    resumed: list[Cycle] = []
    summary = follow(tables, poll_seconds=0.1, max_cycles=2, on_cycle=resumed.append)
    assert not summary.stopped and summary.polls == 2 and summary.cycles == 1
    (cycle,) = resumed
    assert cycle.commits == 1 and not cycle.not_run
    root = cycle.results[0]
    assert root.level == "1m" and root.status == "written" and not root.full
    assert root.windows <= 40
    assert_exact(tables)


class Lines:
    """The merged output of a subprocess, line by line, read by a thread (bounded waits)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, predicate: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + WAIT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"the process ended before {what}: {self.seen}")
            self.seen.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"timed out waiting for {what}: {self.seen}")

    def rest(self) -> list[str]:
        self._thread.join(timeout=WAIT)
        while not self._queue.empty() and (line := self._queue.get_nowait()) is not None:
            self.seen.append(line)
        return self.seen


def refresh(tables) -> None:  # type: ignore[no-untyped-def]
    """Forget this session's cached metadata of tables another process committed to (the
    Iceberg catalog caches a loaded table for 30 s by default)."""
    for level in tables.dag.order():
        tables.spark.sql(f"REFRESH TABLE {tables.bars(level)}")


@pytest.mark.spark
@pytest.mark.slow
def test_follow_process_picks_up_commits_and_stops_cleanly_on_sigterm(tables, warehouse) -> None:  # type: ignore[no-untyped-def]
    """`rollup run --follow` in its own process sees commits made here; SIGTERM while 5m
    recomputes ends it with exit 0 after 5m's commit; a plain run afterwards is exact."""
    append_trades(tables, trades(DAY, 300, 0))
    first = trades_snapshot(tables)
    env = {**os.environ, "ROLLUP_WAREHOUSE": str(warehouse), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollup.cli", "--catalog", "rollup", "--namespace",
         tables.namespace, "run", "--follow", "--poll", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )
    lines = Lines(proc)
    try:
        lines.until(lambda s: s.startswith("cycle ") and f"trades@{first} " in s,
                    "the first cycle")
        refresh(tables)
        assert_exact(tables)
        append_trades(tables, trades(DAY - timedelta(days=2), 80, 50_000))
        second = trades_snapshot(tables)
        line = lines.until(lambda s: f"trades@{second} " in s, "the commit made here")
        assert "+1 commit" in line and "lag" in line and "1d" in line, line
        refresh(tables)
        assert_exact(tables)
        before = snapshot_ids(tables)
        append_trades(tables, trades(DAY + timedelta(days=1), 2000, 60_000, step=37))
        lines.until(lambda s: s.startswith("5m: recomputing"), "5m recomputing")
        proc.send_signal(signal.SIGTERM)  # the main process only, as systemd's KillMode=mixed
        code = proc.wait(timeout=WAIT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=WAIT)
    seen = lines.rest()
    refresh(tables)
    assert code == 0, seen
    assert seen[-1].startswith("follow: stopped on SIGTERM after "), seen
    assert "30m, 1h, 1d not run" in seen[-1], seen
    after = snapshot_ids(tables)
    assert after["1m"] != before["1m"] and after["5m"] != before["5m"], "1m and 5m committed"
    assert {lv: after[lv] for lv in ("30m", "1h", "1d")} == \
        {lv: before[lv] for lv in ("30m", "1h", "1d")}, "nothing above 5m ran after SIGTERM"
    assert main(["--catalog", "rollup", "--namespace", tables.namespace,
                 "--warehouse", str(warehouse), "run"]) == 0
    assert caught_up(tables)
    assert_exact(tables)


def test_cycle_and_summary_lines() -> None:
    from rollup.incremental.follow import FollowSummary
    from rollup.incremental.runner import LevelResult

    results = (LevelResult("1m", "written", "r", 11, windows=3, changed=3),
               LevelResult("5m", "unchanged", "r", 21, windows=1),
               LevelResult("30m", "up-to-date", "r", 31))
    cycle = Cycle(4, "trades", 11, 2, results, 1.25, 2.5, 4.0, ("1h", "1d"))
    assert cycle.describe() == ("cycle 4: trades@11 +2 commits: wrote 3 bars (1m 3, 5m 0) in "
                                "1.2s, lag 2.5s (oldest commit 4.0s); not run: 1h, 1d")
    assert cycle.as_json()["levels"]["30m"] == {  # type: ignore[index]
        "status": "up-to-date", "changed": 0, "deleted": 0}
    quiet = Cycle(5, "trades", 11, 0, results[2:], 0.1, None)
    assert quiet.describe() == "cycle 5: trades@11 (no new commit): levels up to date in 0.1s"
    summary = FollowSummary(9, 2, 3, True, ("1h", "1d"))
    assert summary.describe("SIGTERM") == (
        "follow: stopped on SIGTERM after 9 polls, 2 cycles, 3 bars written; 1h, 1d not run "
        "in the last cycle (the next run catches up)")
    assert FollowSummary(3, 1, 0, False).describe() == \
        "follow: done after 3 polls, 1 cycles, 0 bars written"


def test_new_commits_are_counted_from_the_history() -> None:
    from rollup.incremental.follow import _new_commits
    from rollup.storage.iceberg import Snapshot

    at = [DAY + timedelta(seconds=s) for s in range(5)]
    chain = {1: Snapshot(1, None, "append", at[0]), 2: Snapshot(2, 1, "append", at[1]),
             3: Snapshot(3, 2, "append", at[2]), 9: Snapshot(9, 1, "append", at[3])}

    class Fake:
        def __init__(self, snaps: dict[int, Snapshot]) -> None:
            self.snaps = snaps

        def history(self) -> dict[int, Snapshot]:
            return self.snaps

    table: Any = Fake(chain)
    assert _new_commits(table, 3, 1) == (2, at[2], at[1])
    assert _new_commits(table, 3, None) == (3, at[2], at[0])  # never run: every commit
    assert _new_commits(table, 3, 3) == (0, None, None)
    assert _new_commits(table, 3, 9) == (None, at[2], None)  # 9 rolled back: unknown
    expired: Any = Fake({3: chain[3]})
    assert _new_commits(expired, 3, 1) == (None, at[2], None)
