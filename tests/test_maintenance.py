"""`rollup maintain`: compaction and cleanup that keep every level's bars and position."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rollup.errors import ConfigError, InputError
from rollup.operations.maintenance import (
    FileCounts,
    MaintenanceResult,
    file_counts,
    maintain,
)
from rollup.settings.config import MaintenanceConfig, load_settings
from tests.helpers import append_trades, assert_exact

SYMBOLS = ("BTC", "ETH")


# ---------------------------------------------------------------- pure


def _maintenance(tmp_path: Path, section: str, **flags: Any) -> MaintenanceConfig:
    """`[maintenance]` as `load_settings` reads it from rollup.toml and command-line flags."""
    path = tmp_path / "rollup.toml"
    path.write_text(f"[maintenance]\n{section}\n")
    return load_settings(path, environ={}, overrides={"maintenance": flags}).maintenance


def test_cleanup_reads_the_maintenance_section_and_the_command_line_wins(tmp_path: Path) -> None:
    section = "snapshot_age_days = 2\nretain_last = 3\norphan_age_days = 4.5"
    assert _maintenance(tmp_path, section) == MaintenanceConfig(
        timedelta(days=2), 3, timedelta(days=4.5))
    flagged = _maintenance(tmp_path, section, snapshot_age_days=0, retain_last=1)
    assert (flagged.snapshot_age, flagged.retain_last) == (timedelta(0), 1)
    assert _maintenance(tmp_path, "") == MaintenanceConfig()


@pytest.mark.parametrize(("section", "message"), [
    ('snapshot_age_days = "5d"', "invalid [maintenance] snapshot_age_days '5d'"),
    ("retain_last = 1.5", "invalid [maintenance] retain_last 1.5"),
    ("orphan_age_days = true", "invalid [maintenance] orphan_age_days True"),
])
def test_bad_maintenance_settings_name_the_key(tmp_path: Path, section: str,
                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _maintenance(tmp_path, section)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"snapshot_age": timedelta(days=-1)}, "invalid snapshot age"),
    ({"snapshot_age": 5}, "invalid snapshot age 5: expected a timedelta"),
    ({"retain_last": 0}, "invalid retain_last 0: expected a whole number >= 1"),
    ({"orphan_age": timedelta(hours=2)}, "expected a timedelta of at least 1 day"),
    ({"min_input_files": 1}, "invalid min_input_files 1: expected a whole number >= 2"),
    ({"target_file_size": 0}, "invalid target_file_size 0"),
])
def test_bad_arguments_fail_before_touching_a_table(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        maintain(object(), **kwargs)  # type: ignore[arg-type]


def test_result_is_one_line_and_json() -> None:
    result = MaintenanceResult("bars_1m", "1m", False, FileCounts(288, 288, 3_000_000),
                               FileCounts(1, 0, 900_000), rewritten_data_files=288,
                               snapshots=(1, 2, 3), files_deleted=600, seconds=2.5)
    text = result.describe()
    assert "\n" not in text
    assert text.startswith("bars_1m: data files 288 -> 1; delete files 288 -> 0; 3.0 MB -> 0.9 MB")
    assert "expired 3 snapshot(s) (600 files deleted)" in text
    as_json = json.loads(json.dumps(result.as_json()))
    assert as_json["before"]["data_files"] == 288 and as_json["after"]["delete_files"] == 0
    dry = MaintenanceResult("trades", None, True, FileCounts(5, 0, 10), FileCounts(5, 0, 10))
    assert "would expire 0 snapshot(s)" in dry.describe()
    assert "nothing rewritten" in dry.describe()


# ---------------------------------------------------------------- Spark


def _batch(start: datetime, minutes: int, first_id: int, step_seconds: int = 7) -> list[tuple]:  # type: ignore[type-arg]
    """Trades of both symbols every `step_seconds` for `minutes` from `start` (a compact span)."""
    from decimal import Decimal

    rows = []
    for i in range(minutes * 60 // step_seconds):
        ts = start + timedelta(seconds=i * step_seconds)
        for n, symbol in enumerate(SYMBOLS):
            price = Decimal(100 + (i * 7 + n * 13) % 50) + Decimal("0.12345678")
            rows.append(("X", symbol, first_id + i, ts, price, Decimal(i % 5 + 1) / 4))
    return rows


def _bars(tables: Any) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    return {lv.name: sorted(tuple(r) for r in tables.read_bars(lv).collect())
            for lv in tables.dag.order()}


def _table_snapshots(tables: Any) -> dict[str, int | None]:
    from rollup.storage.state import current_snapshot

    names = [tables.trades_table, *[lv.table for lv in tables.dag.order()]]
    return {name: current_snapshot(tables.spark, tables.name(name)) for name in names}


@pytest.fixture(scope="module")
def busy(spark: Any) -> Iterator[Any]:
    """Tables after on-time and late batches, each followed by a cascade run: many small files
    and (from the 1m MERGE) delete files."""
    import uuid

    from rollup.incremental.runner import run_cascade
    from rollup.storage.tables import Tables

    tables = Tables(spark, "rollup", f"m_{uuid.uuid4().hex[:8]}")
    tables.create_all()
    day = datetime(2024, 1, 2, tzinfo=UTC)
    batches = [
        _batch(day, 90, 1_000),                                          # on time
        _batch(day + timedelta(days=1), 30, 5_000),                      # the next day
        _batch(day + timedelta(minutes=60), 60, 10_000),                 # late, overlapping
        _batch(day + timedelta(hours=5), 20, 20_000, step_seconds=11),   # late, later that day
    ]
    for rows in batches:
        append_trades(tables, rows)
        run_cascade(tables)
    yield tables


@pytest.mark.spark
def test_dry_run_changes_nothing(busy: Any) -> None:
    snapshots = _table_snapshots(busy)
    results = maintain(busy, snapshot_age=timedelta(0), dry_run=True)
    assert [r.table for r in results] == list(snapshots)
    assert _table_snapshots(busy) == snapshots
    trades = results[0]
    assert trades.dry_run and trades.before == trades.after
    assert trades.before.data_files >= 4
    assert trades.snapshots  # what expiry would remove is listed ...
    from rollup.storage.state import snapshots as table_snapshots

    assert set(trades.snapshots) <= set(table_snapshots(busy.spark, busy.trades))  # ... kept


@pytest.mark.spark
def test_maintain_compacts_and_keeps_bars_and_positions(busy: Any) -> None:
    from rollup.incremental.runner import run_cascade

    bars = _bars(busy)
    m1 = file_counts(busy, busy.bars("1m"))
    assert m1.data_files >= 3 and m1.delete_files >= 1  # what a 1m MERGE leaves behind
    lines: list[str] = []
    results = {r.table: r for r in maintain(busy, snapshot_age=timedelta(0),
                                            progress=lines.append)}
    assert len(lines) == 6 and lines[0].startswith("trades: data files ")
    trades, one = results["trades"], results["bars_1m"]
    assert trades.before.data_files >= 4 and trades.after.data_files <= 2  # one per day
    assert one.after.data_files <= 2 and one.after.delete_files == 0
    assert one.rewritten_data_files >= 3 and trades.snapshots  # compacted, then expired
    for r in results.values():
        assert r.after.data_files <= max(r.before.data_files, 2)
    assert _bars(busy) == bars  # every level, every column, unchanged

    # Positions survived compaction and expiry: nothing to do, nothing committed.
    snapshots = _table_snapshots(busy)
    again = run_cascade(busy)
    assert {r.status for r in again} <= {"up-to-date", "unchanged"}, [r.describe() for r in again]
    assert not any(r.full for r in again)
    assert _table_snapshots(busy) == snapshots
    assert assert_exact(busy) > 0


@pytest.mark.spark
def test_maintain_command(spark: Any, warehouse: Path, namespace: str, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    from rollup.cli import main

    trades = tmp_path / "trades.csv"
    trades.write_text("exchange,symbol,trade_id,ts,price,quantity\n"
                      "X,BTC,1,2024-01-02T00:00:01Z,42000.5,0.25\n"
                      "X,BTC,2,2024-01-02T00:01:30Z,42001,1.5\n")
    config = tmp_path / "rollup.toml"
    config.write_text("[maintenance]\nsnapshot_age_days = 0\norphan_age_days = 2\n")

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--warehouse", str(warehouse), "--catalog", "rollup", "--namespace",
                     namespace, "--config", str(config), *args])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("ingest", str(trades))[0] == 0
    assert run("run")[0] == 0
    code, out, _ = run("maintain", "--dry-run", "--no-compact")
    assert code == 0 and out.count("nothing rewritten") == 6
    code, out, _ = run("maintain", "--json", "--no-orphans")
    results = json.loads(out)
    assert code == 0 and [r["table"] for r in results][:2] == ["trades", "bars_1m"]
    assert results[0]["snapshots"] == [] or all(isinstance(s, int) for s in results[0]["snapshots"])
    code, out, _ = run("run")
    assert code == 0 and out.count("up-to-date") + out.count("unchanged") == 5

    code, _, err = run("maintain", "--orphan-age", "0.5")
    assert code == 2 and err.count("rollup: error:") == 1 and "invalid orphan age" in err
    config.write_text('[maintenance]\nretain_last = "all"\n')
    code, _, err = run("maintain", "--dry-run")
    assert code == 2 and "invalid [maintenance] retain_last 'all'" in err
