"""The follow_lag figure of `rollup bench`: how soon every level includes an external commit.

`measure_follow_lag`, in a fresh namespace of the bench's warm session:

1. appends one day of history (`BenchConfig.history_per_day` trades, the day before today)
   and runs the cascade once, untimed;
2. starts `rollup.incremental.follow.follow` in a thread of this process (poll
   `BenchConfig.follow_poll` seconds), recording the end time of every cycle;
3. starts the external writer (`python -m rollup.benchmarks.writer`, pyiceberg, no JVM) that
   commits `follow_trades` live trades every `follow_interval` seconds, `follow_commits` times;
4. per commit, the lag: from the commit time of its snapshot (Iceberg's `committed_at`) to the
   end of the first follow cycle that ran every level (`Cycle.not_run` empty) and whose root
   snapshot is that commit or a descendant of it; and
5. stops the follower and checks every bar of every window the writer touched, at each level,
   against DuckDB's bars of the very Parquet batches that were committed (not rollup's plans).

The lags are reported as their median and 95th percentile (nearest rank).
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from rollup.benchmarks.common import (
    BenchConfig,
    Progress,
    append_trades,
    duckdb_connection,
    fresh_tables,
    write_history,
)
from rollup.benchmarks.exactness import differences, duckdb_bars, stored_bars
from rollup.benchmarks.writer import Committed, local_warehouse
from rollup.errors import ConfigError, RollupError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from rollup.incremental.follow import Cycle
    from rollup.storage.tables import Tables

LEVEL_SECONDS = {"1m": 60, "5m": 300, "30m": 1_800, "1h": 3_600, "1d": 86_400}
"""The UTC window width of each level the exactness check covers (the standard DAG's)."""
SETTLE_SECONDS = 120.0
"""After the writer's last commit, at most this long for every level to include it."""
WRITER = "pyiceberg in its own process (no JVM)"


def nearest_rank(values: Sequence[float], share: float) -> float | None:
    """The `share` percentile of `values` by nearest rank (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@attrs.frozen
class FollowLagResult:
    """The writer's commits, the lag of each, the follower's cycles and the exactness check."""

    commits: int
    trades_per_commit: int
    interval: float
    poll: float
    lags: tuple[float | None, ...]
    """Per commit, seconds until every level included it (None: not within the wait)."""
    cycles: int
    """Working cycles of the follower while the writer ran and until it caught up."""
    cycle_seconds: float | None
    """Median wall seconds of the cycles that ran every level."""
    commit_seconds: float | None
    """Median seconds the writer took per commit (write files, commit metadata)."""
    exact: bool
    checked: dict[str, int]
    """Bars checked against DuckDB per level."""
    problems: tuple[str, ...] = ()

    @property
    def measured(self) -> list[float]:
        return [lag for lag in self.lags if lag is not None]

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.measured) if self.measured else None

    @property
    def p95_s(self) -> float | None:
        return nearest_rank(self.measured, 0.95)

    def as_json(self) -> dict[str, Any]:
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {"follow_lag_median_s": r(self.median_s), "follow_lag_p95_s": r(self.p95_s),
                "follow_commits": self.commits, "follow_measured": len(self.measured),
                "follow_trades_per_commit": self.trades_per_commit,
                "follow_interval_s": self.interval, "follow_poll_s": self.poll,
                "follow_lags_s": [r(lag) for lag in self.lags],
                "follow_cycles": self.cycles, "follow_cycle_s": r(self.cycle_seconds),
                "follow_commit_s": r(self.commit_seconds), "follow_exact": self.exact,
                "follow_checked": dict(self.checked), "follow_problems": list(self.problems)}

    def lines(self) -> list[str]:
        """The rows of the printed table."""
        def s(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}s"

        worst = max(self.measured) if self.measured else None
        out = [f"{'follow lag':<28}{s(self.median_s):>10}   median; p95 {s(self.p95_s)}, max "
               f"{s(worst)}; {len(self.measured)}/{self.commits} commits of "
               f"{self.trades_per_commit:,} trades every {self.interval:g}s",
               f"  writer: {WRITER}, commit {s(self.commit_seconds)}; follower: poll "
               f"{self.poll:g}s, {self.cycles} cycles, median {s(self.cycle_seconds)}",
               f"  levels exact against DuckDB: {self.exact} ("
               + ", ".join(f"{lv} {n}" for lv, n in self.checked.items()) + " bars)"]
        if self.problems:
            out.append(f"  WARNING: {self.problems[0]}")
        return out


# -- lags ------------------------------------------------------------------------------------


def commit_lags(commits: Sequence[Committed], cycles: Sequence[tuple[Cycle, datetime]],
                ancestors: Callable[[int], set[int]]) -> list[float | None]:
    """Per commit, seconds from its commit time to the end of the first cycle (in `cycles`,
    with their end times, in order) that ran every level from a root snapshot that is the
    commit or a descendant (`ancestors(s)`: s and every ancestor of s)."""
    out: list[float | None] = []
    for commit in commits:
        at = datetime.fromtimestamp(commit.committed_at_ms / 1000, UTC)
        end = next((end for cycle, end in cycles
                    if not cycle.not_run and cycle.snapshot is not None
                    and commit.snapshot_id in ancestors(cycle.snapshot)), None)
        out.append(None if end is None else (end - at).total_seconds())
    return out


# -- the independent check -----------------------------------------------------------------

def check_exact(tables: Tables, files: Sequence[Path], written: Sequence[Path], *,
                threads: int = 2) -> tuple[bool, dict[str, int], list[str]]:
    """Compare, at every level of `LEVEL_SECONDS` in the DAG, the stored bars of every window
    the trades in `written` touch with DuckDB's bars of all trades in `files`. Returns (exact,
    bars checked per level, differences)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    batches = [pq.read_table(p, columns=["exchange", "symbol", "ts"]) for p in written]
    touched = {(e, s, t) for b in batches for e, s, t in zip(
        b.column("exchange").to_pylist(), b.column("symbol").to_pylist(),
        pc.cast(b.column("ts"), "int64").to_pylist(), strict=True)}
    checked: dict[str, int] = {}
    problems: list[str] = []
    con = duckdb_connection(threads)
    try:
        for level in (lv.name for lv in tables.dag.order() if lv.name in LEVEL_SECONDS):
            width = LEVEL_SECONDS[level] * 1_000_000
            keys = {(e, s, t - t % width) for e, s, t in touched}
            want = duckdb_bars(con, files, keys, width)
            problems += differences(level, want, stored_bars(tables, level, keys))
            problems += [f"{level} {k}: no trades found by DuckDB"
                         for k in sorted(keys - set(want))]
            checked[level] = len(keys)
    finally:
        con.close()
    return not problems, checked, problems


# -- the measurement -------------------------------------------------------------------------


def hadoop_warehouse(spark: SparkSession, catalog: str) -> Path:
    """The local warehouse directory of the session's Hadoop catalog `catalog`.

    Raises:
        ConfigError: `catalog` is not an Iceberg Hadoop catalog on a local file system (the
            pyiceberg writer commits only there).
    """
    prefix = f"spark.sql.catalog.{catalog}"
    kind = spark.conf.get(f"{prefix}.type", None)
    location = spark.conf.get(f"{prefix}.warehouse", None)
    if kind != "hadoop" or not location:
        raise ConfigError(f"the follow bench part needs catalog {catalog} to be an Iceberg "
                          f"Hadoop catalog with a local warehouse, got type {kind!r}")
    return local_warehouse(location)


def _writer_command(warehouse: Path, tables: Tables, config: BenchConfig, save: Path
                    ) -> list[str]:
    return [sys.executable, "-m", "rollup.benchmarks.writer", "--warehouse", str(warehouse),
            "--namespace", tables.namespace, "--table", tables.trades_table,
            "--commits", str(config.follow_commits), "--interval", str(config.follow_interval),
            "--trades", str(config.follow_trades), "--symbols", str(config.symbols),
            "--save", str(save)]


def _writer_env() -> dict[str, str]:
    """This process's environment, with rollup's source importable by the child."""
    import rollup

    source = str(Path(rollup.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": source + (os.pathsep + path if path else "")}


def _run_writer(command: list[str], log: Path, progress: Progress) -> list[Committed]:
    """Run the writer to its end (its stderr to `log`), collecting its commits; raise on a
    failure."""
    commits: list[Committed] = []
    with open(log, "w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=_writer_env())
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                commits.append(Committed.from_json(line))
                progress(f"  writer: commit {commits[-1].commit + 1} "
                         f"(snapshot {commits[-1].snapshot_id})")
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if proc.returncode != 0:
        last = log.read_text().strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise RollupError(f"the follow_lag writer failed: {last[0]}")
    return commits


def measure_follow_lag(spark: SparkSession, catalog: str, namespace: str, config: BenchConfig,
                       work: Path, progress: Progress, *, threads: int = 2) -> FollowLagResult:
    """The follow_lag figure in a fresh `namespace` (see the module doc).

    Raises:
        ConfigError: the catalog is not a local Hadoop catalog.
        RollupError: the writer or the follower failed.
    """
    from rollup.benchmarks.incremental import run_into
    from rollup.incremental.follow import follow
    from rollup.storage.iceberg import Table
    from rollup.storage.state import lineage

    warehouse = hadoop_warehouse(spark, catalog)
    tables = fresh_tables(spark, catalog, namespace)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    files: list[Path] = []
    for _, day_files in write_history(work / "follow_history", yesterday, 1, config):
        append_trades(tables, day_files)
        files.extend(day_files)
    progress(f"follow: {config.history_per_day:,} trades of history, initial cascade ...")
    run_into(tables, [])

    cycles: list[tuple[Cycle, datetime]] = []
    stop = threading.Event()
    outcome: dict[str, BaseException] = {}

    def on_cycle(cycle: Cycle) -> None:
        cycles.append((cycle, datetime.now(UTC)))
        progress(f"  follow {cycle.describe()}")

    def target() -> None:
        try:
            follow(tables, poll_seconds=config.follow_poll, stop=stop, on_cycle=on_cycle,
                   heartbeat_seconds=None)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the bench's thread
            outcome["error"] = exc
            stop.set()

    follower = threading.Thread(target=target, name="rollup-bench-follow", daemon=True)
    follower.start()
    save = work / "follow_writer"
    progress(f"follow: writer commits {config.follow_trades:,} trades every "
             f"{config.follow_interval:g}s, {config.follow_commits} times ...")
    try:
        commits = _run_writer(_writer_command(warehouse, tables, config, save),
                              work / "follow_writer.log", progress)
        history = Table(spark, tables.trades).history()
        chains: dict[int, set[int]] = {}

        def ancestors(snapshot: int) -> set[int]:
            if snapshot not in chains:
                chains[snapshot] = set(lineage(history, snapshot) or ())
            return chains[snapshot]

        deadline = time.monotonic() + SETTLE_SECONDS
        while (commit_lags(commits[-1:], list(cycles), ancestors) == [None]
               and time.monotonic() < deadline and "error" not in outcome):
            time.sleep(0.1)
    finally:
        stop.set()
        follower.join(timeout=600)
    if "error" in outcome:
        raise RollupError(f"the follower failed during the follow_lag figure: "
                          f"{outcome['error']}") from outcome["error"]
    lags = commit_lags(commits, cycles, ancestors)
    written = sorted(save.glob("commit_*.parquet"))
    progress("follow: checking every touched bar of every level against DuckDB ...")
    exact, checked, problems = check_exact(tables, [*files, *written], written,
                                           threads=threads)
    missing = sum(lag is None for lag in lags)
    if missing:
        problems.insert(0, f"{missing} commit(s) not included by every level within "
                           f"{SETTLE_SECONDS:.0f}s of the last commit")
    full = [c.seconds for c, _ in cycles if not c.not_run and c.commits]
    return FollowLagResult(
        len(commits), config.follow_trades, float(config.follow_interval),
        float(config.follow_poll), tuple(lags), len(cycles),
        statistics.median(full) if full else None,
        statistics.median(c.seconds for c in commits) if commits else None,
        exact and not missing, checked, tuple(problems[:5]))


__all__ = ["FollowLagResult", "check_exact", "commit_lags", "hadoop_warehouse",
           "measure_follow_lag", "nearest_rank"]
