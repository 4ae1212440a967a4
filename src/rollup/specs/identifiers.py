"""Validation of identifiers that reach SQL (catalog, namespace and table names)."""

from __future__ import annotations

import re

from rollup.errors import ConfigError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_identifier(value: str, what: str = "identifier") -> str:
    """Return `value` if it is a plain SQL identifier, else raise ConfigError naming it."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ConfigError(
            f"invalid {what} {value!r}: expected letters, digits and underscores, "
            "not starting with a digit (at most 128 characters)"
        )
    return value


def qualified(*parts: str) -> str:
    """A dotted, backtick-quoted name built from validated identifiers."""
    return ".".join(f"`{check_identifier(p)}`" for p in parts)
