"""Security: injection payloads change nothing, secrets never reach output or logs, servers
listen on 127.0.0.1 only, and environment errors are one line that says what to do."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollup.cli import main
from rollup.settings.secrets import (
    MASK,
    SECRET_KEY_PATTERN,
    RedactingFilter,
    Secret,
    is_secret_key,
    redact,
    redacted_repr,
    secret_env_values,
)
from rollup.storage.tables import REJECTED_TABLE, Tables

PAYLOADS = [
    "x' OR '1'='1",
    "'; DROP TABLE rollup.market_data.trades; --",
    "AAA` OR 1=1 --",
    'AAA" OR ""="',
    "AAA%' --",
    "AAA'); DELETE FROM trades WHERE ('1'='1",
    "*",
]
RUN_CLI = "import sys; from rollup.cli import main; sys.exit(main(sys.argv[1:]))"


# --- redaction (pure) ----------------------------------------------------------------------

def test_redact_text_masks_secret_keys_uris_and_known_values() -> None:
    text = ("spark.hadoop.fs.s3a.secret.key=abc123 token: \"tok-9\" "
            "uri s3://AKIA:hunter22@bucket/wh AWS_SECRET_ACCESS_KEY=zzzz9 "
            "'password': 'pw-1' value sekrit-42 kept warehouse=/tmp/wh")
    out = redact(text, known=["sekrit-42"])
    for secret in ("abc123", "tok-9", "hunter22", "zzzz9", "pw-1", "sekrit-42"):
        assert secret not in out
    assert "s3://***@bucket/wh" in out  # the whole user info: an access key id is secret too
    assert "warehouse=/tmp/wh" in out and "kept" in out


def test_redact_mapping_nested() -> None:
    conf = {"spark.sql.catalog.rollup.token": "t-1", "uri": "http://u:p4ss@host/x",
            "s3": {"secret-access-key": "k-2", "region": "eu"}, "retries": 3,
            "credential": "id:secret"}
    out = redact(conf)
    assert out == {"spark.sql.catalog.rollup.token": MASK, "uri": f"http://{MASK}@host/x",
                   "s3": {"secret-access-key": MASK, "region": "eu"}, "retries": 3,
                   "credential": MASK}
    assert conf["s3"]["secret-access-key"] == "k-2"  # the input is not changed


# One pattern for every key that names a secret: the environment variables, TOML keys and
# Spark/Iceberg conf keys that either former redaction system (rollup.settings.secrets and the one
# in
# rollup.settings.catalogs) treated as secret.
SECRET_KEYS = [
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "ROLLUP_CATALOG_TOKEN",
    "ROLLUP_CATALOG_CREDENTIAL", "ROLLUP_S3_ACCESS_KEY_ID", "ROLLUP_S3_SECRET_ACCESS_KEY",
    "PGPASSWORD", "DB_PASSWD", "credential", "api_key", "API-KEY", "private_key",
    "session.key", "PREFECT_API_AUTH_STRING", "Authorization",
    "spark.sql.catalog.c.credential", "spark.sql.catalog.c.token",
    "spark.sql.catalog.c.s3.secret-access-key", "spark.sql.catalog.c.s3.access-key-id",
    "spark.sql.catalog.c.s3.session-token", "spark.hadoop.fs.s3a.access.key",
    "spark.hadoop.fs.s3a.secret.key", "x.password",
]
PLAIN_KEYS = [
    "warehouse", "ROLLUP_NAMESPACE", "uri", "spark.sql.catalog.c.uri",
    "spark.sql.catalog.c.warehouse", "spark.sql.catalog.c.s3.endpoint", "spark.jars",
    "spark.sql.catalog.c.rest.auth.type", "spark.sql.catalog.c.oauth2-server-uri",
    "ROLLUP_S3_ENDPOINT", "author",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)
    assert redact({key: "v-1"}) == {key: MASK}
    assert redact(f"{key}=v-1") == f"{key}={MASK}"


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_plain_keys(key: str) -> None:
    assert not is_secret_key(key)
    assert redact({key: "v-1"}) == {key: "v-1"}


def test_spark_gets_the_same_pattern() -> None:
    """spark.redaction.regex is the pattern itself: Java reads (?i) and the same classes."""
    import re

    java_like = re.compile(SECRET_KEY_PATTERN)
    assert all(java_like.search(k) for k in SECRET_KEYS)
    assert not any(java_like.search(k) for k in PLAIN_KEYS)


def test_one_marker_everywhere() -> None:
    assert MASK == "***"
    assert repr(Secret("hunter2")) == str(Secret("hunter2")) == f"Secret({MASK!r})"
    assert redacted_repr({"token": "t-1", "uri": "https://u:p@h/x"}) == \
        repr({"token": MASK, "uri": f"https://{MASK}@h/x"})


def test_catalogs_has_no_redaction_of_its_own() -> None:
    import rollup.settings.catalogs as catalogs

    assert "redact" not in catalogs.__all__ and "is_secret_key" not in catalogs.__all__
    assert not hasattr(catalogs, "REDACTED") and not hasattr(catalogs, "REDACTION_REGEX")


def test_log_filter_masks_env_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLUP_TEST_PASSWORD", "pa55-word-77")
    assert "pa55-word-77" in secret_env_values()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "connecting with %s and %s",
                               ("pa55-word-77", "secret=abc"), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == f"connecting with {MASK} and secret={MASK}"


# --- injection: filters are values, names are validated --------------------------------------

@pytest.fixture(scope="module")
def populated(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tables]:
    """A namespace with trades, a quarantined row and 1m bars."""
    from rollup.incremental.runner import run_cascade
    from rollup.ingestion.batch import ingest_file

    tables = Tables(spark, "rollup", f"sec_{uuid.uuid4().hex[:8]}")
    tables.create_all()
    path = tmp_path_factory.mktemp("sec") / "trades.csv"
    path.write_text("exchange,symbol,trade_id,ts,price,quantity\n"
                    "EX,AAA,1,2024-01-02T00:00:01Z,100,1\n"
                    "EX,AAA,2,2024-01-02T00:01:01Z,101,2\n"
                    "EX,AAA,3,2024-01-02T00:01:02Z,-1,2\n")
    ingest_file(tables, path)
    run_cascade(tables, up_to="1m")
    yield tables


def state(tables: Tables) -> dict[str, Any]:
    """Namespaces, tables, row counts and snapshots: everything an injection could change."""
    spark = tables.spark
    result: dict[str, Any] = {
        "namespaces": sorted(r[0] for r in spark.sql("SHOW NAMESPACES IN rollup").collect()),
    }
    names = [tables.trades_table, REJECTED_TABLE, *[lv.table for lv in tables.dag.order()]]
    for name in names:
        full = tables.name(name)
        snaps = spark.table(f"{full}.snapshots").select("snapshot_id").collect()
        result[name] = (spark.table(full).count(), sorted(r[0] for r in snaps))
    return result


def cli(tables: Tables, warehouse: Path, *args: str) -> int:
    return main(["--catalog", "rollup", "--namespace", tables.namespace, "--warehouse",
                 str(warehouse), *args])


@pytest.mark.spark
def test_injection_in_filters_returns_nothing_and_changes_nothing(
        populated: Tables, warehouse: Path, capsys: Any) -> None:
    before = state(populated)
    # positive control: the real values do return rows
    assert cli(populated, warehouse, "bars", "1m", "--symbol", "AAA", "--format", "csv") == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3  # header + 2 bars
    assert cli(populated, warehouse, "rejects", "--reason", "price", "--format", "csv") == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2

    for payload in PAYLOADS:
        for flag in ("--symbol", "--exchange"):
            assert cli(populated, warehouse, "bars", "1m", flag, payload, "--format", "csv") == 0
            lines = capsys.readouterr().out.strip().splitlines()
            assert lines[:1] and lines[0].startswith("exchange,symbol") and len(lines) == 1, (
                flag, payload)
        for flag in ("--start", "--end"):
            assert cli(populated, warehouse, "bars", "1m", flag, payload) == 2
            assert f"invalid {flag[2:]}" in capsys.readouterr().err
        for flag in ("--file", "--reason", "--ingest-id"):
            assert cli(populated, warehouse, "rejects", flag, payload) == 0
            assert "(no rejected rows)" in capsys.readouterr().out, (flag, payload)
        assert cli(populated, warehouse, "bars", payload) == 2  # the timeframe argument
        assert "invalid timeframe" in capsys.readouterr().err
    assert state(populated) == before


@pytest.mark.spark
def test_injection_in_name_options_is_refused(populated: Tables, warehouse: Path,
                                              tmp_path: Path, capsys: Any) -> None:
    before = state(populated)
    for payload in PAYLOADS:
        for flag in ("--namespace", "--catalog"):
            code = main([flag, payload, "--warehouse", str(warehouse), "status"])
            err = capsys.readouterr().err
            assert code == 2 and "rollup: error: invalid" in err, (flag, payload, err)
        quoted = payload.replace("\\", "\\\\").replace('"', '\\"')
        for key in ("namespace", "catalog", "trades_table"):
            config = tmp_path / "rollup.toml"
            config.write_text(f'{key} = "{quoted}"\n')
            code = main(["--config", str(config), "--warehouse", str(warehouse), "init"])
            err = capsys.readouterr().err
            assert code == 2 and "rollup: error: invalid" in err, (key, payload, err)
        config = tmp_path / "source.toml"
        config.write_text(f'[source]\ntable = "rollup.{populated.namespace}.{quoted}"\n')
        code = main(["--config", str(config), "--warehouse", str(warehouse), "init"])
        assert code == 2 and "rollup: error: invalid" in capsys.readouterr().err
    assert state(populated) == before


@pytest.mark.spark
def test_file_name_payload_is_just_a_name(populated: Tables, tmp_path: Path) -> None:
    from rollup.ingestion.batch import ingest_file

    before = state(populated)
    path = tmp_path / "x'; DROP TABLE trades; --[1]*.csv"
    path.write_text("exchange,symbol,trade_id,ts,price,quantity\n"
                    "EX,AAA,1,2024-01-02T00:00:01Z,100,1\n"
                    "EX,AAA,2,2024-01-02T00:00:02Z,abc,1\n")
    report = ingest_file(populated, path)
    assert (report.duplicates, report.quarantined) == (1, 1)
    rows = populated.spark.table(populated.name(REJECTED_TABLE)).select("source_file").collect()
    assert str(path) in {r[0] for r in rows}
    after = state(populated)
    assert after["namespaces"] == before["namespaces"]
    assert after["trades"] == before["trades"]  # nothing new, nothing dropped


@pytest.mark.spark
def test_missing_namespace_is_one_line(populated: Tables, warehouse: Path, capsys: Any) -> None:
    code = main(["--catalog", "rollup", "--namespace", "no_such_ns", "--warehouse",
                 str(warehouse), "bars", "1m"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("rollup")]
    assert code == 2
    assert err == ["rollup: error: no table bars_1m in namespace 'no_such_ns' of catalog "
                   "'rollup': run `rollup init` and `rollup run`, or check --warehouse and "
                   "--namespace"]


@pytest.mark.spark
def test_error_output_masks_env_secrets(populated: Tables, warehouse: Path, capsys: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"S3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    # a secret pasted into the wrong flag must not be echoed back in the error
    assert cli(populated, warehouse, "bars", "1m", "--start", secret) == 2
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err
    assert f"invalid start '{MASK}'" in captured.err


# --- servers bind 127.0.0.1 ------------------------------------------------------------------

def _listening(pid: int) -> list[str]:
    """Local addresses of the TCP sockets process `pid` listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # 0A = LISTEN
                found.append(parts[1])
    return found


def _is_loopback(hex_address: str) -> bool:
    host = hex_address.split(":")[0]
    if len(host) == 8:  # IPv4, little-endian: 127.x.x.x has 7F in the last byte
        return host.endswith("7F")
    # IPv6 words are little-endian too: ::1, or ::ffff:127.x.x.x (IPv4-mapped)
    return host == "00000000000000000000000001000000" or (
        host.startswith("0000000000000000FFFF0000") and host.endswith("7F"))


@pytest.mark.spark
def test_spark_and_py4j_listen_on_loopback_only(spark: Any) -> None:
    assert spark.conf.get("spark.driver.bindAddress") == "127.0.0.1"
    jvm_pid = int(spark.sparkContext._jvm.ProcessHandle.current().pid())
    addresses = _listening(jvm_pid) + _listening(os.getpid())
    assert addresses, "the driver JVM should listen on at least one port"
    assert all(_is_loopback(a) for a in addresses), addresses


# --- environment errors: one line that says what to do -----------------------------------------

def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN_CLI, *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


def _error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return [line for line in done.stderr.splitlines() if line.startswith("rollup: error:")]


def test_missing_java_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "JAVA_HOME": "/nonexistent"}
    done = _run(["--warehouse", str(tmp_path / "wh"), "status"], env, tmp_path)
    assert done.returncode == 1
    assert _error_lines(done) == ["rollup: error: JAVA_HOME=/nonexistent has no bin/java: "
                                  "point it at a Java 17 install or unset it"]
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path)  # no java anywhere on it
    done = _run(["--warehouse", str(tmp_path / "wh"), "status"], env, tmp_path)
    assert done.returncode == 1
    (line,) = _error_lines(done)
    assert "Java 17 not found: install OpenJDK 17" in line


def test_unwritable_warehouse_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = _run(["--warehouse", str(blocker / "wh"), "status"], dict(os.environ), tmp_path)
    assert done.returncode == 1
    (line,) = _error_lines(done)
    assert f"cannot create warehouse directory {blocker / 'wh'}" in line
    assert "pass --warehouse (or set ROLLUP_WAREHOUSE) to a writable directory" in line


@pytest.mark.slow
def test_wrong_catalog_location_is_one_line(tmp_path: Path) -> None:
    done = _run(["--warehouse", "foo://nowhere/wh", "status"], dict(os.environ), tmp_path)
    assert done.returncode == 1
    (line,) = _error_lines(done)
    assert "cannot use Iceberg catalog 'rollup' at foo://nowhere/wh" in line
    assert "check --warehouse" in line
    # a REST catalog URI nobody answers on: still one line
    env = {**os.environ, "ROLLUP_CATALOG_TYPE": "rest",
           "ROLLUP_CATALOG_URI": "http://127.0.0.1:9/api/catalog"}
    done = _run(["--warehouse", "analytics", "status"], env, tmp_path)
    assert done.returncode != 0
    (line,) = _error_lines(done)
    assert "catalog" in line


# --- secrets never appear in output or logs -----------------------------------------------------

_SECRETS_SCRIPT = r"""
import os, sys
from rollup.cli import main
warehouse, data, config = sys.argv[1:4]
common = ["-v", "--warehouse", warehouse, "--config", config]
for args in (["init"], ["ingest", data], ["run", "--timeframe", "5m"], ["status"],
             ["bars", "1m", "--format", "csv"], ["rejects"],
             ["bars", "1m", "--start", os.environ["AWS_SECRET_ACCESS_KEY"]]):
    print("exit", args[0], main(common + args), flush=True)
"""


@pytest.mark.slow
def test_secrets_never_in_cli_output_or_logs(tmp_path: Path) -> None:
    secrets = {name: f"{name.lower()}-{uuid.uuid4().hex}" for name in
               ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "ROLLUP_TEST_PASSWORD")}
    conf_secret = f"conf-{uuid.uuid4().hex}"
    config = tmp_path / "rollup.toml"
    config.write_text(f'[spark]\n"spark.hadoop.fs.s3a.secret.key" = "{conf_secret}"\n')
    data = tmp_path / "trades.csv"
    data.write_text("exchange,symbol,trade_id,ts,price,quantity\n"
                    "EX,AAA,1,2024-01-02T00:00:01Z,100,1\n"
                    "EX,AAA,2,2024-01-02T00:00:02Z,-1,1\n")
    env = {**os.environ, **secrets, "ROLLUP_SPARK_LOG_LEVEL": "INFO"}
    done = subprocess.run([sys.executable, "-c", _SECRETS_SCRIPT, str(tmp_path / "wh"),
                           str(data), str(config)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    exits = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("exit ")]
    assert exits == [["init", "0"], ["ingest", "0"], ["run", "0"], ["status", "0"],
                     ["bars", "0"], ["rejects", "0"], ["bars", "2"]]
    assert f"invalid start '{MASK}'" in done.stderr  # the redaction was exercised
    for value in (*secrets.values(), conf_secret):
        assert value not in output
    for log in (tmp_path / "wh").rglob("*"):  # nor in anything written to the warehouse
        if log.is_file() and log.suffix in (".json", ".text", ".log", ".txt", ".crc", ""):
            body = log.read_bytes()
            assert not any(v.encode() in body for v in (*secrets.values(), conf_secret)), log
