"""The Prefect flows under `prefect_test_harness`: exact bars, level order, slots, reports."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

pytest.importorskip("prefect")

pytestmark = [pytest.mark.spark, pytest.mark.slow]

VALUES = ("exchange", "symbol", "window_start", "window_end", "window_date", "open", "high",
          "low", "close", "volume", "quote_volume", "trade_count", "vwap")


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    """One temporary Prefect server (SQLite) shared by the flow tests, stopped after them."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def flows(prefect_api: None) -> Any:
    from rollup.orchestration import load_flows

    return load_flows()


def _config(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "rollup.toml"
    path.write_text(
        "[orchestration]\nretries = 0\nretry_delay_seconds = 0\ntimeout_seconds = 900\n"
        + (extra or "checks_after_run = false\n")
    )
    return str(path)


@pytest.fixture
def loaded(tables: Any, tmp_path: Path) -> Any:
    """The `tables` fixture with a small synthetic day of trades ingested."""
    from rollup.ingest import ingest_file
    from rollup.synthetic import synthetic_trades, write_trades_parquet

    files = write_trades_parquet(synthetic_trades(3_000, symbols=2), tmp_path / "trades",
                                 rows_per_file=3_000)
    for file in files:
        ingest_file(tables, file)
    return tables


def _kwargs(tables: Any, warehouse: Path, config: str) -> dict[str, Any]:
    return {"warehouse": str(warehouse), "config": config, "catalog": tables.catalog,
            "namespace": tables.namespace}


def _rows(df: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(r) for r in df.select(*VALUES).collect())


def assert_exact(tables: Any, level: str) -> int:
    """The stored bars of `level` equal a direct aggregation of the trades, to the digit."""
    from rollup.plans import Rollup

    spark = tables.spark
    lv = tables.dag.level(level)
    spark.sql(f"REFRESH TABLE {tables.bars(lv)}")
    stored = _rows(tables.read_bars(lv))
    direct = _rows(Rollup(lv).plan_direct(tables.read_trades()))
    assert stored == direct
    return len(stored)


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert found, f"no artifact {key}"
    latest = max(found, key=lambda a: a.created)
    return str(latest.data)


def test_cascade_flow_builds_exact_bars_and_reports(flows: Any, loaded: Any, warehouse: Path,
                                                    tmp_path: Path) -> None:
    checked = "checks_after_run = true\ncheck_lookback_hours = 0\n"  # all windows
    kwargs = _kwargs(loaded, warehouse, _config(tmp_path, checked))
    state = flows.cascade_flow(**kwargs, return_state=True)
    assert state.is_completed(), state.message
    results = state.result()
    assert [r["level"] for r in results] == loaded.dag.names()
    assert {r["status"] for r in results} == {"written"}
    for level in loaded.dag.names():
        assert assert_exact(loaded, level) > 0
    text = _artifact(f"rollup-cascade-{loaded.namespace.replace('_', '-')}")
    assert "| 1d | written |" in text and "bars written" in text
    assert "| 1m | written | all |" in text
    assert "## Quality checks:" in text and " 0 failed" in text  # a clean cascade passes

    again = flows.cascade_flow(**kwargs)
    assert {r["status"] for r in again} == {"up-to-date"}


def test_level_flow_runs_its_ancestors_first_and_nothing_above(
        flows: Any, loaded: Any, warehouse: Path, tmp_path: Path) -> None:
    results = flows.level_flow("30m", **_kwargs(loaded, warehouse, _config(tmp_path)))
    assert [r["level"] for r in results] == ["1m", "5m", "30m"]
    for level in ("1m", "5m", "30m"):
        assert assert_exact(loaded, level) > 0
    for level in ("1h", "1d"):
        assert loaded.read_bars(level).count() == 0
    text = _artifact(f"rollup-level-30m-{loaded.namespace.replace('_', '-')}")
    assert "| 5m | written |" in text and "| 1h |" not in text


def test_a_busy_level_slot_keeps_a_second_run_out(flows: Any, loaded: Any, warehouse: Path,
                                                  tmp_path: Path) -> None:
    from prefect.concurrency.sync import concurrency

    from rollup.config import load_settings
    from rollup.orchestration import level_slot

    config = _config(tmp_path, "slot_timeout_seconds = 2\nchecks_after_run = false\n")
    kwargs = _kwargs(loaded, warehouse, config)
    settings = load_settings(config, catalog=loaded.catalog, namespace=loaded.namespace)
    slot = level_slot(settings, "1m")
    flows.ensure_slots([slot])
    with concurrency(slot, occupy=1, strict=True):  # another run of 1m is in progress
        state = flows.level_flow("1m", **kwargs, return_state=True)
    assert state.is_failed()
    with pytest.raises(TimeoutError):
        state.result()
    assert loaded.read_bars("1m").count() == 0
    free = _kwargs(loaded, warehouse, _config(tmp_path))  # default: wait for the slot
    after = flows.level_flow("1m", **free)  # the slot is free again
    assert [r["status"] for r in after] == ["written"]
    assert_exact(loaded, "1m")


@attrs.frozen
class FakeCheck:
    check: str
    timeframe: str
    passed: bool
    violations: int


def test_quality_flow_reports_checks_and_fails_when_strict(
        flows: Any, tables: Any, warehouse: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []

    def run_checks(tbl: Any, timeframes: Any = None, since: Any = None) -> list[FakeCheck]:
        calls.append((timeframes, since))
        return [FakeCheck("ohlc_bounds", "1m", True, 0),
                FakeCheck("vwap_range", "5m", False, 3)]

    fake = types.ModuleType("rollup.quality")
    fake.run_checks = run_checks  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rollup.quality", fake)
    kwargs = _kwargs(tables, warehouse, _config(tmp_path))

    checks = flows.quality_flow(**kwargs, timeframes=["5m"], since="2024-01-02")
    assert [c["check"] for c in checks] == ["ohlc_bounds", "vwap_range"]
    assert calls[0][0] == ["5m"] and calls[0][1].isoformat() == "2024-01-02T00:00:00+00:00"
    text = _artifact(f"rollup-quality-{tables.namespace.replace('_', '-')}")
    assert "1 passed, 1 failed" in text and "vwap_range" in text

    strict = _kwargs(tables, warehouse, _config(tmp_path, "quality_strict = true\n"))
    state = flows.quality_flow(**strict, return_state=True)
    assert state.is_failed()
    assert "1 quality checks failed" in str(state.message)
    assert "5m vwap_range" in str(state.message)


def test_quality_and_retention_flows_degrade_without_their_modules(
        flows: Any, tables: Any, warehouse: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rollup.quality", None)  # import fails: not installed
    monkeypatch.setitem(sys.modules, "rollup.retention", None)
    kwargs = _kwargs(tables, warehouse, _config(tmp_path))
    assert flows.quality_flow(**kwargs) == []
    text = _artifact(f"rollup-quality-{tables.namespace.replace('_', '-')}")
    assert "not available" in text and "| 1m |" in text  # freshness still reported
    assert flows.retention_flow(**kwargs) == []
    assert "not available" in _artifact(
        f"rollup-retention-{tables.namespace.replace('_', '-')}")


def test_retention_flow_holds_every_level_slot(flows: Any, tables: Any, warehouse: Path,
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.concurrency.sync import concurrency

    from rollup.config import load_settings
    from rollup.orchestration import level_slot

    config = _config(tmp_path)
    settings = load_settings(config, catalog=tables.catalog, namespace=tables.namespace)
    seen: dict[str, Any] = {}

    def enforce_retention(tbl: Any, now: Any = None, dry_run: bool = False) -> list[dict]:
        seen.update(now=now, dry_run=dry_run)
        with pytest.raises(TimeoutError), concurrency(level_slot(settings, "1h"),
                                                       timeout_seconds=1, strict=True):
            pass  # a level run would have to wait: retention holds its slot
        return [{"table": "bars_1m", "partitions": 2}]

    fake = types.ModuleType("rollup.retention")
    fake.enforce_retention = enforce_retention  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rollup.retention", fake)
    out = flows.retention_flow(**_kwargs(tables, warehouse, config), dry_run=True,
                               now="2025-01-01T00:00:00Z")
    assert out == [{"table": "bars_1m", "partitions": 2}]
    assert seen["dry_run"] is True and seen["now"].year == 2025
    assert "bars_1m" in _artifact(f"rollup-retention-{tables.namespace.replace('_', '-')}")


def test_maintenance_flow_holds_every_level_slot_and_reads_its_section(
        flows: Any, tables: Any, warehouse: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from prefect.concurrency.sync import concurrency

    from rollup.config import load_settings
    from rollup.maintenance import Cleanup, FileCounts, MaintenanceResult
    from rollup.orchestration import level_slot

    config = _config(tmp_path, "checks_after_run = false\n[maintenance]\nsnapshot_age_days = 2\n")
    settings = load_settings(config, catalog=tables.catalog, namespace=tables.namespace)
    seen: dict[str, Any] = {}

    def maintain(tbl: Any, **kwargs: Any) -> list[MaintenanceResult]:
        seen.update(kwargs)
        with pytest.raises(TimeoutError), concurrency(level_slot(settings, "5m"),
                                                       timeout_seconds=1, strict=True):
            pass  # a level run would have to wait: maintenance holds its slot
        return [MaintenanceResult("bars_1m", "1m", False, FileCounts(288, 288, 9),
                                  FileCounts(1, 0, 5))]

    fake = types.ModuleType("rollup.maintenance")
    fake.maintain = maintain  # type: ignore[attr-defined]
    fake.Cleanup = Cleanup  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rollup.maintenance", fake)
    out = flows.maintenance_flow(**_kwargs(tables, warehouse, config), dry_run=True)
    assert out[0]["table"] == "bars_1m" and out[0]["after"]["data_files"] == 1
    assert seen["dry_run"] is True and seen["snapshot_age"] == timedelta(days=2)
    text = _artifact(f"rollup-maintenance-{tables.namespace.replace('_', '-')}")
    assert "| bars_1m | 288 -> 1 | 288 -> 0 |" in text


def test_submit_mode_runs_rollup_submit_with_the_level_chain(
        flows: Any, warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    printed = '[\n  {"level": "1m", "status": "written", "changed": 7, "windows": 3}\n]\n'

    def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="starting\n" + printed, stderr="")

    fake = types.SimpleNamespace(run=run, TimeoutExpired=subprocess.TimeoutExpired)
    monkeypatch.setattr(flows, "subprocess", fake)
    config = _config(tmp_path, 'submit_master = "spark://127.0.0.1:7077"\n')
    out = flows.level_flow("5m", warehouse=str(warehouse), config=config, catalog="rollup",
                           namespace="submitted")
    assert out == [{"level": "1m", "status": "written", "changed": 7, "windows": 3}]
    (cmd,) = seen
    assert cmd[cmd.index("submit"):] == ["submit", "--master", "spark://127.0.0.1:7077", "run",
                                         "--timeframe", "5m", "--json"]
    assert cmd[cmd.index("--namespace") + 1] == "submitted"


def test_submit_failure_fails_the_run(flows: Any, warehouse: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 3, stdout="", stderr="boom: no master\n")

    monkeypatch.setattr(flows, "subprocess",
                        types.SimpleNamespace(run=run, TimeoutExpired=subprocess.TimeoutExpired))
    config = _config(tmp_path, 'submit_master = "spark://127.0.0.1:7077"\n')
    state = flows.cascade_flow(warehouse=str(warehouse), config=config, catalog="rollup",
                               namespace="submitted", return_state=True)
    assert state.is_failed()
    assert "exited with status 3: boom: no master" in str(state.message)
