"""Tests for rollup.spark.jars: Jackson relocation and jar provisioning (no Spark needed)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rollup.errors import ConfigError, EngineError
from rollup.spark import jars

SHADED = "org/apache/iceberg/shaded/com/fasterxml/jackson/"


def utf8(text: str) -> bytes:
    raw = text.encode()
    return b"\x01" + struct.pack(">H", len(raw)) + raw


def make_class(constants: list[bytes], slots: int, tail: bytes) -> bytes:
    """A class file header + constant pool (``slots`` used slots) + arbitrary tail bytes."""
    return (
        b"\xca\xfe\xba\xbe\x00\x00\x00\x3d"
        + struct.pack(">H", slots + 1)
        + b"".join(constants)
        + tail
    )


def read_utf8_constants(data: bytes) -> list[str]:
    """The Utf8 constants of a class file (a minimal independent parser for the tests)."""
    sizes = jars._CONSTANT_SIZES
    count = struct.unpack_from(">H", data, 8)[0]
    pos, slot, found = 10, 1, []
    while slot < count:
        tag = data[pos]
        if tag == 1:
            length = struct.unpack_from(">H", data, pos + 1)[0]
            found.append(data[pos + 3 : pos + 3 + length].decode())
            pos += 3 + length
        else:
            pos += 1 + sizes[tag]
        slot += 2 if tag in (5, 6) else 1
    return found


def test_relocate_class_rewrites_utf8_and_keeps_everything_else() -> None:
    tail = b"\x00\x21\x00\x02\x00\x00" + bytes(range(256))  # flags, this, super, ... (opaque)
    constants = [
        utf8("com/fasterxml/jackson/core/JsonFactory"),  # 1
        b"\x07\x00\x01",  # 2 Class -> #1
        b"\x05" + struct.pack(">q", -1),  # 3-4 Long (two slots)
        b"\x06" + struct.pack(">d", 1.5),  # 5-6 Double (two slots)
        utf8("Lcom/fasterxml/jackson/databind/ObjectMapper;"),  # 7
        b"\x03\x00\x00\x00\x07",  # 8 Integer
        b"\x0f\x06\x00\x02",  # 9 MethodHandle
        utf8("com.fasterxml.jackson.annotation.JsonProperty"),  # 10
        utf8("java/lang/Object"),  # 11
        b"\x12\x00\x00\x00\x0b",  # 12 InvokeDynamic
        b"\x13\x00\x0b\x14\x00\x0b",  # 13 Module, 14 Package
    ]
    original = make_class(constants, 14, tail)
    relocated = jars.relocate_class(original)

    assert relocated.endswith(tail)
    assert read_utf8_constants(relocated) == [
        SHADED + "core/JsonFactory",
        "L" + SHADED + "databind/ObjectMapper;",
        SHADED.replace("/", ".") + "annotation.JsonProperty",
        "java/lang/Object",
    ]
    # Relocation is idempotent, and a class without Jackson names is unchanged byte for byte.
    assert jars.relocate_class(relocated) == relocated
    plain = make_class([utf8("java/lang/Object"), b"\x07\x00\x01"], 2, tail)
    assert jars.relocate_class(plain) == plain


def test_relocate_class_rejects_garbage() -> None:
    with pytest.raises(EngineError):
        jars.relocate_class(b"PK\x03\x04 not a class")
    with pytest.raises(EngineError, match="tag 2"):
        jars.relocate_class(make_class([b"\x02\x00"], 1, b""))


def test_relocated_real_class_has_same_structure() -> None:
    import pyspark

    src = Path(pyspark.__file__).parent / "jars" / "jackson-core-2.15.2.jar"
    with zipfile.ZipFile(src) as jar:
        data = jar.read("com/fasterxml/jackson/core/JsonFactoryBuilder.class")
    relocated = jars.relocate_class(data)
    before, after = read_utf8_constants(data), read_utf8_constants(relocated)
    assert len(before) == len(after)
    assert [jars.relocate_bytes(s.encode()).decode() for s in before] == after
    assert not any("com/fasterxml" in s and SHADED not in s for s in after)
    # Everything after the pool is identical (same length difference as the Utf8 growth).
    growth = sum(len(a) - len(b) for a, b in zip(after, before, strict=True))
    assert len(relocated) - len(data) == growth


def test_iceberg_jars_builds_relocated_jackson(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ROLLUP_ICEBERG_JARS", raising=False)
    paths = jars.iceberg_jars(tmp_path)
    assert [p.name for p in paths][0] == jars.RUNTIME_JAR
    assert all(p.is_file() for p in paths)
    names: set[str] = set()
    for path in paths[1:]:
        assert path.parent == tmp_path
        with zipfile.ZipFile(path) as jar:
            assert jar.testzip() is None
            entries = jar.namelist()
        names.update(entries)
        assert not [n for n in entries if n.startswith(("com/", "META-INF/versions/"))]
        assert "module-info.class" not in entries
    for cls in ("core/JsonFactoryBuilder", "databind/ObjectMapper", "annotation/JsonProperty"):
        assert f"{SHADED}{cls}.class" in names
    assert (
        "META-INF/services/org.apache.iceberg.shaded.com.fasterxml.jackson.core.JsonFactory"
        in names
    )
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]
    # Cached: a second call reuses the files.
    stamps = [p.stat().st_mtime_ns for p in paths[1:]]
    assert [p.stat().st_mtime_ns for p in jars.iceberg_jars(tmp_path)[1:]] == stamps


@pytest.mark.skipif(shutil.which("javap") is None, reason="javap (a JDK) not installed")
def test_relocated_class_loads_in_javap(tmp_path: Path) -> None:
    core = jars.iceberg_jars(tmp_path)[1]
    out = subprocess.run(
        [
            "javap",
            "-cp",
            str(core),
            "org.apache.iceberg.shaded.com.fasterxml.jackson.core.JsonFactory",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "org.apache.iceberg.shaded.com.fasterxml.jackson.core.TokenStreamFactory" in out


def test_runtime_jar_downloaded_when_package_missing(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "snowpark_connect_deps_iceberg", None)  # import fails
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        wheel = (
            Path(cmd[cmd.index("-d") + 1]) / "snowpark_connect_deps_iceberg-1.0.3-py3-none-any.whl"
        )
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"snowpark_connect_deps_iceberg/jars/{jars.RUNTIME_JAR}", b"fake jar")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(jars.subprocess, "run", fake_run)
    path = jars._runtime_jar(tmp_path)
    assert path == tmp_path / jars.RUNTIME_JAR and path.read_bytes() == b"fake jar"
    assert calls[0][1:5] == ["-m", "pip", "download", "--no-deps"]
    assert jars.WHEEL_REQUIREMENT in calls[0]
    assert "downloading" in capsys.readouterr().err
    assert jars._runtime_jar(tmp_path) == path and len(calls) == 1  # cached


def test_runtime_jar_download_failure_is_engine_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "snowpark_connect_deps_iceberg", None)
    monkeypatch.setattr(
        jars.subprocess,
        "run",
        lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "ERROR: no network\n"),
    )
    with pytest.raises(EngineError, match="no network"):
        jars._runtime_jar(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_explicit_jars_and_packages(tmp_path: Path, monkeypatch) -> None:
    a, b = tmp_path / "a.jar", tmp_path / "b.jar"
    a.write_bytes(b"x")
    b.write_bytes(b"y")
    monkeypatch.setenv("ROLLUP_ICEBERG_JARS", f"{a}, {b}")
    monkeypatch.delenv("ROLLUP_ICEBERG_PACKAGES", raising=False)
    assert jars.iceberg_jars() == [a, b]
    assert jars.spark_jar_conf() == {"spark.jars": f"{a},{b}"}

    monkeypatch.setenv("ROLLUP_ICEBERG_JARS", f"{a},{tmp_path / 'missing.jar'}")
    with pytest.raises(ConfigError, match="missing.jar"):
        jars.iceberg_jars()

    coords = "org.apache.iceberg:iceberg-spark-runtime-3.5_2.12:1.10.2"
    monkeypatch.delenv("ROLLUP_ICEBERG_JARS")
    monkeypatch.setenv("ROLLUP_ICEBERG_PACKAGES", coords)
    assert jars.spark_jar_conf() == {"spark.jars.packages": coords}


def test_cache_dir_from_env(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("ROLLUP_JARS_DIR", str(tmp_path / "c"))
    assert jars.cache_dir_default() == tmp_path / "c"
    assert jars.cache_dir_default(str(tmp_path / "arg")) == tmp_path / "arg"  # argument wins
    monkeypatch.delenv("ROLLUP_JARS_DIR")
    assert jars.cache_dir_default() == Path.home() / ".cache" / "rollup" / "jars"


def test_explicit_arguments_win_over_the_environment(tmp_path: Path, monkeypatch) -> None:
    """Settings pass the jars and packages they loaded; the environment is only a fallback."""
    a = tmp_path / "a.jar"
    a.write_bytes(b"x")
    monkeypatch.setenv("ROLLUP_ICEBERG_JARS", str(tmp_path / "missing.jar"))
    monkeypatch.setenv("ROLLUP_ICEBERG_PACKAGES", "g:from-env:1")
    assert jars.spark_jar_conf(jars=[str(a)], packages="") == {"spark.jars": str(a)}
    assert jars.spark_jar_conf(jars=[], packages="g:arg:1") == {"spark.jars.packages": "g:arg:1"}
    assert jars.iceberg_jars(jars=[str(a)]) == [a]
