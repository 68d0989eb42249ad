"""Cutting a date range into the ascending windows a sync walks through."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from typing_extensions import override


@dataclass(frozen=True, order=True)
class Window:
    """An inclusive range of local calendar days, requested as one query."""

    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        """How many days the window holds."""
        return (self.end - self.start).days + 1

    @override
    def __str__(self) -> str:
        """Render as the API's own start_date..end_date."""
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def cut(start: dt.date, end: dt.date, days: int) -> list[Window]:
    """Cut [start, end] into consecutive windows of at most `days` days, oldest first.

    An empty list when start is after end: a bookmark in the future fetches nothing.
    """
    windows = []
    step = dt.timedelta(days=days)
    one_day = dt.timedelta(days=1)
    while start <= end:
        last = min(start + step - one_day, end)
        windows.append(Window(start, last))
        start = last + one_day
    return windows
