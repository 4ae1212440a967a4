"""Tests for the spark-submit jobs, `rollup submit` (rollup.deploy.submit) and
rollup.spark.sizing."""

from __future__ import annotations

import json
import os
import runpy
import shlex
import stat
import sys
from pathlib import Path

import pytest

from rollup.cli import main
from rollup.cli.job import job_argv
from rollup.deploy.submit import (
    JOB_SCRIPT,
    Submission,
    build_submission,
    launcher,
    parse_conf,
    read_properties,
    spark_submit_path,
)
from rollup.errors import ConfigError, EngineError
from rollup.settings.config import Settings, load_settings
from rollup.spark.sizing import (
    BYTES_PER_TRADE,
    MAX_SHUFFLE_PARTITION_BYTES,
    MIB,
    Sizing,
    suggest_sizing,
    suggest_spark_conf,
)

ROOT = Path(__file__).resolve().parent.parent
JOBS = ROOT / "jobs"
MASTER = "spark://127.0.0.1:7077"
JOB_COMMANDS = {
    "create_tables.py": "init",
    "run_cascade.py": "run",
    "backfill.py": "backfill",
    "check.py": "check",
    "retention.py": "retention",
    "maintain.py": "maintain",
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch) -> None:
    for var in list(os.environ):
        if var.startswith(("ROLLUP_CATALOG", "ROLLUP_S3_", "ROLLUP_ICEBERG_")) or var in (
            "ROLLUP_WAREHOUSE", "ROLLUP_NAMESPACE", "ROLLUP_CONFIG", "ROLLUP_SPARK_MASTER",
            "SPARK_HOME", "SPARK_CONF_DIR", "PYSPARK_GATEWAY_PORT",
        ):
            monkeypatch.delenv(var)


# ---------------------------------------------------------------- job scripts


@pytest.mark.parametrize(
    ("argv", "command", "expected"),
    [
        (["--timeframe", "5m", "--warehouse", "/w"], "run",
         ["--warehouse", "/w", "run", "--timeframe", "5m"]),
        (["--start", "2024-01-01", "--namespace=n", "--end", "2024-01-02", "--catalog", "c"],
         "backfill",
         ["--namespace", "n", "--catalog", "c", "backfill", "--start", "2024-01-01", "--end",
          "2024-01-02"]),
        (["--config", "r.toml", "-v", "--strict"], "check",
         ["--config", "r.toml", "--verbose", "check", "--strict"]),
        ([], "init", ["init"]),
        (["--warehouse", "/w", "run", "--full"], None, ["--warehouse", "/w", "run", "--full"]),
    ],
)
def test_job_argv_puts_global_options_first(argv, command, expected) -> None:
    assert job_argv(argv, command) == expected


def test_job_argv_does_not_take_abbreviations() -> None:
    # `--name` must not be read as `--namespace`: it belongs to the command.
    assert job_argv(["--name", "x"], "run") == ["run", "--name", "x"]


@pytest.mark.parametrize(("script", "command"), sorted(JOB_COMMANDS.items()))
def test_each_job_calls_its_command(script: str, command: str, monkeypatch) -> None:
    calls = []

    def fake_job_main(argv, command=None):
        calls.append((list(argv), command))
        return 7

    monkeypatch.setattr("rollup.cli.job.job_main", fake_job_main)
    monkeypatch.setattr(sys, "argv", [script, "--warehouse", "/w", "--x"])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(JOBS / script), run_name="__main__")
    assert info.value.code == 7  # the job's exit code is the process's
    assert calls == [(["--warehouse", "/w", "--x"], command)]


def test_jobs_are_thin() -> None:
    for path in JOBS.glob("*.py"):
        code = [line for line in path.read_text().splitlines()
                if line.strip() and not line.startswith((" ", '"""', "#"))]
        assert len(path.read_text().splitlines()) < 20, path
        assert "from rollup.cli.job import job_main" in code, path


def test_the_library_never_imports_the_cli() -> None:
    """The CLI (and the job entry point in it) imports the library, never the reverse."""
    import ast

    src = ROOT / "src" / "rollup"
    offenders = []
    for path in src.rglob("*.py"):
        if path.is_relative_to(src / "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):  # `from rollup import cli` counts too
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
            else:
                continue
            offenders += [f"{path.relative_to(src)}: {n}" for n in names
                          if n == "rollup.cli" or n.startswith("rollup.cli.")]
    assert offenders == []


def test_generic_job_is_the_submit_launcher(tmp_path: Path) -> None:
    assert (JOBS / "rollup_job.py").read_text() == JOB_SCRIPT
    path = launcher(tmp_path)
    assert path.read_text() == JOB_SCRIPT
    mtime = path.stat().st_mtime_ns
    assert launcher(tmp_path) == path and path.stat().st_mtime_ns == mtime  # not rewritten


# ---------------------------------------------------------------- building the command


def _loaded(warehouse: str) -> Settings:
    """Settings as commands read them: the environment (set by each test) over defaults."""
    return load_settings(warehouse=warehouse)


def _settings(tmp_path: Path, **kw) -> Settings:
    return Settings(warehouse=str(tmp_path / "wh"), namespace="ns1", **kw)


def test_submission_command(tmp_path: Path) -> None:
    sub = build_submission(_settings(tmp_path), MASTER, ["run", "--timeframe", "1h"],
                           executor_memory="512m", total_executor_cores=2,
                           python="/usr/bin/python3", app="job.py")
    argv = sub.argv()
    assert argv[0].endswith("spark-submit") and Path(argv[0]).is_file()
    assert argv[argv.index("--master") + 1] == MASTER
    jars = argv[argv.index("--jars") + 1].split(",")
    assert any("iceberg-spark-runtime-3.5_2.12" in j for j in jars)
    assert any("jackson-databind" in j for j in jars)
    confs = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--conf")
    assert confs["spark.sql.catalog.rollup.type"] == "hadoop"
    assert confs["spark.sql.catalog.rollup.warehouse"] == str(tmp_path / "wh")
    assert confs["spark.sql.session.timeZone"] == "UTC"
    assert confs["spark.pyspark.driver.python"] == sys.executable
    assert confs["spark.pyspark.python"] == "/usr/bin/python3"
    assert argv[argv.index("--executor-memory") + 1] == "512m"
    assert argv[argv.index("--total-executor-cores") + 1] == "2"
    app = argv.index("job.py")
    assert argv[app + 1:] == ["--warehouse", str(tmp_path / "wh"), "--catalog", "rollup",
                              "--namespace", "ns1", "run", "--timeframe", "1h"]


def test_submission_conf_precedence(tmp_path: Path) -> None:
    settings = _settings(tmp_path, spark_conf={"spark.sql.shuffle.partitions": "8",
                                               "spark.executor.memoryOverhead": "1g"})
    sub = build_submission(settings, MASTER, ["run"],
                           sizing={"spark.sql.shuffle.partitions": "64"},
                           conf={"spark.executor.memoryOverhead": "2g"},
                           jars=["/x/extra.jar"], packages=["g:a:1"], app="job.py")
    assert sub.conf["spark.sql.shuffle.partitions"] == "64"  # sizing over rollup.toml
    assert sub.conf["spark.executor.memoryOverhead"] == "2g"  # --conf over everything
    assert sub.jars[-1] == "/x/extra.jar" and sub.packages == ("g:a:1",)


def test_maven_route(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ROLLUP_ICEBERG_PACKAGES",
                       "org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.10.2")
    monkeypatch.setenv("ROLLUP_S3_ENDPOINT", "http://127.0.0.1:9000")
    sub = build_submission(_loaded("s3://bucket/wh"), MASTER, ["run"], app="job.py")
    assert sub.jars == ()
    assert sub.packages == ("org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.10.2",
                            "org.apache.iceberg:iceberg-aws-bundle:1.10.2")
    assert sub.conf["spark.sql.catalog.rollup.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"


def test_rest_submission_hides_secrets(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ROLLUP_ICEBERG_PACKAGES",
                       "org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.10.2")
    monkeypatch.setenv("ROLLUP_CATALOG_TYPE", "rest")
    monkeypatch.setenv("ROLLUP_CATALOG_URI", "https://catalog.example.com")
    monkeypatch.setenv("ROLLUP_CATALOG_CREDENTIAL", "cid:top-secret-1")
    monkeypatch.setenv("ROLLUP_S3_SECRET_ACCESS_KEY", "top-secret-2")
    code = main(["--warehouse", "analytics", "submit", "--master", MASTER, "--print-command",
                 "run"])
    out = capsys.readouterr().out
    assert code == 0
    assert "top-secret" not in out
    assert "spark.sql.catalog.rollup.credential=***" in out
    assert "spark.sql.catalog.rollup.uri=https://catalog.example.com" in out
    assert "--warehouse analytics" in out  # a REST warehouse is passed as given
    sub = build_submission(_loaded("analytics"), MASTER, ["run"], app="job.py")
    assert "top-secret" not in repr(sub)
    assert set(sub.secrets) == {"spark.sql.catalog.rollup.credential",
                                "spark.sql.catalog.rollup.s3.secret-access-key"}
    assert "top-secret" not in " ".join(sub.argv("/tmp/props"))


def test_print_command_is_a_runnable_shell_line(tmp_path: Path, capsys) -> None:
    code = main(["--warehouse", str(tmp_path / "wh"), "--namespace", "ns2", "submit",
                 "--master", MASTER, "--print-command", "backfill", "--start", "2024-01-01",
                 "--end", "2024-01-02"])
    assert code == 0
    words = shlex.split(capsys.readouterr().out)
    assert words[words.index("--master") + 1] == MASTER
    tail = ["--warehouse", str(tmp_path / "wh"), "--catalog", "rollup", "--namespace", "ns2",
            "backfill", "--start", "2024-01-01", "--end", "2024-01-02"]
    assert words[-len(tail):] == tail
    assert Path(words[-len(tail) - 1]).name == "rollup_job.py"


def test_trades_per_run_adds_sizing(tmp_path: Path, capsys) -> None:
    code = main(["--warehouse", str(tmp_path / "wh"), "submit", "--master", MASTER,
                 "--total-executor-cores", "16", "--trades-per-run", "100000000",
                 "--print-command", "run"])
    assert code == 0
    out = capsys.readouterr().out
    expected = suggest_spark_conf(100_000_000, 16)["spark.sql.shuffle.partitions"]
    assert f"spark.sql.shuffle.partitions={expected}" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "--print-command", "run"], "no Spark master"),
        (["submit", "--master", MASTER, "--print-command"], "no command to submit"),
        (["submit", "--master", MASTER, "--print-command", "submit", "run"], "cannot submit"),
        (["submit", "--master", MASTER, "--driver-memory", "lots", "--print-command", "run"],
         "invalid --driver-memory 'lots'"),
        (["submit", "--master", MASTER, "--total-executor-cores", "0", "--print-command",
          "run"], "invalid --total-executor-cores 0"),
        (["submit", "--master", MASTER, "--trades-per-run", "5", "--print-command", "run"],
         "needs --total-executor-cores"),
        (["submit", "--master", MASTER, "--conf", "novalue", "--print-command", "run"],
         "invalid --conf 'novalue'"),
    ],
)
def test_submit_errors(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    code = main(["--warehouse", str(tmp_path / "wh"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rollup: error: ") and message in err and err.count("\n") == 1


def test_submit_rejects_a_bad_job_command_line_before_starting(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--warehouse", str(tmp_path / "wh"), "submit", "--master", MASTER, "nosuch"])
    assert info.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err


def test_parse_conf() -> None:
    assert parse_conf(["a=1", "b.c=x=y", "d="]) == {"a": "1", "b.c": "x=y", "d": ""}
    with pytest.raises(ConfigError):
        parse_conf(["=v"])


# ---------------------------------------------------------------- running spark-submit


FAKE_SUBMIT = """#!{python}
import json, os, stat, sys
args = sys.argv[1:]
record = {{"argv": args, "props": None, "mode": None}}
if "--properties-file" in args:
    path = args[args.index("--properties-file") + 1]
    record["props"] = open(path).read()
    record["mode"] = stat.S_IMODE(os.stat(path).st_mode)
json.dump(record, open(os.environ["FAKE_RECORD"], "w"))
sys.exit(3)
"""


def _fake_spark_home(tmp_path: Path) -> Path:
    home = tmp_path / "spark"
    (home / "bin").mkdir(parents=True)
    (home / "conf").mkdir()
    script = home / "bin" / "spark-submit"
    script.write_text(FAKE_SUBMIT.format(python=sys.executable))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return home


def test_run_passes_secrets_in_a_private_file(tmp_path: Path, monkeypatch) -> None:
    home = _fake_spark_home(tmp_path)
    (home / "conf" / "spark-defaults.conf").write_text(
        "# cluster defaults\nspark.eventLog.enabled   true\nspark.executor.cores=2\n")
    monkeypatch.setenv("SPARK_HOME", str(home))
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "record.json"))
    monkeypatch.setenv("ROLLUP_ICEBERG_PACKAGES", "g:iceberg-spark-runtime:1")
    monkeypatch.setenv("ROLLUP_CATALOG_TYPE", "rest")
    monkeypatch.setenv("ROLLUP_CATALOG_URI", "https://catalog.example.com")
    monkeypatch.setenv("ROLLUP_CATALOG_TOKEN", "tok=en:1")
    sub = build_submission(_loaded("analytics"), MASTER, ["run"], app="job.py")
    assert sub.spark_submit == str(home / "bin" / "spark-submit")
    assert sub.run() == 3  # spark-submit's exit code is returned
    record = json.loads((tmp_path / "record.json").read_text())
    assert "tok=en:1" not in " ".join(record["argv"])
    assert record["mode"] == 0o600
    props = read_properties_text(record["props"])
    assert props["spark.sql.catalog.rollup.token"] == "tok=en:1"
    assert props["spark.eventLog.enabled"] == "true"  # spark-defaults.conf is kept
    assert "--conf" in record["argv"] and record["argv"][-1] == "run"


def read_properties_text(text: str) -> dict[str, str]:
    """Parse a properties file the way Java does for the escapes rollup writes."""
    props = {}
    for line in text.splitlines():
        key, value, escaped = [], [], False
        target = key
        for ch in line:
            if escaped:
                target.append({"n": "\n"}.get(ch, ch))
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == "=" and target is key:
                target = value
            else:
                target.append(ch)
        props["".join(key)] = "".join(value)
    return props


def test_run_without_secrets_uses_no_properties_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPARK_HOME", str(_fake_spark_home(tmp_path)))
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "record.json"))
    sub = build_submission(_settings(tmp_path), MASTER, ["init"], app="job.py")
    assert sub.run() == 3
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["props"] is None and "--properties-file" not in record["argv"]
    assert record["argv"][-1] == "init"


def test_read_properties(tmp_path: Path) -> None:
    path = tmp_path / "spark-defaults.conf"
    path.write_text("! comment\n# c\n\nspark.a  1\nspark.b=2\nspark.c : x y\n")
    assert read_properties(path) == {"spark.a": "1", "spark.b": "2", "spark.c": "x y"}
    assert read_properties(tmp_path / "none.conf") == {}


def test_spark_submit_path(tmp_path: Path, monkeypatch) -> None:
    import pyspark

    assert spark_submit_path() == Path(pyspark.__file__).parent / "bin" / "spark-submit"
    home = _fake_spark_home(tmp_path)
    monkeypatch.setenv("SPARK_HOME", str(home))
    assert spark_submit_path() == home / "bin" / "spark-submit"
    assert spark_submit_path(home / "bin" / "spark-submit") == home / "bin" / "spark-submit"
    with pytest.raises(EngineError, match="spark-submit not found"):
        spark_submit_path(tmp_path / "nope")


def test_submission_repr_hides_secrets() -> None:
    sub = Submission(MASTER, "job.py", ("run",), conf={"spark.x.token": "abc123"})
    assert "abc123" not in repr(sub) and "***" in repr(sub)
    assert "abc123" not in sub.command_line()


# ---------------------------------------------------------------- sizing


def test_sizing_small_runs_use_every_core() -> None:
    sizing = suggest_sizing(100_000, 8)
    assert sizing.shuffle_partitions == 16
    assert sizing.advisory_partition_bytes == 1 * MIB  # floor: ~0.8 MB per core-pair
    assert sizing.target_file_bytes == 64 * MIB


def test_sizing_large_runs_cap_partition_size() -> None:
    sizing = suggest_sizing(2_000_000_000, 64)
    per_partition = sizing.trades_per_run * BYTES_PER_TRADE / sizing.shuffle_partitions
    assert per_partition <= MAX_SHUFFLE_PARTITION_BYTES
    assert sizing.shuffle_partitions % 64 == 0
    assert sizing.advisory_partition_bytes == 128 * MIB
    assert sizing.target_file_bytes == 128 * MIB
    assert suggest_sizing(10_000_000_000, 64).target_file_bytes == 256 * MIB


def test_sizing_grows_with_volume() -> None:
    previous = None
    for trades in (10**4, 10**6, 10**8, 10**10):
        sizing = suggest_sizing(trades, 16)
        if previous is not None:
            assert sizing.shuffle_partitions >= previous.shuffle_partitions
            assert sizing.advisory_partition_bytes >= previous.advisory_partition_bytes
            assert sizing.target_file_bytes >= previous.target_file_bytes
        previous = sizing


def test_sizing_conf_keys() -> None:
    conf = suggest_spark_conf(50_000_000, 8)
    sizing = suggest_sizing(50_000_000, 8)
    assert conf["spark.sql.adaptive.enabled"] == "true"
    assert conf["spark.sql.shuffle.partitions"] == str(sizing.shuffle_partitions)
    assert conf["spark.sql.iceberg.advisory-partition-size"] == str(sizing.target_file_bytes)
    assert sizing.table_properties() == {
        "write.target-file-size-bytes": str(sizing.target_file_bytes)}
    assert isinstance(sizing, Sizing) and sizing.shuffle_bytes == 50_000_000 * BYTES_PER_TRADE


@pytest.mark.parametrize(("trades", "cores"), [(0, 4), (10, 0), (-1, 4), (True, 4), (1.5, 4)])
def test_sizing_rejects_bad_numbers(trades, cores) -> None:
    with pytest.raises(ConfigError):
        suggest_sizing(trades, cores)


# ---------------------------------------------------------------- jobs on a local session


@pytest.mark.spark
def test_jobs_run_without_spark_submit(spark, tables, warehouse: Path, tmp_path: Path,
                                       monkeypatch) -> None:
    """Run with plain python, a job reuses (or starts) a local session, like the CLI."""
    from rollup.adapters.synthetic import synthetic_trades, write_trades_parquet
    from rollup.ingestion.batch import ingest_file

    files = write_trades_parquet(synthetic_trades(400, symbols=2), tmp_path / "trades")
    ingest_file(tables, files[0])
    common = ["--catalog", "rollup", "--namespace", tables.namespace,
              "--warehouse", str(warehouse)]
    for script, extra in (("create_tables.py", []), ("run_cascade.py", ["--timeframe", "1h"])):
        monkeypatch.setattr(sys, "argv", [script, *extra, *common])
        with pytest.raises(SystemExit) as info:
            runpy.run_path(str(JOBS / script), run_name="__main__")
        assert info.value.code == 0
    counts = {tf: tables.read_bars(tf).count() for tf in ("1m", "1h", "1d")}
    assert counts["1m"] > counts["1h"] > 0
    assert counts["1d"] == 0  # --timeframe 1h stops below 1d
