"""Iceberg catalog configuration: Hadoop (local, HDFS) or REST, with optional S3 storage.

The catalog is chosen by the ``[iceberg]`` section of ``rollup.toml``, overridden by the
``ROLLUP_CATALOG_*`` / ``ROLLUP_S3_*`` environment variables (read in `rollup.settings.env`);
`rollup.settings.config.load_settings` merges both into `Settings.iceberg`, a `CatalogConfig`.
Everything here is pure: no Spark, no disk, no logging. The Spark conf a catalog needs is
built where a session starts (`rollup.spark.catalog_conf`).
Secrets (OAuth2 credential, bearer token, S3 keys) come from the environment only and are
held in `rollup.settings.secrets.Secret` values.

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

from collections.abc import Mapping
from typing import Any

import attrs

from rollup.errors import ConfigError
from rollup.settings.env import overrides as env_overrides
from rollup.settings.env import secret_keys
from rollup.settings.secrets import Secret

__all__ = [
    "CatalogConfig", "S3Config", "Secret", "load_catalog_config", "parse_catalog_config",
]

HADOOP = "hadoop"
REST = "rest"
CATALOG_TYPES = (HADOOP, REST)
S3_FILE_IO = "org.apache.iceberg.aws.s3.S3FileIO"
KEYS = ("type", "uri", "oauth2_server_uri", "scope", "credential", "token")
"""Keys of ``[iceberg]`` besides the tables ``s3`` and ``properties`` (secrets: environment)."""
S3_KEYS = ("endpoint", "region", "path_style_access", "access_key_id", "secret_access_key",
           "session_token")
"""Keys of ``[iceberg.s3]`` (the last three: environment only)."""


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
        """True for a plain Hadoop catalog, which `rollup.spark.engine` configures by itself."""
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


def _text(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"invalid {where} {value!r}: expected a string")
    return value


def _secret(value: Any, where: str) -> Secret | None:
    if isinstance(value, Secret):
        return value
    text = _text(value, where)
    return Secret(text) if text else None


def check_file_section(section: Any) -> None:
    """Refuse unknown keys and secrets in an ``[iceberg]`` section read from the file.

    Raises:
        ConfigError: naming the key, and for a secret the environment variable to set.
    """
    file = _section(section, "[iceberg] section")
    file_s3 = _section(file.get("s3"), "[iceberg.s3] section")
    _section(file.get("properties"), "[iceberg.properties] section")
    for path, variable in secret_keys().items():
        if path[0] != "iceberg":
            continue
        where, holder = ("[iceberg.s3]", file_s3) if path[1] == "s3" else ("[iceberg]", file)
        if path[-1] in holder:
            raise ConfigError(f"{where} {path[-1]} is a secret and is not read from the config "
                              f"file: set the environment variable {variable} instead")
    unknown = sorted(set(file) - {*KEYS, "s3", "properties"})
    unknown += sorted(f"s3.{key}" for key in set(file_s3) - set(S3_KEYS))
    if unknown:
        allowed = ", ".join(k for k in KEYS if k not in ("credential", "token"))
        raise ConfigError(f"unknown [iceberg] setting {unknown[0]!r}: expected one of "
                          f"{allowed}, s3.*, properties.*")


def parse_catalog_config(section: Any) -> CatalogConfig:
    """The `CatalogConfig` of a merged ``[iceberg]`` tree (the file, the environment on top).

    Raises:
        ConfigError: a bad value, or a REST catalog without uri.
    """
    values = _section(section, "[iceberg] section")
    s3_values = _section(values.get("s3"), "[iceberg.s3] section")
    extra = _section(values.get("properties"), "[iceberg.properties] section")
    s3 = None
    if s3_values:
        path_style = s3_values.get("path_style_access")
        s3 = S3Config(
            endpoint=_text(s3_values.get("endpoint"), "s3 endpoint"),
            region=_text(s3_values.get("region"), "s3 region"),
            path_style_access=None if path_style is None
            else _flag(path_style, "s3 path_style_access"),
            access_key_id=_secret(s3_values.get("access_key_id"), "s3 access_key_id"),
            secret_access_key=_secret(s3_values.get("secret_access_key"),
                                      "s3 secret_access_key"),
            session_token=_secret(s3_values.get("session_token"), "s3 session_token"),
        )
    return CatalogConfig(
        type=(_text(values.get("type"), "catalog type") or HADOOP).lower(),
        uri=_text(values.get("uri"), "catalog uri"),
        credential=_secret(values.get("credential"), "credential"),
        token=_secret(values.get("token"), "token"),
        oauth2_server_uri=_text(values.get("oauth2_server_uri"), "oauth2_server_uri"),
        scope=_text(values.get("scope"), "scope"),
        s3=s3,
        properties={str(k): str(v) for k, v in extra.items()},
    )


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `top` laid over it, tables merged key by key (neither is changed)."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        merged[key] = (merge(below, value)
                       if isinstance(value, Mapping) and isinstance(below, Mapping) else value)
    return merged


def load_catalog_config(
    section: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> CatalogConfig:
    """The catalog configuration of an ``[iceberg]`` file section and the environment.

    `rollup.settings.config.load_settings` gives the same as `Settings.iceberg`. Environment
    variables
    (``ROLLUP_CATALOG_*``, ``ROLLUP_S3_*``; `env`, default `os.environ`) override the
    section; secrets come from the environment only.

    Raises:
        ConfigError: an unknown key, a bad value, or a secret written in the file.
    """
    check_file_section(section)
    tree = env_overrides(env).get("iceberg", {})
    return parse_catalog_config(merge(_section(section, "[iceberg] section"), tree))
