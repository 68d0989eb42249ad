"""Paging through a query, keyed on `next_page`, and sending requests ahead.

The API's `next_page` says whether a page follows; `total_results` says how many
rows, hence how many pages, there can be. `NextPagePaginator` follows the first and
checks it against the second: a page that does not follow, or a paginator that
will not end, stops the sync. `RequestsAhead` uses what `total_results` allows to
request later pages, and the next queries' first pages, while the current page is
being written; pages still come back in order, so records and state are exactly
those of a sequential walk. Neither knows about Optico beyond the `Page` below: the
same walk fits any page-numbered API (meltano/sdk#183 asks for it upstream).
"""

from __future__ import annotations

import math
import threading
import typing as t
import weakref
from concurrent.futures import Future
from dataclasses import dataclass

from singer_sdk.pagination import BaseAPIPaginator
from typing_extensions import override

from tap_optico.errors import PaginationError

if t.TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterator, Sequence

    import msgspec
    import requests

# No window is read past this many pages: 50 million calls at the largest page size.
MAX_PAGES = 10_000
# Without total_results nothing says when pages end but `next_page` itself.
MAX_PAGES_WITHOUT_TOTAL = 1_000


@dataclass
class Page:
    """One decoded answer: where it belongs, the API's totals and its undecoded rows."""

    query: str
    number: int
    total: int | None
    next_page: t.Any
    results: msgspec.Raw
    rows: int | None = None


_PAGES: weakref.WeakKeyDictionary[requests.Response, Page] = weakref.WeakKeyDictionary()
_PAGES_LOCK = threading.Lock()


def attach(response: requests.Response, page: Page) -> None:
    """Remember the decoded page of a response, so its body is decoded once."""
    with _PAGES_LOCK:
        _PAGES[response] = page


def page_of(response: requests.Response) -> Page:
    """The page decoded from a response by `attach`."""
    with _PAGES_LOCK:
        return _PAGES[response]


class NextPagePaginator(BaseAPIPaginator[int]):
    """Pages 1, 2, 3... while `next_page` announces the next one, within total_results."""

    def __init__(self, page_size: int) -> None:
        """Start at page 1 of a query asking for `page_size` rows per page."""
        super().__init__(1)
        self.page_size = page_size
        self.total: int | None = None
        self.received = 0
        self._served = page_size

    @override
    def continue_if_empty(self, response: requests.Response) -> bool:
        """An empty page ends the query only if it announces no next page (see get_next)."""
        return True

    @override
    def get_next(self, response: requests.Response) -> int | None:
        """The announced next page, if it may follow.

        Raises:
            PaginationError: the page announces a page that cannot follow it.
        """
        page = page_of(response)
        number = self.current_value
        rows = page.rows or 0
        self.received += rows
        if number == 1:
            self.total = page.total
            if page.total is not None and page.total > MAX_PAGES * self.page_size:
                self._stop(
                    page,
                    f"total_results {page.total} is more than {MAX_PAGES} pages of "
                    f"{self.page_size}; lower window_days or raise page_size",
                )
        try:
            following = next_page_number(page.next_page)
        except PaginationError as exc:
            self._stop(page, str(exc))
        if following is None:
            return None
        if following != number + 1:
            self._stop(page, f"page {number} announces next page {page.next_page!r}")
        if rows == 0:
            self._stop(page, f"page {number} is empty but announces a next page")
        if number == 1:
            # A server may serve fewer rows than asked (a silent cap): count in its pages.
            self._served = rows
        # A total that moved while paging (a call arrived) is the window check's to judge.
        total = self.total if page.total is None else page.total
        if total is not None and self.received >= total:
            self._stop(
                page,
                f"page {number} announces a next page, but all {total} rows of "
                "total_results have been received",
            )
        if self.total is None and number >= MAX_PAGES_WITHOUT_TOTAL:
            self._stop(page, f"no total_results and still a next page after page {number}")
        if number >= MAX_PAGES:
            self._stop(page, f"still a next page after page {number}")
        return following

    def last_page(self) -> int | None:
        """The last page total_results allows, in the pages the server serves; None if unknown."""
        return pages_for(self.total, self._served)

    @staticmethod
    def _stop(page: Page, reason: str) -> t.NoReturn:
        msg = f"{page.query}: {reason}; stopping (the API's pages cannot be trusted)"
        raise PaginationError(msg)


def pages_for(total: int | None, per_page: int) -> int | None:
    """How many pages `total` rows fill, capped at MAX_PAGES; None if the total is unknown."""
    if total is None:
        return None
    return min(MAX_PAGES, max(1, math.ceil(total / max(1, per_page))))


def next_page_number(value: t.Any) -> int | None:
    """The API's next page: None for "no next page" (absent, null, false, 0, "").

    Raises:
        PaginationError: a value that is no page number ("abc", true, -1, 2.5).
    """
    if value is None or value is False or value in (0, "", "0"):
        return None
    if value.__class__ is int and value > 0:
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    msg = f"the API announced next page {value!r}, which is no page number"
    raise PaginationError(msg)


Job = t.TypeVar("Job", bound="Hashable")


class RequestsAhead(t.Generic[Job]):
    """Pages of successive jobs (queries), in order, with up to `limit` requests in flight.

    `fetch(job, page)` runs in daemon threads, so a worker stuck in a backoff or on a
    stalled socket never holds the process at exit. After the first page of a job,
    its next pages up to what total_results allows are requested first, then the
    first pages of the jobs that follow.
    """

    def __init__(
        self,
        fetch: Callable[[Job, int], requests.Response],
        paginator: Callable[[], NextPagePaginator],
        jobs: Sequence[Job],
        limit: int,
    ) -> None:
        """Plan the walk over `jobs`, in the order they will be read."""
        self._fetch = fetch
        self._paginator = paginator
        self._limit = limit
        self._upcoming = list(jobs)
        self._firsts: dict[Job, Future[requests.Response]] = {}
        self._tail: dict[int, Future[requests.Response]] = {}
        self._job: Job | None = None
        self._next_tail = 2
        self._last_tail = 1
        self.paginator: NextPagePaginator | None = None

    def pages(self, job: Job, *, again: bool = False) -> Iterator[requests.Response]:
        """The answers of one job's pages, in order; `again` re-reads it from page 1.

        Each answer must be parsed (its rows counted) before the next is asked for.
        """
        self._drop_tail()
        self._job = job
        if job in self._upcoming:
            self._upcoming.remove(job)
        first = self._firsts.pop(job, None)
        if first is None or again:
            first = self._submit(job, 1)
        paginator = self.paginator = self._paginator()
        response = first.result()
        # Plan the pages total_results allows at the page size asked for, then, once the
        # first page is counted, in the rows the server really serves per page.
        self._plan(pages_for(page_of(response).total, paginator.page_size))
        yield response
        paginator.advance(response)
        self._plan(paginator.last_page())
        while not paginator.finished:
            number = paginator.current_value
            future = self._tail.pop(number, None)
            if future is None:
                future = self._submit(job, number)
                self._next_tail = max(self._next_tail, number + 1)
            response = future.result()
            self._fill()
            yield response
            paginator.advance(response)
        self._drop_tail()

    def skip(self, keep: Callable[[Job], bool]) -> None:
        """Forget the upcoming jobs that `keep` refuses (e.g. those of a failed account)."""
        self._upcoming = [job for job in self._upcoming if keep(job)]
        for job in [job for job in self._firsts if not keep(job)]:
            del self._firsts[job]

    def _plan(self, last: int | None) -> None:
        self._last_tail = max(self._last_tail, last or 1)
        self._fill()

    def _drop_tail(self) -> None:
        """Forget the pages sent ahead that the API turned out not to have."""
        self._tail.clear()
        self._next_tail, self._last_tail = 2, 1

    def _submit(self, job: Job, number: int) -> Future[requests.Response]:
        future: Future[requests.Response] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self._fetch(job, number))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name="optico-fetch", daemon=True).start()
        return future

    def _fill(self) -> None:
        """Send requests ahead until `limit` are held, never past what is planned.

        Answers received but not yet read count too: memory stays bounded.
        """
        while len(self._firsts) + len(self._tail) < self._limit:
            if self._job is not None and self._next_tail <= self._last_tail:
                self._tail[self._next_tail] = self._submit(self._job, self._next_tail)
                self._next_tail += 1
            elif self._upcoming:
                job = self._upcoming.pop(0)
                self._firsts[job] = self._submit(job, 1)
            else:
                return
