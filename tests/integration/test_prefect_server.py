"""A real Prefect server on 127.0.0.1, `rollup serve`, and the cascade deployment run through it.

Starts `prefect server start` (SQLite in a temporary PREFECT_HOME, telemetry off), runs
`rollup serve` as a subprocess, triggers `rollup-cascade/<ns>` with `prefect deployment run`,
waits for the flow run and checks every level's bars against a direct aggregation of the
trades. A second test runs the embedded default `rollup serve --local` and stops it.
Every wait is bounded; every process started here is stopped here.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rollup.deploy.orchestration import rollup_command

httpx = pytest.importorskip("httpx")
pytest.importorskip("prefect")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER_TIMEOUT = 180.0
RUN_TIMEOUT = 900.0
NEVER_SOON = "0 0 1 1 *"  # real cron schedules that do not fire during the test


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(home: Path, api: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PREFECT_") and k not in ("ROLLUP_CONFIG", "ROLLUP_WAREHOUSE")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               ROLLUP_DRIVER_MEMORY="1g", PYTHONUNBUFFERED="1")
    if api:
        env["PREFECT_API_URL"] = api
    return env


def _wait(what: str, probe: Callable[[], Any], timeout: float,
          alive: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            tail = log.read_text()[-3000:] if log else ""
            raise AssertionError(f"{what}: process exited with {alive.returncode}\n{tail}")
        try:
            value = probe()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(1.0)
    tail = log.read_text()[-3000:] if log else ""
    raise AssertionError(f"{what}: not within {timeout:.0f}s\n{tail}")


def _stop(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM the process group, SIGKILL after `grace` seconds."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 15.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _start(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True)


def _healthy(api: str) -> bool:
    return httpx.get(f"{api}/health", timeout=2.0).status_code == 200


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[str]:
    """`prefect server start` on a free 127.0.0.1 port; yields the API URL."""
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = tmp_path / "server.log"
    server = _start([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                     "--port", str(port)], _env(tmp_path / "server-home"), log, tmp_path)
    try:
        _wait("prefect server /api/health", lambda: _healthy(api), SERVER_TIMEOUT, server, log)
        yield api
    finally:
        _stop(server)


def _deployment(api: str, name: str) -> dict[str, Any] | None:
    answer = httpx.get(f"{api}/deployments/name/{name}", timeout=5.0)
    return answer.json() if answer.status_code == 200 else None


@pytest.mark.spark
def test_serve_runs_the_cascade_deployment_triggered_through_the_api(
        prefect_server: str, tables: Any, warehouse: Path, tmp_path: Path) -> None:
    from rollup.adapters.synthetic import synthetic_trades, write_trades_parquet
    from rollup.ingestion.batch import ingest_file

    api = prefect_server
    ns = tables.namespace
    for file in write_trades_parquet(synthetic_trades(2_000, symbols=2), tmp_path / "trades",
                                     rows_per_file=2_000):
        ingest_file(tables, file)
    config = tmp_path / "rollup.toml"
    schedules = "\n".join(f'{k} = "{NEVER_SOON}"' for k in
                          ("1m", "5m", "30m", "1h", "1d", "quality", "retention"))
    config.write_text("[orchestration]\nretries = 0\ntimeout_seconds = 900\n"
                      f"checks_after_run = false\n[orchestration.schedules]\n{schedules}\n")

    log = tmp_path / "serve.log"
    serve = _start([*rollup_command(), "--warehouse", str(warehouse), "--catalog", tables.catalog,
                    "--namespace", ns, "--config", str(config), "serve"],
                   _env(tmp_path / "serve-home", api), log, tmp_path)
    try:
        cascade = _wait("cascade deployment registered",
                        lambda: _deployment(api, f"rollup-cascade/{ns}"), 180.0, serve, log)
        five = _deployment(api, f"rollup-5m/{ns}")
        assert five is not None
        assert [s["schedule"]["cron"] for s in five["schedules"]] == [NEVER_SOON]
        assert five["schedules"][0]["schedule"]["timezone"] == "UTC"
        assert set(five["tags"]) == {"rollup", f"namespace:{ns}", "level:5m"}
        assert five["parameters"]["timeframe"] == "5m"
        assert cascade["parameters"]["namespace"] == ns

        trigger = subprocess.run(
            [sys.executable, "-m", "prefect", "deployment", "run", f"rollup-cascade/{ns}"],
            env=_env(tmp_path / "cli-home", api), capture_output=True, text=True, timeout=120,
            cwd=tmp_path)
        assert trigger.returncode == 0, trigger.stdout + trigger.stderr
        match = re.search(r"UUID: ([0-9a-f-]{36})", trigger.stdout)
        assert match, trigger.stdout
        run_id = match.group(1)

        def finished() -> dict[str, Any] | None:
            run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=5.0).json()
            state = (run.get("state") or {}).get("type")
            return run if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

        run = _wait("cascade flow run finished", finished, RUN_TIMEOUT, serve, log)
        assert run["state"]["type"] == "COMPLETED", log.read_text()[-5000:]
        assert run["deployment_id"] == cascade["id"]
    finally:
        _stop(serve)

    from tests.oracle import assert_matches_oracle

    for level in tables.dag.order():
        tables.spark.sql(f"REFRESH TABLE {tables.bars(level)}")
    assert assert_matches_oracle(tables, horizon_aware=False) > 0
    assert all(tables.read_bars(level).limit(1).count() for level in tables.dag.order())

    key = f"rollup-cascade-{ns.replace('_', '-')}"
    found = httpx.post(f"{api}/artifacts/filter", timeout=10.0,
                       json={"artifacts": {"key": {"any_": [key]}}}).json()
    assert found and "| 1d | written |" in found[0]["data"]


def test_serve_local_starts_a_loopback_server_serves_and_stops_it(tmp_path: Path) -> None:
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = tmp_path / "local.log"
    home = tmp_path / "home"
    serve = _start([*rollup_command(), "--warehouse", str(tmp_path / "wh"), "--namespace",
                    "local_ns", "serve", "--local", "--port", str(port), "--prefect-home",
                    str(home)], _env(tmp_path / "unused-home"), log, tmp_path)
    try:
        names = _wait(
            "deployments registered on the local server",
            lambda: [d["name"] for d in httpx.post(f"{api}/deployments/filter", json={},
                                                   timeout=5.0).json()] or None,
            SERVER_TIMEOUT, serve, log)
        _wait("all nine deployments (five levels, cascade, quality, retention, maintenance)",
              lambda: len(httpx.post(f"{api}/deployments/filter", json={},
                                     timeout=5.0).json()) == 9, 60.0, serve, log)
        assert set(names) == {"local_ns"}
        assert (home / "prefect.db").is_file()  # SQLite under --prefect-home
        listening = [c for c in _connections(port)]
        assert listening and all(addr == "127.0.0.1" for addr in listening)
    finally:
        _stop(serve, grace=60.0)
    assert serve.returncode is not None
    with pytest.raises(httpx.HTTPError):  # the server went down with `rollup serve`
        httpx.get(f"{api}/health", timeout=2.0)


def _connections(port: int) -> list[str]:
    """Local addresses listening on `port` (from /proc/net/tcp and tcp6)."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if int(hex_port, 16) != port or state != "0A":  # 0A = LISTEN
                continue
            if width == 8:
                found.append(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
            else:
                found.append("::" if int(addr, 16) == 0 else addr)
    return found
