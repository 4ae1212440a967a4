"""Tests for rollup.settings.config: one precedence rule for every key (flag > environment > file >
default), unknown keys refused by name, frozen settings, and loading without side effects."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from rollup.errors import ConfigError
from rollup.settings.config import Settings, load_settings
from rollup.spark.catalog_conf import session_spark_conf

ROOT = Path(__file__).resolve().parents[1]


@attrs.frozen
class Key:
    """One setting: how to write it in each layer and what each layer yields."""

    name: str
    toml: str  # the file's text setting it
    get: Callable[[Settings], Any]
    default: Any
    file: Any
    env: dict[str, str] | None = None  # variables set for the environment layer
    env_value: Any = None
    flag: dict[str, Any] | None = None  # load_settings keyword arguments
    flag_value: Any = None


KEYS = [
    Key("warehouse", 'warehouse = "/file/wh"', lambda s: s.warehouse, None, "/file/wh",
        {"ROLLUP_WAREHOUSE": "/env/wh"}, "/env/wh", {"warehouse": "/flag/wh"}, "/flag/wh"),
    Key("catalog", 'catalog = "filecat"', lambda s: s.catalog, "rollup", "filecat",
        {"ROLLUP_CATALOG": "envcat"}, "envcat", {"catalog": "flagcat"}, "flagcat"),
    Key("namespace", 'namespace = "file_ns"', lambda s: s.namespace, "market_data", "file_ns",
        {"ROLLUP_NAMESPACE": "env_ns"}, "env_ns", {"namespace": "flag_ns"}, "flag_ns"),
    Key("trades_table", 'trades_table = "raw"', lambda s: s.trades_table, "trades", "raw"),
    Key("master", 'master = "local[4]"', lambda s: s.engine.master, None, "local[4]",
        {"ROLLUP_SPARK_MASTER": "spark://10.0.0.1:7077"}, "spark://10.0.0.1:7077"),
    Key("spark_log_level", 'spark_log_level = "warn"', lambda s: s.engine.log_level, "ERROR",
        "WARN", {"ROLLUP_SPARK_LOG_LEVEL": "INFO"}, "INFO"),
    Key("spark.driver.memory", '[spark]\n"spark.driver.memory" = "8g"',
        lambda s: s.engine.spark_conf.get("spark.driver.memory"), None, "8g",
        {"ROLLUP_DRIVER_MEMORY": "2g"}, "2g"),
    Key("levels", '[levels]\n1m = "trades"\n4h = "1m"', lambda s: s.dag.names(),
        ["1m", "5m", "30m", "1h", "1d"], ["1m", "4h"]),
    Key("retention", "[retention]\n1m = 30", lambda s: s.dag.level("1m").retention,
        timedelta(days=90), timedelta(days=30)),
    Key("iceberg.type", '[iceberg]\ntype = "HADOOP"', lambda s: s.iceberg.type, "hadoop",
        "hadoop", {"ROLLUP_CATALOG_TYPE": "rest", "ROLLUP_CATALOG_URI": "http://env"}, "rest"),
    Key("iceberg.uri", '[iceberg]\ntype = "rest"\nuri = "http://file"',
        lambda s: s.iceberg.uri, None, "http://file", {"ROLLUP_CATALOG_URI": "http://env"},
        "http://env"),
    Key("iceberg.scope", '[iceberg]\ntype = "rest"\nuri = "http://u"\nscope = "file"',
        lambda s: s.iceberg.scope, None, "file", {"ROLLUP_CATALOG_SCOPE": "env"}, "env"),
    Key("iceberg.s3.endpoint", '[iceberg.s3]\nendpoint = "http://file:9000"',
        lambda s: s.iceberg.s3 and s.iceberg.s3.endpoint, None, "http://file:9000",
        {"ROLLUP_S3_ENDPOINT": "http://env:9000"}, "http://env:9000"),
    Key("iceberg.s3.path_style_access", "[iceberg.s3]\npath_style_access = false",
        lambda s: s.iceberg.s3 and s.iceberg.s3.path_style_access, None, False,
        {"ROLLUP_S3_PATH_STYLE_ACCESS": "true"}, True),
    Key("orchestration.submit_master",
        '[orchestration]\nsubmit_master = "spark://file:7077"',
        lambda s: s.orchestration.submit_master, None, "spark://file:7077",
        {"ROLLUP_SUBMIT_MASTER": "spark://env:7077"}, "spark://env:7077"),
    Key("orchestration.retries", "[orchestration]\nretries = 5",
        lambda s: s.orchestration.retries, 2, 5),
    Key("quality.max_age", '[quality]\nmax_age = "2h"', lambda s: s.quality.max_age, None,
        timedelta(hours=2), flag={"overrides": {"quality": {"max_age": "30m"}}},
        flag_value=timedelta(minutes=30)),
    Key("quality.max_lag", '[quality]\nmax_lag = "15m"', lambda s: s.quality.max_lag, None,
        timedelta(minutes=15), flag={"overrides": {"quality": {"max_lag": "1h"}}},
        flag_value=timedelta(hours=1)),
    Key("maintenance.snapshot_age_days", "[maintenance]\nsnapshot_age_days = 2",
        lambda s: s.maintenance.snapshot_age, timedelta(days=5), timedelta(days=2),
        flag={"overrides": {"maintenance": {"snapshot_age_days": 0.5}}},
        flag_value=timedelta(hours=12)),
    Key("maintenance.retain_last", "[maintenance]\nretain_last = 3",
        lambda s: s.maintenance.retain_last, 1, 3,
        flag={"overrides": {"maintenance": {"retain_last": 7}}}, flag_value=7),
    Key("maintenance.orphan_age_days", "[maintenance]\norphan_age_days = 4.5",
        lambda s: s.maintenance.orphan_age, timedelta(days=3), timedelta(days=4.5),
        flag={"overrides": {"maintenance": {"orphan_age_days": 2}}},
        flag_value=timedelta(days=2)),
    Key("ingest.trade_ids", '[ingest]\ntrade_ids = "string"',
        lambda s: s.ingest.trade_ids.scheme, "integer", "string",
        flag={"overrides": {"ingest": {"trade_ids": "none"}}}, flag_value="none"),
    Key("ingest.trade_id_zone", '[ingest]\ntrade_id_zone = "America/Chicago"',
        lambda s: s.ingest.trade_ids.zone, "UTC", "America/Chicago"),
    Key("ingest.earliest", "[ingest]\nearliest = 2015-01-01", lambda s: s.ingest.earliest,
        None, datetime(2015, 1, 1, tzinfo=UTC)),
    Key("ingest.max_ahead", '[ingest]\nmax_ahead = "6h"', lambda s: s.ingest.max_ahead, None,
        timedelta(hours=6)),
    Key("source.table", '[source]\ntable = "lake.raw.trades"',
        lambda s: s.source and ".".join(s.source.table), None, "lake.raw.trades"),
]


@pytest.fixture(autouse=True)
def _no_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./rollup.toml but the ones a test writes


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text + "\n")
    return path


@pytest.mark.parametrize("key", KEYS, ids=lambda k: k.name)
def test_each_key_flag_beats_environment_beats_file_beats_default(
        key: Key, tmp_path: Path) -> None:
    assert key.get(load_settings(environ={})) == key.default
    path = _file(tmp_path, key.toml)
    assert key.get(load_settings(path, environ={})) == key.file
    environ = key.env or {}
    if key.env:
        assert key.get(load_settings(path, environ=environ)) == key.env_value
    if key.flag:
        assert key.get(load_settings(path, environ=environ, **key.flag)) == key.flag_value


def test_every_documented_key_is_tested() -> None:
    """docs/configuration.md's key table and this test name the same keys."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", text, re.MULTILINE))
    tested = {k.name for k in KEYS}
    assert tested <= documented, tested - documented


def test_the_process_environment_is_read_when_no_mapping_is_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLUP_NAMESPACE", "from_env")
    monkeypatch.setenv("ROLLUP_SPARK_MASTER", "local[3]")
    settings = load_settings()
    assert (settings.namespace, settings.master) == ("from_env", "local[3]")
    assert load_settings(environ={}).namespace == "market_data"


def test_config_file_from_the_environment_and_blank_variables(tmp_path: Path) -> None:
    path = _file(tmp_path, 'namespace = "via_env_file"')
    assert load_settings(environ={"ROLLUP_CONFIG": str(path)}).namespace == "via_env_file"
    settings = load_settings(path, environ={"ROLLUP_NAMESPACE": "  "})  # blank: not set
    assert settings.namespace == "via_env_file"


def test_secrets_come_from_the_environment_only(tmp_path: Path) -> None:
    environ = {"ROLLUP_CATALOG_TYPE": "rest", "ROLLUP_CATALOG_URI": "http://c",
               "ROLLUP_CATALOG_TOKEN": "tok-secret-1",
               "ROLLUP_S3_SECRET_ACCESS_KEY": "s3-secret-2"}
    settings = load_settings(warehouse="analytics", environ=environ)
    assert settings.iceberg.token is not None and settings.iceberg.token.value == "tok-secret-1"
    assert settings.iceberg.s3 is not None
    assert settings.iceberg.s3.secret_access_key is not None
    assert "secret-" not in repr(settings)
    path = _file(tmp_path, '[iceberg.s3]\nsecret_access_key = "in-the-file"')
    with pytest.raises(ConfigError, match="set the environment variable "
                                          "ROLLUP_S3_SECRET_ACCESS_KEY instead"):
        load_settings(path, environ={})


@pytest.mark.parametrize(("toml", "key", "known"), [
    ('warehous = "/wh"', "'warehous'", "warehouse, catalog, namespace"),
    ('[qualty]\nmax_age = "1h"', "'qualty'", "[quality]"),
    ('[quality]\nmaxage = "1h"', "'maxage' in [quality]", "max_age, max_lag"),
    ("[maintenance]\nretain = 2", "'retain' in [maintenance]", "retain_last"),
    ("[ingest]\nzone = 'UTC'", "'zone' in [ingest]", "trade_id_zone"),
    ("[orchestration]\nretry = 1", "'retry' in [orchestration]", "retries"),
    ('[source]\ntable = "a.b.c"\ncolumn = 1', "'column' in [source]", "columns"),
    ('[iceberg]\nurl = "http://x"', "'url'", "uri"),
])
def test_unknown_keys_are_refused_with_the_known_ones(tmp_path: Path, toml: str, key: str,
                                                      known: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_file(tmp_path, toml), environ={})
    message = str(info.value)
    assert key in message and known in message and "\n" not in message


def test_unknown_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="'qualty'"):
        load_settings(environ={}, overrides={"qualty": {"max_age": "1h"}})


@pytest.mark.parametrize(("toml", "message"), [
    ('master = "localhost"', "invalid Spark master 'localhost'"),
    ('spark_log_level = "LOUD"', "invalid spark_log_level 'LOUD'"),
    ('[quality]\nmax_age = "soon"', "invalid max age 'soon'"),
    ('[maintenance]\nretain_last = 1.5', "invalid [maintenance] retain_last 1.5"),
    ('[ingest]\nmax_ahead = "later"', "invalid max_ahead 'later'"),
    ('[orchestration.schedules]\n7m = "* * * * *"', "unknown schedule '7m'"),
    ("spark = 3", "invalid [spark] section 3"),
])
def test_bad_values_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(_file(tmp_path, toml), environ={})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.warehouse = "/elsewhere"  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.quality.max_age = timedelta(hours=1)  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.engine.master = "yarn"  # type: ignore[misc]
    changed = attrs.evolve(settings, warehouse="/elsewhere")
    assert changed.warehouse == "/elsewhere" and settings.warehouse is None
    assert changed.engine == settings.engine


def test_shorthands_and_no_untyped_sections(tmp_path: Path) -> None:
    settings = Settings(master="local[3]", spark_conf={"spark.sql.shuffle.partitions": "8"})
    assert settings.engine.master == "local[3]" == settings.master
    # Hadoop: no catalog conf
    assert session_spark_conf(settings) == {"spark.sql.shuffle.partitions": "8"}
    path = _file(tmp_path, '[quality]\nmax_age = "2h"\n[maintenance]\nretain_last = 2')
    settings = load_settings(path, environ={})
    assert settings.quality.max_age == timedelta(hours=2)
    assert settings.maintenance.retain_last == 2
    assert not hasattr(settings, "extra")


def test_loading_creates_nothing(tmp_path: Path) -> None:
    settings = load_settings(warehouse=str(tmp_path / "wh"),
                             environ={"ROLLUP_S3_ENDPOINT": "http://127.0.0.1:9000"})
    conf = session_spark_conf(settings)  # a non-default Hadoop catalog: its conf is derived
    assert conf["spark.sql.catalog.rollup.warehouse"] == str(tmp_path / "wh")
    assert not (tmp_path / "wh").exists()


_NO_JARS_SCRIPT = r"""
import json, sys
import rollup.spark.jars

def refuse(*args, **kwargs):
    raise AssertionError("rollup.spark.jars was called while loading settings")

for name in ("spark_jar_conf", "iceberg_jars", "cache_dir_default", "_runtime_jar"):
    setattr(rollup.spark.jars, name, refuse)
had_pyspark = "pyspark" in sys.modules
from rollup.settings.config import load_settings
from rollup.readers.read import _settings, pyiceberg_properties

settings = load_settings(warehouse="analytics")
read_settings = _settings(None, "analytics", None, None)
props = pyiceberg_properties(read_settings.iceberg, read_settings.warehouse)
print(json.dumps({"type": settings.iceberg.type, "uri": props.get("uri"),
                  "had_pyspark": had_pyspark, "pyspark": "pyspark" in sys.modules}))
"""


def test_loading_a_rest_catalog_touches_no_jars_and_no_pyspark(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"),
           "ROLLUP_CATALOG_TYPE": "rest", "ROLLUP_CATALOG_URI": "http://127.0.0.1:9/catalog",
           "ROLLUP_CATALOG_TOKEN": "tok-1", "ROLLUP_JARS_DIR": str(tmp_path / "jars")}
    done = subprocess.run([sys.executable, "-c", _NO_JARS_SCRIPT], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"type": "rest", "uri": "http://127.0.0.1:9/catalog",
                      "had_pyspark": False, "pyspark": False}
    assert not (tmp_path / "jars").exists()




def test_rollup_variables_are_read_in_rollup_env_only() -> None:
    src = ROOT / "src" / "rollup"
    reads = re.compile(r"""(?:environ(?:\.get)?\s*[\[(]|getenv\s*\()\s*["']ROLLUP_""")
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py")
                 if p.name != "env.py" and reads.search(p.read_text())]
    assert offenders == []
