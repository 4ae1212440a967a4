"""Tests for rollup.settings.catalogs: generated Spark conf for Hadoop, REST and S3 catalogs;
secrets."""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rollup.errors import ConfigError
from rollup.settings.catalogs import S3_FILE_IO, CatalogConfig, load_catalog_config
from rollup.settings.config import load_settings
from rollup.settings.secrets import MASK, SECRET_KEY_PATTERN, Secret, redact
from rollup.spark.catalog_conf import (
    AWS_BUNDLE_PACKAGE,
    catalog_packages,
    catalog_spark_conf,
    check_rest_client,
    session_catalog_conf,
    session_spark_conf,
)
from rollup.spark.jars import RUNTIME_PACKAGE, SHADED_HTTP_CLIENT, has_http_client

P = "spark.sql.catalog.prod"
REST_ENV = {
    "ROLLUP_CATALOG_TYPE": "rest",
    "ROLLUP_CATALOG_URI": "https://catalog.example.com/api/catalog",
    "ROLLUP_CATALOG_CREDENTIAL": "client-id:very-secret-1",
    "ROLLUP_S3_ENDPOINT": "http://127.0.0.1:9000",
    "ROLLUP_S3_PATH_STYLE_ACCESS": "true",
    "ROLLUP_S3_REGION": "us-east-1",
    "ROLLUP_S3_ACCESS_KEY_ID": "AKIAEXAMPLEKEY",
    "ROLLUP_S3_SECRET_ACCESS_KEY": "very-secret-2",
}
SECRET_VALUES = ("very-secret-1", "very-secret-2", "AKIAEXAMPLEKEY")


# ---------------------------------------------------------------- Hadoop (default)


def test_default_is_hadoop_and_adds_nothing_to_a_session(tmp_path: Path) -> None:
    config = load_catalog_config(None, env={})
    assert config == CatalogConfig() and config.is_default
    assert session_catalog_conf("prod", str(tmp_path), config) == {}


def test_hadoop_conf_matches_the_engine(tmp_path: Path) -> None:
    from rollup.spark.engine import iceberg_conf

    conf = catalog_spark_conf("prod", str(tmp_path / "wh"))
    assert conf == iceberg_conf("prod", str(tmp_path / "wh"))
    assert not (tmp_path / "wh").exists()  # pure: the session that starts creates it


def test_hadoop_relative_warehouse_is_made_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    conf = catalog_spark_conf("prod", "rel/wh")
    assert conf[f"{P}.warehouse"] == str(tmp_path / "rel" / "wh")


def test_hadoop_hdfs_uri_is_passed_as_given() -> None:
    conf = catalog_spark_conf("prod", "hdfs://namenode:8020/warehouse")
    assert conf[f"{P}.type"] == "hadoop"
    assert conf[f"{P}.warehouse"] == "hdfs://namenode:8020/warehouse"


def test_hadoop_on_s3_uses_s3fileio() -> None:
    config = load_catalog_config({"s3": {"endpoint": "http://127.0.0.1:9000",
                                         "path_style_access": True}}, env={})
    assert not config.is_default and catalog_packages(config) == [AWS_BUNDLE_PACKAGE]
    conf = catalog_spark_conf("prod", "s3://bucket/wh", config)
    assert conf[f"{P}.type"] == "hadoop"
    assert conf[f"{P}.io-impl"] == S3_FILE_IO
    assert conf[f"{P}.s3.endpoint"] == "http://127.0.0.1:9000"
    assert conf[f"{P}.s3.path-style-access"] == "true"
    assert not any("access-key" in key for key in conf)


# ---------------------------------------------------------------- REST + S3


def test_rest_with_s3_from_env_gives_exact_spark_settings() -> None:
    config = load_catalog_config(None, env=REST_ENV)
    conf = catalog_spark_conf("prod", "analytics", config)
    assert conf == {
        "spark.sql.extensions":
            "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        P: "org.apache.iceberg.spark.SparkCatalog",
        f"{P}.type": "rest",
        f"{P}.uri": "https://catalog.example.com/api/catalog",
        f"{P}.warehouse": "analytics",
        f"{P}.rest.auth.type": "oauth2",
        f"{P}.credential": "client-id:very-secret-1",
        f"{P}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
        f"{P}.s3.endpoint": "http://127.0.0.1:9000",
        f"{P}.client.region": "us-east-1",
        f"{P}.s3.path-style-access": "true",
        f"{P}.s3.access-key-id": "AKIAEXAMPLEKEY",
        f"{P}.s3.secret-access-key": "very-secret-2",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.redaction.regex": SECRET_KEY_PATTERN,
    }


def test_rest_from_file_section_with_env_override() -> None:
    section = {"type": "rest", "uri": "https://file.example.com", "scope": "catalog",
               "properties": {"prefix": "ws1", "header.X-Tenant": "t1"}}
    conf = catalog_spark_conf("prod", "wh", load_catalog_config(section, env={}))
    assert conf[f"{P}.uri"] == "https://file.example.com"
    assert conf[f"{P}.scope"] == "catalog"
    assert conf[f"{P}.prefix"] == "ws1" and conf[f"{P}.header.X-Tenant"] == "t1"
    assert "spark.redaction.regex" not in conf  # no secret, nothing to mask
    env = {"ROLLUP_CATALOG_URI": "https://env.example.com", "ROLLUP_CATALOG_TOKEN": "tok-123"}
    conf = catalog_spark_conf("prod", "wh", load_catalog_config(section, env=env))
    assert conf[f"{P}.uri"] == "https://env.example.com"  # the environment wins
    assert conf[f"{P}.token"] == "tok-123"


def test_rest_conf_never_touches_the_local_disk(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    conf = catalog_spark_conf("prod", "analytics", load_catalog_config(None, env=REST_ENV))
    assert conf[f"{P}.warehouse"] == "analytics"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("section", "env", "message"),
    [
        ({"type": "glue"}, {}, "invalid Iceberg catalog type 'glue'"),
        ({"type": "rest"}, {}, "REST catalog has no uri"),
        ({"uri": "https://x"}, {}, "apply to the REST catalog only"),
        ({"credential": "a:b"}, {}, "ROLLUP_CATALOG_CREDENTIAL"),
        ({"type": "rest", "uri": "https://x", "token": "t"}, {}, "ROLLUP_CATALOG_TOKEN"),
        ({"s3": {"secret_access_key": "k"}}, {}, "ROLLUP_S3_SECRET_ACCESS_KEY"),
        ({"s3": {"path_style_access": "maybe"}}, {}, "expected true or false"),
        ({"urii": "https://x"}, {}, "unknown [iceberg] setting 'urii'"),
        ({"s3": {"bucket": "b"}}, {}, "unknown [iceberg] setting 's3.bucket'"),
        ({"s3": "http://x"}, {}, "expected a TOML table"),
        ({"uri": 5, "type": "rest"}, {}, "expected a string"),
        (None, {"ROLLUP_CATALOG_TYPE": "nessie"}, "'nessie'"),
    ],
)
def test_bad_catalog_config_is_one_clear_sentence(
    section: dict[str, Any] | None, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_catalog_config(section, env=env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_rest_needs_a_warehouse() -> None:
    with pytest.raises(ConfigError, match="no warehouse for the rest catalog"):
        catalog_spark_conf("prod", None, load_catalog_config(None, env=REST_ENV))


def test_invalid_catalog_name_is_rejected() -> None:
    with pytest.raises(ConfigError, match="invalid catalog name"):
        catalog_spark_conf("prod; DROP", "wh", load_catalog_config(None, env=REST_ENV))


# ---------------------------------------------------------------- secrets


def test_secrets_are_never_shown() -> None:
    config = load_catalog_config(None, env=REST_ENV)
    shown = [repr(config), str(config), repr(config.credential), str(config.s3)]
    conf = catalog_spark_conf("prod", "analytics", config)
    shown.append(json.dumps(redact(conf)))
    for text in shown:
        for secret in SECRET_VALUES:
            assert secret not in text
    assert redact(conf)[f"{P}.credential"] == MASK
    assert redact(conf)[f"{P}.uri"] == conf[f"{P}.uri"]  # non-secrets stay readable
    assert Secret("x").value == "x" and repr(Secret("x")) == "Secret('***')"


# ---------------------------------------------------------------- settings


def test_settings_carry_the_catalog_conf_and_hide_secrets(tmp_path: Path, monkeypatch) -> None:
    for var, value in REST_ENV.items():
        monkeypatch.setenv(var, value)
    for var in ("ROLLUP_WAREHOUSE", "ROLLUP_CATALOG", "ROLLUP_NAMESPACE", "ROLLUP_CONFIG",
                "ROLLUP_ICEBERG_PACKAGES", "ROLLUP_ICEBERG_JARS"):  # loading checks no jars
        monkeypatch.delenv(var, raising=False)
    config = tmp_path / "rollup.toml"
    config.write_text('warehouse = "analytics"\ncatalog = "prod"\n'
                      '[spark]\n"spark.sql.shuffle.partitions" = "8"\n')
    settings = load_settings(config)
    assert session_spark_conf(settings)[f"{P}.type"] == "rest"
    assert session_spark_conf(settings)[f"{P}.credential"] == "client-id:very-secret-1"
    assert session_spark_conf(settings)["spark.sql.shuffle.partitions"] == "8"
    for secret in SECRET_VALUES:
        assert secret not in repr(settings)


def test_settings_without_catalog_config_are_unchanged(tmp_path: Path, monkeypatch) -> None:
    for var in list(REST_ENV) + ["ROLLUP_CONFIG", "ROLLUP_CATALOG"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(warehouse=str(tmp_path / "wh"))
    assert session_spark_conf(settings) == {}


def test_rest_with_the_pypi_runtime_is_refused_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    for var in ("ROLLUP_ICEBERG_PACKAGES", "ROLLUP_ICEBERG_JARS"):
        monkeypatch.delenv(var, raising=False)
    bare = tmp_path / "bare.jar"
    with zipfile.ZipFile(bare, "w") as archive:
        archive.writestr("org/apache/iceberg/spark/SparkCatalog.class", b"")
    full = tmp_path / "full.jar"
    with zipfile.ZipFile(full, "w") as archive:
        archive.writestr(SHADED_HTTP_CLIENT + "classic/HttpClients.class", b"")
    rest = load_catalog_config(None, env=REST_ENV)
    assert not has_http_client([str(bare), str(tmp_path / "missing.jar")])
    with pytest.raises(ConfigError) as info:
        check_rest_client(rest, [str(bare)], None)
    assert RUNTIME_PACKAGE in str(info.value) and "ROLLUP_ICEBERG_JARS" in str(info.value)
    check_rest_client(rest, [str(bare), str(full)], None)  # the official jar has the client
    check_rest_client(rest, [str(bare)], RUNTIME_PACKAGE)  # Maven brings the official jar
    check_rest_client(CatalogConfig(), [str(bare)], None)  # Hadoop needs no HTTP client


def test_a_session_for_rest_with_the_pypi_runtime_is_refused_before_spark_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rollup.settings.config import EngineConfig
    from rollup.spark import engine

    bare = tmp_path / "bare.jar"
    with zipfile.ZipFile(bare, "w") as archive:
        archive.writestr("org/apache/iceberg/spark/SparkCatalog.class", b"")
    monkeypatch.setattr(engine, "_active_session", lambda: None)
    settings = load_settings(warehouse="analytics", catalog="prod", environ=REST_ENV)
    started: list[object] = []
    monkeypatch.setattr("pyspark.sql.SparkSession.builder", started)  # must not be reached
    with pytest.raises(ConfigError, match="needs the official Iceberg runtime jar"):
        engine.get_spark(settings.warehouse, catalog="prod", conf=session_spark_conf(settings),
                         engine=EngineConfig(iceberg_jars=(str(bare),)))


# ---------------------------------------------------------------- Spark talks to a REST catalog


class _FakeRestCatalog(BaseHTTPRequestHandler):
    """Answers the two calls `SHOW NAMESPACES` makes; records paths and auth headers."""

    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/v1/config"):
            body: dict[str, Any] = {"defaults": {}, "overrides": {}}
        elif self.path.startswith("/v1/namespaces"):
            body = {"namespaces": [["market_data"]]}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def rest_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeRestCatalog)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.spark
def test_spark_uses_the_generated_rest_conf(spark, rest_server: str) -> None:
    """The generated keys are the ones Iceberg's SparkCatalog reads: it calls our server."""
    jars = (spark.conf.get("spark.jars", "") or "").split(",")
    if not has_http_client(jars):
        pytest.skip("the Iceberg runtime on this session's classpath (PyPI) has no REST client; "
                    "runs with the official jar (ROLLUP_ICEBERG_PACKAGES / ROLLUP_ICEBERG_JARS)")
    env = {"ROLLUP_CATALOG_TYPE": "rest", "ROLLUP_CATALOG_URI": rest_server,
           "ROLLUP_CATALOG_TOKEN": "tok-xyz"}
    conf = catalog_spark_conf("restcat", "analytics", load_catalog_config(None, env=env))
    _FakeRestCatalog.seen = []
    for key, value in conf.items():
        if key.startswith("spark.sql.catalog.restcat"):
            spark.conf.set(key, value)
    rows = spark.sql("SHOW NAMESPACES IN restcat").collect()
    assert [row[0] for row in rows] == ["market_data"]
    paths = [path for path, _ in _FakeRestCatalog.seen]
    assert paths[0].startswith("/v1/config") and "warehouse=analytics" in paths[0]
    assert any(path.startswith("/v1/namespaces") for path in paths)
    assert all(auth == "Bearer tok-xyz" for _, auth in _FakeRestCatalog.seen)
