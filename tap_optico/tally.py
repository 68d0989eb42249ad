"""Whether one read of a window holds every call, and which local days to read again.

Within one page the API answers one query, so identical rows in one page are
distinct calls, while a row repeated on a later page is an artifact of paging: an
offset shifted by a call that arrived meanwhile, or tied start times ordered
differently from one page to the next. So the tally

- keeps each group of look-alikes (identity.py) until it is whole: the groups of a
  page's last second may go on in the next page, so they wait for it;
- drops the rows of a waiting group that the next page repeats, and doubts the
  group if the next page adds to it (more look-alikes, or a repeat that changed):
  a doubted group is not emitted from this read, its day is read again;
- counts distinct calls per local day, which the window check compares with
  `total_results` and, when they differ, with the API's own per-day counts.

Nothing here sends a request: walk.py reads, this module counts.
"""

from __future__ import annotations

import json
import typing as t
from collections import Counter

from tap_optico.identity import number_lookalikes

if t.TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Iterable, Mapping

Record = dict[str, t.Any]


class CallTally:
    """One read of one window of `calls`: what to emit now, and what the read proves."""

    def __init__(self, day_of: Callable[[str | None], dt.date | None]) -> None:
        """`day_of` gives the local calendar day of a UTC start_date."""
        self._day_of = day_of
        self._closed: set[str] = set()
        self._waiting: dict[str, list[Record]] = {}
        # Distinct calls per UTC minute of their start (the local day is folded on demand).
        self._minutes: Counter[str | None] = Counter()
        self.doubted: set[dt.date | None] = set()
        self.totals: list[int | None] = []
        self.rows = 0

    @property
    def distinct(self) -> int:
        """Distinct calls read, doubted groups excluded."""
        return sum(self._minutes.values())

    @property
    def by_day(self) -> Counter[dt.date | None]:
        """Distinct calls read per local day, doubted groups excluded."""
        days: Counter[dt.date | None] = Counter()
        for minute, count in self._minutes.items():
            days[self._day_of(minute)] += count
        return days

    @property
    def changed(self) -> bool:
        """Whether the window's total_results changed while it was paged."""
        return len(set(self.totals)) > 1

    def whole(self) -> bool:
        """Whether this read holds every call of the window, once: nothing to read again."""
        return not self.doubted and _as_announced(self.totals, self.distinct)

    def page(self, records: list[Record], total: int | None) -> list[Record]:
        """Take one page's records, in the API's order; return those whole to emit now."""
        self.totals.append(total)
        self.rows += len(records)
        ids = [record["call_id"] for record in records]
        unique = set(ids)
        last = records[-1]["start_date"] if records else None
        waiting, self._waiting = self._waiting, {}
        ready = [
            record
            for first, group in waiting.items()
            if first not in unique
            for record in self._close(first, group)
        ]
        if (
            len(unique) == len(ids)
            and unique.isdisjoint(self._closed)
            and unique.isdisjoint(waiting)
        ):
            # The usual page: every call its own group, none read before.
            self._closed.update(ids)
            self._minutes.update(
                [record["start_date"] and record["start_date"][:16] for record in records]
            )
            for record in records:
                if record["start_date"] == last:
                    self._waiting[record["call_id"]] = [record]
                    self._closed.discard(record["call_id"])
                else:
                    ready.append(record)
            return ready
        for first, group in _groups(records).items():
            start = group[0]["start_date"]
            if first in waiting:
                added = _added(waiting[first], group)
                if added:
                    self._count(start, len(added))
                    self._doubt(first, start)
                    continue
                group = waiting[first]  # a repeat: the group as first read
            elif first in self._closed:
                self._doubt(first, start)
                continue
            else:
                self._count(start, len(group))
            if group[0]["start_date"] == last:
                self._waiting[first] = group
            else:
                ready.extend(self._close(first, group))
        return ready

    def end(self) -> list[Record]:
        """The groups still waiting when the window's last page has been read."""
        waiting, self._waiting = self._waiting, {}
        return [record for first, group in waiting.items() for record in self._close(first, group)]

    def days_to_reread(
        self, days: Iterable[dt.date], per_day: Mapping[dt.date, int] | None
    ) -> list[dt.date]:
        """The window's days whose calls this read cannot vouch for.

        Without the API's per-day counts, only the doubted days; with them, also
        every day whose distinct calls differ from the API's count.
        """
        by_day = self.by_day
        return [
            day
            for day in days
            if day in self.doubted
            or (per_day is not None and per_day.get(day, 0) != by_day.get(day, 0))
        ]

    def _close(self, first: str, group: list[Record]) -> list[Record]:
        self._closed.add(first)
        number_lookalikes(group)
        return group

    def _count(self, start: str | None, calls: int) -> None:
        self._minutes[start and start[:16]] += calls

    def _doubt(self, first: str, start: str | None) -> None:
        self._closed.add(first)
        self.doubted.add(self._day_of(start))


def whole_page(records: list[Record]) -> list[Record]:
    """The records of a page that holds its query's every call: each group is whole."""
    for group in _groups(records).values():
        number_lookalikes(group)
    return records


class DayTally:
    """One read of one window of `daily_calls`: a date repeated on a later page is dropped."""

    def __init__(self) -> None:
        """No date read yet."""
        self._dates: set[t.Any] = set()
        self.totals: list[int | None] = []

    @property
    def distinct(self) -> int:
        """Distinct days read."""
        return len(self._dates)

    def whole(self) -> bool:
        """Whether the distinct days match total_results on every page."""
        return _as_announced(self.totals, self.distinct)

    def page(self, records: list[Record], total: int | None) -> list[Record]:
        """The page's days not read on an earlier page."""
        self.totals.append(total)
        new = []
        for record in records:
            if record["date"] not in self._dates:
                self._dates.add(record["date"])
                new.append(record)
        return new

    def end(self) -> list[Record]:
        """Nothing waits: a day is one row."""
        return []


def _groups(records: list[Record]) -> dict[str, list[Record]]:
    """A page's records by the id of their look-alike group's first, in the page's order."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record["call_id"], []).append(record)
    return groups


def _as_announced(totals: list[int | None], distinct: int) -> bool:
    """Whether every page announced one total, and the distinct rows read match it."""
    if len(set(totals)) > 1:
        return False
    return not totals or totals[0] is None or totals[0] == distinct


def _added(first_read: list[Record], again: list[Record]) -> list[Record]:
    """The rows of `again` that are not repeats of `first_read`'s (as many as there)."""
    left = Counter(_content(record) for record in first_read)
    added = []
    for record in again:
        content = _content(record)
        if left[content]:
            left[content] -= 1
        else:
            added.append(record)
    return added


def _content(record: Record) -> str:
    return json.dumps(record, sort_keys=True, default=str)
