"""Where an API value becomes a schema type, or null with one warning per field.

The API writes values PHP-style ("1", "12.50", "", "12,50") or as native JSON; each
coercion accepts both and counts what it cannot read, so a sync ends with how many
values it emitted as null (`Coercer.summary`).
"""

from __future__ import annotations

import math
import typing as t

if t.TYPE_CHECKING:
    import logging

_TRUE = frozenset({"1", "true", "yes", "oui", "on"})
_FALSE = frozenset({"0", "false", "no", "non", "off", ""})
# Integers a target's BIGINT (and msgspec) can hold.
MAX_INTEGER = 2**63


def _finite(value: t.Any) -> float | None:
    """A finite number read from a number or its text, decimal comma included; else None."""
    try:
        number = float(value.replace(",", ".")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class Coercer:
    """Turns API values into schema types; an unreadable value becomes null, once warned."""

    def __init__(self, stream: str, logger: logging.Logger) -> None:
        """Warnings name the stream; each field's first bad value is logged once."""
        self.stream = stream
        self.logger = logger
        self.bad_values: dict[str, int] = {}

    def bad(self, field: str, value: t.Any) -> None:
        """Count an unreadable value; warn on the first one of each field."""
        count = self.bad_values.get(field, 0)
        if not count:
            self.logger.warning(
                "%s.%s: cannot read %r, emitting null (further ones are only counted)%s",
                self.stream,
                field,
                value,
                "; such calls do not move the bookmark" if field == "start_date" else "",
            )
        self.bad_values[field] = count + 1

    def summary(self) -> None:
        """Log how many values were nulled, per field, at the end of a sync."""
        for field, count in sorted(self.bad_values.items()):
            self.logger.warning(
                "%s.%s: %d unreadable values emitted as null", self.stream, field, count
            )

    def string(self, field: str, value: t.Any) -> str | None:
        """Strings stay; numbers become their text (a phone number may come as a number)."""
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, (int, float)):
            return str(value)
        self.bad(field, value)
        return None

    def integer(self, field: str, value: t.Any) -> int | None:
        """Integers, integral floats and their strings ("95", "95.0"); "" is null."""
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if value is None or value == "":
            return None
        number = _finite(value)
        if number is not None and number.is_integer() and abs(number) < MAX_INTEGER:
            return int(number)
        self.bad(field, value)
        return None

    def number(self, field: str, value: t.Any) -> float | None:
        """Numbers and their strings, French decimal comma included ("12,50"); "" is null."""
        if value is None or value == "":
            return None
        number = _finite(value)
        if number is None:
            self.bad(field, value)
        return number

    def boolean(self, field: str, value: t.Any) -> bool | None:
        """Booleans, 1/0 and "1"/"0" (PHP), "true"/"false"; "" is false as PHP writes it."""
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            text = value.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
        self.bad(field, value)
        return None
