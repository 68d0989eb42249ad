"""Where an API failure is mapped to "retry" or "stop with this message".

Every message here is one line, safe to print: none quotes a URL (the API key
travels in the query string) and none chains to an exception that does.
"""

from __future__ import annotations

import typing as t
from http import HTTPStatus

# The only documented transient envelope message; every other one is the caller's fault.
TRANSIENT_MESSAGES = frozenset({"Cannot handle request"})


class OpticoError(Exception):
    """A failure the user must act on; its text is the one line to show them."""


class APIRefusedError(OpticoError):
    """The API answered with an ERROR envelope that retrying cannot fix."""

    def __init__(self, messages: t.Sequence[str]) -> None:
        """Keep the API's own messages, all on one line."""
        self.messages = list(messages)
        super().__init__(f"Optico API error: {'; '.join(self.messages) or 'no message'}")


class PaginationError(OpticoError):
    """The API kept announcing pages beyond what its own total allows."""


class TransientError(Exception):
    """A failure worth retrying: the request may succeed if sent again."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        """Describe the failure in a few words; `retry_after` comes from the server."""
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class RetriesExhaustedError(OpticoError):
    """A request kept failing transiently until the retries ran out."""


def check_envelope(envelope: t.Mapping[str, t.Any]) -> None:
    """Raise if a decoded response body is an ERROR envelope.

    Raises:
        TransientError: only "Cannot handle request" (server-side, retry).
        APIRefusedError: any other message (bad key, parameter, date or limit).
    """
    if str(envelope.get("status", "OK")).upper() != "ERROR":
        return
    errors = envelope.get("errors") or []
    messages = [str(m) for m in (errors if isinstance(errors, list) else [errors])]
    if messages and all(m in TRANSIENT_MESSAGES for m in messages):
        raise TransientError("; ".join(messages))
    raise APIRefusedError(messages)


def check_status(status: int, reason: str, retry_after: str | None) -> None:
    """Raise TransientError for HTTP statuses worth retrying: 408, 429 and 5xx.

    Other 4xx statuses are judged by their body (an ERROR envelope says why);
    the caller raises for them if the body says nothing useful.
    """
    if status in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.REQUEST_TIMEOUT) or status >= 500:
        raise TransientError(f"HTTP {status} {reason or ''}".strip(), _seconds(retry_after))


def http_refusal(status: int, reason: str) -> APIRefusedError:
    """A 4xx without an ERROR envelope: show the status, never the body or URL."""
    return APIRefusedError([f"HTTP {status} {reason or ''}".strip()])


def _seconds(retry_after: str | None) -> float | None:
    """Read Retry-After in its seconds form; an HTTP date is ignored (expo backoff applies)."""
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return None
