"""Provision the jars that give Spark an Iceberg runtime, without Maven.

Maven Central is often unreachable on the machines rollup targets, so ``spark.jars.packages``
cannot work there. The Apache Iceberg Spark runtime jar is, however, published on PyPI inside
``snowpark-connect-deps-iceberg``. That repackaged jar lacks the Jackson classes that Iceberg
relocates to ``org.apache.iceberg.shaded.com.fasterxml.jackson``, so every catalog call fails
with ``ClassNotFoundException: ...shaded.com.fasterxml.jackson.core.JsonFactoryBuilder``.
We rebuild those classes from the Jackson 2.15.2 jars that pyspark ships: rename the entries
and rewrite the class-name strings in each class file's constant pool (what Maven's shade
plugin does). Results are cached under ``$ROLLUP_JARS_DIR`` or ``~/.cache/rollup/jars`` and
written atomically (temp file + ``os.replace``).

Overrides: ``ROLLUP_ICEBERG_JARS`` (comma-separated jar paths, used as-is) and
``ROLLUP_ICEBERG_PACKAGES`` (Maven coordinates for ``spark.jars.packages``, for machines that
reach Maven), given as arguments (`rollup.settings.config.EngineConfig`) or, when not given, read
from
the environment by `rollup.settings.env`.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from rollup.errors import ConfigError, EngineError
from rollup.settings.env import value as env_value

RUNTIME_JAR = "iceberg-spark-runtime-3.5_2.12-1.10.2.jar"
WHEEL_REQUIREMENT = "snowpark-connect-deps-iceberg==1.0.3"
JACKSON_VERSION = "2.15.2"
JACKSON_ARTIFACTS = ("core", "databind", "annotations")
SHADED_PREFIX = "org/apache/iceberg/shaded/"
# "com/fasterxml/jackson/" and "com.fasterxml.jackson.", unless already relocated (idempotent).
_RELOCATION = re.compile(
    rb"(?<!org/apache/iceberg/shaded/)(?<!org\.apache\.iceberg\.shaded\.)"
    rb"com([/.])fasterxml\1jackson\1"
)
_PACKAGE = "com/fasterxml/jackson/"
_RELOCATION_REVISION = "r2"  # bump when the relocation changes, so caches are rebuilt


def cache_dir_default(jars_dir: str | os.PathLike[str] | None = None) -> Path:
    """The jar cache: `jars_dir`, else ``$ROLLUP_JARS_DIR``, else ``~/.cache/rollup/jars``."""
    chosen = jars_dir or env_value("ROLLUP_JARS_DIR")
    return Path(chosen) if chosen else Path.home() / ".cache" / "rollup" / "jars"


def _explicit_jars(jars: Sequence[str] | None) -> list[str]:
    if jars is None:
        text = env_value("ROLLUP_ICEBERG_JARS") or ""
        jars = text.split(",")
    return [p.strip() for p in jars if p.strip()]


def relocate_bytes(data: bytes) -> bytes:
    """Apply the Jackson relocation to a string (entry name, service file, Utf8 constant)."""
    return _RELOCATION.sub(
        lambda m: SHADED_PREFIX.replace("/", m[1].decode()).encode() + m[0], data
    )


def relocate_class(data: bytes) -> bytes:
    """Rewrite the CONSTANT_Utf8 entries of a class file; the rest is copied unchanged."""
    if data[:4] != b"\xca\xfe\xba\xbe":
        raise EngineError("not a class file (bad magic)")
    count = struct.unpack_from(">H", data, 8)[0]  # constant_pool_count: slots 1..count-1
    out = [data[:10]]
    pos, slot = 10, 1
    while slot < count:
        tag = data[pos]
        if tag == 1:  # CONSTANT_Utf8: u2 length, then (modified UTF-8) bytes
            length = struct.unpack_from(">H", data, pos + 1)[0]
            text = relocate_bytes(data[pos + 3 : pos + 3 + length])
            if len(text) > 0xFFFF:
                raise EngineError("relocated constant exceeds 65535 bytes")
            out.append(b"\x01" + struct.pack(">H", len(text)) + text)
            pos += 3 + length
        elif tag in _CONSTANT_SIZES:
            end = pos + 1 + _CONSTANT_SIZES[tag]
            out.append(data[pos:end])
            pos = end
        else:
            raise EngineError(f"unknown constant pool tag {tag} at offset {pos}")
        slot += 2 if tag in (5, 6) else 1  # Long and Double take two slots
    out.append(data[pos:])  # access flags, fields, methods, attributes: unchanged
    return b"".join(out)


# Payload bytes after the tag byte, for every constant kind except Utf8 (tag 1):
# 2 = Class, String, MethodType, Module, Package; 3 = MethodHandle; 4 = Integer, Float,
# Field/Method/InterfaceMethod refs, NameAndType, Dynamic, InvokeDynamic; 8 = Long, Double.
_CONSTANT_SIZES = {
    **dict.fromkeys((7, 8, 16, 19, 20), 2),
    15: 3,
    **dict.fromkeys((3, 4, 9, 10, 11, 12, 17, 18), 4),
    **dict.fromkeys((5, 6), 8),
}


def relocate_jar(src: Path, dst: IO[bytes]) -> None:
    """Write a relocated copy of jar ``src`` to the binary stream ``dst``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            name = info.filename
            if name.startswith("META-INF/versions/") or name == "module-info.class":
                continue  # module descriptors and Java 11+ variants: not needed on a classpath
            data = zin.read(info)
            if name.startswith("META-INF/services/com.fasterxml.jackson."):
                name = "META-INF/services/" + relocate_bytes(name[18:].encode()).decode()
                data = relocate_bytes(data)
            elif name.startswith(_PACKAGE) or _PACKAGE.startswith(name):  # incl. parent dirs
                name = SHADED_PREFIX + name
                if name.endswith(".class"):
                    data = relocate_class(data)
            new = zipfile.ZipInfo(name, info.date_time)
            new.external_attr = info.external_attr
            new.compress_type = zipfile.ZIP_STORED if name.endswith("/") else zipfile.ZIP_DEFLATED
            zout.writestr(new, data)


@contextmanager
def atomic_write(path: Path) -> Iterator[IO[bytes]]:
    """Yield a binary temp file next to ``path``, renamed onto ``path`` only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; the cache may be shared
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _runtime_jar(cache: Path) -> Path:
    try:
        import snowpark_connect_deps_iceberg as deps

        for jar in deps.list_jars():
            if Path(jar).name == RUNTIME_JAR:
                return Path(jar)
    except ImportError:
        pass
    target = cache / RUNTIME_JAR
    if target.is_file():
        return target
    print(f"rollup: downloading {WHEEL_REQUIREMENT} from PyPI (~77 MB) ...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_REQUIREMENT, "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise EngineError(f"cannot download {WHEEL_REQUIREMENT}: {last}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            member = next((n for n in wheel.namelist() if n.endswith("/" + RUNTIME_JAR)), None)
            if member is None:
                raise EngineError(f"{wheels[0].name} does not contain {RUNTIME_JAR}")
            with wheel.open(member) as src, atomic_write(target) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return target


def _jackson_jars(cache: Path) -> list[Path]:
    import pyspark

    pyspark_jars = Path(pyspark.__file__).parent / "jars"
    jars = []
    for artifact in JACKSON_ARTIFACTS:
        src = pyspark_jars / f"jackson-{artifact}-{JACKSON_VERSION}.jar"
        target = (
            cache
            / f"iceberg-shaded-jackson-{artifact}-{JACKSON_VERSION}-{_RELOCATION_REVISION}.jar"
        )
        if not target.is_file():
            if not src.is_file():
                raise EngineError(f"pyspark jar not found: {src} (is pyspark 3.5.x installed?)")
            with atomic_write(target) as dst:
                relocate_jar(src, dst)
        jars.append(target)
    return jars


def iceberg_jars(cache_dir: Path | None = None, *,
                 jars: Sequence[str] | None = None) -> list[Path]:
    """Jar paths for ``spark.jars``: the Iceberg runtime plus the relocated Jackson jars.

    `jars` (default: ``ROLLUP_ICEBERG_JARS``, comma-separated), when not empty, is returned
    instead, checked to exist.
    """
    explicit = _explicit_jars(jars)
    if explicit:
        paths = [Path(p).expanduser() for p in explicit]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ConfigError(f"ROLLUP_ICEBERG_JARS names missing jar(s): {', '.join(missing)}")
        return paths
    cache = Path(cache_dir) if cache_dir is not None else cache_dir_default()
    try:
        return [_runtime_jar(cache), *_jackson_jars(cache)]
    except (OSError, zipfile.BadZipFile) as exc:
        raise EngineError(f"cannot provision Iceberg jars in {cache}: {exc}") from exc


def spark_jar_conf(cache_dir: Path | None = None, *, jars: Sequence[str] | None = None,
                   packages: str | None = None) -> dict[str, str]:
    """Spark conf entries that put Iceberg on the classpath.

    `packages` (Maven coordinates; default ``ROLLUP_ICEBERG_PACKAGES``) gives
    ``{"spark.jars.packages": ...}``; otherwise ``{"spark.jars": <comma-separated
    iceberg_jars()>}``. With both explicit jars (`jars`, default ``ROLLUP_ICEBERG_JARS``) and
    packages, both keys are returned.
    """
    packages = (packages if packages is not None else env_value("ROLLUP_ICEBERG_PACKAGES")
                or "").strip()
    explicit = _explicit_jars(jars)
    if packages and not explicit:
        return {"spark.jars.packages": packages}
    conf = {"spark.jars": ",".join(str(p) for p in iceberg_jars(cache_dir, jars=explicit))}
    if packages:
        conf["spark.jars.packages"] = packages
    return conf


ICEBERG_VERSION = RUNTIME_JAR.removesuffix(".jar").rsplit("-", 1)[1]  # the PyPI jar's version
RUNTIME_PACKAGE = f"org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:{ICEBERG_VERSION}"
# The REST client's HTTP library, as the official runtime jar shades it (the PyPI repackaging
# of the runtime leaves it out, as it does Jackson).
SHADED_HTTP_CLIENT = "org/apache/iceberg/shaded/org/apache/hc/client5/"


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


def check_rest_jars(jars: Sequence[str], packages: str | None) -> None:
    """Raise ConfigError unless the jars (or Maven packages) give the REST client.

    Maven packages (``spark.jars.packages``) bring the official runtime, which has it.
    """
    if (packages or "").strip() or has_http_client(jars):
        return
    raise ConfigError(
        "the REST catalog needs the official Iceberg runtime jar (the PyPI repackaging lacks "
        f"its HTTP client): set ROLLUP_ICEBERG_PACKAGES={RUNTIME_PACKAGE} or "
        "ROLLUP_ICEBERG_JARS to the official runtime jar (see docs/deploy.md)"
    )
