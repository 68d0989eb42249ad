"""Paging through a query, keyed on `next_page`, checked against `total_results`.

The API's `next_page` says whether a page follows; `total_results` says how many
rows, hence how many pages, there can be. `NextPagePaginator` follows the first and
checks it against the second: a page that does not follow, or a paginator that
will not end, stops the sync.
"""

from __future__ import annotations

import math
import typing as t

from singer_sdk.pagination import BaseAPIPaginator
from typing_extensions import override

from tap_optico.errors import PaginationError

if t.TYPE_CHECKING:
    import requests

    from tap_optico.pages import Page, Pages

# No window is read past this many pages: 50 million calls at the largest page size.
MAX_PAGES = 10_000
# Without total_results nothing says when pages end but `next_page` itself.
MAX_PAGES_WITHOUT_TOTAL = 1_000


class NextPagePaginator(BaseAPIPaginator[int]):
    """Pages 1, 2, 3... while `next_page` announces the next one, within total_results."""

    def __init__(self, page_size: int, pages: Pages) -> None:
        """Start at page 1 of a query asking for `page_size` rows per page.

        `pages` holds the page each response was decoded into (pages.py).
        """
        super().__init__(1)
        self.page_size = page_size
        self.pages = pages
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
        page = self.pages[response]
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
