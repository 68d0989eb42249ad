"""The walk over accounts and windows: each window read, checked, and read again if need be.

An account is read window by window from its bookmark (windows.py cuts them); each
window's distinct calls are checked against what the API announced (tally.py
counts them). A `calls` window that does not check out (rows repeated or skipped
across pages, a total that moved while paging) has its days in doubt read again,
each in one page; a `daily_calls` window is read again. Either stops the account at
this window if that cannot make it whole, as do pages that do not follow.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
import typing as t

from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE
from typing_extensions import override

from tap_optico import bookmarks
from tap_optico.config_schema import MAX_PAGE_SIZE
from tap_optico.errors import (
    AccountError,
    IncompleteWindowError,
    PaginationError,
    UnexpectedAnswerError,
)
from tap_optico.pagination import next_page_number
from tap_optico.records import daily_records
from tap_optico.requests_ahead import RequestsAhead
from tap_optico.tally import CallTally, DayTally, whole_page
from tap_optico.windows import Window, cut

if t.TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    from singer_sdk.helpers.types import Context

    from tap_optico.client import OpticoStream


class Query(t.NamedTuple):
    """One account's date window: what one paginated query reads.

    `limit` and `by_day` differ from the stream's own only for the window check's
    reads: a day in one page, the API's per-day counts.
    """

    account: str
    window: Window
    limit: int | None = None
    by_day: bool = False

    @override
    def __str__(self) -> str:
        """The window as the API's start_date..end_date."""
        return str(self.window)

    def context(self) -> dict[str, t.Any]:
        """The SDK context of this query, from which the stream builds its request."""
        context: dict[str, t.Any] = {
            "account": self.account,
            "start_date": self.window.start.isoformat(),
            "end_date": self.window.end.isoformat(),
        }
        if self.limit is not None:
            context["limit"] = self.limit
        if self.by_day:
            context["group_by_day"] = True
        return context


class WindowWalk:
    """One stream's walk over its accounts' windows, in sync order."""

    def __init__(self, stream: OpticoStream) -> None:
        """The walk of one stream, through its REST hooks."""
        self.stream = stream
        self.tally: CallTally | DayTally = stream.new_tally()
        self._ahead: RequestsAhead[Query] | None = None

    def account_records(self, context: Context) -> Iterator[dict[str, t.Any]]:
        """One account's records, from its bookmark (minus the lookback) to end_date.

        An account that fails (refused key, retries exhausted, a window that stays
        short) is reported and left at its last completed window; the others go on.
        """
        stream = self.stream
        name = context["account"]
        if stream.optico.has_failed(name):
            return
        windows = self.plan()[name]
        settings = stream.settings
        stream.logger.info(
            "%s [%s]: %d window(s) of up to %d day(s) to %s",
            stream.name,
            name,
            len(windows),
            settings.window_days,
            settings.end_date,
        )
        bookmarks.begin(stream, context)
        # In BATCH mode records reach the target only with their batch file, after the
        # SDK's own STATE: a STATE per window could overtake them.
        commit_per_window = stream.get_batch_config(stream.config) is None
        try:
            for window in windows:
                for record in self._window_records(Query(name, window)):
                    record["account"] = name
                    yield record
                if commit_per_window:
                    bookmarks.commit_window(stream, context, stream.ceiling(window))
        except AccountError as error:
            bookmarks.abandon_window(stream, context)
            if self._ahead is not None:
                self._ahead.skip(lambda query: query.account != name)
            stream.optico.account_failed(stream.name, name, error)

    @functools.cache  # noqa: B019 (one plan per walk, hence per stream and sync)
    def plan(self) -> dict[str, list[Window]]:
        """Each account's windows, from its bookmark: read once, before any request.

        Raises:
            StateError: a bookmark cannot be read.
        """
        stream = self.stream
        settings = stream.settings
        windows = {}
        # Full table (Meltano's `metadata: replication-method`) reads the whole range.
        full_table = stream.replication_method == REPLICATION_FULL_TABLE
        for account in settings.accounts:
            mark = None
            if not full_table:
                mark = bookmarks.bookmark(
                    stream,
                    {"account": account.name},
                    inherits=account.name == settings.inheriting_account,
                )
            first = bookmarks.first_day(settings, mark, stream.name)
            windows[account.name] = cut(first, settings.end_date, settings.window_days)
        return windows

    def _window_records(self, query: Query) -> Iterator[dict[str, t.Any]]:
        """A window's records, checked: distinct calls against what the API announced."""
        stream = self.stream
        started = time.monotonic()
        for attempt in (1, 2):
            tally = self.tally = stream.new_tally()
            yield from self._read(query, tally, again=attempt > 1)
            count = tally.distinct
            if tally.whole():
                break
            if isinstance(tally, CallTally):
                count = yield from self._reread_days(query, tally)
                break
            if attempt == 2:
                msg = (
                    f"{stream.name} {query}: received {count} days but the API announced "
                    f"{tally.totals[0]}, again; the bookmark stays before this window"
                )
                raise IncompleteWindowError(msg)
            stream.logger.warning(
                "%s %s: received %d days but the API announced %s; re-reading the window",
                stream.name,
                query,
                count,
                tally.totals[0],
            )
        stream.logger.info(
            "%s %s: %d %s, %d page(s), %.1fs (account %s)",
            stream.name,
            query,
            count,
            "day(s)" if stream.group_by_day else "call(s)",
            len(tally.totals),
            time.monotonic() - started,
            query.account,
        )

    def _reread_days(
        self, query: Query, tally: CallTally
    ) -> Generator[dict[str, t.Any], None, int]:
        """Read again, each in one page, the days of a window its first read cannot vouch for.

        Only look-alikes straddling pages, with the right count: their days. Otherwise
        the API's per-day counts say which days differ (all of them if it gives none).
        Returns the window's distinct calls.
        """
        total = tally.totals[0] if tally.totals else None
        days = [query.window.start + dt.timedelta(d) for d in range(query.window.days)]
        if tally.changed or tally.distinct != total:
            if tally.changed:
                reason = f"total_results went from {total} to {tally.totals[-1]} while paging"
            else:
                reason = (
                    f"{tally.rows} rows hold {tally.distinct} distinct calls but the API "
                    f"announced {total}"
                )
            per_day = self._day_counts(query)
            reread = days if per_day is None else tally.days_to_reread(days, per_day)
        else:
            reason = "look-alike calls straddle pages"
            reread = tally.days_to_reread(days, None)
        self.stream.logger.warning(
            "%s %s: %s; re-reading %d day(s), each in one page (account %s)",
            self.stream.name,
            query,
            reason,
            len(reread),
            query.account,
        )
        by_day = tally.by_day
        count = tally.distinct - sum(by_day[day] for day in reread)
        for day in reread:
            count += yield from self._day_records(query, day)
        return count

    def _day_counts(self, query: Query) -> dict[dt.date, int] | None:
        """The API's calls per day of a window (`group_by_day`); None without a whole answer."""
        stream = self.stream
        page = stream.pages[stream.fetch(query._replace(limit=MAX_PAGE_SIZE, by_day=True), 1)]
        if next_page_number(page.next_page) is not None:
            return None
        try:
            rows = daily_records(page.results, stream.coerce)
        except UnexpectedAnswerError:
            return None
        return {dt.date.fromisoformat(row["date"]): row["calls"] or 0 for row in rows}

    def _day_records(self, query: Query, day: dt.date) -> Generator[dict[str, t.Any], None, int]:
        """One day's calls, read whole: in one page, or paged if it holds more than one page.

        Raises:
            IncompleteWindowError: the day's pages do not check out, twice.
        """
        stream = self.stream
        one_day = Query(query.account, Window(day, day))
        page = stream.pages[stream.fetch(one_day._replace(limit=MAX_PAGE_SIZE), 1)]
        records = stream.page_records(page.results)
        if next_page_number(page.next_page) is None:
            if page.total in (None, len(records)):
                yield from whole_page(records)
                return len(records)
            reason = f"one page holds {len(records)} calls, the API announced {page.total}"
        else:
            reason = "its pages do not check out"
            for _attempt in (1, 2):
                tally = self.tally = stream.new_tally()
                try:
                    yield from self._read(one_day, tally, again=True)
                except PaginationError as error:
                    reason = str(error).split(": ", 1)[-1].split("; stopping")[0]
                    break
                if tally.whole():
                    return tally.distinct
        msg = (
            f"{stream.name} {query}: the calls of {day} cannot be read whole, even day by day "
            f"({reason}); the bookmark stays before this window"
        )
        raise IncompleteWindowError(msg)

    def _read(
        self, query: Query, tally: CallTally | DayTally, *, again: bool
    ) -> Iterator[dict[str, t.Any]]:
        """One read of a query through its tally; what was read is written even if it fails."""
        try:
            yield from self._query_records(query, again=again)
        except AccountError:
            yield from tally.end()
            raise
        yield from tally.end()

    def _query_records(self, query: Query, *, again: bool) -> Iterator[dict[str, t.Any]]:
        """One read of a query: the SDK's own loop, or requests sent ahead."""
        stream = self.stream
        if stream.settings.concurrency == 1:
            yield from stream.request_records(query.context())
            return
        ahead = self._ahead
        if ahead is None:
            queries = [
                Query(account, window)
                for account, windows in self.plan().items()
                if not stream.optico.has_failed(account)
                for window in windows
            ]
            ahead = self._ahead = RequestsAhead(
                stream.fetch, stream.get_new_paginator, queries, stream.settings.concurrency
            )
        # The SDK's own request counter, one per query as its request_records keeps one.
        with stream.get_http_request_counter() as counter:
            counter.with_context(query.context())
            for response in ahead.pages(query, again=again):
                counter.increment()
                yield from stream.parse_response(response)
