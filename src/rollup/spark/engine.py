"""Spark session setup: a local SparkSession with an Iceberg (Hadoop) catalog.

``get_spark()`` builds a session tuned for a small local box, with the Iceberg runtime on the
classpath (see ``rollup.spark.jars``): the only place where Spark conf and jars are put together.
It first checks that Java 17 or newer is on the machine. ``configure_session()`` adapts a
session the user built (notebook, spark-submit) and checks that it has the Iceberg catalog
rollup needs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from rollup.errors import ConfigError, EngineError
from rollup.settings.config import URI, EngineConfig, engine_from_environment, warehouse_location
from rollup.settings.env import value as env_value
from rollup.spark.jars import atomic_write, cache_dir_default, check_rest_jars, spark_jar_conf
from rollup.specs.defaults import DEFAULT_CATALOG, DEFAULT_DRIVER_MEMORY, DEFAULT_MASTER

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["DEFAULT_CATALOG", "JavaVersionError", "check_java", "configure_session",
           "get_spark", "iceberg_conf", "java_version", "resolve_warehouse"]

JAVA_REQUIRED = 17
ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
JAVA_MISSING = (
    "Java 17 not found: install OpenJDK 17 (e.g. apt-get install openjdk-17-jre-headless) "
    "or set JAVA_HOME"
)

_CATALOG_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')
_LOCK = threading.Lock()

# Runtime SQL confs rollup relies on: UTC timestamps and per-partition INSERT OVERWRITE.
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
}


def validate_catalog(catalog: str) -> str:
    """Return ``catalog`` if it is a plain identifier, else raise ConfigError."""
    if not isinstance(catalog, str) or not _CATALOG_RE.fullmatch(catalog):
        raise ConfigError(
            f"invalid catalog name {catalog!r}: use letters, digits and '_' (not first digit)"
        )
    return catalog


def resolve_warehouse(warehouse: str | Path | None) -> str:
    """The Iceberg warehouse location: argument, else ``$ROLLUP_WAREHOUSE``, else ./warehouse.

    URIs (``s3://...``, ``file:///...``) are returned unchanged; a local path is made absolute
    and the directory is created and checked for write access.
    """
    value = warehouse if warehouse is not None else env_value("ROLLUP_WAREHOUSE")
    text = warehouse_location(value)
    if URI.match(text):
        return text
    path = Path(text)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EngineError(
            f"cannot create warehouse directory {path}: {exc.strerror or exc}: pass "
            "--warehouse (or set ROLLUP_WAREHOUSE) to a writable directory"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise EngineError(f"warehouse directory {path} is not writable: pass --warehouse "
                          "(or set ROLLUP_WAREHOUSE) to a writable directory")
    return str(path)


def iceberg_conf(catalog: str, warehouse: str) -> dict[str, str]:
    """Spark conf for an Iceberg Hadoop catalog named ``catalog`` at ``warehouse``."""
    validate_catalog(catalog)
    prefix = f"spark.sql.catalog.{catalog}"
    return {
        "spark.sql.extensions": ICEBERG_EXTENSIONS,
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.type": "hadoop",
        f"{prefix}.warehouse": str(warehouse),
        **SESSION_CONF,
    }


# Spark's default log4j2 setup prints INFO-level banners and a native-hadoop warning at start.
_LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.nativecode.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativecode.level = error
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = fatal
logger.tasks.name = org.apache.spark.scheduler.TaskSetManager
logger.tasks.level = fatal
logger.writes.name = org.apache.spark.sql.execution.datasources.v2
logger.writes.level = fatal
logger.writetask.name = org.apache.spark.sql.execution.datasources.v2.DataWritingSparkTask
logger.writetask.level = fatal
logger.plans.name = org.apache.spark.sql.catalyst.util.SparkStringUtils
logger.plans.level = error
"""
# Failing tasks and aborted writes log their Java stack traces at ERROR from these loggers;
# rollup reports such a failure itself, in one line (see runner.LevelRunError).


def _log4j2_options(jars_dir: str | None = None) -> str:
    """JVM options selecting rollup's quiet log4j2 config (written once to the jar cache)."""
    path = cache_dir_default(jars_dir) / "log4j2-rollup.properties"
    try:
        if not path.is_file() or path.read_text() != _LOG4J2:
            with atomic_write(path) as handle:
                handle.write(_LOG4J2.encode())
    except OSError:
        return ""  # not fatal: Spark falls back to its default logging
    return f"-Dlog4j2.configurationFile={path.as_uri()}"


class JavaVersionError(EngineError):
    """The Java runtime on the machine is missing, cannot run, or is older than Java 17."""


_JAVA_OK: set[str] = set()  # java executables already checked in this process


def _java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        java = Path(java_home) / "bin" / "java"
        if not java.exists():
            raise EngineError(f"JAVA_HOME={java_home} has no bin/java: point it at a Java 17 "
                              "install or unset it")
        return str(java)
    found = shutil.which("java")
    if found is None:
        raise EngineError(JAVA_MISSING)
    return found


def java_version(java: str) -> tuple[int, str]:
    """The feature version of `java` (8 for 1.8, 17 for 17.0.9) and the text it printed.

    Raises:
        JavaVersionError: `java -version` cannot run or prints no version.
    """
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise JavaVersionError(f"cannot run {java} -version ({exc}): install OpenJDK 17 or "
                               "set JAVA_HOME to a Java 17 install") from None
    output = done.stderr + done.stdout
    match = _JAVA_VERSION.search(output)
    if match is None:
        first = (output.strip().splitlines() or ["no output"])[0]
        raise JavaVersionError(f"{java} -version printed no version ({first!r}): install "
                               "OpenJDK 17 or set JAVA_HOME to a Java 17 install")
    major = int(match[1])
    if major == 1 and match[2] is not None:  # 1.8.0_392 is Java 8
        major = int(match[2])
    return major, output[match.start() + len('version "'):].split('"', 1)[0]


def check_java() -> None:
    """Raise unless a Java 17 or newer runtime is found (JAVA_HOME, else ``java`` on PATH).

    ``java -version`` runs once per executable and process.

    Raises:
        EngineError: no Java; JavaVersionError: it cannot run or is older than 17.
    """
    java = _java_executable()
    if java in _JAVA_OK:
        return
    major, text = java_version(java)
    if major < JAVA_REQUIRED:
        raise JavaVersionError(
            f"Java {text} found at {java}, but rollup needs Java {JAVA_REQUIRED} or newer: "
            "install OpenJDK 17 (e.g. apt-get install openjdk-17-jre-headless) and put it on "
            "PATH or set JAVA_HOME")
    _JAVA_OK.add(java)


def _active_session() -> SparkSession | None:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if SparkContext._active_spark_context is not None:
        # A context runs but this thread has no active session: take the default one.
        return SparkSession.builder.getOrCreate()
    return None


def get_spark(
    warehouse: str | Path | None = None,
    *,
    catalog: str = DEFAULT_CATALOG,
    master: str | None = None,
    app_name: str = "rollup",
    conf: Mapping[str, str] | None = None,
    engine: EngineConfig | None = None,
) -> SparkSession:
    """Return the active SparkSession, or build a local one with Iceberg configured.

    An already running session is checked with ``configure_session`` (the catalog must exist;
    an explicit ``warehouse`` must match its warehouse) and returned; ``master``, ``app_name``,
    ``conf`` and ``engine`` then have no effect. A new session gets ``master`` (default
    ``engine.master``, else ``local[2]``), the Iceberg jars, the catalog at
    ``resolve_warehouse(warehouse)``, small-box settings, ``engine.spark_conf`` and finally
    ``conf`` on top. Without ``engine`` (`Settings.engine`), the environment's is used.

    Raises:
        EngineError: no Java 17, an unusable warehouse, or Spark cannot start.
        ConfigError: a bad catalog name, or a REST catalog without a REST-capable runtime jar.
    """
    validate_catalog(catalog)
    with _LOCK:
        existing = _active_session()
        if existing is not None:
            return configure_session(existing, catalog=catalog, warehouse=warehouse)
        check_java()
        engine = engine or engine_from_environment()
        # A REST catalog's warehouse is a name or remote location: no local directory.
        kind = (conf or {}).get(f"spark.sql.catalog.{catalog}.type", "hadoop")
        location = resolve_warehouse(warehouse) if kind == "hadoop" else str(warehouse or "")
        master = master or engine.master or DEFAULT_MASTER
        jar_conf = spark_jar_conf(cache_dir_default(engine.jars_dir), jars=engine.iceberg_jars,
                                  packages=engine.iceberg_packages or "")
        if kind == "rest":
            check_rest_jars(jar_conf.get("spark.jars", "").split(","),
                            jar_conf.get("spark.jars.packages"))
        settings = {
            "spark.sql.shuffle.partitions": "4",
            "spark.sql.adaptive.enabled": "true",
            "spark.sql.adaptive.coalescePartitions.enabled": "true",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.driver.memory": DEFAULT_DRIVER_MEMORY,
            **jar_conf,
            "spark.driver.extraJavaOptions": _log4j2_options(engine.jars_dir),
            **iceberg_conf(catalog, location),
        }
        if master.startswith("local"):
            # No DNS lookups of the host name; Python workers use this interpreter.
            settings["spark.driver.host"] = "127.0.0.1"
            settings["spark.driver.bindAddress"] = "127.0.0.1"
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        user = {**engine.spark_conf, **(conf or {})}
        extra = user.pop("spark.driver.extraJavaOptions", "")
        settings.update(user)
        # The user's JVM options come last, so their own -Dlog4j2.configurationFile wins.
        settings["spark.driver.extraJavaOptions"] = " ".join(
            opt for opt in (settings["spark.driver.extraJavaOptions"], extra) if opt
        )

        from pyspark.sql import SparkSession

        builder = SparkSession.builder.master(master).appName(app_name)
        for key, value in settings.items():
            builder = builder.config(key, value)
        try:
            spark = builder.getOrCreate()
        except Exception as exc:  # py4j/launcher errors: keep one line, chain the cause
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EngineError(f"cannot start Spark (master {master}): {first}") from exc
        spark.sparkContext.setLogLevel(engine.log_level)
        return spark


def _same_location(a: str, b: str) -> bool:
    def norm(loc: str) -> str:
        if loc.startswith("file:"):
            loc = re.sub(r"^file:(//)?", "", loc)
        if URI.match(loc):
            return loc.rstrip("/")
        return str(Path(loc).expanduser().absolute()).rstrip("/")

    return norm(a) == norm(b)


def configure_session(
    spark: SparkSession,
    *,
    catalog: str = DEFAULT_CATALOG,
    warehouse: str | Path | None = None,
) -> SparkSession:
    """Check that a user-provided session has the Iceberg catalog, and set rollup's runtime confs.

    Raises EngineError (one line) naming the conf keys to set when ``catalog`` is not
    configured, or when an explicit ``warehouse`` differs from the catalog's warehouse.
    Sets ``spark.sql.session.timeZone=UTC`` and ``partitionOverwriteMode=dynamic``.
    """
    validate_catalog(catalog)
    key = f"spark.sql.catalog.{catalog}"
    if spark.conf.get(key, None) is None:
        where = str(warehouse) if warehouse is not None else "<warehouse>"
        raise EngineError(
            f"Spark catalog {catalog!r} is not configured: set {key}="
            f"org.apache.iceberg.spark.SparkCatalog, {key}.type=hadoop, {key}.warehouse={where} "
            f"and spark.sql.extensions={ICEBERG_EXTENSIONS} (or use rollup.spark.engine.get_spark)"
        )
    configured = spark.conf.get(f"{key}.warehouse", None)
    if warehouse is not None and configured is not None:
        wanted = str(warehouse)
        if not _same_location(wanted, configured):
            raise EngineError(
                f"the running Spark session's catalog {catalog!r} uses warehouse {configured}, "
                f"not {wanted}: stop it (spark.stop()) or pass the same warehouse"
            )
    for name, value in SESSION_CONF.items():
        spark.conf.set(name, value)
    return spark


_COMMIT_FAILED = "org.apache.iceberg.exceptions.CommitFailedException"
_VALIDATION = "org.apache.iceberg.exceptions.ValidationException"
# Iceberg's conflict validations say "Found conflicting files" / "Found new conflicting
# delete files"; other ValidationExceptions (e.g. "Cannot delete file where some, but not
# all, rows match filter") are not races and must not be retried.
_CONFLICT_WORD = "conflicting"


def is_commit_conflict(exc: BaseException) -> bool:
    """True if ``exc`` (a Py4JJavaError) comes from a concurrent Iceberg commit.

    Iceberg retries ``CommitFailedException`` itself; what reaches Python after a lost race is
    a ``py4j.protocol.Py4JJavaError`` whose Java exception (or a cause) is a
    ``ValidationException`` about conflicting files ("Found conflicting files ...") or, with
    retries exhausted, a ``CommitFailedException``. Other validation failures are not races.
    """
    java = getattr(exc, "java_exception", None)
    depth = 0
    while java is not None and depth < 20:
        try:
            name = java.getClass().getName()
            if name == _COMMIT_FAILED or (
                    name == _VALIDATION and _CONFLICT_WORD in str(java.getMessage() or "")):
                return True
            java = java.getCause()
        except Exception:  # the JVM is gone or the object is not a Java exception
            return False
        depth += 1
    return False
