"""Walking the pages of each window in order, keyed on `next_page`, with requests ahead.

The API's `next_page` says whether a page follows; `total_results` says how many
pages there can be. The walker follows `next_page` and trusts `total_results` twice:
to request the window's later pages (and the next windows' first pages) while the
current page is being written, and to refuse a paginator that will not end. Pages
always come back in sync order, so records and state are exactly what a sequential
walk would produce.
"""

from __future__ import annotations

import math
import typing as t
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from tap_optico.errors import PaginationError

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import TracebackType

    from tap_optico.client import Page
    from tap_optico.windows import Window


def last_page(total: int | None, page_size: int) -> int | None:
    """The number of pages `total_results` allows (at least one); None if unknown."""
    if total is None:
        return None
    return max(1, math.ceil(total / page_size))


class PageWalker:
    """Hands back the pages of successive windows, up to `concurrency` requests in flight.

    With concurrency 1 each request is sent only when its page is needed: strictly
    sequential. Above 1, requests are sent ahead, the current window's next pages
    first, then the first pages of the windows that follow.
    """

    def __init__(
        self,
        fetch: Callable[[Window, int], Page],
        windows: Sequence[Window],
        page_size: int,
        concurrency: int,
    ) -> None:
        """Plan the walk over `windows`, oldest first."""
        self._fetch = fetch
        self._page_size = page_size
        self._ahead = concurrency if concurrency > 1 else 0
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="optico-fetch")
        self._upcoming: deque[Window] = deque(windows)
        self._firsts: dict[Window, Future[Page]] = {}
        self._tail: dict[int, Future[Page]] = {}
        self._tail_plan: deque[int] = deque()
        self._window: Window | None = None

    def __enter__(self) -> PageWalker:
        """Start the walk."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Drop requests sent ahead that nobody will read."""
        self._pool.shutdown(wait=exc_type is None, cancel_futures=True)

    def pages(self, window: Window, *, again: bool = False) -> Iterator[Page]:
        """The pages of one window in the API's order; `again` re-reads it from page 1."""
        self._window = window
        if self._upcoming and self._upcoming[0] == window:
            self._upcoming.popleft()
        future = self._firsts.pop(window, None)
        if future is None or again:
            future = self._submit(window, 1)
        page = self._take(future)
        last = last_page(page.total, self._page_size)
        self._tail_plan = deque(range(2, (last or 1) + 1))
        self._fill()
        yield page
        while page.next_page is not None:
            number = page.number + 1
            self._check(page, number, last)
            future = self._tail.pop(number, None)
            if future is None:
                if self._tail_plan and self._tail_plan[0] == number:
                    self._tail_plan.popleft()
                future = self._submit(window, number)
            page = self._take(future)
            self._fill()
            yield page
        # The API ended before total_results said it would: forget the pages sent ahead.
        for future in self._tail.values():
            future.cancel()
        self._tail.clear()
        self._tail_plan.clear()

    def _check(self, page: Page, number: int, last: int | None) -> None:
        """Refuse a next page the API could not have: a paginator stuck or gone wrong."""
        window = page.window
        if page.next_page != number:
            msg = f"{window}: page {page.number} announced next page {page.next_page}"
            raise PaginationError(msg)
        if last is not None and number > last + 1:
            msg = (
                f"{window}: the API still announces a next page after page {page.number}, "
                f"but its total_results allows {last} page(s) of {self._page_size}; stopping"
            )
            raise PaginationError(msg)

    def _submit(self, window: Window, number: int) -> Future[Page]:
        return self._pool.submit(self._fetch, window, number)

    def _take(self, future: Future[Page]) -> Page:
        page = future.result()
        if last_page(page.total, self._page_size) is None and page.next_page is not None:
            results = bytes(page.results).strip()
            if results in (b"", b"[]"):
                msg = f"{page.window}: page {page.number} is empty but announces a next page"
                raise PaginationError(msg)
        return page

    def _fill(self) -> None:
        """Send requests ahead until `concurrency` are in flight."""
        while len(self._firsts) + len(self._tail) < self._ahead:
            if self._tail_plan and self._window is not None:
                number = self._tail_plan.popleft()
                self._tail[number] = self._submit(self._window, number)
            elif self._upcoming:
                window = self._upcoming.popleft()
                self._firsts[window] = self._submit(window, 1)
            else:
                return
