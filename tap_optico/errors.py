"""Where an API answer is mapped to "read it", "retry" or "stop with this message".

Every message here is one line, safe to print: none quotes a URL (the API key
travels in the query string), the API's own texts are flattened to one line and
masked, and none chains to an exception that quotes a URL.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re
import typing as t
from http import HTTPStatus
from urllib.parse import urlsplit

from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_optico import redact

# The only documented transient envelope message; every other one is the caller's fault.
TRANSIENT_MESSAGES = frozenset({"Cannot handle request"})
# The longest Retry-After honoured. A longer one fails the run at once, saying when to
# come back: holding every worker for hours helps nobody (6 retries x 300 s = 30 min).
MAX_RETRY_AFTER = 300.0
# The longest text quoted from an answer: enough for any documented message.
MAX_QUOTE = 300

_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """An API's text, safe to print: masked, on one line, without control characters."""
    flat = _SPACES.sub(" ", _CONTROL.sub(" ", redact.redact(text))).strip()
    return flat if len(flat) <= MAX_QUOTE else f"{flat[:MAX_QUOTE]}..."


class OpticoError(Exception):
    """A failure the user must act on; its text is the one line to show them."""


class AccountError(OpticoError):
    """A failure of one account's sync: the other accounts go on."""


class APIRefusedError(FatalAPIError, AccountError):
    """The API answered with an ERROR envelope (or a 4xx) that retrying cannot fix."""

    def __init__(self, messages: t.Sequence[str]) -> None:
        """Keep the API's own messages, each made safe, all on one line."""
        self.messages = [one_line(m) for m in messages]
        super().__init__(f"Optico API error: {'; '.join(self.messages) or 'no message'}")


class UnexpectedAnswerError(FatalAPIError, AccountError):
    """The answer is valid JSON (or HTTP) but not the Data API's: a wrong api_url or proxy."""


class RetryLaterError(FatalAPIError, AccountError):
    """The API asks to wait longer than MAX_RETRY_AFTER."""


class PaginationError(AccountError):
    """The API's pages do not follow each other, or never end."""


class IncompleteWindowError(AccountError):
    """A window still lacks calls after its re-read: its bookmark must not move past it."""


class RetriesExhaustedError(AccountError):
    """A request kept failing transiently until the retries ran out."""


class TransientError(RetriableAPIError):
    """A failure worth retrying; `retry_after` is the server's wish, in seconds."""

    def __init__(
        self, reason: str, retry_after: float | None = None, *, overload: bool = False
    ) -> None:
        """Describe the failure in a few words (never the URL); `overload`: the API said so."""
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.overload = overload


def check_envelope(status: str, errors: t.Sequence[str]) -> None:
    """Raise if a decoded body is an ERROR envelope.

    Raises:
        TransientError: only "Cannot handle request" (server-side, retry).
        APIRefusedError: any other message (bad key, parameter, date or limit).
    """
    if status.upper() != "ERROR":
        return
    if errors and all(m in TRANSIENT_MESSAGES for m in errors):
        raise TransientError("; ".join(errors), overload=True)
    raise APIRefusedError(errors)


def check_status(status: int, reason: str, retry_after: str | None) -> None:
    """Raise for HTTP statuses worth retrying (408, 429, 5xx); judge a long Retry-After.

    Other 4xx statuses are judged by their body (an ERROR envelope says why); the
    caller raises `http_refusal` if the body says nothing useful.

    Raises:
        TransientError: retry, after `retry_after` seconds if the server said so.
        RetryLaterError: the server asks to wait longer than MAX_RETRY_AFTER.
    """
    if status in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.REQUEST_TIMEOUT) or status >= 500:
        what = f"HTTP {status} {one_line(reason or '')}".strip()
        wait = retry_after_seconds(retry_after)
        if wait is not None and wait > MAX_RETRY_AFTER:
            raise RetryLaterError(_later(what, wait))
        raise TransientError(what, wait)


def check_redirect(status: int, location: str | None) -> None:
    """Refuse a redirect: following it would send the key, in the query string, elsewhere.

    Raises:
        UnexpectedAnswerError: the answer is a redirect, or a 304 (no redirect, no page).
    """
    if status == HTTPStatus.NOT_MODIFIED:
        msg = (
            "the API answered HTTP 304 Not Modified, the answer to a conditional request, "
            "which the tap never sends: a cache or proxy at api_url answers for the Data API"
        )
        raise UnexpectedAnswerError(msg)
    if 300 <= status < 400:
        target = urlsplit(location or "")
        where = f"{target.scheme}://{target.netloc}{target.path}" if target.netloc else "elsewhere"
        msg = (
            f"the API answered HTTP {status}, a redirect to {one_line(where)}; the tap never "
            "follows redirects (the key would go along): set api_url to the final address"
        )
        raise UnexpectedAnswerError(msg)


def not_a_page(body: bytes) -> TransientError:
    """An OK answer without `results` (`{}`, a proxy's JSON): retried, never read as empty.

    A proxy's "try later" passes with a retry; a wrong api_url fails once retries run out.
    """
    return TransientError(
        f"the answer has no results, so it is not a Data API page: {_quote(body)}"
    )


def _quote(body: bytes) -> str:
    return one_line(body[:MAX_QUOTE].decode("utf-8", errors="replace"))


def http_refusal(status: int, reason: str) -> APIRefusedError:
    """A 4xx without an ERROR envelope: show the status, never the body or URL."""
    return APIRefusedError([f"HTTP {status} {reason or ''}".strip()])


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After in seconds, from its seconds or its HTTP-date form; None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _later(what: str, wait: float) -> str:
    if math.isinf(wait):
        return f"{what} with Retry-After: inf, asking to wait indefinitely; retry later"
    try:
        when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=wait)
        at = f"after {when:%Y-%m-%d %H:%M} UTC"
    except OverflowError:
        at = "much later"
    return (
        f"{what} with Retry-After {wait:.0f} s, more than the {MAX_RETRY_AFTER:.0f} s the tap "
        f"waits; retry {at}"
    )
