"""Requests sent ahead: later pages, and the next queries' first pages, in flight.

While the sync writes one page, `RequestsAhead` requests what `total_results`
allows of the pages that follow, then the first pages of the queries after it;
pages still come back in order, so records and state are exactly those of a
sequential walk. It knows nothing of Optico beyond the paginator: the same walk
fits any page-numbered API (meltano/sdk#183 asks for it upstream).
"""

from __future__ import annotations

import threading
import typing as t
from concurrent.futures import Future

from tap_optico.pagination import pages_for

if t.TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterator, Sequence

    import requests

    from tap_optico.pagination import NextPagePaginator

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
        self._plan(pages_for(paginator.pages[response].total, paginator.page_size))
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
