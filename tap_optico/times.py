"""Where the API's French local times become UTC, and UTC times local days again.

The API writes naive local times in the account's zone (Europe/Paris unless set);
records carry them as timezone-aware UTC, and the window check counts calls by
local day.
"""

from __future__ import annotations

import datetime as dt
import re
import typing as t

if t.TYPE_CHECKING:
    import zoneinfo

_UTC = dt.timezone.utc
# The API's documented form; minutes and seconds are the same in UTC for whole-hour offsets.
_LOCAL = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:[0-5]\d:[0-5]\d")
# Other day orders a French PHP backend may print: DD/MM/YYYY (France's, never US
# MM/DD), DD-MM-YYYY and YYYY/MM/DD, read as YYYY-MM-DD.
_DAY_FIRST = re.compile(r"(\d\d)[/.-](\d\d)[/.-](\d{4})")
_YEAR_SLASH = re.compile(r"(\d{4})/(\d\d)/(\d\d)")


def iso_day(text: str) -> str:
    """The YYYY-MM-DD of a date's text in the orders above, else the text as it was."""
    head = text[:10]
    match = _DAY_FIRST.fullmatch(head) or _YEAR_SLASH.fullmatch(head)
    if match is None:
        return text
    day = match.groups() if match.re is _YEAR_SLASH else match.groups()[::-1]
    return "-".join(day) + text[10:]


class LocalTimes:
    """Reads the API's naive local times in a zone and writes them as UTC ISO 8601.

    One normalised form ("YYYY-MM-DDTHH:MM:SS+00:00") makes bookmarks compare
    correctly as strings. The zone's offset is looked up once per local hour: at a
    DST change the skipped hour and the first pass of the repeated hour are read
    with the offset in force before the change (Python's fold=0), since the API
    gives no offset to tell the two passes apart.
    """

    def __init__(self, zone: zoneinfo.ZoneInfo) -> None:
        """Cache offsets per local hour."""
        self.zone = zone
        self._hours: dict[str, str | None] = {}

    def read(self, value: str) -> tuple[str, str]:
        """One API time as (UTC ISO 8601, canonical local "YYYY-MM-DD HH:MM:SS").

        Raises:
            ValueError: the value is not a time.
        """
        if not _LOCAL.fullmatch(value):
            value = iso_day(value.strip())
        if _LOCAL.fullmatch(value):
            hour = value[:13]
            try:
                prefix = self._hours[hour]
            except KeyError:
                prefix = self._hours[hour] = self._utc_hour_prefix(hour)
            if prefix is not None:
                return f"{prefix}{value[13:]}+00:00", f"{value[:10]} {value[11:]}"
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        local = parsed.replace(tzinfo=None, microsecond=0).isoformat(sep=" ")
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=self.zone)
        return parsed.astimezone(_UTC).replace(microsecond=0).isoformat(), local

    def _utc_hour_prefix(self, hour: str) -> str | None:
        """The UTC "YYYY-MM-DDTHH" of a local hour; None unless one whole-hour offset holds.

        Some zones change offset off the hour (America/Goose_Bay at 00:01 until 2011):
        such an hour, like any offset not in whole hours, is converted value by value.
        """
        local = dt.datetime.fromisoformat(f"{hour}:00:00").replace(tzinfo=self.zone)
        offset = local.utcoffset()
        if offset is None or offset.total_seconds() % 3600:
            return None
        if (local + dt.timedelta(minutes=59, seconds=59)).utcoffset() != offset:
            return None
        return local.astimezone(_UTC).strftime("%Y-%m-%dT%H")


def local_days(zone: zoneinfo.ZoneInfo) -> t.Callable[[str | None], dt.date | None]:
    """A reader of the local calendar day of a UTC start_date (or its minute), cached per minute."""
    minutes: dict[str, dt.date] = {}

    def day_of(start: str | None) -> dt.date | None:
        if not start:
            return None
        minute = start[:16]
        day = minutes.get(minute)
        if day is None:
            moment = dt.datetime.fromisoformat(f"{minute}+00:00")
            day = minutes[minute] = moment.astimezone(zone).date()
        return day

    return day_of
