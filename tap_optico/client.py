"""The base stream of the Data API: one REST query per account and date window.

Built on the SDK's REST hooks: the URL and its parameters (the key among them),
the judgement of each answer (`validate_response`, with pages.py and errors.py)
and its records (`parse_response`). Retries are retries.py's, the walk over
accounts and windows is walk.py's. With `max_concurrent_requests: 1` the SDK's own
request loop reads each window, driven by `NextPagePaginator`; above 1,
`RequestsAhead` sends the same requests ahead through the same hooks, and records
and state stay exactly those of the sequential sync.
"""

from __future__ import annotations

import abc
import functools
import typing as t

import requests
from singer_sdk.helpers.conform import TypeConformanceLevel
from typing_extensions import override

from tap_optico import __version__
from tap_optico.pages import Pages, read_page
from tap_optico.pagination import NextPagePaginator
from tap_optico.retries import RetryingStream
from tap_optico.transport import BoundedAdapter
from tap_optico.walk import WindowWalk

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    import msgspec
    from singer_sdk.helpers.types import Context

    from tap_optico.coerce import Coercer
    from tap_optico.errors import AccountError
    from tap_optico.settings import Account, Settings
    from tap_optico.tally import CallTally, DayTally
    from tap_optico.walk import Query
    from tap_optico.windows import Window


class OpticoTap(t.Protocol):
    """What a stream needs of its tap: the settings, and where to report a failed account."""

    @property
    def settings(self) -> Settings:
        """The validated settings."""
        ...

    def account_failed(self, stream: str, account: str, error: AccountError) -> None:
        """Report an account whose sync stopped; the others go on."""
        ...

    def has_failed(self, account: str) -> bool:
        """Whether an account already failed in this run."""
        ...


class OpticoStream(RetryingStream, abc.ABC):
    """A stream read from the Data API account by account, window by window."""

    # Records are built to match the schema exactly (records.py), so the SDK's
    # per-record conformance pass, its costliest step, is skipped.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    # Newest first within a window: the bookmark is promoted per window (bookmarks.py).
    is_sorted = False
    # The key travels in the query string, which requests keeps on a redirect.
    allow_redirects = False
    path = ""
    group_by_day: t.ClassVar[bool] = False

    def __init__(self, tap: OpticoTap) -> None:
        """A stream of this tap; its settings are the tap's."""
        super().__init__(tap)  # type: ignore[arg-type]
        self.optico = tap
        # The decoded page of each answer, for the paginator and parse_response.
        self.pages = Pages()

    @property
    @override
    def settings(self) -> Settings:
        """The tap's validated settings."""
        return self.optico.settings

    @functools.cached_property
    def walk(self) -> WindowWalk:
        """The walk over this stream's accounts and windows (walk.py)."""
        return WindowWalk(self)

    # ------------------------------------------------------------ what is requested
    @property
    @override
    def url_base(self) -> str:
        return self.settings.api_url

    @property
    @override
    def timeout(self) -> int:
        return self.settings.request_timeout

    @functools.cached_property
    @override
    def user_agent(self) -> str:
        return f"tap-optico/{__version__}"

    @functools.cached_property
    @override
    def requests_session(self) -> requests.Session:
        """A session whose answers are bounded in time and size, pausing all workers alike."""
        session = requests.Session()
        adapter = BoundedAdapter(
            self.settings.request_timeout, self.throttle, pool_size=self.settings.concurrency
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    @property
    @override
    def partitions(self) -> list[dict[str, t.Any]]:
        """One state partition per account; its context names it, never carries its key."""
        return [{"account": account.name} for account in self.settings.accounts]

    @override
    def get_url_params(
        self, context: Context | None, next_page_token: int | None
    ) -> dict[str, t.Any]:
        assert context is not None
        settings = self.settings
        params: dict[str, t.Any] = {
            "api_key": self._account(context["account"]).api_key,
            "type": "calls",
            "start_date": context["start_date"],
            "end_date": context["end_date"],
            "page": next_page_token or 1,
            "limit": context.get("limit") or settings.page_size,
            **settings.filters,
        }
        if self.group_by_day or context.get("group_by_day"):
            params["group_by_day"] = "true"
        return params

    @override
    def get_new_paginator(self) -> NextPagePaginator:
        return NextPagePaginator(self.settings.page_size, self.pages)

    # ------------------------------------------------------------ judging an answer
    @override
    def validate_response(self, response: requests.Response) -> None:
        """Map the answer to a page, a retry or a one-line failure (pages.py says which).

        Raises:
            TransientError: worth retrying (408, 429, 5xx, a body cut short, overload).
            FatalAPIError: the API refused, redirected or answered something else.
        """
        self.pages.keep(response, read_page(response))

    @override
    def parse_response(self, response: requests.Response) -> list[dict[str, t.Any]]:
        """The records of one page the window's tally lets through (tally.py).

        The page keeps its row count for the paginator.
        """
        page = self.pages[response]
        records = self.page_records(page.results)
        page.rows = len(records)
        return self.walk.tally.page(records, page.total)

    @abc.abstractmethod
    def page_records(self, results: msgspec.Raw) -> list[dict[str, t.Any]]:
        """The records of one page's raw results."""

    @abc.abstractmethod
    def ceiling(self, window: Window) -> str:
        """The highest bookmark a window can set: its last day, as the replication key."""

    @abc.abstractmethod
    def new_tally(self) -> CallTally | DayTally:
        """The tally of one read of a window: what it emits, and whether it is whole."""

    @property
    @abc.abstractmethod
    def coerce(self) -> Coercer:
        """The coercions of this stream's values; they count what they could not read."""

    # ------------------------------------------------------------ the sync
    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """One account's windows, walked by walk.py."""
        assert context is not None
        return self.walk.account_records(context)

    def fetch(self, query: Query, page: int) -> requests.Response:
        """One page, retried as the SDK's loop retries it (runs in a worker thread)."""
        context = query.context()
        return self._retried_send(self.prepare_request(context, page), context)

    @functools.cached_property
    def _retried_send(self) -> Callable[..., requests.Response]:
        """The SDK's own sender under the retries of `request_decorator`, decorated once.

        `RESTStream._request` is what the SDK's loop sends with: the authenticator, the
        `http_request_duration` metric, then `validate_response`. It is the one SDK name
        without a public hook used here; tests/test_metrics.py fails if it changes.
        """
        return self.request_decorator(self._request)

    def _account(self, name: str) -> Account:
        return next(a for a in self.settings.accounts if a.name == name)
