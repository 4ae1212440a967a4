"""Trade-id schemes: how a feed's own trade ids become the stored 64-bit `trade_id` key.

Bars order trades by (ts, trade_id) for open and close, and the trades table identifies a
trade by (exchange, symbol, trade_id). Feeds differ, so each source names its scheme
(`[ingest] trade_ids` for files, `[source] trade_ids` for an external table):

- ``integer`` (default): 64-bit integer ids, unique per (exchange, symbol). Stored as is;
  ties at the same microsecond open/close in id order.
- ``string``: any text id (UUIDs, execution ids, numeric strings with letters). The key is
  the 64-bit xxHash64 of the text; the text itself is kept in `trade_ref` and is part of
  the content that duplicate detection compares, so a hash collision is quarantined, never
  merged. Ties at the same microsecond are ordered by the hash: deterministic, not the
  feed's order.
- ``daily``: integer ids from 0 to 2^40 - 1 that restart every day (day boundary in
  `trade_id_zone`, default UTC). The key is ``day_number * 2^40 + id``: ties in id order.
  The text id is kept in `trade_ref`.
- ``none``: the feed has no ids. The key is ``micros_since_2009 * 2^12 + n``, where n
  counts the earlier trades of the same exchange, symbol and microsecond in file and row
  order (`validate_trades` on a table without row order: in price, quantity, side order).
  Ties keep the feed's order; a file delivered twice gives the same keys, so its second
  copy is a duplicate. At most 4,096 trades of one symbol share a microsecond within one
  delivery. An external `[source]` table needs ids, so it cannot use this scheme.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from rollup.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import Column

SCHEMES = ("integer", "string", "daily", "none")
DAILY_BITS = 40
"""Bits of a daily id; the day number sits above them."""
ORDINAL_BITS = 12
"""Bits of the per-microsecond counter of the `none` scheme."""
NONE_EPOCH = datetime(2009, 1, 1, tzinfo=UTC)
"""Microseconds of `none` keys count from here (keys stay positive until 2080)."""
MAX_REF_LENGTH = 128

R_INTEGER = "trade_id is not a 64-bit integer"
R_DAILY = f"trade_id is not an integer from 0 to 2^{DAILY_BITS}-1 (trade_ids = daily)"
R_REF_LONG = f"trade_id longer than {MAX_REF_LENGTH} characters"
R_CROWDED = (f"more than {1 << ORDINAL_BITS} trades of one symbol in one microsecond "
             "(trade_ids = none)")


def _check_zone(_: object, __: object, value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"invalid trade_id_zone {value!r}: expected an IANA time zone such "
                          "as 'UTC' or 'America/Chicago'") from None


def _check_scheme(_: object, __: object, value: str) -> None:
    if value not in SCHEMES:
        raise ConfigError(f"invalid trade_ids {value!r}: expected one of {', '.join(SCHEMES)}")


@attrs.frozen
class TradeIds:
    """A source's trade-id scheme (see the module docstring)."""

    scheme: str = attrs.field(default="integer", validator=_check_scheme)
    zone: str = attrs.field(default="UTC", validator=_check_zone)
    """Where a day starts for the `daily` scheme."""

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> TradeIds:
        """`trade_ids` and `trade_id_zone` of a config section (`[ingest]` or `[source]`)."""
        section = section or {}
        return cls(str(section.get("trade_ids", "integer")),
                   str(section.get("trade_id_zone", "UTC")))

    @property
    def keeps_ref(self) -> bool:
        """Whether the feed's id text is stored in `trade_ref`."""
        return self.scheme in ("string", "daily")

    @property
    def needs_order(self) -> bool:
        """Whether keys depend on the order of rows (the `none` scheme)."""
        return self.scheme == "none"

    def key(self, text: Column, ts: Column) -> tuple[Column, Column | None]:
        """(the 64-bit key or null, the reason when the id itself is invalid or null).

        `text` is the trimmed id text and `ts` the parsed trade time. The `none` scheme's key
        needs an ordinal: use `ordinal_key`.
        """
        from pyspark.sql import functions as F

        if self.scheme == "integer":
            plain = text.cast("long")  # canonical digits need no regular expression
            key = F.when(plain.cast("string") == text, plain).when(
                text.rlike(r"^[+-]?[0-9]{1,19}(\.0*)?$"),
                F.regexp_replace(text, r"\.0*$", "").cast("long"))
            return key, F.when(key.isNull(), F.lit(R_INTEGER))
        if self.scheme == "string":
            return (F.xxhash64(text),
                    F.when(F.length(text) > MAX_REF_LENGTH, F.lit(R_REF_LONG)))
        if self.scheme == "daily":
            ident = F.when(text.rlike(r"^\+?[0-9]{1,13}$"), text.cast("long"))
            ident = F.when(ident < F.lit(1 << DAILY_BITS), ident)
            local = ts if self.zone == "UTC" else F.from_utc_timestamp(ts, self.zone)
            day = F.datediff(F.to_date(local), F.lit("1970-01-01").cast("date")).cast("long")
            key = F.shiftleft(day, DAILY_BITS) + ident
            return key, F.when(ident.isNull(), F.lit(R_DAILY))
        return F.lit(None).cast("long"), None

    def ordinal_key(self, ts: Column, ordinal: Column) -> tuple[Column, Column]:
        """The `none` key from a trade time and its 0-based rank within its microsecond."""
        from pyspark.sql import functions as F

        micros = F.unix_micros(ts) - F.lit(int(NONE_EPOCH.timestamp()) * 1_000_000)
        key = F.shiftleft(micros, ORDINAL_BITS) + ordinal
        return key, F.when(ordinal >= F.lit(1 << ORDINAL_BITS), F.lit(R_CROWDED))

    def describe(self) -> str:
        return self.scheme if self.scheme != "daily" else f"daily ({self.zone} days)"
