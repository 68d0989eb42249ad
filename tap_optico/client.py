"""The HTTP side: one page request to the Data API, with retries shared by all workers."""

from __future__ import annotations

import logging
import random
import threading
import time
import typing as t
from dataclasses import dataclass

import backoff
import msgspec
import requests

from tap_optico.errors import (
    RetriesExhaustedError,
    TransientError,
    check_envelope,
    check_status,
    http_refusal,
)
from tap_optico.redact import Redactor
from tap_optico.windows import Window

if t.TYPE_CHECKING:
    from tap_optico.settings import Settings

# Waits between retries: 1, 2, 4, ... seconds, capped, each with full jitter.
BACKOFF_FACTOR = 1.0
BACKOFF_CAP = 60.0


class Envelope(msgspec.Struct):
    """The response body minus its results, which stay raw JSON until they are written.

    Decoding the envelope checks that the whole body is valid JSON (a truncated body
    fails here, in the worker, and is retried) without building the result objects.
    """

    status: str = "OK"
    errors: list[str] | str | None = None
    results: msgspec.Raw = msgspec.Raw(b"[]")
    total_results: int | str | None = None
    totalResults: int | str | None = None
    next_page: int | str | None = None
    nextPage: int | str | None = None


_ENVELOPE = msgspec.json.Decoder(Envelope)


@dataclass(frozen=True)
class Page:
    """One page of one window: the API's totals and the undecoded results."""

    window: Window
    number: int
    total: int | None
    next_page: int | None
    results: msgspec.Raw


class Throttle:
    """A pause shared by every worker: one 429 or overload slows them all down."""

    def __init__(self) -> None:
        """No pause at first."""
        self._lock = threading.Lock()
        self._until = 0.0

    def pause(self, seconds: float) -> None:
        """Hold every request for at least this long from now."""
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def wait(self) -> None:
        """Sleep until the shared pause is over."""
        while (delay := self._until - time.monotonic()) > 0:
            time.sleep(delay)


class DataAPI:
    """Fetches pages of the Data API for one stream; safe to call from several threads."""

    def __init__(
        self,
        settings: Settings,
        api_key: str,
        session: requests.Session,
        logger: logging.Logger,
        *,
        group_by_day: bool = False,
    ) -> None:
        """Bind the request parameters that are the same for every page."""
        self.settings = settings
        self.session = session
        self.logger = logger
        self.throttle = Throttle()
        self._mask = Redactor(api_key)
        self._base_params: dict[str, str | int] = {
            "api_key": api_key,
            "type": "calls",
            "limit": settings.page_size,
            **settings.filters,
        }
        if group_by_day:
            self._base_params["group_by_day"] = "true"
        self.fetch = backoff.on_exception(
            self._waits,
            TransientError,
            max_tries=settings.max_retries + 1,
            jitter=None,  # the wait generator jitters, and honours Retry-After exactly
            on_backoff=self._on_backoff,
            on_giveup=self._on_giveup,
            raise_on_giveup=True,
            logger=None,  # our handlers log one clean line; backoff's would repeat it
        )(self._fetch_once)

    def params(self, window: Window, page: int) -> dict[str, str | int]:
        """The query string of one page (the key included, so never log it)."""
        return {
            **self._base_params,
            "start_date": window.start.isoformat(),
            "end_date": window.end.isoformat(),
            "page": page,
        }

    def _fetch_once(self, window: Window, page: int) -> Page:
        """Send one request and judge its answer; no retry here."""
        self.throttle.wait()
        failure: TransientError | None = None
        try:
            response = self.session.get(
                self.settings.api_url,
                params=self.params(window, page),
                timeout=self.settings.request_timeout,
            )
            body = response.content
        except requests.Timeout:
            failure = TransientError(f"no answer within {self.settings.request_timeout}s")
        except requests.RequestException as exc:
            # requests' text quotes the URL, key included: keep only the exception's kind.
            failure = TransientError(f"connection failed ({type(exc).__name__})")
        # Raised outside the except blocks, so no exception chain carries the URL.
        if failure is not None:
            raise failure
        check_status(response.status_code, response.reason, response.headers.get("Retry-After"))
        try:
            envelope = _ENVELOPE.decode(body)
        except msgspec.DecodeError:
            envelope = None
        if envelope is None:
            if response.status_code >= 400:
                raise http_refusal(response.status_code, response.reason)
            raise TransientError(f"the body of HTTP {response.status_code} is not valid JSON")
        errors = envelope.errors
        if errors is not None:
            # An error message that quotes the request must not carry the key onwards.
            errors = [self._mask(m) for m in ([errors] if isinstance(errors, str) else errors)]
        check_envelope({"status": envelope.status, "errors": errors})
        if response.status_code >= 400:
            raise http_refusal(response.status_code, response.reason)
        return Page(
            window=window,
            number=page,
            total=_integer(envelope.totalResults, envelope.total_results),
            next_page=_integer(envelope.nextPage, envelope.next_page),
            results=envelope.results,
        )

    def _waits(self) -> t.Generator[float, t.Any, None]:
        """Exponential waits with full jitter."""
        yield 0.0  # consumed by backoff's priming send(None)
        attempt = 0
        while True:
            yield random.uniform(0, min(BACKOFF_CAP, BACKOFF_FACTOR * 2**attempt))  # noqa: S311
            attempt += 1

    def _on_backoff(self, details: t.Any) -> None:
        error: TransientError = details["exception"]
        wait = float(details["wait"])
        if error.retry_after is not None:
            # The server's Retry-After wins over a shorter backoff, and holds every worker.
            self.throttle.pause(error.retry_after)
            wait = max(wait, error.retry_after)
        elif "Cannot handle request" in error.reason:
            self.throttle.pause(wait)
        window, page = details["args"][:2]
        self.logger.warning(
            "%s page %d: %s; retry %d of %d in %.1fs",
            window,
            page,
            error.reason,
            details["tries"],
            self.settings.max_retries,
            wait,
        )

    def _on_giveup(self, details: t.Any) -> None:
        error: TransientError = details["exception"]
        window, page = details["args"][:2]
        raise RetriesExhaustedError(
            f"{window} page {page}: {error.reason}, still failing after "
            f"{details['tries']} attempts; the next run resumes from the last completed window"
        ) from None


def _integer(*values: int | str | None) -> int | None:
    """The first value that reads as an integer ("3654" or 3654); None if none does."""
    for value in values:
        if value is None or value == "":
            continue
        try:
            return int(value)
        except (TypeError, ValueError):
            continue
    return None
