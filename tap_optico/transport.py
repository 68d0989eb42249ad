"""The HTTP transport under the streams' session: bounded answers and a shared pause.

requests' timeout bounds each socket read, not an answer: a server dripping a body
byte by byte is never timed out, and a huge body is read whole into memory. The
adapter mounted on the session reads every body itself, against a deadline and a
size cap. It also holds the pause that a 429 or an overload imposes on every
worker, and turns every transport failure into a requests exception whose text
quotes no URL (the key travels in the query string).
"""

from __future__ import annotations

import threading
import time
import typing as t

import requests
import urllib3
from requests.adapters import HTTPAdapter
from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Mapping

# A page of 5000 calls is about 4 MB; anything far larger is not the Data API.
MAX_BODY_BYTES = 64 * 1024 * 1024
_CHUNK = 256 * 1024


class TransportTimeoutError(requests.Timeout):
    """No whole answer in time; the text is ours and quotes no URL."""


class TransportError(requests.ConnectionError):
    """The connection failed or the answer was too large; the text is ours."""


class _Body:
    """A body already read, handed to requests in one piece and then let go.

    requests reads `raw` in chunks and joins them; one chunk of the whole body joins
    without a copy, and the body is not kept twice while the response is held.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, amt: int | None = None) -> bytes:
        """The whole body at the first call, then nothing."""
        data, self._data = self._data, b""
        return data

    def close(self) -> None:
        """Nothing to close: the connection went back to the pool when the body was read."""


class _TooLargeError(Exception):
    """The body passed MAX_BODY_BYTES."""


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


class BoundedAdapter(HTTPAdapter):
    """An adapter whose answers arrive whole within `deadline` seconds, or fail."""

    def __init__(self, deadline: float, throttle: Throttle, pool_size: int) -> None:
        """Bound every answer to `deadline` seconds and MAX_BODY_BYTES."""
        super().__init__(pool_maxsize=pool_size)
        self.deadline = deadline
        self.throttle = throttle

    @override
    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | None = None,
        verify: bool | str = True,
        cert: t.Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send after the shared pause; read the body within the deadline.

        Raises:
            requests.Timeout: no whole answer within the deadline.
            requests.ConnectionError: the connection failed (the text names no URL).
        """
        self.throttle.wait()
        started = time.monotonic()
        failure: requests.RequestException | None = None
        try:
            response = super().send(
                request, stream=True, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
            if not stream:
                response.raw = _Body(self._read(response.raw, started + self.deadline))
        except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
            failure = TransportTimeoutError(f"no whole answer within {self.deadline:g}s")
        except _TooLargeError:
            failure = TransportError(f"an answer larger than {MAX_BODY_BYTES // 2**20} MiB")
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            failure = TransportError(f"connection failed ({type(exc).__name__})")
        # Raised outside the except blocks, so no exception chain carries the URL.
        if failure is not None:
            raise failure
        return response

    def _read(self, raw: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        """The whole body, decoded, or Timeout past the deadline.

        A body read whole hands its connection back to the pool; one cut short closes it
        (its unread rest would be taken for the next answer).
        """
        chunks, size = [], 0
        try:
            while chunk := raw.read1(_CHUNK, decode_content=True):
                chunks.append(chunk)
                size += len(chunk)
                if time.monotonic() > deadline:
                    raise requests.Timeout
                if size > MAX_BODY_BYTES:
                    raise _TooLargeError
        except BaseException:
            raw.close()
            raise
        finally:
            raw.release_conn()
        return b"".join(chunks)


# Charsets a PHP backend may declare instead of UTF-8; their text is transcoded.
_SINGLE_BYTE = frozenset({"iso-8859-1", "latin-1", "latin1", "iso-8859-15", "windows-1252"})
_BOM = b"\xef\xbb\xbf"


def utf8_body(content: bytes, content_type: str | None) -> bytes:
    """The body as UTF-8 JSON: a BOM dropped, a declared Latin-1 or Windows-1252 transcoded.

    JSON is UTF-8 (RFC 8259), so bytes that are not UTF-8 are refused later, in one
    line, unless the answer says which single-byte charset they are in.
    """
    if content.startswith(_BOM):
        return content[len(_BOM) :]
    charset = ""
    for part in (content_type or "").split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset":
            charset = value.strip().strip('"').lower()
    if charset in _SINGLE_BYTE:
        codec = "cp1252" if charset == "windows-1252" else charset
        return content.decode(codec, errors="replace").encode()
    return content
