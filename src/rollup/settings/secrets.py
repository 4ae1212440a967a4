"""Redaction of credentials in settings, messages, printed commands and log records.

The one redaction module of rollup: one marker (`MASK`, ``***``) and one secret-key pattern
(`SECRET_KEY_PATTERN`, also given to Spark as ``spark.redaction.regex``). Catalog and
storage credentials reach rollup through the environment; they must never be printed or
logged. `redact` masks the values of secret-looking keys in a mapping and in text
(``key=value``, ``key: value``, ``"key": "value"``), the user info of
``scheme://user:password@host`` URIs, and any value passed in `known` (e.g. the values of
secret environment variables). `Secret` holds one secret value; `RedactingFilter` applies
`redact` to every log record.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, overload

import attrs

MASK = "***"
_SECRET_WORDS = (r"secret|passw(?:or)?d|token|credential|access[._-]?key|api[._-]?key"
                 r"|private[._-]?key|session[._-]?key|authorization|auth[._-]?string")
SECRET_KEY_PATTERN = f"(?i){_SECRET_WORDS}"
"""Key names whose values are secrets, as a regex that Python and Java (Spark's
``spark.redaction.regex``) both read: e.g. ``s3.secret-access-key``, ``AWS_SESSION_TOKEN``,
``spark.hadoop.fs.s3a.access.key``, ``credential``, ``PGPASSWORD``, ``PREFECT_API_AUTH_STRING``."""
SECRET_KEY = re.compile(_SECRET_WORDS, re.IGNORECASE)

_KEY_VALUE = re.compile(
    rf"""(?P<key>["']?[A-Za-z0-9_.\-]*(?:{_SECRET_WORDS})[A-Za-z0-9_.\-]*["']?)"""
    r"""(?P<sep>\s*[=:]\s*)(?P<value>"[^"]*"|'[^']*'|[^\s,;&}\])]+)""",
    re.IGNORECASE)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]+@")
_MIN_KNOWN = 4  # shorter "secrets" would mask ordinary words and digits


def is_secret_key(key: str) -> bool:
    """True if a configuration or environment key names a secret."""
    return bool(SECRET_KEY.search(str(key)))


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (to mask them anywhere)."""
    env = os.environ if environ is None else environ
    return [v for k, v in env.items() if is_secret_key(k) and len(v) >= _MIN_KNOWN]


def _mask_text(text: str, known: Iterable[str]) -> str:
    for value in sorted({k for k in known if k and len(k) >= _MIN_KNOWN}, key=len, reverse=True):
        text = text.replace(value, MASK)

    def key_value(match: re.Match[str]) -> str:
        value = match.group("value")
        quote = value[0] if value[:1] in ("'", '"') else ""
        return f"{match.group('key')}{match.group('sep')}{quote}{MASK}{quote}"

    text = _KEY_VALUE.sub(key_value, text)
    return _USERINFO.sub(lambda m: f"{m.group('head')}{MASK}@", text)


@overload
def redact(value: str, known: Iterable[str] = ()) -> str: ...
@overload
def redact(value: Mapping[str, Any], known: Iterable[str] = ()) -> dict[str, Any]: ...


def redact(value: str | Mapping[str, Any], known: Iterable[str] = ()) -> str | dict[str, Any]:
    """A copy of `value` (text or a mapping, nested) with every secret replaced by ``***``.

    Args:
        value: a message, or a mapping such as a Spark conf or a TOML section.
        known: secret values to mask wherever they appear (default: none; pass
            `secret_env_values()` to include the secret environment variables).
    """
    known = list(known)
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if is_secret_key(str(key)) and item is not None and not isinstance(item, Mapping):
                result[key] = MASK
            elif isinstance(item, Mapping | str):
                result[key] = redact(item, known)
            else:
                result[key] = item
        return result
    return _mask_text(str(value), known)


def redacted_repr(conf: Mapping[str, Any]) -> str:
    """``repr`` of a mapping with secrets masked (for attrs ``repr=``)."""
    return repr(redact(conf))


@attrs.frozen(repr=False)
class Secret:
    """A secret string: shown as ``***`` by repr/str; ``.value`` gives the real text."""

    value: str

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    __str__ = __repr__


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets from every record's message."""

    def __init__(self, known: Iterable[str] | None = None) -> None:
        super().__init__()
        self.known = list(known) if known is not None else None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        known = self.known if self.known is not None else secret_env_values()
        cleaned = redact(message, known)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add a RedactingFilter to every handler of `logger` (default: root) that has none."""
    target = logger or logging.getLogger()
    flt = RedactingFilter()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
    return flt
