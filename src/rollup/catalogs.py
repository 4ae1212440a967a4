"""Iceberg catalog configuration: Hadoop (local, HDFS) or REST, with optional S3 storage.

The catalog is chosen by the ``[iceberg]`` section of ``rollup.toml`` and by environment
variables (which win). Everything here is pure: it returns Spark conf dicts and never logs.
Secrets (OAuth2 credential, bearer token, S3 keys) are read from the environment only, held
in `Secret` values whose ``repr`` is ``***``, and masked by `redact` wherever conf is shown.

Example ``rollup.toml``::

    catalog = "rollup"
    warehouse = "analytics"            # REST: the warehouse name or location the server expects

    [iceberg]
    type = "rest"                      # or "hadoop" (default: a path, file:// or hdfs:// URI)
    uri = "https://catalog.example.com/api/catalog"

    [iceberg.s3]                       # S3-compatible storage through Iceberg's S3FileIO
    endpoint = "https://minio.example.com:9000"
    region = "us-east-1"
    path_style_access = true

with ``ROLLUP_CATALOG_CREDENTIAL`` (``client_id:client_secret``) or ``ROLLUP_CATALOG_TOKEN``
and ``ROLLUP_S3_ACCESS_KEY_ID`` / ``ROLLUP_S3_SECRET_ACCESS_KEY`` in the environment.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from rollup.errors import ConfigError
from rollup.jars import RUNTIME_JAR

HADOOP = "hadoop"
REST = "rest"
CATALOG_TYPES = (HADOOP, REST)
S3_FILE_IO = "org.apache.iceberg.aws.s3.S3FileIO"
ICEBERG_VERSION = RUNTIME_JAR.removesuffix(".jar").rsplit("-", 1)[1]  # the PyPI jar's version
RUNTIME_PACKAGE = f"org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:{ICEBERG_VERSION}"
AWS_BUNDLE_PACKAGE = f"org.apache.iceberg:iceberg-aws-bundle:{ICEBERG_VERSION}"
# Spark masks conf values whose key matches spark.redaction.regex (UI, event logs); its
# default misses Iceberg's "credential" and S3 "access-key-id".
REDACTION_REGEX = "(?i)secret|password|token|credential|access[.-]key"
REDACTED = "***"

# The REST client's HTTP library, as the official runtime jar shades it (the PyPI repackaging
# of the runtime leaves it out, as it does Jackson).
SHADED_HTTP_CLIENT = "org/apache/iceberg/shaded/org/apache/hc/client5/"

_SECRET_KEY = re.compile(REDACTION_REGEX)
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")

# environment variable -> (section key, is it a secret); S3 keys live under [iceberg.s3]
ENV_CATALOG = {
    "ROLLUP_CATALOG_TYPE": "type",
    "ROLLUP_CATALOG_URI": "uri",
    "ROLLUP_CATALOG_OAUTH2_SERVER_URI": "oauth2_server_uri",
    "ROLLUP_CATALOG_SCOPE": "scope",
}
ENV_CATALOG_SECRETS = {
    "ROLLUP_CATALOG_CREDENTIAL": "credential",
    "ROLLUP_CATALOG_TOKEN": "token",
}
ENV_S3 = {
    "ROLLUP_S3_ENDPOINT": "endpoint",
    "ROLLUP_S3_REGION": "region",
    "ROLLUP_S3_PATH_STYLE_ACCESS": "path_style_access",
}
ENV_S3_SECRETS = {
    "ROLLUP_S3_ACCESS_KEY_ID": "access_key_id",
    "ROLLUP_S3_SECRET_ACCESS_KEY": "secret_access_key",
    "ROLLUP_S3_SESSION_TOKEN": "session_token",
}


@attrs.frozen(repr=False)
class Secret:
    """A secret string: shown as ``***`` by repr/str; ``.value`` gives the real text."""

    value: str

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__


def _secret(value: str | None) -> Secret | None:
    return Secret(value) if value else None


@attrs.frozen
class S3Config:
    """S3-compatible object storage through Iceberg's S3FileIO (needs iceberg-aws-bundle)."""

    endpoint: str | None = None
    region: str | None = None
    path_style_access: bool | None = None
    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    session_token: Secret | None = None

    def properties(self) -> dict[str, str]:
        """Iceberg catalog properties (without the ``spark.sql.catalog.<name>.`` prefix)."""
        props = {"io-impl": S3_FILE_IO}
        if self.endpoint:
            props["s3.endpoint"] = self.endpoint
        if self.region:
            props["client.region"] = self.region
        if self.path_style_access is not None:
            props["s3.path-style-access"] = str(self.path_style_access).lower()
        for key, secret in (("s3.access-key-id", self.access_key_id),
                            ("s3.secret-access-key", self.secret_access_key),
                            ("s3.session-token", self.session_token)):
            if secret is not None:
                props[key] = secret.value
        return props


@attrs.frozen
class CatalogConfig:
    """Which Iceberg catalog rollup's Spark catalog is: its type, endpoint and storage."""

    type: str = attrs.field(default=HADOOP)
    uri: str | None = None
    credential: Secret | None = None
    token: Secret | None = None
    oauth2_server_uri: str | None = None
    scope: str | None = None
    s3: S3Config | None = None
    properties: Mapping[str, str] = attrs.field(factory=dict)
    """Further Iceberg catalog properties, passed as given (e.g. ``prefix``, ``header.X``)."""

    @type.validator
    def _check_type(self, _: object, value: str) -> None:
        if value not in CATALOG_TYPES:
            raise ConfigError(f"invalid Iceberg catalog type {value!r}: "
                              f"expected one of {', '.join(CATALOG_TYPES)}")

    def __attrs_post_init__(self) -> None:
        if self.type == REST and not self.uri:
            raise ConfigError("the REST catalog has no uri: set [iceberg] uri or "
                              "ROLLUP_CATALOG_URI to the catalog server's base URL")
        if self.type == HADOOP and (self.uri or self.credential or self.token):
            raise ConfigError("uri, credential and token apply to the REST catalog only: "
                              "set [iceberg] type = \"rest\" or remove them")

    @property
    def is_default(self) -> bool:
        """True for a plain Hadoop catalog, which `rollup.engine` configures by itself."""
        return self.type == HADOOP and self.s3 is None and not self.properties

    def catalog_properties(self, warehouse: str | None) -> dict[str, str]:
        """Iceberg catalog properties (keys without the ``spark.sql.catalog.<name>.`` prefix).

        Raises:
            ConfigError: a catalog needs a warehouse and none is given.
        """
        if not warehouse:
            what = ("the warehouse name or location the REST server expects" if self.type == REST
                    else "a directory or URI")
            raise ConfigError(f"no warehouse for the {self.type} catalog: set --warehouse, "
                              f"ROLLUP_WAREHOUSE or warehouse in rollup.toml to {what}")
        props = {"type": self.type, "warehouse": warehouse}
        if self.type == REST:
            props["uri"] = str(self.uri)
            if self.credential is not None or self.token is not None:
                props["rest.auth.type"] = "oauth2"  # Iceberg warns when it has to infer it
            if self.credential is not None:
                props["credential"] = self.credential.value
            if self.token is not None:
                props["token"] = self.token.value
            if self.oauth2_server_uri:
                props["oauth2-server-uri"] = self.oauth2_server_uri
            if self.scope:
                props["scope"] = self.scope
        if self.s3 is not None:
            props.update(self.s3.properties())
        props.update(self.properties)
        return props

    def packages(self) -> list[str]:
        """Maven coordinates this catalog needs besides the Iceberg Spark runtime."""
        return [AWS_BUNDLE_PACKAGE] if self.s3 is not None else []


def _section(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"invalid {where} {value!r}: expected a TOML table")
    return dict(value)


def _flag(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"invalid {where} {value!r}: expected true or false")


def _no_secrets_in_file(section: Mapping[str, Any], names: Mapping[str, str], where: str) -> None:
    for env, key in names.items():
        if key in section:
            raise ConfigError(f"{where} {key} is a secret and is not read from the config file: "
                              f"set the environment variable {env} instead")


def load_catalog_config(
    section: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> CatalogConfig:
    """Build the catalog configuration from an ``[iceberg]`` TOML section and the environment.

    Environment variables (``ROLLUP_CATALOG_*``, ``ROLLUP_S3_*``) override the section; secrets
    come from the environment only.

    Raises:
        ConfigError: an unknown key, a bad value, or a secret written in the file.
    """
    env = os.environ if env is None else env
    file = _section(section, "[iceberg] section")
    file_s3 = _section(file.pop("s3", None), "[iceberg.s3] section")
    _no_secrets_in_file(file, ENV_CATALOG_SECRETS, "[iceberg]")
    _no_secrets_in_file(file_s3, ENV_S3_SECRETS, "[iceberg.s3]")
    extra = _section(file.pop("properties", None), "[iceberg.properties] section")
    allowed = set(ENV_CATALOG.values())
    unknown = sorted(set(file) - allowed)
    unknown += sorted(f"s3.{key}" for key in set(file_s3) - set(ENV_S3.values()))
    if unknown:
        raise ConfigError(f"unknown [iceberg] setting {unknown[0]!r}: expected one of "
                          f"{', '.join(sorted(allowed))}, s3.*, properties.*")

    values: dict[str, Any] = {key: file.get(key) for key in allowed}
    s3_values: dict[str, Any] = {key: file_s3.get(key) for key in ENV_S3.values()}
    for var, key in ENV_CATALOG.items():
        if env.get(var):
            values[key] = env[var]
    for var, key in ENV_S3.items():
        if env.get(var):
            s3_values[key] = env[var]
    secrets = {key: _secret(env.get(var)) for var, key in ENV_CATALOG_SECRETS.items()}
    s3_secrets = {key: _secret(env.get(var)) for var, key in ENV_S3_SECRETS.items()}

    s3 = None
    if file_s3 or any(s3_values.values()) or any(s3_secrets.values()):
        path_style = s3_values.pop("path_style_access")
        s3 = S3Config(
            endpoint=_text(s3_values["endpoint"], "s3 endpoint"),
            region=_text(s3_values["region"], "s3 region"),
            path_style_access=None if path_style is None
            else _flag(path_style, "s3 path_style_access"),
            **s3_secrets,
        )
    return CatalogConfig(
        type=(_text(values.pop("type"), "catalog type") or HADOOP).lower(),
        uri=_text(values.pop("uri"), "catalog uri"),
        oauth2_server_uri=_text(values.pop("oauth2_server_uri"), "oauth2_server_uri"),
        scope=_text(values.pop("scope"), "scope"),
        s3=s3,
        properties={str(k): str(v) for k, v in extra.items()},
        **secrets,
    )


def _text(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"invalid {where} {value!r}: expected a string")
    return value


def catalog_spark_conf(
    catalog: str, warehouse: str | None, config: CatalogConfig | None = None
) -> dict[str, str]:
    """Complete Spark conf for an Iceberg catalog named ``catalog`` (extensions included).

    A Hadoop warehouse given as a local path is made absolute (and created), as
    `rollup.engine.get_spark` does; REST warehouses are passed as given.
    """
    from rollup.engine import ICEBERG_EXTENSIONS, SESSION_CONF, resolve_warehouse, validate_catalog

    config = config or CatalogConfig()
    validate_catalog(catalog)
    if config.type == HADOOP:
        warehouse = resolve_warehouse(warehouse)
    prefix = f"spark.sql.catalog.{catalog}"
    conf = {
        "spark.sql.extensions": ICEBERG_EXTENSIONS,
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        **{f"{prefix}.{key}": value for key, value in config.catalog_properties(warehouse).items()},
        **SESSION_CONF,
    }
    if any(is_secret_key(key) for key in conf):
        conf["spark.redaction.regex"] = REDACTION_REGEX
    return conf


def session_catalog_conf(
    catalog: str, warehouse: str | None, section: Mapping[str, Any] | None,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Conf a local session needs beyond `rollup.engine`'s default Hadoop catalog ({} if none).

    Raises:
        ConfigError: a bad catalog configuration, or a REST catalog with a runtime jar
            that cannot talk to it (see `check_rest_client`).
    """
    config = load_catalog_config(section, env)
    if config.is_default:
        return {}
    conf = catalog_spark_conf(catalog, warehouse, config)
    if config.type == REST:
        from rollup.jars import spark_jar_conf

        jar_conf = spark_jar_conf()
        check_rest_client(config, jar_conf.get("spark.jars", "").split(","),
                          jar_conf.get("spark.jars.packages"))
    return conf


def has_http_client(jars: Sequence[str]) -> bool:
    """True if one of the jars holds Iceberg's shaded HttpClient 5 (the REST client uses it)."""
    for jar in jars:
        try:
            with zipfile.ZipFile(jar) as archive:
                if any(name.startswith(SHADED_HTTP_CLIENT) for name in archive.namelist()):
                    return True
        except (OSError, zipfile.BadZipFile):
            continue
    return False


def check_rest_client(config: CatalogConfig, jars: Sequence[str], packages: str | None) -> None:
    """Raise ConfigError if a REST catalog is configured but the jars lack its HTTP client.

    Maven packages (``spark.jars.packages``) bring the official runtime, which has it.
    """
    if config.type != REST or (packages or "").strip() or has_http_client(jars):
        return
    raise ConfigError(
        "the REST catalog needs the official Iceberg runtime jar (the PyPI repackaging lacks "
        f"its HTTP client): set ROLLUP_ICEBERG_PACKAGES={RUNTIME_PACKAGE} or "
        "ROLLUP_ICEBERG_JARS to the official runtime jar (see docs/deploy.md)"
    )


def is_secret_key(key: str) -> bool:
    """True if a conf key names a secret (credential, token, password, S3 keys)."""
    return bool(_SECRET_KEY.search(key))


def redact_value(value: str) -> str:
    """``value`` with any ``user:password@`` part of a URI masked."""
    return _USERINFO.sub(f"{REDACTED}@", value)


def redact(conf: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``conf`` that is safe to print: secret values become ``***``."""
    return {key: REDACTED if is_secret_key(key) else redact_value(str(value))
            for key, value in conf.items()}


def redacted_repr(conf: Mapping[str, str]) -> str:
    """``repr`` of a conf mapping with secrets masked (for attrs ``repr=``)."""
    return repr(redact(conf))
