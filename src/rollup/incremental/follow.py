"""Continuous mode: `follow` keeps every level up to date as trades are committed.

One loop in one thread of one SparkSession. Each poll reads, from table metadata only (no
Spark job), the current snapshot of every table a level is built from: the trades table (or
the external source) and each parent level. When all of them are still at the snapshots the
last cycle consumed, the poll is idle. Otherwise a cycle runs the levels in DAG order with
`run_level`, as `run_cascade` does, so a level whose parent has not changed only reads
metadata. Commits that arrive faster than a cycle are batched: the next cycle reads the
newest snapshot and recomputes the windows of every commit since each level's position.

Positions live in the level tables' commits, so a restarted follower resumes where the last
commit left off. A stop request (an Event or a callable; SIGTERM and SIGINT in the CLI, see
`stop_on_signals`) is honoured between levels: the level being written finishes its commit.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import FrameType

import attrs

from rollup.errors import ConcurrentRunError, InputError
from rollup.incremental.runner import LevelResult, Progress, new_run_id, run_level
from rollup.storage import state
from rollup.storage.iceberg import Snapshot, Table
from rollup.storage.tables import Tables
from rollup.timeframes import Level, Timeframe

__all__ = ["Cycle", "FollowSummary", "Stop", "follow", "stop_on_signals", "stop_requested",
           "wait_unless_stopped"]

Stop = threading.Event | Callable[[], bool] | None
"""A stop request: an Event that gets set, or a callable that returns True (None: never)."""

_STEP = 0.05
"""Seconds between two looks at a callable stop request while waiting."""

_COUNTED = 1000
"""At most this many new source commits are counted (and read) per cycle."""

_claimed: set[str] = set()
_claim_lock = threading.Lock()


def _short(table: str) -> str:
    return table.rsplit(".", 1)[-1].strip("`")


@attrs.frozen
class Cycle:
    """What one working cycle did: the source snapshot it reached and each level's result."""

    number: int
    source: str
    snapshot: int | None
    """The source snapshot the root levels read (None: the source is empty)."""
    commits: int | None
    """Source commits new since the previous cycle (None: unknown, history expired)."""
    results: tuple[LevelResult, ...]
    seconds: float
    lag_seconds: float | None
    """From the commit time of `snapshot` to the end of the cycle (None: no new commit)."""
    oldest_lag_seconds: float | None = None
    """From the commit time of the oldest new commit to the end of the cycle."""
    not_run: tuple[str, ...] = ()
    """Levels left for the next run: a stop request, or another writer kept committing."""

    @property
    def touched(self) -> tuple[LevelResult, ...]:
        """The levels that recomputed windows (whether or not a bar changed)."""
        return tuple(r for r in self.results if r.status in ("written", "unchanged"))

    @property
    def bars(self) -> int:
        return sum(r.changed for r in self.results)

    def _source(self) -> str:
        at = f"{self.source}@{self.snapshot}" if self.snapshot is not None else self.source
        if self.commits is None:
            return at
        return at + (f" +{self.commits} commit{'s' if self.commits != 1 else ''}"
                     if self.commits else " (no new commit)")

    def describe(self) -> str:
        """One line: source snapshot, new commits, levels touched, bars written, lag."""
        levels = ", ".join(f"{r.level} {r.changed}" for r in self.touched)
        work = f"wrote {self.bars} bars ({levels})" if levels else "levels up to date"
        text = f"cycle {self.number}: {self._source()}: {work} in {self.seconds:.1f}s"
        if self.lag_seconds is not None:
            text += f", lag {self.lag_seconds:.1f}s"
            if self.oldest_lag_seconds is not None and self.commits and self.commits > 1:
                text += f" (oldest commit {self.oldest_lag_seconds:.1f}s)"
        if self.not_run:
            text += f"; not run: {', '.join(self.not_run)}"
        return text

    def as_json(self) -> dict[str, object]:
        return {"cycle": self.number, "source": self.source, "snapshot": self.snapshot,
                "commits": self.commits, "bars": self.bars, "seconds": self.seconds,
                "lag_seconds": self.lag_seconds, "oldest_lag_seconds": self.oldest_lag_seconds,
                "levels": {r.level: {"status": r.status, "changed": r.changed,
                                     "deleted": r.deleted} for r in self.results},
                "not_run": list(self.not_run)}


@attrs.frozen
class FollowSummary:
    """How a follow loop ended."""

    polls: int
    cycles: int
    bars: int
    stopped: bool
    """A stop request ended the loop (False: `max_cycles` polls were made)."""
    not_run: tuple[str, ...] = ()

    def describe(self, reason: str = "") -> str:
        why = "stopped" + (f" on {reason}" if reason else "") if self.stopped else "done"
        text = (f"follow: {why} after {self.polls} polls, {self.cycles} cycles, "
                f"{self.bars} bars written")
        if self.not_run:
            text += (f"; {', '.join(self.not_run)} not run in the last cycle "
                     "(the next run catches up)")
        return text


def stop_requested(stop: Stop) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


def wait_unless_stopped(stop: Stop, seconds: float) -> None:
    """Sleep `seconds`, or less when a stop request arrives."""
    if isinstance(stop, threading.Event):
        stop.wait(seconds)
        return
    deadline = time.monotonic() + seconds
    while not stop_requested(stop) and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(_STEP, left))


@contextmanager
def _claim(tables: Tables, levels: Sequence[Level]) -> Iterator[None]:
    """Hold the levels for this process: a second `follow` of one of them here fails."""
    names = [tables.bars(lv) for lv in levels]
    with _claim_lock:
        busy = [name for name in names if name in _claimed]
        if busy:
            raise ConcurrentRunError(
                f"{_short(busy[0])} is already followed in this process: one follow per "
                "level and process (stop the other one first)")
        _claimed.update(names)
    try:
        yield
    finally:
        with _claim_lock:
            _claimed.difference_update(names)


def _parents(tables: Tables, levels: Sequence[Level]) -> dict[str, str]:
    """Level name -> the table it is built from."""
    return {lv.name: tables.parent_of(lv) for lv in levels}


def _current(tables: Tables, parents: Mapping[str, str]) -> dict[str, int | None]:
    """The current snapshot of every parent table (metadata only)."""
    return {table: state.current_snapshot(tables.spark, table)
            for table in dict.fromkeys(parents.values())}


def _consumed(parents: Mapping[str, str],
              results: Sequence[LevelResult]) -> dict[str, int | None] | None:
    """Parent table -> the snapshot the cycle's levels read; None when two levels read one
    table at different snapshots (a commit landed in between: the next poll runs again)."""
    out: dict[str, int | None] = {}
    for r in results:
        table = parents[r.level]
        if out.setdefault(table, r.parent_snapshot) != r.parent_snapshot:
            return None
    return out


def _new_commits(
    source: Table, snapshot: int | None, previous: int | None,
) -> tuple[int | None, datetime | None, datetime | None]:
    """(new commits, commit time of `snapshot`, of the oldest new commit) since `previous`.

    The count is None when it is unknown: the history expired, `previous` is not an ancestor
    (a rollback), or more than `_COUNTED` commits would have to be read.
    """
    if snapshot is None or snapshot == previous:
        return 0, None, None
    history = source.history()
    new: list[Snapshot] = []
    cursor: int | None = snapshot
    while cursor is not None and cursor != previous and len(new) < _COUNTED:
        snap = history.get(cursor)
        if snap is None:
            break
        new.append(snap)
        cursor = snap.parent_id
    newest = new[0].committed_at if new else None
    if cursor != previous:
        return None, newest, None
    return len(new), newest, new[-1].committed_at


def _seconds_since(at: datetime | None, end: datetime) -> float | None:
    return None if at is None else max(0.0, (end - at).total_seconds())


def _run_cycle(
    tables: Tables, number: int, levels: Sequence[Level], source: str, previous: int | None,
    *, stop: Stop, progress: Progress | None,
) -> Cycle:
    """Run the levels in DAG order once, stopping between levels on a stop request."""
    began = time.monotonic()
    run_id = new_run_id()
    results: list[LevelResult] = []
    not_run: tuple[str, ...] = ()
    for i, lv in enumerate(levels):
        if stop_requested(stop):
            not_run = tuple(other.name for other in levels[i:])
            break
        below = next((r.handoff for r in results if r.level == lv.parent_name), None)
        try:
            results.append(run_level(tables, lv, run_id=run_id, progress=progress, below=below))
        except ConcurrentRunError as exc:  # another writer: the next cycle plans again
            if progress:
                progress(str(exc))
            not_run = tuple(other.name for other in levels[i:])
            break
    end = datetime.now(UTC)
    roots = [r for r in results if tables.dag.level(r.level).parent is None]
    snapshot = roots[0].parent_snapshot if roots else previous
    commits, newest, oldest = _new_commits(Table(tables.spark, source), snapshot, previous)
    return Cycle(number, _short(source), snapshot, commits, tuple(results),
                 time.monotonic() - began, _seconds_since(newest, end),
                 _seconds_since(oldest, end), not_run)


def follow(
    tables: Tables,
    *,
    poll_seconds: float = 2.0,
    max_cycles: int | None = None,
    stop: Stop = None,
    up_to: str | Timeframe | None = None,
    progress: Progress | None = None,
    on_cycle: Callable[[Cycle], None] | None = None,
    heartbeat_seconds: float | None = 600.0,
) -> FollowSummary:
    """Keep every level (or those needed for `up_to`) up to date until stopped.

    Args:
        poll_seconds: wait between two polls of an idle warehouse.
        max_cycles: stop after this many polls, idle or not (None: until `stop`).
        stop: checked between levels and while waiting; the current level commits first.
        progress: in-cycle messages (a level's "recomputing" line, retries, heartbeats).
        on_cycle: called with each working cycle (idle polls are not cycles).
        heartbeat_seconds: an idle follower says so through `progress` this often (None:
            never).

    Raises:
        InputError: `poll_seconds` or `max_cycles` out of range.
        ConcurrentRunError: another `follow` of these levels runs in this process.
        LevelRunError: Spark failed in a level (nothing was committed for it).
    """
    if not poll_seconds > 0:
        raise InputError(f"invalid poll interval {poll_seconds}: expected seconds > 0")
    if max_cycles is not None and max_cycles < 1:
        raise InputError(f"invalid max cycles {max_cycles}: expected a number >= 1")
    levels = tables.dag.up_to(up_to) if up_to is not None else tables.dag.order()
    parents = _parents(tables, levels)
    root = next(lv for lv in levels if lv.parent is None)
    source = parents[root.name]
    polls = cycles = bars = 0
    consumed: dict[str, int | None] | None = None  # parent snapshots the last cycle read
    previous = state.position(tables.spark, tables.bars(root), source)
    quiet_since = time.monotonic()
    not_run: tuple[str, ...] = ()
    with _claim(tables, levels):
        while max_cycles is None or polls < max_cycles:
            if stop_requested(stop):
                break
            polls += 1
            if consumed is not None and _current(tables, parents) == consumed:
                if (heartbeat_seconds is not None and progress is not None
                        and time.monotonic() - quiet_since >= heartbeat_seconds):
                    progress(f"follow: idle, every level up to date with "
                             f"{_short(source)}@{consumed.get(source)}")
                    quiet_since = time.monotonic()
                wait_unless_stopped(stop, poll_seconds)
                continue
            cycles += 1
            cycle = _run_cycle(tables, cycles, levels, source, previous, stop=stop,
                               progress=progress)
            bars += cycle.bars
            previous = cycle.snapshot
            not_run = cycle.not_run
            consumed = None if cycle.not_run else _consumed(parents, cycle.results)
            quiet_since = time.monotonic()
            if on_cycle is not None:
                on_cycle(cycle)
            if cycle.not_run and not stop_requested(stop):
                wait_unless_stopped(stop, poll_seconds)  # another writer: let it finish
    return FollowSummary(polls, cycles, bars, stop_requested(stop), not_run)


@contextmanager
def stop_on_signals(
    event: threading.Event,
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
    notify: Callable[[str], None] | None = None,
) -> Iterator[list[str]]:
    """While inside, the first of `signals` sets `event` (a clean stop); a second one raises
    KeyboardInterrupt (an abort). Yields the names of the signals received. Main thread only.

    `notify` is told about the first signal from a helper thread (never from the handler,
    which may interrupt a write to the same stream).
    """
    received: list[str] = []
    done = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        name = signal.Signals(signum).name
        if event.is_set():
            raise KeyboardInterrupt(name)
        received.append(name)
        event.set()

    def tell() -> None:
        while not done.wait(0.2):
            if received:
                assert notify is not None
                notify(f"follow: {received[0]} received, stopping after the current "
                       "level's commit (send it again to abort)")
                return

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    teller = threading.Thread(target=tell, name="rollup-follow-signals", daemon=True)
    if notify is not None:
        teller.start()
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        done.set()
        if notify is not None:
            teller.join(timeout=1)
