"""Redaction of credentials in settings, messages and log records.

Catalog and storage credentials reach rollup through the environment or the config file;
they must never be printed or logged. `redact` masks the values of secret-looking keys in a
mapping and in text (``key=value``, ``key: value``, ``"key": "value"``), the password of
``scheme://user:password@host`` URIs, and any value passed in `known` (e.g. the values of
secret environment variables). `RedactingFilter` applies it to every log record.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any, overload

MASK = "****"
SECRET_KEY = re.compile(
    r"(secret|passw(or)?d|passwd|token|access[._-]?key|credential|api[._-]?key|private[._-]?key"
    r"|session[._-]?key|auth)", re.IGNORECASE)
"""Key names whose values are secrets (matches e.g. `s3.secret-access-key`, `AWS_SESSION_TOKEN`)."""

_KEY_VALUE = re.compile(
    r"""(?P<key>["']?[A-Za-z0-9_.\-]*(?:secret|passw(?:or)?d|passwd|token|access[._-]?key"""
    r"""|credential|api[._-]?key|private[._-]?key|session[._-]?key|auth)[A-Za-z0-9_.\-]*["']?)"""
    r"""(?P<sep>\s*[=:]\s*)(?P<value>"[^"]*"|'[^']*'|[^\s,;&}\])]+)""",
    re.IGNORECASE)
_URI_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+:)(?P<pw>[^@\s/]+)@")
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
    return _URI_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}@", text)


@overload
def redact(value: str, known: Iterable[str] = ()) -> str: ...
@overload
def redact(value: Mapping[str, Any], known: Iterable[str] = ()) -> dict[str, Any]: ...


def redact(value: str | Mapping[str, Any], known: Iterable[str] = ()) -> str | dict[str, Any]:
    """A copy of `value` (text or a mapping, nested) with every secret replaced by ``****``.

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
