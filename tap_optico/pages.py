"""Where an answer becomes a page: its envelope decoded once, its rows left raw.

`read_page` judges an HTTP answer (with errors.py) and, if it is a Data API page,
returns it decoded; `Pages` keeps the page of each response for the stream's own
hooks, so a body is decoded once, in the thread that received it.
"""

from __future__ import annotations

import threading
import typing as t
import weakref
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import msgspec

from tap_optico.errors import (
    TransientError,
    UnexpectedAnswerError,
    check_envelope,
    check_redirect,
    check_status,
    http_refusal,
    not_a_page,
)
from tap_optico.transport import utf8_body

if t.TYPE_CHECKING:
    import requests


@dataclass
class Page:
    """One decoded answer: where it belongs, the API's totals and its undecoded rows."""

    query: str
    number: int
    total: int | None
    next_page: t.Any
    results: msgspec.Raw
    rows: int | None = None


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


def read_page(response: requests.Response) -> Page:
    """The page an answer holds, or the error errors.py maps it to.

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
    return Page(
        query=f"{query['start_date'][0]}..{query['end_date'][0]}",
        number=int(query["page"][0]),
        total=_total(envelope.totalResults, envelope.total_results),
        next_page=_first(envelope.nextPage, envelope.next_page),
        results=envelope.results,
    )


class Pages:
    """The decoded page of each response a stream received, for as long as it is held.

    Worker threads add pages while the sync reads them, hence the lock.
    """

    def __init__(self) -> None:
        """No page yet."""
        self._pages: weakref.WeakKeyDictionary[requests.Response, Page] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def keep(self, response: requests.Response, page: Page) -> None:
        """Remember the page decoded from a response."""
        with self._lock:
            self._pages[response] = page

    def __getitem__(self, response: requests.Response) -> Page:
        """The page decoded from a response."""
        with self._lock:
            return self._pages[response]


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
