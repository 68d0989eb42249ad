"""The base stream of the Data API: one REST query per account and date window.

Built on the SDK's REST hooks: the URL and its parameters (the key among them),
the judgement of each answer (`validate_response`, with errors.py), its retries
(`request_decorator` and the backoff hooks) and its records (`parse_response`).
With `max_concurrent_requests: 1` the SDK's own request loop reads each window,
driven by `NextPagePaginator`; above 1, `RequestsAhead` sends the same prepared
requests ahead through the same hooks, and records and state stay exactly those
of the sequential sync.
"""

from __future__ import annotations

import abc
import datetime as dt
import functools
import random
import time
import typing as t
from urllib.parse import parse_qs, urlsplit

import backoff
import msgspec
import requests
from singer_sdk import RESTStream
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib.catalog import REPLICATION_FULL_TABLE
from typing_extensions import override

from tap_optico import __version__, bookmarks
from tap_optico.errors import (
    AccountError,
    IncompleteWindowError,
    PaginationError,
    RetriesExhaustedError,
    TransientError,
    UnexpectedAnswerError,
    check_envelope,
    check_redirect,
    check_status,
    http_refusal,
    not_a_page,
)
from tap_optico.pagination import (
    NextPagePaginator,
    Page,
    RequestsAhead,
    attach,
    next_page_number,
    page_of,
)
from tap_optico.records import daily_records
from tap_optico.settings import MAX_PAGE_SIZE
from tap_optico.tally import CallTally, DayTally, whole_page
from tap_optico.transport import (
    BoundedAdapter,
    Throttle,
    TransportError,
    TransportTimeoutError,
    utf8_body,
)
from tap_optico.windows import Window, cut

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator

    from backoff.types import Details
    from singer_sdk.helpers.types import Context

    from tap_optico.records import Coercer
    from tap_optico.settings import Account, Settings

# Waits between retries: 1, 2, 4, ... seconds, capped, each with full jitter.
BACKOFF_FACTOR = 1.0
BACKOFF_CAP = 60.0


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


class Envelope(msgspec.Struct):
    """The response body minus its results, which stay raw JSON until they are parsed.

    Decoding the envelope checks that the whole body is valid JSON (a truncated body
    fails here, in the worker, and is retried) without building the result objects.
    """

    status: str = "OK"
    errors: list[str] | str | None = None
    # No default page: an answer without `results` is not a Data API page, even empty.
    results: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    total_results: int | str | None = None
    totalResults: int | str | None = None
    next_page: int | str | bool | None = None
    nextPage: int | str | bool | None = None


_ENVELOPE = msgspec.json.Decoder(Envelope)


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


class OpticoStream(RESTStream[int], abc.ABC):
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
    _paginator: NextPagePaginator
    _tally: CallTally | DayTally

    def __init__(self, tap: OpticoTap) -> None:
        """A stream of this tap; its settings are the tap's."""
        super().__init__(tap)  # type: ignore[arg-type]
        self.optico = tap
        self._walk: RequestsAhead[Query] | None = None

    @property
    def settings(self) -> Settings:
        """The tap's validated settings."""
        return self.optico.settings

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

    @functools.cached_property
    def throttle(self) -> Throttle:
        """The pause every worker of this stream honours."""
        return Throttle()

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
        self._paginator = NextPagePaginator(self.settings.page_size)
        return self._paginator

    # ------------------------------------------------------------ judging an answer
    @override
    def validate_response(self, response: requests.Response) -> None:
        """Map the answer to records, a retry or a one-line failure (errors.py says which).

        Raises:
            TransientError: worth retrying (408, 429, 5xx, a body cut short, overload).
            FatalAPIError: the API refused, redirected or answered something else.
        """
        status = response.status_code
        check_redirect(status, response.headers.get("Location"))
        check_status(status, response.reason, response.headers.get("Retry-After"))
        try:
            envelope = _ENVELOPE.decode(
                utf8_body(response.content, response.headers.get("Content-Type"))
            )
        except msgspec.ValidationError as exc:
            if status >= 400:
                raise http_refusal(status, response.reason) from None
            msg = f"unexpected answer from api_url: {str(exc).splitlines()[0][:120]}"
            raise UnexpectedAnswerError(msg) from None
        except (msgspec.DecodeError, RecursionError):
            if status >= 400:
                raise http_refusal(status, response.reason) from None
            raise TransientError(f"the body of HTTP {status} is not valid JSON") from None
        errors = envelope.errors
        check_envelope(envelope.status, [errors] if isinstance(errors, str) else errors or [])
        if status >= 400:
            raise http_refusal(status, response.reason)
        if envelope.results is msgspec.UNSET:
            raise not_a_page(response.content)
        query = parse_qs(urlsplit(response.request.url or "").query)
        attach(
            response,
            Page(
                query=f"{query['start_date'][0]}..{query['end_date'][0]}",
                number=int(query["page"][0]),
                total=_total(envelope.totalResults, envelope.total_results),
                next_page=_first(envelope.nextPage, envelope.next_page),
                results=envelope.results,
            ),
        )

    @override
    def parse_response(self, response: requests.Response) -> list[dict[str, t.Any]]:
        """The records of one page the window's tally lets through (tally.py).

        The page keeps its row count for the paginator.
        """
        page = page_of(response)
        records = self.page_records(page.results)
        page.rows = len(records)
        return self._tally.page(records, page.total)

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

    # ------------------------------------------------------------ retries
    @override
    def request_decorator(
        self, func: Callable[..., requests.Response]
    ) -> Callable[..., requests.Response]:
        return backoff.on_exception(
            self.backoff_wait_generator,
            (TransientError, requests.Timeout, requests.ConnectionError),
            max_tries=self.backoff_max_tries,
            jitter=self.backoff_jitter,
            on_backoff=self.backoff_handler,
            on_giveup=self._give_up,
            logger=None,  # backoff_handler logs one clean line; backoff's would repeat it
        )(func)

    @override
    def backoff_wait_generator(self) -> t.Generator[float, t.Any, None]:
        """Exponential waits with full jitter, never shorter than the server's Retry-After."""
        error = yield 0.0  # backoff primes the generator with send(None)
        attempt = 0
        while True:
            wait = random.uniform(0, min(BACKOFF_CAP, BACKOFF_FACTOR * 2**attempt))  # noqa: S311
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None:
                wait = max(wait, retry_after)
            attempt += 1
            error = yield wait

    @override
    def backoff_max_tries(self) -> int:
        return self.settings.max_retries + 1

    @override
    def backoff_jitter(self, value: float) -> float:
        """No jitter on top: the wait generator jitters, and honours Retry-After exactly."""
        return value

    @override
    def backoff_handler(self, details: Details) -> None:
        """One line per retry; a Retry-After or an overload pauses every worker."""
        error = details.get("exception")
        wait = float(details.get("wait") or 0.0)
        if isinstance(error, TransientError) and (error.retry_after is not None or error.overload):
            self.throttle.pause(wait)
        self.logger.warning(
            "%s: %s; retry %d of %d in %.1fs",
            _request_label(details),
            _reason(error),
            details["tries"],
            self.settings.max_retries,
            wait,
        )

    def _give_up(self, details: Details) -> None:
        raise RetriesExhaustedError(
            f"{_request_label(details)}: {_reason(details.get('exception'))}, still failing after "
            f"{details['tries']} attempts; the next run resumes from the last completed window"
        ) from None

    # ------------------------------------------------------------ the sync
    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        """Walk one account's windows from its bookmark (minus the lookback) to end_date.

        An account that fails (refused key, retries exhausted, a window that stays
        short) is reported and left at its last completed window; the others go on.
        """
        assert context is not None
        name = context["account"]
        if self.optico.has_failed(name):
            return
        windows = self.plan()[name]
        settings = self.settings
        self.logger.info(
            "%s [%s]: %d window(s) of up to %d day(s) to %s",
            self.name,
            name,
            len(windows),
            settings.window_days,
            settings.end_date,
        )
        bookmarks.begin(self, context)
        # In BATCH mode records reach the target only with their batch file, after the
        # SDK's own STATE: a STATE per window could overtake them.
        commit_per_window = self.get_batch_config(self.config) is None
        try:
            for window in windows:
                for record in self._window_records(Query(name, window)):
                    record["account"] = name
                    yield record
                if commit_per_window:
                    bookmarks.commit_window(self, context, self.ceiling(window))
        except AccountError as error:
            bookmarks.abandon_window(self, context)
            if self._walk is not None:
                self._walk.skip(lambda query: query.account != name)
            self.optico.account_failed(self.name, name, error)

    @functools.cache  # noqa: B019 (one plan per stream and sync)
    def plan(self) -> dict[str, list[Window]]:
        """Each account's windows, from its bookmark: read once, before any request.

        Raises:
            StateError: a bookmark cannot be read.
        """
        settings = self.settings
        windows = {}
        # Full table (Meltano's `metadata: replication-method`) reads the whole range.
        full_table = self.replication_method == REPLICATION_FULL_TABLE
        for account in settings.accounts:
            mark = None
            if not full_table:
                mark = bookmarks.bookmark(
                    self,
                    {"account": account.name},
                    inherits=account.name == settings.inheriting_account,
                )
            first = bookmarks.first_day(settings, mark, self.name)
            windows[account.name] = cut(first, settings.end_date, settings.window_days)
        return windows

    def _window_records(self, query: Query) -> Iterator[dict[str, t.Any]]:
        """A window's records, checked: distinct calls against what the API announced.

        A `calls` window that does not check out (rows repeated or skipped across
        pages, a total that moved while paging) has the days in doubt read again, each
        in one page; a `daily_calls` window is read again. Either stops the account at
        this window if that cannot make it whole, as do pages that do not follow.
        """
        started = time.monotonic()
        for attempt in (1, 2):
            tally = self._tally = self.new_tally()
            yield from self._read(query, tally, again=attempt > 1)
            count = tally.distinct
            if tally.whole():
                break
            if isinstance(tally, CallTally):
                count = yield from self._reread_days(query, tally)
                break
            if attempt == 2:
                msg = (
                    f"{self.name} {query}: received {count} days but the API announced "
                    f"{tally.totals[0]}, again; the bookmark stays before this window"
                )
                raise IncompleteWindowError(msg)
            self.logger.warning(
                "%s %s: received %d days but the API announced %s; re-reading the window",
                self.name,
                query,
                count,
                tally.totals[0],
            )
        self.logger.info(
            "%s %s: %d %s, %d page(s), %.1fs (account %s)",
            self.name,
            query,
            count,
            "day(s)" if self.group_by_day else "call(s)",
            self._paginator.count,
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
        self.logger.warning(
            "%s %s: %s; re-reading %d day(s), each in one page (account %s)",
            self.name,
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
        page = page_of(self.fetch(query._replace(limit=MAX_PAGE_SIZE, by_day=True), 1))
        if next_page_number(page.next_page) is not None:
            return None
        try:
            rows = daily_records(page.results, self.coerce)
        except UnexpectedAnswerError:
            return None
        return {dt.date.fromisoformat(row["date"]): row["calls"] or 0 for row in rows}

    def _day_records(self, query: Query, day: dt.date) -> Generator[dict[str, t.Any], None, int]:
        """One day's calls, read whole: in one page, or paged if it holds more than one page.

        Raises:
            IncompleteWindowError: the day's pages do not check out, twice.
        """
        one_day = Query(query.account, Window(day, day))
        page = page_of(self.fetch(one_day._replace(limit=MAX_PAGE_SIZE), 1))
        records = self.page_records(page.results)
        if next_page_number(page.next_page) is None:
            if page.total in (None, len(records)):
                yield from whole_page(records)
                return len(records)
            reason = f"one page holds {len(records)} calls, the API announced {page.total}"
        else:
            reason = "its pages do not check out"
            for _attempt in (1, 2):
                tally = self._tally = self.new_tally()
                try:
                    yield from self._read(one_day, tally, again=True)
                except PaginationError as error:
                    reason = str(error).split(": ", 1)[-1].split("; stopping")[0]
                    break
                if tally.whole():
                    return tally.distinct
        msg = (
            f"{self.name} {query}: the calls of {day} cannot be read whole, even day by day "
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
        if self.settings.concurrency == 1:
            yield from self.request_records(self._context(query))
            return
        walk = self._walk
        if walk is None:
            queries = [
                Query(account, window)
                for account, windows in self.plan().items()
                if not self.optico.has_failed(account)
                for window in windows
            ]
            walk = self._walk = RequestsAhead(
                self.fetch, self.get_new_paginator, queries, self.settings.concurrency
            )
        # The SDK's own request counter, one per query as its request_records keeps one.
        with self.get_http_request_counter() as counter:
            counter.with_context(self._context(query))
            for response in walk.pages(query, again=again):
                counter.increment()
                assert walk.paginator is not None
                self._paginator = walk.paginator
                yield from self.parse_response(response)

    def fetch(self, query: Query, page: int) -> requests.Response:
        """One page, retried as the SDK's loop retries it (runs in a worker thread)."""
        context = self._context(query)
        return self._retried_send(self.prepare_request(context, page), context)

    @functools.cached_property
    def _retried_send(self) -> Callable[..., requests.Response]:
        """The SDK's own sender under the retries of `request_decorator`, decorated once.

        `RESTStream._request` is what the SDK's loop sends with: the authenticator, the
        `http_request_duration` metric, then `validate_response`. It is the one SDK name
        without a public hook used here; tests/test_metrics.py fails if it changes.
        """
        return self.request_decorator(self._request)

    def _context(self, query: Query) -> dict[str, t.Any]:
        context: dict[str, t.Any] = {
            "account": query.account,
            "start_date": query.window.start.isoformat(),
            "end_date": query.window.end.isoformat(),
        }
        if query.limit is not None:
            context["limit"] = query.limit
        if query.by_day:
            context["group_by_day"] = True
        return context

    def _account(self, name: str) -> Account:
        return next(a for a in self.settings.accounts if a.name == name)


def _request_label(details: Details) -> str:
    """The window and page of the request being retried: "2024-01-01..2024-01-07 page 2"."""
    request = details["args"][0]
    query = parse_qs(urlsplit(getattr(request, "url", "") or "").query)
    try:
        return f"{query['start_date'][0]}..{query['end_date'][0]} page {query['page'][0]}"
    except (KeyError, IndexError):
        return "request"


def _reason(error: BaseException | None) -> str:
    """A failure in a few words; requests' own texts quote the URL, so only ours are shown."""
    if isinstance(error, TransientError):
        return error.reason
    if isinstance(error, (TransportTimeoutError, TransportError)):
        return str(error)
    return f"connection failed ({type(error).__name__})"


def _total(*values: int | str | None) -> int | None:
    """The first value that reads as a non-negative integer ("3654" or 3654); None if none.

    Raises:
        UnexpectedAnswerError: a total that is no count.
    """
    for value in values:
        if value is None or value == "":
            continue
        try:
            total = int(value)
        except (TypeError, ValueError):
            msg = f"unexpected answer: total_results {str(value)[:40]!r} is not a count"
            raise UnexpectedAnswerError(msg) from None
        if total < 0:
            msg = f"unexpected answer: total_results {total} is negative"
            raise UnexpectedAnswerError(msg)
        return total
    return None


def _first(*values: t.Any) -> t.Any:
    """The first value present (the API's camelCase or snake_case spelling)."""
    return next((v for v in values if v is not None), None)
