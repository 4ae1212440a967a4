"""Ingest stores each trade once under concurrency, retries and crashes (issue #14).

The race is forced: the first ingest is stopped after it checked its batch against the
trades table and before it commits; a second ingest of an overlapping file runs to the end
in that gap. The tests assert that the first commit was refused (the race happened) and
retried, and that every trade is stored once.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rollup.ingestion import batch as ingest_module
from rollup.ingestion.batch import ingest_file
from rollup.storage.tables import REJECTED_TABLE, Tables

pytestmark = pytest.mark.spark

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
HEADER = ("exchange", "symbol", "trade_id", "ts", "price", "quantity", "side")


def _write(path: Path, ids: range, bad: int = 0) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for n in ids:
            ts = (T0 + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")
            writer.writerow(["EX", "AAA", n, ts, f"{100 + n % 7}.5", "1.25", "buy"])
        for n in range(bad):
            writer.writerow(["EX", "AAA", 10_000 + n, "not a time", "1", "1", "buy"])
    return path


def _stored_ids(tables: Tables) -> list[int]:
    return sorted(r.trade_id for r in tables.read_trades().select("trade_id").collect())


def _interleave(monkeypatch: pytest.MonkeyPatch, name: str,
                other: Callable[[], Any]) -> list[str]:
    """Run `other` once, right before the first call of `ingest.<name>` commits."""
    events: list[str] = []
    original = getattr(ingest_module, name)

    def commit(*args: Any, **kwargs: Any) -> Any:
        if not events:
            events.append("other ingest starts")
            other()
            events.append("other ingest committed")
        try:
            result = original(*args, **kwargs)
        except Exception:
            events.append("commit refused")
            raise
        events.append("commit")
        return result

    monkeypatch.setattr(ingest_module, name, commit)
    return events


def test_overlapping_ingests_store_each_trade_once(tables: Tables, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    first = _write(tmp_path / "first.csv", range(0, 60))
    second = _write(tmp_path / "second.csv", range(40, 100))
    done: list[Any] = []
    events = _interleave(monkeypatch, "_commit_trades",
                         lambda: done.append(ingest_file(tables, second)))
    report = ingest_file(tables, first)
    assert events[:4] == ["other ingest starts", "commit", "other ingest committed",
                          "commit refused"], events
    assert events[-1] == "commit"
    assert report.retries == 1
    assert (done[0].ingested, done[0].duplicates) == (60, 0)
    assert (report.read, report.ingested, report.duplicates) == (60, 40, 20)
    assert _stored_ids(tables) == list(range(0, 100))


def test_ingests_into_an_empty_table_also_validate(tables: Tables, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """No snapshot yet: the check covers the table's whole (empty) history."""
    path = _write(tmp_path / "same.csv", range(0, 30))
    copy = _write(tmp_path / "copy.csv", range(0, 30))
    events = _interleave(monkeypatch, "_commit_trades", lambda: ingest_file(tables, copy))
    report = ingest_file(tables, path)
    assert "commit refused" in events and report.retries == 1
    assert (report.ingested, report.duplicates) == (0, 30)
    assert _stored_ids(tables) == list(range(0, 30))


def test_concurrent_quarantine_writes_each_row_once(tables: Tables, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "bad.csv", range(0, 5), bad=3)
    events = _interleave(monkeypatch, "_append_validated",
                         lambda: ingest_file(tables, path, ingest_id="other"))
    ingest_file(tables, path, ingest_id="mine")
    assert "commit refused" in events
    rejected = tables.spark.table(tables.name(REJECTED_TABLE)).collect()
    assert sorted(r.source_row for r in rejected) == [6, 7, 8]
    assert _stored_ids(tables) == list(range(0, 5))


def test_crash_between_trades_and_quarantine_is_completed_by_a_rerun(
        tables: Tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "crash.csv", range(0, 20), bad=4)

    def crash(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt("killed between the two writes")

    with monkeypatch.context() as patch:
        patch.setattr(ingest_module, "_quarantine", crash)
        with pytest.raises(KeyboardInterrupt):
            ingest_file(tables, path)
    assert _stored_ids(tables) == list(range(0, 20))
    assert tables.spark.table(tables.name(REJECTED_TABLE)).count() == 0
    report = ingest_file(tables, path)
    assert (report.read, report.ingested, report.quarantined, report.duplicates) == (
        24, 0, 4, 20)
    again = ingest_file(tables, path)
    assert (again.quarantined, again.duplicates) == (4, 20)
    rejected = tables.spark.table(tables.name(REJECTED_TABLE)).collect()
    assert sorted(r.source_row for r in rejected) == [21, 22, 23, 24]
    assert _stored_ids(tables) == list(range(0, 20))


def test_directory_holding_one_file_twice_counts_the_copy_as_duplicates(
        tables: Tables, tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    _write(folder / "a.csv", range(0, 25), bad=2)
    (folder / "b.csv").write_bytes((folder / "a.csv").read_bytes())
    report = ingest_file(tables, folder)
    assert (report.read, report.ingested, report.duplicates, report.quarantined) == (
        54, 25, 25, 4)
    assert _stored_ids(tables) == list(range(0, 25))
    rejected = tables.spark.table(tables.name(REJECTED_TABLE)).collect()
    assert sorted((Path(r.source_file).name, r.source_row) for r in rejected) == [
        ("a.csv", 26), ("a.csv", 27), ("b.csv", 26), ("b.csv", 27)]


def test_late_batch_reads_only_the_days_it_touches(tables: Tables, tmp_path: Path) -> None:
    """The duplicate check of a batch of one day scans that day's partition only."""
    from rollup.ingestion.batch import _stored_in
    from rollup.storage.state import current_snapshot

    for day in range(3):
        path = tmp_path / f"day{day}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            for n in range(5):
                ts = (T0 + timedelta(days=day, minutes=n)).isoformat().replace("+00:00", "Z")
                writer.writerow(["EX", "AAA", day * 100 + n, ts, "10", "1", "sell"])
        ingest_file(tables, path)
    snapshot = current_snapshot(tables.spark, tables.trades)
    stored = _stored_in(tables, [(T0 + timedelta(days=1)).date()], snapshot)
    assert stored is not None
    plan = stored._jdf.queryExecution().executedPlan().toString()
    scan = next(line for line in plan.splitlines() if "BatchScan" in line)
    assert "filters=ts >= 1777939200000000, ts < 1778025600000000" in scan, scan
    assert sorted(r.trade_id for r in stored.collect()) == [100, 101, 102, 103, 104]


def test_typed_parquet_skips_text_parsing_but_keeps_every_rule(tables: Tables,
                                                              tmp_path: Path) -> None:
    """Decimal, timestamp and integer columns take the typed path; their rules still hold."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    ts = [T0 + timedelta(seconds=n) for n in range(5)]
    table = pa.table({
        "exchange": ["EX"] * 5, "symbol": ["AAA"] * 5,
        "trade_id": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "price": pa.array([Decimal("10.5"), Decimal("0"), Decimal("1.123456789"),
                           Decimal("12345678901.5"), Decimal("7")], pa.decimal128(20, 9)),
        "quantity": pa.array([Decimal(1)] * 4 + [Decimal(-1)], pa.decimal128(20, 8)),
        "side": ["buy", "sell", None, "buy", "sell"],
    })
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    lines: list[str] = []
    report = ingest_file(tables, path, progress=lines.append)
    assert (report.ingested, report.quarantined) == (1, 4)
    assert report.reasons == {"price is not positive": 1, "price has more than 8 decimals": 1,
                              "price above 9999999999.99999999": 1, "quantity is negative": 1}
    assert any("rows read and checked" in line and "rows/s" in line for line in lines), lines
    assert any("rows stored" in line for line in lines), lines
    stored = tables.read_trades().collect()
    assert [(r.trade_id, r.price, r.side) for r in stored] == [(1, Decimal("10.50000000"), "buy")]
    rejected = tables.spark.table(tables.name(REJECTED_TABLE)).orderBy("source_row").collect()
    assert [(r.source_row, r.price) for r in rejected] == [
        (2, "0E-9"), (3, "1.123456789"), (4, "12345678901.500000000"), (5, "7.000000000")]


def test_compaction_between_check_and_commit_is_not_a_conflict(
        tables: Tables, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rewrite_data_files in the gap replaces files without adding trades: no retry needed,
    and the duplicate check's answer still holds."""
    from tests.test_lakehouse_property import compact

    ingest_file(tables, _write(tmp_path / "one.csv", range(0, 20)))
    ingest_file(tables, _write(tmp_path / "two.csv", range(20, 40)))
    before = tables.spark.table(f"{tables.trades}.snapshots").count()
    events = _interleave(monkeypatch, "_commit_trades",
                         lambda: compact(tables, tables.trades_table))
    report = ingest_file(tables, _write(tmp_path / "three.csv", range(30, 60)))
    operations = [r.operation for r in tables.spark.table(f"{tables.trades}.snapshots")
                  .orderBy("committed_at").collect()][before:]
    assert operations == ["replace", "append"], operations  # the compaction did happen
    assert events == ["other ingest starts", "other ingest committed", "commit"], events
    assert (report.retries, report.ingested, report.duplicates) == (0, 20, 10)
    assert _stored_ids(tables) == list(range(0, 60))
