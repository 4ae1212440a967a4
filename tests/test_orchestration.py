"""Deployment specs, orchestration config, run reports, `rollup deployments`, the compose file.

No Spark and no Prefect server here: specs are plain data; Prefect deployment objects are
built locally without contacting an API.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rollup.cli import main
from rollup.deploy import report
from rollup.deploy.orchestration import (
    artifact_key,
    deployment_specs,
    flow_parameters,
    level_slot,
    submit_command,
)
from rollup.errors import ConfigError, TimeframeError
from rollup.settings.catalogs import CatalogConfig
from rollup.settings.config import Settings, load_settings
from rollup.spark.catalog_conf import session_spark_conf
from rollup.timeframes import Dag

ROOT = Path(__file__).resolve().parents[1]
SEED_CRONS = {  # ../shared/SEED.md, UTC
    "rollup-1m": "*/5 * * * *",
    "rollup-5m": "5,20,35,50 * * * *",
    "rollup-30m": "10,40 * * * *",
    "rollup-1h": "15 * * * *",
    "rollup-1d": "5 0 * * *",
}


def _settings(tmp_path: Path, toml: str, **kw: Any) -> Settings:
    path = tmp_path / "rollup.toml"
    path.write_text(toml)
    return load_settings(path, **kw)


def test_default_deployments_have_the_staggered_seed_schedules() -> None:
    specs = deployment_specs(Settings())
    assert {s.flow_name: s.cron for s in specs if s.kind == "level"} == SEED_CRONS
    assert [s.full_name for s in specs] == [
        "rollup-1m/market_data", "rollup-5m/market_data", "rollup-30m/market_data",
        "rollup-1h/market_data", "rollup-1d/market_data", "rollup-cascade/market_data",
        "rollup-quality/market_data", "rollup-retention/market_data",
        "rollup-maintenance/market_data",
    ]
    by_kind = {s.kind: s for s in specs}
    assert by_kind["cascade"].cron is None  # on demand
    assert by_kind["quality"].cron == "25 * * * *"
    assert by_kind["retention"].cron == "30 1 * * *"
    assert by_kind["maintenance"].cron == "30 2 * * *"  # daily, after retention
    assert by_kind["maintenance"].levels == tuple(Settings().dag.names())  # holds every slot
    assert all(s.description for s in specs)


def test_tags_name_rollup_the_namespace_and_the_level() -> None:
    specs = deployment_specs(Settings(namespace="crypto"))
    one_h = next(s for s in specs if s.timeframe == "1h")
    assert one_h.tags == ("rollup", "namespace:crypto", "level:1h")
    assert next(s for s in specs if s.kind == "cascade").tags[-1] == "cascade"
    assert {s.name for s in specs} == {"crypto"}


def test_no_overlap_one_run_per_deployment_and_one_slot_per_level() -> None:
    settings = Settings()
    specs = deployment_specs(settings)
    assert all(s.concurrency_limit == 1 and s.collision == "CANCEL_NEW" for s in specs)
    levels = {s.timeframe: s for s in specs if s.kind == "level"}
    # a level never runs ahead of its parent: its run covers the ancestor chain, in order
    assert levels["1h"].levels == ("1m", "5m", "30m", "1h")
    assert levels["1m"].levels == ("1m",)
    assert next(s for s in specs if s.kind == "cascade").levels == tuple(settings.dag.names())
    # the slot of a level is the same whichever deployment runs it, distinct per level
    slots = {level_slot(settings, name) for name in settings.dag.names()}
    assert len(slots) == 5
    assert level_slot(settings, "1m") == "rollup-rollup-market_data-1m"
    assert level_slot(Settings(namespace="other"), "1m") != level_slot(settings, "1m")


def test_custom_levels_and_schedule_overrides(tmp_path: Path) -> None:
    settings = _settings(tmp_path, """
[levels]
1m = "trades"
5m = "1m"
15m = "5m"
[orchestration]
deployment_name = "prod"
tags = ["eu"]
[orchestration.schedules]
15m = "2,17,32,47 * * * *"
5m = ""
cascade = "0 */6 * * *"
""")
    specs = {s.full_name: s for s in deployment_specs(settings)}
    assert specs["rollup-15m/prod"].cron == "2,17,32,47 * * * *"
    assert specs["rollup-15m/prod"].levels == ("1m", "5m", "15m")
    assert specs["rollup-5m/prod"].cron is None
    assert specs["rollup-1m/prod"].cron == "*/5 * * * *"
    assert specs["rollup-cascade/prod"].cron == "0 */6 * * *"
    assert "eu" in specs["rollup-1m/prod"].tags


@pytest.mark.parametrize(("toml", "message"), [
    ('[orchestration]\nretries = -1\n', "orchestration.retries -1"),
    ('[orchestration]\nretry = 2\n', "'retry'"),
    ('[orchestration.schedules]\n1m = "every minute"\n', "schedule 'every minute'"),
    ('[orchestration.schedules]\n2m = "* * * * *"\n', "unknown schedule '2m'"),
    ('[orchestration]\nsubmit_master = "spark://x:1; rm -rf /"\n', "invalid Spark master"),
    ('[orchestration]\ntags = ["a b"]\n', "invalid orchestration.tags"),
    ('[orchestration]\ncollision = "DROP"\n', "invalid orchestration.collision 'DROP'"),
    ('[orchestration]\ndeployment_name = "a/b"\n', "invalid orchestration.deployment_name"),
])
def test_bad_orchestration_settings_fail_with_one_line(tmp_path: Path, toml: str,
                                                       message: str) -> None:
    with pytest.raises((ConfigError, TimeframeError), match=message.replace("(", r"\(")) as info:
        _settings(tmp_path, toml)
    assert "\n" not in str(info.value)


def test_policy_defaults_and_environment_override(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLLUP_SUBMIT_MASTER", raising=False)
    config = Settings().orchestration
    assert config.task_options() == {"retries": 2, "retry_delay_seconds": 60,
                                     "timeout_seconds": 300}
    assert config.submit_master is None
    in_file = '[orchestration]\nsubmit_master = "spark://file:7077"\n'
    assert _settings(tmp_path, in_file).orchestration.submit_master == "spark://file:7077"
    monkeypatch.setenv("ROLLUP_SUBMIT_MASTER", "spark://10.0.0.5:7077")  # beats the file
    settings = _settings(tmp_path, in_file)
    assert settings.orchestration.submit_master == "spark://10.0.0.5:7077"
    spec = next(s for s in deployment_specs(settings) if s.kind == "cascade")
    assert "spark://10.0.0.5:7077" in spec.description


def test_submit_command_is_a_list_with_the_level_and_the_tables(tmp_path: Path) -> None:
    settings = Settings(warehouse="s3://bucket/wh", namespace="crypto")
    cmd = submit_command(settings, "spark://m:7077", timeframe="1h", config_path="/etc/r.toml")
    assert cmd[0] == sys.executable
    tail = cmd[3:]
    assert tail == ["--catalog", "rollup", "--namespace", "crypto", "--warehouse", "s3://bucket/wh",
                    "--config", "/etc/r.toml", "submit", "--master", "spark://m:7077", "run",
                    "--timeframe", "1h", "--json"]
    every = submit_command(Settings(), "yarn")
    assert every[-3:] == ["yarn", "run", "--json"]
    with pytest.raises(ConfigError):
        submit_command(Settings(), "--conf=evil")


def test_flow_parameters_and_artifact_keys(tmp_path: Path) -> None:
    settings = Settings(warehouse="/data/wh", namespace="Market_Data")
    assert flow_parameters(settings, "conf/rollup.toml") == {
        "catalog": "rollup", "namespace": "Market_Data", "warehouse": "/data/wh",
        "config": str(Path("conf/rollup.toml").absolute())}
    assert "warehouse" not in flow_parameters(Settings())
    assert artifact_key("level-1m", settings) == "rollup-level-1m-market-data"


def test_rollup_deployments_lists_flow_slash_deployment_and_cron(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "rollup.toml"
    config.write_text('[orchestration.schedules]\ncascade = "0 * * * *"\n')
    assert main(["--config", str(config), "--namespace", "crypto", "deployments"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9
    table = {line.split()[0]: " ".join(line.split()[1:]) for line in lines}
    assert table["rollup-5m/crypto"] == "5,20,35,50 * * * *"
    assert table["rollup-cascade/crypto"] == "0 * * * *"
    assert table["rollup-1d/crypto"] == "5 0 * * *"


def test_rollup_deployments_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["deployments", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["full_name"] == "rollup-1m/market_data"
    assert data[0]["concurrency_limit"] == 1


def test_serve_without_an_api_url_says_what_to_do(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "PREFECT_API_URL is not set" in err and "rollup serve --local" in err


def test_serve_reports_an_unreachable_api(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import rollup.cli.orchestrate as orchestrate

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    monkeypatch.setattr(orchestrate, "API_TIMEOUT", 1.0)
    assert main(["serve"]) == 1
    assert "http://127.0.0.1:9/api did not answer /health" in capsys.readouterr().err


def test_local_server_environment_is_loopback_sqlite_without_telemetry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rollup.cli.orchestrate import server_env

    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://x/y")
    env = server_env(tmp_path, 4321)
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_SERVER_API_HOST"] == "127.0.0.1"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4321/api"
    assert env["PREFECT_HOME"] == str(tmp_path)
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in env  # SQLite under PREFECT_HOME


def test_flows_are_a_library_module_loaded_without_touching_sys_path() -> None:
    pytest.importorskip("prefect")
    from rollup.deploy.orchestration import load_flows

    before = list(sys.path)
    flows = load_flows()
    assert flows.__name__ == "rollup.deploy.flows" and sys.path == before
    import importlib

    thin = importlib.import_module("runpy").run_path(str(ROOT / "flows" / "rollup_flows.py"))
    assert thin["cascade_flow"] is flows.cascade_flow  # the file for Prefect's tools re-exports
    for path in [*ROOT.joinpath("flows").glob("*.py"), *ROOT.joinpath("src").rglob("*.py")]:
        assert "sys.path" not in path.read_text(), path


# --- Prefect deployment objects (built locally, no server) --------------------------------


def test_prefect_deployments_carry_cron_utc_tags_parameters_and_limits() -> None:
    pytest.importorskip("prefect")
    from rollup.deploy.orchestration import load_flows

    settings = Settings(warehouse="/wh", namespace="crypto")
    specs = deployment_specs(settings)
    built = load_flows().build_deployments(specs, flow_parameters(settings))
    assert [d.flow_name for d in built] == [s.flow_name for s in specs]
    five = built[1]
    assert five.name == "crypto"
    (schedule,) = five.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("5,20,35,50 * * * *", "UTC")
    assert five.concurrency_limit == 1
    assert five.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert five.tags == ["rollup", "namespace:crypto", "level:5m"]
    assert five.parameters == {"catalog": "rollup", "namespace": "crypto", "warehouse": "/wh",
                               "timeframe": "5m"}
    cascade = built[5]
    assert not cascade.schedules and "timeframe" not in cascade.parameters
    maintenance = built[-1]
    assert maintenance.flow_name == "rollup-maintenance"
    assert maintenance.schedules[0].schedule.cron == "30 2 * * *"
    assert "timeframe" not in maintenance.parameters


# --- run reports (pure) ------------------------------------------------------------------


def test_report_lists_levels_windows_rows_lag_and_checks() -> None:
    text = report.render(
        "rollup cascade · md", run_id="r1", mode="in-process Spark",
        results=[{"level": "1m", "status": "written", "windows": 12, "changed": 40,
                  "deleted": 1, "partitions": 0, "seconds": 2.04, "full": False},
                 {"level": "5m", "status": "up-to-date", "windows": 0, "changed": 0,
                  "deleted": 0, "partitions": 0, "seconds": 0.3, "full": True}],
        lags={"1m": 30.0, "5m": 9000.0},
        checks=[{"name": "ohlc", "passed": True}, {"name": "vwap", "passed": False,
                                                   "samples": [1, 2, 3, 4, 5]}],
        notes=["a | b"],
    )
    assert "| 1m | written | 12 | 0 | 40 | 1 | 2.0 | 30s |" in text
    assert "| 5m | up-to-date | all |" in text and "2.5h" in text
    assert "1 passed, 1 failed" in text and "1, 2, 3 (+2)" in text
    assert "2 levels, 40 bars written." in text
    assert "a \\| b" in text
    failed = report.render("t", error="TimeoutError: slot busy")
    assert "**Failed:** TimeoutError: slot busy" in failed


def test_run_json_is_found_after_other_output() -> None:
    out = 'Ivy resolving...\n[stage 1]\n[\n  {\n    "level": "1m",\n    "changed": 3\n  }\n]\n'
    assert report.parse_run_json(out) == [{"level": "1m", "changed": 3}]
    assert report.parse_run_json("no json here") is None
    assert report.parse_run_json('[{"level": "5m"}]') == [{"level": "5m"}]


# --- docker-compose.yml ------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def test_compose_has_every_production_service_bound_to_loopback() -> None:
    services = _compose()["services"]
    assert {"postgres", "prefect-server", "rollup-worker", "spark-master", "spark-worker",
            "iceberg-rest", "minio"} <= set(services)
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published)
    server = services["prefect-server"]
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith(
        "postgresql+asyncpg://")
    assert server["environment"]["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert "prefect-server" in str(services["rollup-worker"]["environment"]["PREFECT_API_URL"])


def test_compose_worker_config_is_valid_rollup_config(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = _compose()["services"]["rollup-worker"]
    assert worker["command"] == ["rollup", "serve"]
    env = worker["environment"]
    mount = next(v for v in worker["volumes"] if v.endswith(env["ROLLUP_CONFIG"] + ":ro"))
    local = ROOT / mount.split(":")[0]
    for name in ("ROLLUP_SUBMIT_MASTER", "ROLLUP_ICEBERG_PACKAGES"):
        monkeypatch.setenv(name, env[name])
    for name in ("ROLLUP_CATALOG_TYPE", "ROLLUP_CATALOG_URI", "ROLLUP_S3_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(local)
    assert settings.warehouse == "s3://warehouse/"
    conf = session_spark_conf(settings)
    assert conf["spark.sql.catalog.rollup.type"] == "rest"
    assert conf["spark.sql.catalog.rollup.uri"] == "http://iceberg-rest:8181"
    assert conf["spark.sql.catalog.rollup.s3.endpoint"] == "http://minio:9000"
    assert conf["spark.driver.host"] == "rollup-worker"
    assert "iceberg-aws-bundle" in env["ROLLUP_ICEBERG_PACKAGES"]
    assert settings.orchestration.submit_master == "spark://spark-master:7077"
    assert "spark-master" in _compose()["services"]


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="the docker-compose binary is not installed (apt-get install "
                    "docker-compose); the YAML is still checked structurally above")
def test_docker_compose_config_validates_the_file() -> None:
    done = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config",
                           "-q"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_custom_dag_deployments_follow_the_dag() -> None:
    dag = Dag.standard().add("4h", parent="1h", schedule="20 */4 * * *")
    specs = {s.flow_name: s for s in deployment_specs(Settings(dag=dag))}
    assert specs["rollup-4h"].cron == "20 */4 * * *"
    assert specs["rollup-4h"].levels == ("1m", "5m", "30m", "1h", "4h")


def test_served_warehouse_is_absolute_for_hadoop_and_as_given_for_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rollup.cli.orchestrate import served_settings

    for name in ("ROLLUP_CATALOG_TYPE", "ROLLUP_CATALOG_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    local = served_settings(Settings(warehouse="wh"))
    assert local.warehouse == str(tmp_path / "wh")
    rest = Settings(warehouse="analytics",
                    iceberg=CatalogConfig(type="rest", uri="http://127.0.0.1:8181"))
    assert served_settings(rest).warehouse == "analytics"
    assert not (tmp_path / "wh").exists()  # made absolute, not created


def test_calendar_levels_get_prefect_safe_flow_and_slot_names(tmp_path: Path) -> None:
    """A zone or session in a level name ('/', '@', '+') never reaches a Prefect name."""
    pytest.importorskip("prefect")
    from rollup.deploy.orchestration import load_flows

    settings = _settings(tmp_path, """
[levels]
1m = "trades"
1h = "1m"
"1d@America/New_York" = "1h"
"1d@America/Chicago+17:00" = "1h"
[orchestration.schedules]
"1d@America/New_York" = "5 5 * * *"
""")
    specs = {s.timeframe: s for s in deployment_specs(settings) if s.kind == "level"}
    new_york = specs["1d@America/New_York"]
    assert new_york.full_name == "rollup-1d_america_new_york/market_data"
    assert new_york.cron == "5 5 * * *"
    assert specs["1d@America/Chicago+17:00"].flow_name == "rollup-1d_america_chicago_1700"
    assert [level_slot(settings, "1d@America/Chicago+17:00")] == [
        "rollup-rollup-market_data-1d_america_chicago_1700"]
    built = load_flows().build_deployments(list(specs.values()), flow_parameters(settings))
    assert [d.flow_name for d in built] == [s.flow_name for s in specs.values()]
    assert built[2].parameters["timeframe"] == "1d@America/New_York"
