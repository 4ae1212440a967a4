"""A real Spark standalone cluster (a master and two workers on 127.0.0.1) runs the cascade.

The same synthetic trades go into two namespaces of one shared local warehouse. `rollup
submit` runs the cascade on the cluster for the first; the plain spark-submit command
documented in docs/deploy.md runs it for the second. Every level's bars of both must equal
the independent pure-Python oracle (tests/oracle.py), to the last decimal.

Kept cheap (it is among the slowest tests): a small two days of trades, both jobs at once
with one core each (the cluster's spark-defaults.conf also turns the UI off and keeps
shuffles small), and bounded timeouts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.oracle import assert_matches_oracle

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.spark]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "deploy.md"
MARKER = "<!-- tested by tests/integration/test_cluster.py -->"
WORKERS = 2
START_TIMEOUT = 90  # seconds for the master and workers to come up
JOB_TIMEOUT = 600  # seconds for both jobs, run at once (2 shared cores, a loaded CI machine)
SPARK_DEFAULTS = "spark.ui.enabled false\nspark.sql.shuffle.partitions 2\nspark.cores.max 1\n"
"""The test cluster's spark-defaults.conf: what a site sets once, for both jobs alike."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spark_bin() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin"


def _cluster_env(conf_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_CONF_DIR": str(conf_dir),
        "SPARK_LOCAL_IP": "127.0.0.1",  # every daemon, driver and executor binds 127.0.0.1
        "SPARK_DAEMON_MEMORY": "256m",
        "PYSPARK_PYTHON": sys.executable,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{_spark_bin()}{os.pathsep}"
                f"{os.environ.get('PATH', '')}",
    }


def _master_state(ui_port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as response:
        return json.loads(response.read())


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen) -> None:
    """Stop a daemon started by this test and its children (executors), bounded."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


class Cluster:
    def __init__(self, url: str, ui_port: int, logs: Path, env: dict[str, str]) -> None:
        self.url, self.ui_port, self.logs, self.env = url, ui_port, logs, env

    def state(self) -> dict:
        return _master_state(self.ui_port)

    def logs_tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{_tail(p)}" for p in sorted(self.logs.glob("*.log")))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A standalone master and two 1-core, 1 GiB workers on 127.0.0.1; always stopped."""
    began = time.monotonic()
    base = tmp_path_factory.mktemp("cluster")
    (base / "conf").mkdir()
    (base / "conf" / "spark-defaults.conf").write_text(SPARK_DEFAULTS)
    spark_class = str(_spark_bin() / "spark-class")
    env = _cluster_env(base / "conf")
    port, ui_port = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    processes: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        with open(base / f"{name}.log", "wb") as log:
            processes.append(subprocess.Popen(
                [spark_class, *args], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, cwd=base, start_new_session=True))

    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
              "--port", str(port), "--webui-port", str(ui_port))
        for n in range(WORKERS):
            start(f"worker{n}", "org.apache.spark.deploy.worker.Worker", url,
                  "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
                  "--webui-port", str(_free_port()), "--work-dir", str(base / f"work{n}"))
        deadline = time.monotonic() + START_TIMEOUT
        alive = 0
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in processes):
                break
            try:
                alive = _master_state(ui_port).get("aliveworkers", 0)
            except OSError:
                alive = 0
            if alive == WORKERS:
                break
            time.sleep(1)
        cluster = Cluster(url, ui_port, base, env)
        if alive != WORKERS:
            pytest.fail(f"the cluster did not start: {alive} of {WORKERS} workers registered "
                        f"within {START_TIMEOUT}s\n{cluster.logs_tail()}")
        _report("cluster start", began)
        yield cluster
    finally:
        for process in reversed(processes):
            _stop(process)


def documented_command() -> str:
    """The plain spark-submit command of docs/deploy.md (the shell block after MARKER)."""
    text = DOCS.read_text()
    assert MARKER in text, f"{DOCS} lost the tested command block"
    match = re.search(r"```(?:bash|sh)\n(.*?)```", text[text.index(MARKER):], re.S)
    assert match is not None
    return match.group(1)


def _start(cmd: list[str], env: dict[str, str], cwd: Path,
           log: Path) -> tuple[subprocess.Popen, Path]:
    """Start a job in its own process group, its output to `log` (no pipe to fill up)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return process, log


def _report(phase: str, began: float) -> None:
    print(f"[cluster test] {phase}: {time.monotonic() - began:.1f}s", file=sys.stderr)


def test_cluster_bars_equal_the_oracle(cluster: Cluster, spark, warehouse: Path,
                                       tmp_path: Path) -> None:
    from rollup.adapters.synthetic import synthetic_trades, write_trades_parquet
    from rollup.ingestion.batch import ingest_file
    from rollup.storage.tables import Tables

    files = write_trades_parquet(synthetic_trades(1500, symbols=2, days=2), tmp_path / "trades")
    suffix = uuid.uuid4().hex[:6]
    names = {kind: f"c_{kind}_{suffix}" for kind in ("submit", "plain")}
    tables = {kind: Tables(spark, "rollup", name) for kind, name in names.items()}
    began = time.monotonic()
    for each in tables.values():
        each.create_all()
    ingest_file(tables["submit"], files[0])
    trades = spark.table(tables["submit"].trades)
    assert trades.count() == 1500
    trades.writeTo(tables["plain"].trades).append()
    _report("local: create and ingest", began)

    # Both jobs at once, one core each (the cluster has two): `rollup submit`, whose jars,
    # catalog conf and job script rollup assembles, and the plain spark-submit line of
    # docs/deploy.md, run as written by bash.
    cli = [sys.executable, "-c", "import sys; from rollup.cli import main; sys.exit(main())",
           "--catalog", "rollup", "--namespace", names["submit"], "--warehouse", str(warehouse),
           "submit", "--master", cluster.url, "--driver-memory", "768m",
           "--executor-memory", "512m", "--python", sys.executable,
           "--trades-per-run", "1500", "--total-executor-cores", "1", "run"]
    plain = ["bash", "-euo", "pipefail", "-c", documented_command()]
    env_plain = {**cluster.env, "SPARK_MASTER": cluster.url, "WAREHOUSE": str(warehouse),
                 "ROLLUP_NAMESPACE": names["plain"], "SPARK_EXECUTOR_MEMORY": "512m",
                 "SPARK_DRIVER_MEMORY": "768m"}
    began = time.monotonic()
    jobs = {"rollup submit": _start(cli, cluster.env, tmp_path, tmp_path / "submit.log"),
            "documented spark-submit": _start(plain, env_plain, ROOT, tmp_path / "plain.log")}
    logs = {}
    for what, (process, log) in jobs.items():
        try:
            process.wait(timeout=max(1.0, JOB_TIMEOUT - (time.monotonic() - began)))
        except subprocess.TimeoutExpired:
            for other, _ in jobs.values():
                _stop(other)
            pytest.fail(f"{what} did not finish within {JOB_TIMEOUT}s:\n{_tail(log, 40)}")
        logs[what] = log.read_text(errors="replace")
        assert process.returncode == 0, f"{what} failed:\n{logs[what][-4000:]}"
    assert "1d:" in logs["rollup submit"]  # the cascade reached the top level
    _report("cluster: rollup submit and documented spark-submit", began)

    # Both ran on the cluster: two finished applications, each with executors on the workers.
    apps = cluster.state()["completedapps"]
    assert len(apps) == 2 and all(app["state"] == "FINISHED" for app in apps), apps
    for app in apps:
        assert list(cluster.logs.glob(f"work*/{app['id']}/*/stderr")), app

    began = time.monotonic()
    for kind, each in tables.items():
        for level in each.dag.order():
            spark.sql(f"REFRESH TABLE {each.bars(level)}")  # written by another process
        assert assert_matches_oracle(each) > 0, kind
    _report("oracle comparison", began)
