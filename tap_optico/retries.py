"""The retry policy of every Data API request: what is retried, how long to wait, when to stop.

Built on the SDK's backoff hooks, which both request paths go through
(`request_decorator`): the SDK's own loop, and the requests sent ahead.
"""

from __future__ import annotations

import abc
import functools
import random
import typing as t
from urllib.parse import parse_qs, urlsplit

import backoff
import requests
from singer_sdk import RESTStream
from typing_extensions import override

from tap_optico.errors import RetriesExhaustedError, TransientError
from tap_optico.transport import Throttle, TransportError, TransportTimeoutError

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from backoff.types import Details

    from tap_optico.settings import Settings

# Waits between retries: 1, 2, 4, ... seconds, capped, each with full jitter.
BACKOFF_FACTOR = 1.0
BACKOFF_CAP = 60.0


class RetryingStream(RESTStream[int], abc.ABC):
    """A REST stream whose requests are retried on transient failures, up to `max_retries`."""

    @property
    @abc.abstractmethod
    def settings(self) -> Settings:
        """The validated settings: `max_retries` among them."""

    @functools.cached_property
    def throttle(self) -> Throttle:
        """The pause every worker of this stream honours."""
        return Throttle()

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
