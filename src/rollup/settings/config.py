"""Settings: one typed, frozen configuration, read once, with one precedence rule.

Every key is taken from the first of: a command-line flag, its environment variable
(`rollup.settings.env`), rollup.toml (`--config FILE`, `$ROLLUP_CONFIG`, or `./rollup.toml` when
present), the default (`rollup.specs.defaults`). docs/configuration.md lists every key with its
TOML spelling, variable and flag. Loading has no side effects: no Spark conf, no jars, no
directories; the Spark session is configured where it starts (`rollup.spark.engine.get_spark`).

Example `rollup.toml`::

    warehouse = "./warehouse"
    namespace = "market_data"

    [levels]            # timeframe = parent ("trades" for the root)
    1m = "trades"
    5m = "1m"
    30m = "5m"
    1h = "30m"
    1d = "1h"

    [retention]         # days; 0 keeps forever
    1m = 30
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from rollup.errors import ConfigError, InputError, TimeframeError
from rollup.settings import env
from rollup.settings.catalogs import CatalogConfig, check_file_section, merge, parse_catalog_config
from rollup.settings.secrets import redacted_repr
from rollup.specs.defaults import (
    DEFAULT_CATALOG,
    DEFAULT_NAMESPACE,
    DEFAULT_ORPHAN_AGE,
    DEFAULT_RETAIN_LAST,
    DEFAULT_SNAPSHOT_AGE,
    DEFAULT_SPARK_LOG_LEVEL,
    DEFAULT_TRADES_TABLE,
    DEFAULT_WAREHOUSE,
)
from rollup.specs.identifiers import check_identifier
from rollup.specs.trade_ids import TradeIds
from rollup.timeframes import TRADES, Dag, Timeframe
from rollup.timeframes.dag import is_cron
from rollup.transforms.source import TradeSource

if TYPE_CHECKING:
    from rollup.transforms.validate import TimeBounds

__all__ = [
    "DEFAULT_CATALOG", "DEFAULT_NAMESPACE", "DEFAULT_TRADES_TABLE", "EngineConfig",
    "IngestConfig", "MaintenanceConfig", "OrchestrationConfig", "QualityConfig", "Settings",
    "check_cron", "check_master", "engine_from_environment", "load_settings",
    "warehouse_location",
]

TOP_KEYS = ("warehouse", "catalog", "namespace", "trades_table", "master", "spark_log_level")
SECTIONS = ("levels", "retention", "spark", "ingest", "quality", "maintenance", "source",
            "iceberg", "orchestration")
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # s3://b, file:///p, file:/p; not C:/


def _table(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"invalid {where} {value!r}: expected a TOML table")
    return dict(value)


def _known(section: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(k) for k in set(section) - set(keys))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {where}: expected one of "
                          f"{', '.join(keys)}")


def _duration(value: Any, what: str, where: str) -> timedelta | None:
    """A duration written like a timeframe ('30m', '2h', '1d')."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value
    try:
        if not isinstance(value, str):
            raise TimeframeError(str(value))
        return Timeframe.parse(value).duration
    except TimeframeError:
        raise ConfigError(f"invalid {what} {value!r} ({where}): expected a duration such as "
                          "30m, 2h or 1d") from None


def _days(value: Any, key: str) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"invalid [maintenance] {key} {value!r}: expected a number of days")
    return timedelta(days=value)


def warehouse_location(warehouse: str | os.PathLike[str] | None) -> str:
    """The warehouse as a catalog sees it: a URI unchanged, a local path made absolute.

    Pure (creates nothing); `None` is the default ``./warehouse``.
    """
    text = str(warehouse) if warehouse is not None else DEFAULT_WAREHOUSE
    if URI.match(text):
        return text
    return str(Path(text).expanduser().absolute())


# ---------------------------------------------------------------------------------------------
# engine: the Spark session

_MASTER = re.compile(r"^(?:(?:spark|k8s|mesos)://[A-Za-z0-9._:,\-\[\]/]+|yarn"
                     r"|local(?:\[[0-9*]+(?:,[0-9]+)?\])?|local-cluster\[[0-9, ]+\])$")
LOG_LEVELS = ("ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")


def check_master(value: str) -> str:
    """Return `value` if it is a Spark master URL (local[N], spark://host:port, yarn, k8s://...)."""
    if not isinstance(value, str) or not _MASTER.match(value):
        raise ConfigError(f"invalid Spark master {value!r}: expected spark://host:port, yarn, "
                          "k8s://URL or local[N]")
    return value


def _log_level(value: Any) -> str:
    text = str(value).upper()
    if not isinstance(value, str) or text not in LOG_LEVELS:
        raise ConfigError(f"invalid spark_log_level {value!r}: expected one of "
                          f"{', '.join(LOG_LEVELS)}")
    return text


@attrs.frozen
class EngineConfig:
    """The embedded Spark session: master, log level, `[spark]` conf and the Iceberg jars."""

    master: str | None = attrs.field(default=None)
    """None: `rollup.specs.defaults.DEFAULT_MASTER` when the session starts."""
    log_level: str = attrs.field(default=DEFAULT_SPARK_LOG_LEVEL, converter=_log_level)
    spark_conf: Mapping[str, str] = attrs.field(factory=dict, repr=redacted_repr)
    """The `[spark]` section (with ``ROLLUP_DRIVER_MEMORY`` as ``spark.driver.memory``)."""
    jars_dir: str | None = None
    """Cache of the provisioned Iceberg jars (None: ``~/.cache/rollup/jars``)."""
    iceberg_jars: tuple[str, ...] = ()
    """Jars used as they are instead of provisioning them."""
    iceberg_packages: str | None = None
    """Maven coordinates for ``spark.jars.packages`` (machines that reach Maven)."""

    @master.validator
    def _check_master(self, _: object, value: str | None) -> None:
        if value is not None:
            check_master(value)


def _engine(data: Mapping[str, Any], environ: Mapping[str, str] | None) -> EngineConfig:
    spark = _table(data.get("spark"), "[spark] section")
    master = data.get("master")
    if master is not None and not isinstance(master, str):
        raise ConfigError(f"invalid master {master!r}: expected a Spark master URL string")
    jars = env.value("ROLLUP_ICEBERG_JARS", environ) or ""
    return EngineConfig(
        master=master or None,
        log_level=data.get("spark_log_level", DEFAULT_SPARK_LOG_LEVEL),
        spark_conf={str(k): str(v) for k, v in spark.items()},
        jars_dir=env.value("ROLLUP_JARS_DIR", environ),
        iceberg_jars=tuple(p.strip() for p in jars.split(",") if p.strip()),
        iceberg_packages=env.value("ROLLUP_ICEBERG_PACKAGES", environ),
    )


def engine_from_environment(environ: Mapping[str, str] | None = None) -> EngineConfig:
    """The engine settings of the environment alone (for sessions started without Settings)."""
    return _engine(env.overrides(environ), environ)


# ---------------------------------------------------------------------------------------------
# ingest, quality, maintenance

INGEST_KEYS = ("earliest", "max_ahead", "trade_ids", "trade_id_zone")
QUALITY_KEYS = ("max_age", "max_lag")
MAINTENANCE_KEYS = ("snapshot_age_days", "retain_last", "orphan_age_days")
SOURCE_KEYS = ("table", "columns", "time_unit", "dedupe", "trade_ids", "trade_id_zone")


def _earliest(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime | date):
        if isinstance(value, datetime):
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        return None if value is None else datetime(value.year, value.month, value.day,
                                                   tzinfo=UTC)
    if isinstance(value, str):
        from rollup.specs.times import parse_instant

        try:
            return parse_instant(value, "earliest trade time")
        except InputError as exc:
            raise ConfigError(f"{exc} ([ingest] earliest)") from None
    raise ConfigError(f"invalid [ingest] earliest {value!r}: expected a date or a datetime")


@attrs.frozen
class IngestConfig:
    """`[ingest]`: accepted trade times and the files' trade-id scheme."""

    earliest: datetime | None = None
    """None: `rollup.transforms.validate.TimeBounds`'s default."""
    max_ahead: timedelta | None = None
    """None: `rollup.transforms.validate.TimeBounds`'s default."""
    trade_ids: TradeIds = attrs.field(factory=TradeIds)

    def time_bounds(self) -> TimeBounds:
        """The `rollup.transforms.validate.TimeBounds` of these settings (imports pyspark)."""
        from rollup.transforms.validate import TimeBounds

        kwargs: dict[str, Any] = {}
        if self.earliest is not None:
            kwargs["earliest"] = self.earliest
        if self.max_ahead is not None:
            kwargs["ahead"] = self.max_ahead
        return TimeBounds(**kwargs)


def _ingest(section: Mapping[str, Any]) -> IngestConfig:
    _known(section, INGEST_KEYS, "[ingest]")
    return IngestConfig(
        earliest=_earliest(section.get("earliest")),
        max_ahead=_duration(section.get("max_ahead"), "max_ahead", "[ingest] max_ahead"),
        trade_ids=TradeIds.from_config(section),
    )


@attrs.frozen
class QualityConfig:
    """`[quality]`: the freshness limits of `rollup check` and the quality flow."""

    max_age: timedelta | None = None
    """Fail freshness when a level's newest trade is older than this (None: off)."""
    max_lag: timedelta | None = None
    """Fail freshness when a level is this far behind the newest trade (None: off)."""


def _quality(section: Mapping[str, Any]) -> QualityConfig:
    _known(section, QUALITY_KEYS, "[quality]")
    return QualityConfig(
        max_age=_duration(section.get("max_age"), "max age", "[quality] max_age, --max-age"),
        max_lag=_duration(section.get("max_lag"), "max lag", "[quality] max_lag, --max-lag"),
    )


@attrs.frozen
class MaintenanceConfig:
    """`[maintenance]`: snapshot expiry and orphan removal of `rollup retention`/`maintain`."""

    snapshot_age: timedelta = DEFAULT_SNAPSHOT_AGE
    retain_last: int = DEFAULT_RETAIN_LAST
    orphan_age: timedelta = DEFAULT_ORPHAN_AGE



def _maintenance(section: Mapping[str, Any]) -> MaintenanceConfig:
    _known(section, MAINTENANCE_KEYS, "[maintenance]")
    snapshot_age = _days(section.get("snapshot_age_days"), "snapshot_age_days")
    orphan_age = _days(section.get("orphan_age_days"), "orphan_age_days")
    keep = section.get("retain_last", DEFAULT_RETAIN_LAST)
    if isinstance(keep, bool) or not isinstance(keep, int):
        raise ConfigError(f"invalid [maintenance] retain_last {keep!r}: expected a number")
    return MaintenanceConfig(
        snapshot_age=DEFAULT_SNAPSHOT_AGE if snapshot_age is None else snapshot_age,
        retain_last=keep, orphan_age=DEFAULT_ORPHAN_AGE if orphan_age is None else orphan_age)


# ---------------------------------------------------------------------------------------------
# orchestration

FLOW_KINDS = ("cascade", "quality", "retention", "maintenance")
"""Deployments besides one per level; each may have a schedule."""
ORCHESTRATION_KEYS = ("retries", "retry_delay_seconds", "timeout_seconds",
                      "slot_timeout_seconds", "deployment_name", "tags", "schedules",
                      "submit_master", "checks_after_run", "check_lookback_hours",
                      "quality_strict", "collision")
Collision = Literal["CANCEL_NEW", "ENQUEUE"]
_TAG = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_DEPLOYMENT_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def check_cron(value: str, what: str) -> str:
    """Return `value` if it is a five-field cron string (or "" for none), else raise."""
    if not isinstance(value, str):
        raise ConfigError(f"invalid schedule {value!r} for {what}: expected a cron string")
    if value.strip() == "":
        return ""
    if not is_cron(value):
        raise ConfigError(
            f"invalid schedule {value!r} for {what}: expected five cron fields like '*/5 * * * *'"
        )
    return " ".join(value.split())


def _int(data: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"invalid orchestration.{key} {value!r}: expected a whole number >= {minimum}")
    return value


def _bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"invalid orchestration.{key} {value!r}: expected true or false")
    return value


@attrs.frozen
class OrchestrationConfig:
    """`[orchestration]`: Prefect task policy and deployment options (docs/orchestration.md)."""

    retries: int = 2
    retry_delay_seconds: int = 60
    timeout_seconds: int = 300
    slot_timeout_seconds: int = 0
    deployment_name: str | None = None
    tags: tuple[str, ...] = ()
    schedules: Mapping[str, str] = attrs.field(factory=dict)
    submit_master: str | None = None
    checks_after_run: bool = True
    check_lookback_hours: int = 24
    quality_strict: bool = False
    collision: Collision = "CANCEL_NEW"

    KEYS = ORCHESTRATION_KEYS

    def task_options(self) -> dict[str, Any]:
        """Prefect task options for one level run (retries, delay, timeout)."""
        return {"retries": self.retries, "retry_delay_seconds": self.retry_delay_seconds,
                "timeout_seconds": self.timeout_seconds}


def _orchestration(data: Mapping[str, Any], dag: Dag) -> OrchestrationConfig:
    _known(data, ORCHESTRATION_KEYS, "[orchestration]")
    schedules = data.get("schedules") or {}
    if not isinstance(schedules, Mapping):
        raise ConfigError(
            f"invalid orchestration.schedules {schedules!r}: expected a table of cron strings")
    known = set(dag.names()) | set(FLOW_KINDS)
    checked: dict[str, str] = {}
    for key, cron in schedules.items():
        if str(key) not in known:
            raise ConfigError(f"unknown schedule {key!r} in orchestration.schedules: expected "
                              f"one of {', '.join(sorted(known))}")
        checked[str(key)] = check_cron(cron, str(key))
    tags = data.get("tags", [])
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) and _TAG.match(t)
                                                     for t in tags):
        raise ConfigError(f"invalid orchestration.tags {tags!r}: expected a list of short names "
                          "(letters, digits, _ . : -)")
    name = data.get("deployment_name")
    if name is not None and (not isinstance(name, str) or not _DEPLOYMENT_NAME.match(name)):
        raise ConfigError(f"invalid orchestration.deployment_name {name!r}: expected letters, "
                          "digits, _ . - (at most 64)")
    master = data.get("submit_master") or None
    collision = data.get("collision", "CANCEL_NEW")
    if collision not in ("CANCEL_NEW", "ENQUEUE"):
        raise ConfigError(
            f"invalid orchestration.collision {collision!r}: expected CANCEL_NEW or ENQUEUE")
    return OrchestrationConfig(
        retries=_int(data, "retries", 2, 0),
        retry_delay_seconds=_int(data, "retry_delay_seconds", 60, 0),
        timeout_seconds=_int(data, "timeout_seconds", 300, 1),
        slot_timeout_seconds=_int(data, "slot_timeout_seconds", 0, 0),
        deployment_name=name,
        tags=tuple(tags),
        schedules=checked,
        submit_master=check_master(master) if master else None,
        checks_after_run=_bool(data, "checks_after_run", True),
        check_lookback_hours=_int(data, "check_lookback_hours", 24, 0),
        quality_strict=_bool(data, "quality_strict", False),
        collision=collision,
    )


# ---------------------------------------------------------------------------------------------
# Settings


@attrs.frozen(init=False)
class Settings:
    """Everything rollup is configured with: where its tables are, and one typed section per
    concern. Build it with `load_settings`; `Settings()` holds the defaults alone."""

    warehouse: str | None
    catalog: str = attrs.field()
    namespace: str = attrs.field()
    trades_table: str = attrs.field()
    dag: Dag
    engine: EngineConfig
    iceberg: CatalogConfig
    """The Iceberg catalog (`[iceberg]`, ``ROLLUP_CATALOG_*``, ``ROLLUP_S3_*``)."""
    ingest: IngestConfig
    quality: QualityConfig
    maintenance: MaintenanceConfig
    orchestration: OrchestrationConfig
    source: TradeSource | None

    def __init__(
        self, *, warehouse: str | None = None, catalog: str = DEFAULT_CATALOG,
        namespace: str = DEFAULT_NAMESPACE, trades_table: str = DEFAULT_TRADES_TABLE,
        dag: Dag | None = None, engine: EngineConfig | None = None,
        iceberg: CatalogConfig | None = None, ingest: IngestConfig | None = None,
        quality: QualityConfig | None = None, maintenance: MaintenanceConfig | None = None,
        orchestration: OrchestrationConfig | None = None, source: TradeSource | None = None,
        master: str | None = None,
        spark_conf: Mapping[str, str] | None = None,
    ) -> None:
        """`master` and `spark_conf` are shorthands for fields of `engine`."""
        engine = engine or EngineConfig()
        if master is not None:
            engine = attrs.evolve(engine, master=master)
        if spark_conf is not None:
            engine = attrs.evolve(engine, spark_conf=dict(spark_conf))
        self.__attrs_init__(
            warehouse=warehouse, catalog=catalog, namespace=namespace,
            trades_table=trades_table, dag=dag or Dag.standard(), engine=engine,
            iceberg=iceberg or CatalogConfig(), ingest=ingest or IngestConfig(),
            quality=quality or QualityConfig(), maintenance=maintenance or MaintenanceConfig(),
            orchestration=orchestration or OrchestrationConfig(), source=source)

    @catalog.validator
    def _check_catalog(self, _: object, value: str) -> None:
        check_identifier(value, "catalog name")

    @namespace.validator
    def _check_namespace(self, _: object, value: str) -> None:
        check_identifier(value, "namespace")

    @trades_table.validator
    def _check_trades(self, _: object, value: str) -> None:
        check_identifier(value, "table name")

    @property
    def master(self) -> str | None:
        """The Spark master of the embedded session (`engine.master`)."""
        return self.engine.master



def _dag_from(section: Mapping[str, Any], retention: Mapping[str, Any]) -> Dag:
    dag = Dag.standard()
    if section:
        spec: dict[str, str | None] = {}
        for child, parent in section.items():
            if not isinstance(parent, str):
                raise ConfigError(
                    f"invalid parent {parent!r} for level {child!r}: expected a string")
            spec[str(child)] = None if parent == TRADES else parent
        dag = Dag.from_spec(spec)
    for name, days in retention.items():
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise ConfigError(f"invalid retention {days!r} for {name!r}: expected whole days >= 0")
        dag = dag.replace(name, retention=timedelta(days=days) if days else None)
    return dag


def _check_tree(data: Mapping[str, Any], where: str) -> None:
    """Unknown top-level keys, sections that are not tables, secrets in the file."""
    unknown = sorted(str(k) for k in set(data) - {*TOP_KEYS, *SECTIONS})
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r} in {where}: expected one of "
                          f"{', '.join(TOP_KEYS)} or a section [{'], ['.join(SECTIONS)}]")
    for key in SECTIONS:
        _table(data.get(key), f"[{key}] section")
    check_file_section(data.get("iceberg"))


def config_path(config: str | os.PathLike[str] | None = None,
                environ: Mapping[str, str] | None = None) -> str | None:
    """The config file to read: `config`, else ``$ROLLUP_CONFIG``, else ./rollup.toml if any."""
    if config is not None:
        return os.fspath(config)
    path = env.value("ROLLUP_CONFIG", environ)
    if path is None and Path("rollup.toml").is_file():
        path = "rollup.toml"
    return path


def _read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    try:
        return tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None


def _settings(data: Mapping[str, Any], file: Mapping[str, Any],
              environ: Mapping[str, str] | None) -> Settings:
    warehouse = data.get("warehouse")
    if warehouse is not None and not isinstance(warehouse, str):
        raise ConfigError(f"invalid warehouse {warehouse!r}: expected a path or URI string")
    dag = _dag_from(_table(data.get("levels"), "[levels] section"),
                    _table(data.get("retention"), "[retention] section"))
    source = _table(data.get("source"), "[source] section")
    if source:
        _known(source, SOURCE_KEYS, "[source]")
    return Settings(
        warehouse=warehouse or None,
        catalog=data.get("catalog") or DEFAULT_CATALOG,
        namespace=data.get("namespace") or DEFAULT_NAMESPACE,
        trades_table=data.get("trades_table", DEFAULT_TRADES_TABLE),
        dag=dag,
        engine=_engine(data, environ),
        iceberg=parse_catalog_config(data.get("iceberg")),
        ingest=_ingest(_table(data.get("ingest"), "[ingest] section")),
        quality=_quality(_table(data.get("quality"), "[quality] section")),
        maintenance=_maintenance(_table(data.get("maintenance"), "[maintenance] section")),
        orchestration=_orchestration(
            _table(data.get("orchestration"), "[orchestration] section"), dag),
        source=TradeSource.from_config(source) if source else None,
    )


def _drop_none(tree: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _drop_none(v) if isinstance(v, Mapping) else v
            for k, v in tree.items() if v is not None}


def load_settings(
    config: str | os.PathLike[str] | None = None,
    *,
    warehouse: str | None = None,
    catalog: str | None = None,
    namespace: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the settings: flags over the environment over the file over the defaults.

    Args:
        config: the TOML file (default ``$ROLLUP_CONFIG``, else ``./rollup.toml`` if present).
        warehouse, catalog, namespace: the global command-line flags (None: not given).
        overrides: further flags, shaped like the file (e.g. ``{"quality": {"max_age":
            "30m"}}``); None values are not given.
        environ: the environment to read (default `os.environ`).

    Raises:
        ConfigError: a missing or invalid file, an unknown key (the message lists the known
            ones), a value of the wrong type, or a secret written in the file.
    """
    path = config_path(config, environ)
    file = _read_file(path) if path is not None else {}
    _check_tree(file, f"config file {path}")
    flags = _drop_none({"warehouse": warehouse, "catalog": catalog, "namespace": namespace,
                        **(overrides or {})})
    _check_tree(flags, "the command-line options")
    merged = merge(merge(file, env.overrides(environ)), flags)
    return _settings(merged, file, environ)
