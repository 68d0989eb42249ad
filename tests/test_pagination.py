"""The next_page paginator and the requests-ahead walk, driven by a fake fetch (no HTTP).

Each fake query is a list of page sizes; its answers carry total_results and
next_page like the API's. The walk must hand pages back in order, keep at most
`limit` requests held, stop where the API stops, re-read on demand, and refuse a
paginator that never ends, without planning more pages than it may send.
"""

from __future__ import annotations

import math
import threading
import time
import typing as t

import msgspec
import pytest
import requests

from tap_optico.errors import PaginationError
from tap_optico.pages import Page, Pages
from tap_optico.pagination import (
    MAX_PAGES,
    MAX_PAGES_WITHOUT_TOTAL,
    NextPagePaginator,
    next_page_number,
)
from tap_optico.requests_ahead import RequestsAhead

PAGE_SIZE = 10


class FakeAPI:
    """Pages of several queries; records every fetch and the most ever in flight."""

    def __init__(
        self,
        queries: dict[str, list[int]],
        *,
        total: t.Callable[[str], int | None] | None = None,
        more: t.Callable[[str, int], t.Any] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.queries = queries
        self.total = total or (lambda q: sum(queries[q]))
        self.more = more or (lambda q, n: n + 1 if n < len(queries[q]) else None)
        self.delay = delay
        self.pages = Pages()
        self.fetched: list[tuple[str, int]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()

    def fetch(self, query: str, number: int) -> requests.Response:
        with self._lock:
            self.fetched.append((query, number))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.delay)
        sizes = self.queries[query]
        rows = sizes[number - 1] if number <= len(sizes) else 0
        response = requests.Response()
        self.pages.keep(
            response,
            Page(
                query=query,
                number=number,
                total=self.total(query),
                next_page=self.more(query, number),
                results=msgspec.Raw(msgspec.json.encode([{"row": i} for i in range(rows)])),
            ),
        )
        with self._lock:
            self.in_flight -= 1
        return response

    def wait_until_fetched(self, pages: set[tuple[str, int]], timeout: float = 5) -> bool:
        """Whether all these pages are fetched within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not pages <= set(self.fetched):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True


def read(walk: RequestsAhead[str], query: str, *, again: bool = False) -> list[int]:
    """Consume one query as a stream does: count each page's rows before asking for the next."""
    numbers = []
    for response in walk.pages(query, again=again):
        assert walk.paginator is not None
        page = walk.paginator.pages[response]
        page.rows = len(msgspec.json.decode(page.results))
        numbers.append(page.number)
    return numbers


def walk_over(api: FakeAPI, limit: int = 3) -> RequestsAhead[str]:
    return RequestsAhead(
        api.fetch, lambda: NextPagePaginator(PAGE_SIZE, api.pages), list(api.queries), limit
    )


def test_pages_come_back_in_order_while_later_ones_are_requested_ahead():
    api = FakeAPI({"a": [10, 10, 10], "b": [10, 4], "c": [3]}, delay=0.02)
    walk = walk_over(api, limit=3)
    assert read(walk, "a") == [1, 2, 3]
    assert api.wait_until_fetched({("b", 1), ("c", 1)}), "later queries asked for ahead"
    assert [read(walk, q) for q in ("b", "c")] == [[1, 2], [1]]
    assert sorted(api.fetched) == [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("c", 1)]
    assert api.most_in_flight <= 3


@pytest.mark.parametrize("limit", [2, 3, 5])
def test_never_more_than_limit_requests_held(limit):
    api = FakeAPI({f"q{i}": [10] * 4 for i in range(6)}, delay=0.01)
    walk = walk_over(api, limit=limit)
    for query in api.queries:
        assert read(walk, query) == [1, 2, 3, 4]
    assert api.most_in_flight <= limit
    assert len(api.fetched) == 24, "each page once: nothing fetched twice or lost"


def test_an_api_that_ends_early_is_followed_not_total_results():
    # total_results promises 5 pages, the API ends after 2: nothing more is read.
    api = FakeAPI({"a": [10, 10], "b": [5]}, total=lambda q: 50 if q == "a" else 5)
    walk = walk_over(api, limit=4)
    assert read(walk, "a") == [1, 2]
    assert read(walk, "b") == [1]
    assert ("a", 6) not in api.fetched
    assert max(n for q, n in api.fetched if q == "a") <= 5, "only what total_results allows"


def test_a_re_read_asks_for_page_one_again():
    api = FakeAPI({"a": [10, 2], "b": [1]})
    walk = walk_over(api, limit=3)
    assert read(walk, "a") == [1, 2]
    assert read(walk, "a", again=True) == [1, 2]
    assert api.fetched.count(("a", 1)) == 2
    assert read(walk, "b") == [1]


def test_pages_smaller_than_asked_are_planned_in_the_rows_the_server_serves():
    # A silent cap of 5 rows per page: 30 rows are 6 pages, not 3.
    api = FakeAPI({"a": [5] * 6})
    walk = walk_over(api, limit=3)
    assert read(walk, "a") == [1, 2, 3, 4, 5, 6]
    assert walk.paginator is not None
    assert walk.paginator.last_page() == 6


def test_a_paginator_past_total_results_is_refused_within_its_page_budget():
    # Always a next page; total_results says 30 rows.
    api = FakeAPI({"a": [10] * 50}, total=lambda q: 30, more=lambda q, n: n + 1)
    walk = walk_over(api, limit=3)
    with pytest.raises(PaginationError, match="all 30 rows of total_results"):
        read(walk, "a")
    assert len(api.fetched) <= math.ceil(30 / PAGE_SIZE) + 3


def test_without_total_results_the_page_budget_ends_the_walk():
    api = FakeAPI(
        {"a": [10] * (MAX_PAGES_WITHOUT_TOTAL + 5)}, total=lambda q: None, more=lambda q, n: n + 1
    )
    walk = walk_over(api, limit=3)
    with pytest.raises(PaginationError, match="no total_results"):
        read(walk, "a")
    assert len(api.fetched) == MAX_PAGES_WITHOUT_TOTAL


def test_a_huge_total_results_plans_nothing_it_will_not_send():
    api = FakeAPI({"a": [10] * 3}, total=lambda q: 10**30, more=lambda q, n: n + 1)
    walk = walk_over(api, limit=3)
    with pytest.raises(PaginationError, match=f"more than {MAX_PAGES} pages"):
        read(walk, "a")
    assert len(api.fetched) <= 1 + 3


def test_an_empty_page_that_announces_another_is_refused():
    api = FakeAPI({"a": [10, 0, 10]}, total=lambda q: None)
    with pytest.raises(PaginationError, match="page 2 is empty but announces a next page"):
        read(walk_over(api), "a")


def test_a_next_page_that_does_not_follow_is_refused():
    api = FakeAPI({"a": [10, 10]}, more=lambda q, n: 5 if n == 1 else None)
    with pytest.raises(PaginationError, match="page 1 announces next page 5"):
        read(walk_over(api), "a")


def test_skipped_queries_are_never_requested():
    api = FakeAPI({"a": [10, 1], "b": [1], "c": [1]}, delay=0.01)
    walk = walk_over(api, limit=1)
    walk.skip(lambda query: query != "b")
    assert read(walk, "a") == [1, 2]
    assert read(walk, "c") == [1]
    assert not [f for f in api.fetched if f[0] == "b"]


@pytest.mark.parametrize(
    ("value", "number"),
    [(None, None), (False, None), (0, None), ("", None), ("0", None), (3, 3), ("12", 12)],
)
def test_next_page_values_that_mean_a_page_or_the_end(value, number):
    assert next_page_number(value) == number


@pytest.mark.parametrize("value", ["abc", True, -1, 2.5, [2], "²"])
def test_next_page_values_that_are_no_page_number(value):
    with pytest.raises(PaginationError, match="no page number"):
        next_page_number(value)
