"""`rollup ingest --watch DIR`: complete files only, bad files set aside with their reason,
bad rows quarantined, the trades table equal to the good rows of the files (read here with
csv and pyarrow), nothing stored twice after a crash between commit and move, and SIGTERM
ends the command with exit 0."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pytest

from rollup.cli import main
from rollup.errors import ConcurrentRunError, InputError
from rollup.ingestion import watch as watch_module
from rollup.ingestion.watch import Landing, complete, landed, watch
from rollup.storage.tables import REJECTED_TABLE, Tables

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HEADER = ("exchange", "symbol", "trade_id", "ts", "price", "quantity", "side")
Trade = tuple[str, str, int, datetime, Decimal, Decimal, str | None]


def rows(ids: Iterable[int], symbol: str = "AAA") -> list[list[str]]:
    return [["EX", symbol, str(n), (T0 + timedelta(seconds=n)).isoformat().replace(
        "+00:00", "Z"), f"{100 + n % 9}.25", f"{1 + n % 4}.5", ("buy", "sell")[n % 2]]
        for n in ids]


def csv_text(body: list[list[str]], header: tuple[str, ...] = HEADER) -> str:
    return "\n".join(",".join(r) for r in [list(header), *body]) + "\n"


def write_parquet(path: Path, ids: Iterable[int]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = list(ids)
    pq.write_table(pa.table({
        "exchange": ["EX"] * len(ids), "symbol": ["PQ"] * len(ids), "trade_id": ids,
        "ts": pa.array([T0 + timedelta(seconds=n) for n in ids], pa.timestamp("us", "UTC")),
        "price": [f"{200 + n % 5}.5" for n in ids], "quantity": ["2"] * len(ids),
        "side": pa.array([("buy", None)[n % 2] for n in ids], pa.string())}), path)


def good_rows_of(path: Path) -> list[Trade]:
    """The rows of a CSV or Parquet file that are valid trades, by this test's own rules
    (ISO `ts`, positive decimal price), independent of rollup's validation."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        records = [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
                   for r in pq.read_table(path).to_pylist()]
    else:
        with path.open(newline="") as handle:
            records = list(csv.DictReader(handle))
    out: list[Trade] = []
    for r in records:
        try:
            ts = datetime.fromisoformat(str(r["ts"])).astimezone(UTC)
            price = Decimal(str(r["price"]))
        except (ValueError, InvalidOperation):
            continue
        if price > 0:
            out.append((r["exchange"], r["symbol"], int(r["trade_id"]), ts, price,
                        Decimal(str(r["quantity"])), r["side"] or None))
    return out


def stored(tables: Tables) -> Counter[Trade]:
    return Counter((r.exchange, r.symbol, r.trade_id, r.ts.replace(tzinfo=UTC), r.price,
                    r.quantity, r.side) for r in tables.read_trades().collect())


def rejected(tables: Tables) -> list[tuple[str, int, str]]:
    return sorted((Path(r.source_file).name, r.source_row, r.reason) for r in
                  tables.spark.table(tables.name(REJECTED_TABLE)).collect())


def scripted(monkeypatch: pytest.MonkeyPatch, steps: dict[int, Callable[[], None]]) -> None:
    """Run `steps[n]` right before the watcher's n-th look at the directory."""
    original, looks = watch_module.landed, [0]

    def look(directory: Path) -> Any:
        looks[0] += 1
        if looks[0] in steps:
            steps[looks[0]]()
        return original(directory)

    monkeypatch.setattr(watch_module, "landed", look)


def test_candidates_and_the_completeness_rule(tmp_path: Path) -> None:
    for name in ("a.csv", "b.parquet", ".hidden.csv", "_SUCCESS", "c.csv.tmp", "d.csv.part",
                 "e.csv.PARTIAL", "f.csv~"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.csv").symlink_to(tmp_path / "a.csv")
    first = landed(tmp_path)
    assert sorted(first) == ["a.csv", "b.parquet"]
    assert complete({}, first) == []  # seen once: not yet complete
    assert complete(first, first) == ["a.csv", "b.parquet"]
    (tmp_path / "b.parquet").write_text("xy")  # grew
    assert complete(first, landed(tmp_path)) == ["a.csv"]


def test_one_watcher_per_directory(tmp_path: Path) -> None:
    with watch_module._watching(tmp_path):
        with pytest.raises(ConcurrentRunError, match="already watched by another process"):
            with watch_module._watching(tmp_path):
                pass
    with watch_module._watching(tmp_path):  # released
        pass


def test_watch_flags_are_checked_before_spark_starts(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    for argv, expected in ((["ingest"], "needs FILE arguments or --watch DIR"),
                           (["ingest", "a.csv", "--watch", str(tmp_path)], "not both"),
                           (["ingest", "a.csv", "--poll", "1"], "--poll applies only"),
                           (["ingest", "a.csv", "--run"], "--run applies only"),
                           (["ingest", "--watch", str(tmp_path), "--poll", "0"],
                            "invalid --poll 0.0"),
                           (["ingest", "--watch", str(tmp_path), "--max-polls", "0"],
                            "invalid --max-polls 0")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, (argv, err)
        assert "starting Spark" not in err


def test_files_that_change_while_read_or_lose_a_race_stay_and_spark_failures_end_the_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With `ingest_file` replaced: no Spark needed, the loop's own decisions are checked."""
    from rollup.errors import IngestConflictError, RollupError
    from rollup.ingestion.batch import IngestReport

    (tmp_path / "grows.csv").write_text("a\n")
    (tmp_path / "races.csv").write_text("b\n")
    calls: list[str] = []

    def fake_ingest(tables: Any, path: Path, **options: Any) -> IngestReport:
        calls.append(path.name)
        if path.name == "grows.csv" and calls.count("grows.csv") == 1:
            with path.open("a") as handle:  # the writer was not done after all
                handle.write("more\n")
        if path.name == "races.csv" and calls.count("races.csv") == 1:
            raise IngestConflictError("lost every race")
        return IngestReport(str(path), 1, 1, 0, 0)

    monkeypatch.setattr(watch_module, "ingest_file", fake_ingest)
    taken: list[Landing] = []
    summary = watch(None, tmp_path, poll_seconds=0.05, max_polls=4,  # type: ignore[arg-type]
                    on_file=taken.append)
    assert [(t.name, t.moved_to is not None) for t in taken] == [
        ("grows.csv", False), ("races.csv", False),  # poll 2
        ("races.csv", True),  # poll 3: unchanged, tried again; grows.csv changed at poll 2
        ("grows.csv", True)]  # poll 4: unchanged since poll 3
    assert "left in place: changed or vanished" in taken[0].describe()
    assert taken[1].describe() == "races.csv: left in place: lost every race"
    assert (summary.files, summary.failed) == (2, 0)
    assert (tmp_path / ".done" / "grows.csv").read_text() == "a\nmore\n"
    (tmp_path / "races.csv").write_text("delivered again\n")
    watch(None, tmp_path, poll_seconds=0.05, max_polls=2)  # type: ignore[arg-type]
    assert (tmp_path / ".done" / "races-1.csv").read_text() == "delivered again\n"
    assert (tmp_path / ".done" / "races.csv").read_text() == "b\n"

    def broken(tables: Any, path: Path, **options: Any) -> IngestReport:
        raise RuntimeError("java.io.IOException: No space left on device\n\tat ...")

    monkeypatch.setattr(watch_module, "ingest_file", broken)
    (tmp_path / "h.csv").write_text("c\n")
    with pytest.raises(RollupError, match=r"h.csv: ingest failed \(java.io.IOException: No "
                       r"space left on device\); the file stays"):
        watch(None, tmp_path, poll_seconds=0.05, max_polls=2)  # type: ignore[arg-type]
    assert (tmp_path / "h.csv").exists()


def test_a_stop_request_ends_the_loop_after_the_current_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from rollup.ingestion.batch import IngestReport

    monkeypatch.setattr(watch_module, "ingest_file", lambda tables, path, **options:
                        IngestReport(str(path), 1, 1, 0, 0))
    for name in ("a.csv", "b.csv", "c.csv"):
        (tmp_path / name).write_text(name)
    stop = threading.Event()
    taken: list[Landing] = []

    def on_file(landing: Landing) -> None:
        taken.append(landing)
        stop.set()  # as SIGTERM does while a.csv is ingested

    ran: list[bool] = []
    summary = watch(None, tmp_path, poll_seconds=0.05, stop=stop,  # type: ignore[arg-type]
                    on_file=on_file, after_ingest=lambda: ran.append(True))
    assert summary.stopped and (summary.polls, summary.files) == (2, 1)
    assert [t.name for t in taken] == ["a.csv"] and (tmp_path / ".done" / "a.csv").exists()
    assert sorted(landed(tmp_path)) == ["b.csv", "c.csv"]
    assert ran == []  # no cascade after a stop request
    assert summary.describe("SIGTERM") == ("watch: stopped on SIGTERM after 2 polls: 1 files "
                                           "ingested (1 rows stored, 0 quarantined), 0 failed")


@pytest.mark.spark
def test_watch_takes_complete_files_and_sets_bad_ones_aside(
        tables: Tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with pytest.raises(InputError, match="not a directory"):
        watch(tables, inbox / "missing")
    with pytest.raises(InputError, match="other than the watched one"):
        watch(tables, inbox, done=inbox)
    bad_rows = [["EX", "AAA", "900", "not a time", "1", "1", "buy"],
                ["EX", "AAA", "901", "2026-03-02T10:00:01Z", "-3", "1", "sell"]]
    (inbox / "b.csv").write_text(csv_text(rows(range(40, 60)) + bad_rows + rows(range(60, 70))))
    (inbox / "c.csv").write_text(csv_text(rows(range(70, 80)),
                                          header=("exchange", "symbol", "trade_id", "ts")))
    write_parquet(inbox / "d.parquet", range(0, 30))
    # p.csv is written in two steps: its first half ends inside a row.
    p_text = csv_text(rows(range(100, 140)))
    cut = p_text.index("\n", len(p_text) // 2) + 12
    (inbox / "p.csv").write_text(p_text[:cut])
    (inbox / "q.csv.part").write_text(csv_text(rows(range(200, 210), symbol="QQQ")))
    (inbox / "_SUCCESS").write_text("")
    (inbox / ".notes.csv").write_text("not trades")

    def second_half() -> None:
        with (inbox / "p.csv").open("a") as handle:
            handle.write(p_text[cut:])
        os.replace(inbox / "q.csv.part", inbox / "q.csv")  # renamed in, complete

    scripted(monkeypatch, {2: second_half})
    taken: list[tuple[int, Landing]] = []
    polls = [0]
    original = watch_module.complete

    def counting(previous: Any, current: Any) -> list[str]:
        polls[0] += 1
        return original(previous, current)

    monkeypatch.setattr(watch_module, "complete", counting)
    summary = watch(tables, inbox, poll_seconds=0.05, max_polls=4,
                    on_file=lambda landing: taken.append((polls[0], landing)))
    assert [(poll, landing.name) for poll, landing in taken] == [
        (2, "b.csv"), (2, "c.csv"), (2, "d.parquet"), (3, "p.csv"), (3, "q.csv")]
    assert (summary.polls, summary.files, summary.failed) == (4, 4, 1)
    assert not summary.stopped
    assert sorted(landed(inbox)) == [] and (inbox / "_SUCCESS").exists()
    done = inbox / ".done"
    assert sorted(p.name for p in done.iterdir()) == [
        "b.csv", "d.parquet", "p.csv", "q.csv"]
    assert sorted(p.name for p in (inbox / ".failed").iterdir()) == ["c.csv",
                                                                     "c.csv.error.txt"]
    reason = (inbox / ".failed" / "c.csv.error.txt").read_text()
    assert reason.count("\n") == 1 and "missing column(s) price, quantity" in reason
    by_name = {landing.name: landing for _, landing in taken}
    assert "failed" in by_name["c.csv"].describe() and "-> .failed/" in by_name["c.csv"].describe()
    b = by_name["b.csv"].report
    assert b is not None and (b.read, b.ingested, b.quarantined) == (32, 30, 2)
    assert by_name["b.csv"].describe().startswith("b.csv: read 32, ingested 30, quarantined 2")
    expected = Counter(t for name in ("b.csv", "d.parquet", "p.csv", "q.csv")
                       for t in good_rows_of(done / name))
    assert sum(expected.values()) == 30 + 30 + 40 + 10
    assert stored(tables) == expected
    assert rejected(tables) == [("b.csv", 21, "unparsable ts"),
                                ("b.csv", 22, "price is not positive")]


@pytest.mark.spark
def test_a_crash_between_commit_and_move_stores_nothing_twice(
        tables: Tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    bad = [["EX", "BBB", "7000", "2026-03-02T11:00:00Z", "abc", "1", "buy"]]
    (inbox / "f.csv").write_text(csv_text(rows(range(0, 25), symbol="BBB") + bad))

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("simulated crash after the commit")

    monkeypatch.setattr(watch_module, "_move", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        watch(tables, inbox, poll_seconds=0.05, max_polls=2)
    monkeypatch.undo()
    assert (inbox / "f.csv").exists()  # committed, not moved
    once = stored(tables)
    assert once == Counter(good_rows_of(inbox / "f.csv")) and sum(once.values()) == 25
    assert rejected(tables) == [("f.csv", 26, "price is not a decimal number")]
    taken: list[Landing] = []
    summary = watch(tables, inbox, poll_seconds=0.05, max_polls=2, on_file=taken.append)
    (landing,) = taken
    assert landing.report is not None
    assert (landing.report.ingested, landing.report.duplicates) == (0, 25)
    assert summary.files == 1 and summary.stored == 0
    assert not (inbox / "f.csv").exists() and (inbox / ".done" / "f.csv").exists()
    assert stored(tables) == once
    assert rejected(tables) == [("f.csv", 26, "price is not a decimal number")]


@pytest.mark.spark
def test_watch_command_with_run_rolls_up_what_it_stored(
        tables: Tables, warehouse: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "r.csv").write_text(csv_text(rows(range(0, 20), symbol="RRR")))
    code = main(["--catalog", "rollup", "--namespace", tables.namespace, "--warehouse",
                 str(warehouse), "ingest", "--watch", str(inbox), "--poll", "0.05",
                 "--max-polls", "2", "--run"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0, out
    assert out[0].startswith("r.csv: read 20, ingested 20, quarantined 0") and \
        out[0].endswith("-> .done/"), out
    # 20 s of trades: one new bar per level, from a run that followed the ingest
    assert out[1].startswith("run: wrote 5 bars (1m 1, 5m 1, 30m 1, 1h 1, 1d 1) in "), out
    assert out[2] == ("watch: done after 2 polls: 1 files ingested (20 rows stored, "
                      "0 quarantined), 0 failed"), out
    bars = tables.read_bars("1d").collect()
    assert [(b.symbol, b.trade_count, b.open, b.close) for b in bars] == [
        ("RRR", 20, Decimal("100.25"), Decimal("101.25"))]


@pytest.mark.spark
@pytest.mark.slow
def test_watch_command_stops_on_sigterm(tables: Tables, warehouse: Path,
                                        tmp_path: Path) -> None:
    from tests.test_follow import Lines

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    env = {**os.environ, "ROLLUP_WAREHOUSE": str(warehouse), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollup.cli", "--catalog", "rollup", "--namespace",
         tables.namespace, "ingest", "--watch", str(inbox), "--poll", "0.3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True)
    lines = Lines(proc)
    try:
        lines.until(lambda s: s.startswith("watch: ingesting files"), "the watcher to start")
        (inbox / "g.csv.tmp").write_text(csv_text(rows(range(0, 50), symbol="GGG")))
        os.replace(inbox / "g.csv.tmp", inbox / "g.csv")  # renamed in
        line = lines.until(lambda s: s.startswith("g.csv: "), "g.csv to be ingested")
        assert "read 50, ingested 50" in line and "-> .done/" in line, line
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=180)
    seen = lines.rest()
    assert code == 0, seen
    assert seen[-1].startswith("watch: stopped on SIGTERM after "), seen
    assert "1 files ingested (50 rows stored, 0 quarantined), 0 failed" in seen[-1], seen
    tables.spark.sql(f"REFRESH TABLE {tables.trades}")
    assert stored(tables) == Counter(good_rows_of(inbox / ".done" / "g.csv"))
