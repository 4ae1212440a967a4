"""Settings: where the warehouse is, which catalog/namespace, and the level DAG.

Read from (lowest to highest precedence) defaults, a TOML file (`--config FILE`,
`$ROLLUP_CONFIG`, or `./rollup.toml` when present), environment variables
(`ROLLUP_WAREHOUSE`, `ROLLUP_CATALOG`, `ROLLUP_NAMESPACE`) and command-line flags.

Example `rollup.toml`::

    warehouse = "./warehouse"
    namespace = "market_data"

    [levels]            # timeframe = parent ("trades" for the root)
    1m = "trades"
    5m = "1m"
    15m = "5m"
    30m = "5m"
    1h = "30m"
    1d = "1h"

    [retention]         # days; 0 keeps forever
    1m = 30
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs

from rollup.catalogs import redacted_repr, session_catalog_conf
from rollup.errors import ConfigError
from rollup.identifiers import check_identifier
from rollup.source import TradeSource
from rollup.tables import DEFAULT_CATALOG, DEFAULT_NAMESPACE, DEFAULT_TRADES_TABLE
from rollup.timeframes import TRADES, Dag


@attrs.frozen
class Settings:
    """Everything a command needs to find its tables."""

    warehouse: str | None = None
    catalog: str = attrs.field(default=DEFAULT_CATALOG)
    namespace: str = attrs.field(default=DEFAULT_NAMESPACE)
    trades_table: str = attrs.field(default=DEFAULT_TRADES_TABLE)
    dag: Dag = attrs.field(factory=Dag.standard)
    master: str | None = None
    spark_conf: Mapping[str, str] = attrs.field(factory=dict, repr=redacted_repr)
    source: TradeSource | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    """Other TOML sections (e.g. [source], [quality]) for the modules that read them."""

    @catalog.validator
    def _check_catalog(self, _: object, value: str) -> None:
        check_identifier(value, "catalog name")

    @namespace.validator
    def _check_namespace(self, _: object, value: str) -> None:
        check_identifier(value, "namespace")

    @trades_table.validator
    def _check_trades(self, _: object, value: str) -> None:
        check_identifier(value, "table name")


def _dag_from(section: Mapping[str, Any] | None, retention: Mapping[str, Any] | None) -> Dag:
    dag = Dag.standard()
    if section:
        spec: dict[str, str | None] = {}
        for child, parent in section.items():
            if not isinstance(parent, str):
                raise ConfigError(
                    f"invalid parent {parent!r} for level {child!r}: expected a string")
            spec[str(child)] = None if parent == TRADES else parent
        dag = Dag.from_spec(spec)
    for name, days in (retention or {}).items():
        if not isinstance(days, int) or days < 0:
            raise ConfigError(f"invalid retention {days!r} for {name!r}: expected whole days >= 0")
        dag = dag.replace(name, retention=timedelta(days=days) if days else None)
    return dag


def load_settings(
    config: str | os.PathLike[str] | None = None,
    *,
    warehouse: str | None = None,
    catalog: str | None = None,
    namespace: str | None = None,
) -> Settings:
    """Merge defaults, the config file, the environment and explicit arguments."""
    path = config or os.environ.get("ROLLUP_CONFIG")
    data: dict[str, Any] = {}
    if path is None and Path("rollup.toml").is_file():
        path = "rollup.toml"
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {file} does not exist")
        try:
            data = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
    known = {"warehouse", "catalog", "namespace", "trades_table", "master", "levels",
             "retention", "spark", "source"}
    settings = Settings(
        warehouse=warehouse or os.environ.get("ROLLUP_WAREHOUSE") or data.get("warehouse"),
        catalog=catalog or os.environ.get("ROLLUP_CATALOG") or data.get("catalog")
        or DEFAULT_CATALOG,
        namespace=namespace or os.environ.get("ROLLUP_NAMESPACE") or data.get("namespace")
        or DEFAULT_NAMESPACE,
        trades_table=data.get("trades_table", DEFAULT_TRADES_TABLE),
        dag=_dag_from(data.get("levels"), data.get("retention")),
        master=data.get("master"),
        spark_conf={str(k): str(v) for k, v in (data.get("spark") or {}).items()},
        source=TradeSource.from_config(data["source"]) if data.get("source") else None,
        extra={k: v for k, v in data.items() if k not in known},
    )
    # A REST and/or S3 catalog ([iceberg], ROLLUP_CATALOG_*, ROLLUP_S3_*; see rollup.catalogs).
    catalog_conf = session_catalog_conf(settings.catalog, settings.warehouse, data.get("iceberg"))
    return attrs.evolve(settings, spark_conf={**catalog_conf, **settings.spark_conf})
