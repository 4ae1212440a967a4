"""Orchestration commands: `deployments` (list them) and `serve` (register and run them).

`rollup serve --local` is the embedded default: it starts a Prefect server (SQLite under
PREFECT_HOME, bound to 127.0.0.1, telemetry off) and serves the deployments against it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollup.cli.common import progress, settings_from
from rollup.errors import ConfigError, OrchestrationError

if TYPE_CHECKING:
    from rollup.settings.config import Settings

DEFAULT_PORT = 4200
SERVER_START_TIMEOUT = 90.0
API_TIMEOUT = 30.0


def register(sub: Any) -> None:
    p = sub.add_parser("deployments",
                       help="list the Prefect deployments: <flow>/<deployment> and cron (UTC)")
    p.add_argument("--json", action="store_true", help="print every field as JSON")
    p.set_defaults(handler=cmd_deployments)

    p = sub.add_parser("serve", help="register the deployments with the Prefect API at "
                       "PREFECT_API_URL and run them until interrupted")
    p.add_argument("--local", action="store_true",
                   help="first start a local Prefect server (SQLite, 127.0.0.1, telemetry off)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port of the --local server (default {DEFAULT_PORT})")
    p.add_argument("--prefect-home",
                   help="directory of the --local server's database and logs "
                   "(default $PREFECT_HOME or ~/.prefect)")
    p.add_argument("--limit", type=int, help="at most this many flow runs at once")
    p.set_defaults(handler=cmd_serve)


def cmd_deployments(args: argparse.Namespace) -> int:
    import attrs

    from rollup.deploy.orchestration import deployment_specs

    specs = deployment_specs(settings_from(args))
    if args.json:
        print(json.dumps([attrs.asdict(s) | {"full_name": s.full_name} for s in specs],
                         indent=2))
    else:
        for spec in specs:
            print(spec.describe())
    return 0


def _config_path(args: argparse.Namespace) -> str | None:
    """The config file load_settings used, so flow runs read the same one."""
    from rollup.settings.config import config_path

    path = config_path(args.config)
    return str(Path(path).absolute()) if path else None


def check_api(url: str, timeout: float | None = None) -> None:
    """Raise OrchestrationError unless the Prefect API at `url` answers /health in time."""
    import httpx

    deadline = time.monotonic() + (API_TIMEOUT if timeout is None else timeout)
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url.rstrip("/") + "/health", timeout=2.0)
            if answer.status_code == 200:
                return
            last = f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.5)
    raise OrchestrationError(
        f"the Prefect API at {url} did not answer /health ({last}): start a server "
        "(prefect server start) or use `rollup serve --local`"
    )


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def server_env(home: Path, port: int) -> dict[str, str]:
    """Environment of the local Prefect server: SQLite under `home`, no telemetry."""
    inherited = {k: v for k, v in os.environ.items()
                 if k != "PREFECT_API_DATABASE_CONNECTION_URL"}
    return {
        **inherited,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
    }


@contextmanager
def local_server(home: Path, port: int) -> Iterator[str]:
    """Run `prefect server start` on 127.0.0.1:`port` until the block ends; yields its API URL."""
    if not 0 < port < 65536:
        raise ConfigError(f"invalid --port {port}: expected 1-65535")
    if _port_in_use(port):
        raise ConfigError(f"port {port} on 127.0.0.1 is already in use: pass another --port")
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "rollup-server.log"
    url = f"http://127.0.0.1:{port}/api"
    progress(f"starting a local Prefect server at http://127.0.0.1:{port} "
             f"(data in {home}, log {log_path}) ...")
    with open(log_path, "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
            env=server_env(home, port), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if server.poll() is not None:
                raise OrchestrationError(
                    f"the local Prefect server exited with status {server.returncode}; "
                    f"see {log_path}"
                )
            try:
                check_api(url, timeout=1.0)
                break
            except OrchestrationError:
                if time.monotonic() > deadline:
                    raise OrchestrationError(
                        f"the local Prefect server did not answer within "
                        f"{SERVER_START_TIMEOUT:.0f}s; see {log_path}") from None
        yield url
    finally:
        _stop_group(server)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it has children), SIGKILL after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def served_settings(settings: Settings) -> Settings:
    """`settings` with a Hadoop warehouse made absolute, since flow runs pass it on as a
    parameter; a REST catalog's warehouse (a name or URI) is left as given."""
    import attrs

    from rollup.settings.catalogs import HADOOP
    from rollup.settings.config import warehouse_location

    if settings.iceberg.type != HADOOP:
        return settings
    return attrs.evolve(settings, warehouse=warehouse_location(settings.warehouse))


def _serve(args: argparse.Namespace, url: str) -> int:
    from rollup.deploy.orchestration import (
        deployment_specs,
        flow_parameters,
        level_slots,
        load_flows,
    )

    settings = served_settings(settings_from(args))
    specs = deployment_specs(settings)
    check_api(url)
    flows = load_flows()
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        deployments = flows.build_deployments(specs, flow_parameters(settings,
                                                                     _config_path(args)))
        flows.ensure_slots(level_slots(settings))
        progress(f"serving {len(specs)} deployments at {url} (warehouse {settings.warehouse}); "
                 "Ctrl-C stops")
        for spec in specs:
            progress(f"  {spec.describe()}")
        flows.serve(deployments, limit=args.limit)
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"invalid --limit {args.limit}: expected a number >= 1")
    if not args.local:
        url = os.environ.get("PREFECT_API_URL")
        if not url:
            raise ConfigError(
                "PREFECT_API_URL is not set: export the URL of a Prefect server "
                "(e.g. http://127.0.0.1:4200/api) or use `rollup serve --local`"
            )
        return _serve(args, url)
    home = Path(args.prefect_home or os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
    # SIGTERM before Prefect's runner installs its own handler must still stop the server.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with local_server(home.absolute(), args.port) as url:
        os.environ["PREFECT_API_URL"] = url  # flow-run subprocesses inherit it
        os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        return _serve(args, url)
