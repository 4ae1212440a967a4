"""Every ``ROLLUP_*`` environment variable rollup reads, read here and nowhere else.

A variable either overrides one key of rollup.toml (`Variable.key`, a path such as
``("iceberg", "uri")``) or exists only in the environment (secrets, the jar cache, the
config file's path). `overrides` turns the set variables into a tree shaped like the TOML
file, which `rollup.settings.config.load_settings` merges between the file and the command line.
Every function takes an explicit ``environ`` mapping (default `os.environ`) for tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import attrs

from rollup.errors import ConfigError


@attrs.frozen
class Variable:
    """One environment variable: its name, the rollup.toml key it overrides, if any."""

    name: str
    key: tuple[str, ...] | None = None
    """Path of the rollup.toml key it overrides; None: environment only."""
    secret: bool = False
    """Never read from the file: the key at `key` is refused there."""


VARIABLES: tuple[Variable, ...] = (
    Variable("ROLLUP_CONFIG"),
    Variable("ROLLUP_WAREHOUSE", ("warehouse",)),
    Variable("ROLLUP_CATALOG", ("catalog",)),
    Variable("ROLLUP_NAMESPACE", ("namespace",)),
    Variable("ROLLUP_SPARK_MASTER", ("master",)),
    Variable("ROLLUP_DRIVER_MEMORY", ("spark", "spark.driver.memory")),
    Variable("ROLLUP_SPARK_LOG_LEVEL", ("spark_log_level",)),
    Variable("ROLLUP_JARS_DIR"),
    Variable("ROLLUP_ICEBERG_JARS"),
    Variable("ROLLUP_ICEBERG_PACKAGES"),
    Variable("ROLLUP_CATALOG_TYPE", ("iceberg", "type")),
    Variable("ROLLUP_CATALOG_URI", ("iceberg", "uri")),
    Variable("ROLLUP_CATALOG_OAUTH2_SERVER_URI", ("iceberg", "oauth2_server_uri")),
    Variable("ROLLUP_CATALOG_SCOPE", ("iceberg", "scope")),
    Variable("ROLLUP_CATALOG_CREDENTIAL", ("iceberg", "credential"), secret=True),
    Variable("ROLLUP_CATALOG_TOKEN", ("iceberg", "token"), secret=True),
    Variable("ROLLUP_S3_ENDPOINT", ("iceberg", "s3", "endpoint")),
    Variable("ROLLUP_S3_REGION", ("iceberg", "s3", "region")),
    Variable("ROLLUP_S3_PATH_STYLE_ACCESS", ("iceberg", "s3", "path_style_access")),
    Variable("ROLLUP_S3_ACCESS_KEY_ID", ("iceberg", "s3", "access_key_id"), secret=True),
    Variable("ROLLUP_S3_SECRET_ACCESS_KEY", ("iceberg", "s3", "secret_access_key"), secret=True),
    Variable("ROLLUP_S3_SESSION_TOKEN", ("iceberg", "s3", "session_token"), secret=True),
    Variable("ROLLUP_SUBMIT_MASTER", ("orchestration", "submit_master")),
    Variable("ROLLUP_LEAN_DATA"),
)
BY_NAME: Mapping[str, Variable] = {v.name: v for v in VARIABLES}


def value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of the registered variable `name`, or None when unset or blank.

    Raises:
        ConfigError: `name` is not one of `VARIABLES` (every variable is listed there).
    """
    if name not in BY_NAME:
        raise ConfigError(f"unknown environment variable {name!r}: expected one of "
                          f"{', '.join(BY_NAME)}")
    text = (os.environ if environ is None else environ).get(name, "").strip()
    return text or None


def overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The set variables that override rollup.toml keys, as a tree shaped like the file."""
    tree: dict[str, Any] = {}
    for variable in VARIABLES:
        text = value(variable.name, environ)
        if variable.key is None or text is None:
            continue
        node = tree
        for part in variable.key[:-1]:
            node = node.setdefault(part, {})
        node[variable.key[-1]] = text
    return tree


def secret_keys() -> dict[tuple[str, ...], str]:
    """rollup.toml paths that must not be in the file -> the variable to use instead."""
    return {v.key: v.name for v in VARIABLES if v.secret and v.key is not None}
