"""The Prefect flows under `prefect_test_harness`: exact bars, level order, slots, reports."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

pytest.importorskip("prefect")

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[None]:
    """One temporary Prefect server (SQLite) shared by the flow tests, stopped after them."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def flows(prefect_api: None) -> Any:
    from rollup.deploy.orchestration import load_flows

    return load_flows()


def _config(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "rollup.toml"
    path.write_text(
        "[orchestration]\nretries = 0\nretry_delay_seconds = 0\ntimeout_seconds = 900\n"
        + (extra or "checks_after_run = false\n")
    )
    return str(path)


@pytest.fixture(scope="module")
def ingested_day(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small synthetic day of trades ingested once, into a namespace of its own; returns
    its trades table."""
    from rollup.adapters.synthetic import synthetic_trades, write_trades_parquet
    from rollup.ingestion.batch import ingest_file
    from rollup.storage.tables import Tables

    tables = Tables(spark, "rollup", f"fl_{uuid.uuid4().hex[:8]}")
    tables.create_all()
    files = write_trades_parquet(synthetic_trades(3_000, symbols=2),
                                 tmp_path_factory.mktemp("flow_trades"), rows_per_file=3_000)
    for file in files:
        ingest_file(tables, file)
    return tables.trades


@pytest.fixture
def loaded(tables: Any, ingested_day: str) -> Any:
    """The `tables` fixture holding that day of ingested trades (copied in one append)."""
    tables.spark.table(ingested_day).writeTo(tables.trades).append()
    return tables


def _kwargs(tables: Any, warehouse: Path, config: str) -> dict[str, Any]:
    return {"warehouse": str(warehouse), "config": config, "catalog": tables.catalog,
            "namespace": tables.namespace}


def assert_exact(tables: Any, level: str) -> int:
    """The stored bars of `level` equal the independent oracle (tests/oracle.py) of the trades,
    on every window and column."""
    from tests.oracle import collect_bars, compare_level, oracle_bars, read_trades

    lv = tables.dag.level(level)
    tables.spark.sql(f"REFRESH TABLE {tables.bars(lv)}")
    stored = collect_bars({lv.name: tables.read_bars(lv)})[lv.name]
    problems = compare_level(lv.name, stored, oracle_bars(read_trades(tables), lv.timeframe), None)
    assert not problems, "\n".join(problems[:10])
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

    from rollup.deploy.orchestration import level_slot
    from rollup.settings.config import load_settings

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
    calls: list[dict[str, Any]] = []

    def run_checks(tbl: Any, **kwargs: Any) -> list[FakeCheck]:
        calls.append(kwargs)
        return [FakeCheck("ohlc_bounds", "1m", True, 0),
                FakeCheck("vwap_range", "5m", False, 3)]

    monkeypatch.setattr(flows, "run_checks", run_checks)
    kwargs = _kwargs(tables, warehouse, _config(tmp_path))

    checks = flows.quality_flow(**kwargs, timeframes=["5m"], since="2024-01-02")
    assert [c["check"] for c in checks] == ["ohlc_bounds", "vwap_range"]
    assert calls[0]["timeframes"] == ["5m"]
    assert calls[0]["since"].isoformat() == "2024-01-02T00:00:00+00:00"
    text = _artifact(f"rollup-quality-{tables.namespace.replace('_', '-')}")
    assert "1 passed, 1 failed" in text and "vwap_range" in text
    assert "| 1m |" in text  # each level's freshness is reported with the checks

    strict = _kwargs(tables, warehouse, _config(tmp_path, "quality_strict = true\n"))
    state = flows.quality_flow(**strict, return_state=True)
    assert state.is_failed()
    assert "1 quality checks failed" in str(state.message)
    assert "5m vwap_range" in str(state.message)


def _freshness(checks: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [c for c in checks if c["check"] == "freshness"]
    return found


def test_quality_flow_honours_the_quality_section(flows: Any, loaded: Any, warehouse: Path,
                                                  tmp_path: Path) -> None:
    """1m has never run: freshness passes with no limit, fails with `[quality] max_lag`."""
    default = flows.quality_flow(**_kwargs(loaded, warehouse, _config(tmp_path)),
                                 timeframes=["1m"])
    assert _freshness(default)["passed"] is True
    limited = _config(tmp_path, 'checks_after_run = false\n[quality]\nmax_lag = "1h"\n')
    checks = flows.quality_flow(**_kwargs(loaded, warehouse, limited), timeframes=["1m"])
    fresh = _freshness(checks)
    assert fresh["passed"] is False and "lag behind trades over 60m" in fresh["detail"]


def test_retention_flow_holds_every_level_slot_and_reads_maintenance(
        flows: Any, tables: Any, warehouse: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from prefect.concurrency.sync import concurrency

    from rollup.deploy.orchestration import level_slot
    from rollup.settings.config import load_settings

    config = _config(tmp_path, "checks_after_run = false\n[maintenance]\nretain_last = 4\n"
                     "orphan_age_days = 9\n")
    settings = load_settings(config, catalog=tables.catalog, namespace=tables.namespace)
    seen: dict[str, Any] = {}

    def enforce_retention(tbl: Any, **kwargs: Any) -> list[dict[str, Any]]:
        seen.update(kwargs)
        with pytest.raises(TimeoutError), concurrency(level_slot(settings, "1h"),
                                                       timeout_seconds=1, strict=True):
            pass  # a level run would have to wait: retention holds its slot
        return [{"table": "bars_1m", "partitions": 2}]

    monkeypatch.setattr(flows, "enforce_retention", enforce_retention)
    out = flows.retention_flow(**_kwargs(tables, warehouse, config), dry_run=True,
                               now="2025-01-01T00:00:00Z")
    assert out == [{"table": "bars_1m", "partitions": 2}]
    assert seen["dry_run"] is True and seen["now"].year == 2025
    assert seen["retain_last"] == 4 and seen["orphan_age"] == timedelta(days=9)
    assert "bars_1m" in _artifact(f"rollup-retention-{tables.namespace.replace('_', '-')}")


def test_retention_flow_expires_snapshots_by_the_maintenance_section(
        flows: Any, tables: Any, warehouse: Path, tmp_path: Path) -> None:
    """Two ingests give the trades table two snapshots: the older one is past a snapshot age
    of 0 days (`[maintenance]`), not past the default 5 days."""
    from rollup.adapters.synthetic import synthetic_trades, write_trades_parquet
    from rollup.ingestion.batch import ingest_file

    for file in write_trades_parquet(synthetic_trades(400, symbols=1), tmp_path / "trades",
                                     rows_per_file=200):
        ingest_file(tables, file)
    kwargs = _kwargs(tables, warehouse, _config(tmp_path))

    def expired(results: list[dict[str, Any]]) -> list[int]:
        (trades,) = [r for r in results if r["table"] == tables.trades_table]
        return list(trades["snapshots"])

    assert expired(flows.retention_flow(**kwargs, dry_run=True)) == []
    aged = _config(tmp_path, "checks_after_run = false\n[maintenance]\nsnapshot_age_days = 0\n")
    assert len(expired(flows.retention_flow(**_kwargs(tables, warehouse, aged),
                                            dry_run=True))) == 1


def test_maintenance_flow_holds_every_level_slot_and_reads_its_section(
        flows: Any, tables: Any, warehouse: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from prefect.concurrency.sync import concurrency

    from rollup.deploy.orchestration import level_slot
    from rollup.operations.maintenance import FileCounts, MaintenanceResult
    from rollup.settings.config import load_settings

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

    monkeypatch.setattr(flows, "maintain", maintain)
    out = flows.maintenance_flow(**_kwargs(tables, warehouse, config), dry_run=True)
    assert out[0]["table"] == "bars_1m" and out[0]["after"]["data_files"] == 1
    assert seen["dry_run"] is True and seen["snapshot_age"] == timedelta(days=2)
    text = _artifact(f"rollup-maintenance-{tables.namespace.replace('_', '-')}")
    assert "| bars_1m | 288 -> 1 | 288 -> 0 |" in text


# --- submit mode: a fake spark-submit under SPARK_HOME ------------------------------------

FAKE_SPARK_SUBMIT = """#!{python}
import json, os, sys
args = sys.argv[1:]
level = args[args.index("--timeframe") + 1]
log = os.environ["FAKE_SUBMIT_LOG"]
with open(log, "a") as out:
    out.write(json.dumps({{"level": level, "master": args[args.index("--master") + 1],
                          "job": args[args.index("run"):]}}) + "\\n")
failed = log + ".failed-" + level
if level == os.environ.get("FAKE_SUBMIT_FAIL_ONCE") and not os.path.exists(failed):
    open(failed, "w").close()
    print("boom: executor lost", file=sys.stderr)
    sys.exit(3)
print(":: resolving dependencies ::")
print(json.dumps([{{"level": level, "status": "written", "changed": 7, "windows": 3}}], indent=2))
"""


@pytest.fixture
def fake_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SPARK_HOME whose spark-submit logs each job (one JSON line) and prints its result."""
    home = tmp_path / "spark"
    (home / "bin").mkdir(parents=True)
    script = home / "bin" / "spark-submit"
    script.write_text(FAKE_SPARK_SUBMIT.format(python=sys.executable))
    script.chmod(0o755)
    log = tmp_path / "submissions.jsonl"
    monkeypatch.setenv("SPARK_HOME", str(home))
    monkeypatch.setenv("FAKE_SUBMIT_LOG", str(log))
    monkeypatch.delenv("ROLLUP_SUBMIT_MASTER", raising=False)
    return log


def _submissions(log: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _submit_config(tmp_path: Path, retries: int) -> str:
    path = tmp_path / "submit.toml"
    path.write_text(f"[orchestration]\nretries = {retries}\nretry_delay_seconds = 0\n"
                    'timeout_seconds = 600\nsubmit_master = "spark://127.0.0.1:7077"\n')
    return str(path)


def test_submit_mode_runs_one_submission_per_level_in_dag_order(
        flows: Any, warehouse: Path, tmp_path: Path, fake_cluster: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each level is its own task: the failed 30m job is retried alone, then 1h and 1d run."""
    monkeypatch.setenv("FAKE_SUBMIT_FAIL_ONCE", "30m")
    out = flows.cascade_flow(warehouse=str(warehouse), config=_submit_config(tmp_path, 1),
                             catalog="rollup", namespace="submitted")
    levels = ["1m", "5m", "30m", "1h", "1d"]
    assert [r["level"] for r in out] == levels
    assert {r["status"] for r in out} == {"written"}
    jobs = _submissions(fake_cluster)
    assert [j["level"] for j in jobs] == ["1m", "5m", "30m", "30m", "1h", "1d"]
    assert all(j["master"] == "spark://127.0.0.1:7077" for j in jobs)
    assert jobs[0]["job"] == ["run", "--timeframe", "1m", "--json"]
    text = _artifact("rollup-cascade-submitted")
    assert "submitted to spark://127.0.0.1:7077" in text
    assert all(f"| {level} | written | 3 |" in text for level in levels)


def test_submit_mode_level_flow_submits_its_chain_and_a_failure_stops_it(
        flows: Any, warehouse: Path, tmp_path: Path, fake_cluster: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = {"warehouse": str(warehouse), "catalog": "rollup", "namespace": "submitted"}
    out = flows.level_flow("5m", config=_submit_config(tmp_path, 0), **kwargs)
    assert [r["level"] for r in out] == ["1m", "5m"]
    assert [j["level"] for j in _submissions(fake_cluster)] == ["1m", "5m"]

    fake_cluster.unlink()
    monkeypatch.setenv("FAKE_SUBMIT_FAIL_ONCE", "1m")
    state = flows.cascade_flow(config=_submit_config(tmp_path, 0), return_state=True, **kwargs)
    assert state.is_failed()
    assert "rollup submit for level 1m exited with status" in str(state.message)
    assert [j["level"] for j in _submissions(fake_cluster)] == ["1m"]  # nothing above it ran
