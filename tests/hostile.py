"""A hostile Optico Data API for tests: a real HTTP server whose every answer a test scripts.

`HostileAPI(respond)` listens on 127.0.0.1 (a random port) and hands each GET to
`respond(request) -> Answer`. An Answer is whatever bytes the test wants on the wire:
any status, headers and body (valid JSON or not), optionally sent one byte at a time
(`byte_delay`), or never sent at all (`stall`: the request is read and left unanswered
until the server stops). Every request is recorded with its arrival time and decoded
query, so a test can tell how many requests the tap sent, when, and with which key.

The server speaks HTTP/1.1 with keep-alive and writes each answer in one send with
Nagle's algorithm off, so a script of a thousand pages runs in a few seconds.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import typing as t
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Request:
    """One request as the server received it."""

    number: int  # 1 for the first request the server received
    time: float  # time.monotonic() at arrival
    path: str  # the raw request target, query string included
    params: dict[str, str]

    @property
    def page(self) -> int:
        return int(self.params.get("page", "1"))

    @property
    def window(self) -> str:
        """The window as the tap logs it: "YYYY-MM-DD..YYYY-MM-DD"."""
        return f"{self.params.get('start_date')}..{self.params.get('end_date')}"


@dataclass
class Answer:
    """What the server sends back for one request."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    byte_delay: float = 0.0  # > 0: the body is sent one byte at a time, this far apart
    stall: bool = False  # True: read the request, never answer


Respond = Callable[[Request], Answer]


def raw(text: str | bytes, status: int = 200, **headers: str) -> Answer:
    """An answer with exactly this body."""
    body = text.encode() if isinstance(text, str) else text
    return Answer(status=status, body=body, headers=dict(headers))


def envelope(
    results: t.Any = (),
    *,
    total: t.Any = None,
    next_page: t.Any = None,
    status: int = 200,
    **fields: t.Any,
) -> Answer:
    """An OK envelope; `total` and `next_page` are left out when None."""
    body: dict[str, t.Any] = {"status": "OK"}
    if total is not None:
        body["total_results"] = total
    if next_page is not None:
        body["next_page"] = next_page
    body["results"] = list(results) if isinstance(results, (list, tuple)) else results
    body.update(fields)
    return raw(json.dumps(body), status=status)


def error(*messages: str, status: int = 200) -> Answer:
    """An ERROR envelope with these messages."""
    return raw(json.dumps({"status": "ERROR", "errors": list(messages)}), status=status)


def call(start: str, n: int, **fields: t.Any) -> dict[str, t.Any]:
    """One call of the API, at local time `start` ("YYYY-MM-DD HH:MM:SS"), distinct by `n`."""
    return {
        "start_date": start,
        "caller": f"+3360000{n:04d}",
        "tracking_number": "+33170000001",
        "phone": "+33140000002",
        "trigger_type": "1",
        "source": "Google",
        "status": "succès",
        "duration": "42",
        "revenue": "12.50",
        **fields,
    }


def calls_on(day: str, count: int, first: int = 0) -> list[dict[str, t.Any]]:
    """`count` distinct calls (callers) on one local day, from 08:00:00 on, 7 seconds apart."""
    calls = []
    for n in range(first, first + count):
        seconds = 8 * 3600 + (7 * n) % (15 * 3600)
        clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        calls.append(call(f"{day} {clock}", n))
    return calls


def paged(rows: list[dict[str, t.Any]], page: int, size: int, *, total: t.Any = "len") -> Answer:
    """Page `page` of `rows` in pages of `size`, with total_results and next_page as the API."""
    chunk = rows[(page - 1) * size : page * size]
    more = page * size < len(rows)
    return envelope(
        chunk,
        total=len(rows) if total == "len" else total,
        next_page=page + 1 if more else None,
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: HostileAPI


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        api = self.server.api
        request = api.record(self.path)
        answer = api.respond(request)
        if answer.stall:
            api.stopping.wait()
            self.close_connection = True
            return
        head = [f"HTTP/1.1 {answer.status} Hostile"]
        headers = {
            "Content-Type": answer.content_type,
            "Content-Length": str(len(answer.body)),
            **answer.headers,
        }
        head += [f"{name}: {value}" for name, value in headers.items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        try:
            if answer.byte_delay <= 0:
                self.wfile.write(data + answer.body)
                return
            self.wfile.write(data)
            for i in range(len(answer.body)):
                if api.stopping.wait(answer.byte_delay):
                    break
                self.wfile.write(answer.body[i : i + 1])
        except OSError:  # the tap hung up: fine
            self.close_connection = True

    def log_message(self, format: str, *args: t.Any) -> None:
        """Silent."""


class HostileAPI:
    """A scripted HTTP server on 127.0.0.1; use it as a context manager."""

    def __init__(self, respond: Respond, path: str = "/data-api") -> None:
        self.respond = respond
        self.path = path
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def record(self, path: str) -> Request:
        query = urlsplit(path).query
        with self._lock:
            request = Request(
                number=len(self._requests) + 1,
                time=time.monotonic(),
                path=path,
                params=dict(parse_qsl(query, keep_blank_values=True)),
            )
            self._requests.append(request)
        return request

    def wait_for(self, condition: Callable[[list[Request]], bool], timeout: float) -> bool:
        """Wait until the requests received satisfy `condition`; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self.requests):
                return True
            time.sleep(0.05)
        return condition(self.requests)

    def start(self) -> HostileAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HostileAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pages_of(rows: Iterable[dict[str, t.Any]], size: int) -> list[list[dict[str, t.Any]]]:
    """Rows cut in pages of `size`."""
    items = list(rows)
    return [items[i : i + size] for i in range(0, len(items), size)]
