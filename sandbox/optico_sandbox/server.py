"""Optico-compatible ``GET /data-api`` HTTP server for tests, demos and benchmarks.

The real Data API is unreachable from our machines, so this sandbox implements the
documented contract (see shared/optico-data-api.md) on top of :class:`CallStore`,
with switchable naming / value styles and deterministic fault injection.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, get_args
from urllib.parse import parse_qs, urlencode, urlsplit

from optico_sandbox.data import FILTER_NAMES, PHONES, TRACKING, CallStore, parse_day

FaultKind = Literal[
    "http500",
    "http502",
    "http503",
    "http429",
    "reset",
    "truncated",
    "cannot_handle",
    "latency",
    "stuck",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
PATH = "/data-api"
MASK = "***"
# Every OK body starts so: ``status`` is the envelope's first key, json.dumps its writer.
_OK_BODY = b'{"status": "OK"'

CAMEL = {
    "total_results": "totalResults",
    "next_page": "nextPage",
    "start_date": "startDate",
    "tracking_number": "trackingNumber",
    "trigger_type": "triggerType",
    "call_path": "callPath",
    "is_redirect": "isRedirect",
    "expired_redirect": "expiredRedirect",
    "client_data": "clientData",
    "visit_id": "visitId",
    "recording_url": "recordingUrl",
    "caller_city": "callerCity",
}

_HTML = "<html><head><title>{0}</title></head><body><h1>{0}</h1><hr>nginx</body></html>\n"
_STATUS_TEXT = {
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    429: "429 Too Many Requests",
}


# Served bodies kept for repeated queries: a benchmark's warm-up fills it.
BODY_CACHE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class RequestRecord:
    """One request the sandbox received; the api key is always masked as ``***``.

    ``account`` tells accounts apart without the key: the position of the key among
    :attr:`Sandbox.api_keys` (0 is the constructor's ``api_key``), None for an unknown key.
    """

    method: str
    path: str
    params: dict[str, str]
    status: int | None  # None when the connection was reset without an answer
    fault: str | None
    time: float
    account: int | None = None


@dataclass
class _Fault:
    kind: str
    first: int | None
    per: str
    retry_after: int
    seconds: float
    account: int | None = None  # only the requests of this account (None: every request)
    seen: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)
    total: int = 0

    def fires(self, query: tuple[tuple[str, str], ...], account: int | None) -> bool:
        """Count the request and tell whether this fault applies to it."""
        if self.account is not None and account != self.account:
            return False
        self.total += 1
        count = self.seen[query] = self.seen.get(query, 0) + 1
        if self.first is None:
            return True
        return (count if self.per == "query" else self.total) <= self.first


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def mask_params(params: dict[str, str]) -> dict[str, str]:
    """Copy of the query parameters with the secret replaced, safe to log."""
    return {k: (MASK if k == "api_key" else v) for k, v in params.items()}


def _php(value: Any) -> str:
    """Render a value the way a PHP backend stringifies everything."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.2f}"
    if value is None:
        return ""
    return str(value)


class Sandbox:
    """An Optico Data API look-alike serving deterministic synthetic calls on 127.0.0.1."""

    def __init__(
        self,
        calls: int = 1000,
        start_date: str = "2024-01-01",
        end_date: str = "2024-03-31",
        seed: int = 0,
        naming: Literal["camel", "snake"] = "camel",
        values: Literal["native", "php"] = "native",
        api_key: str = "sandbox-key",
        port: int = 0,
        latency: float = 0.0,
        error_status: int = 200,
        extra_fields: bool = False,
        verbose: bool = False,
        accounts: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        lookalikes: float = 0.013,
        hidden_callers: float = 0.03,
        unstable_ties: bool = False,
        ignore_page: bool = False,
    ) -> None:
        """Generate the data now; the HTTP server only starts with :meth:`start`.

        ``api_key`` is the default account, holding ``calls`` calls; ``accounts`` adds
        more, each key its own account with its own calls: ``{"key-b": {"calls": 300,
        "seed": 2}}`` (the arguments of :meth:`add_account`).

        ``lookalikes`` and ``hidden_callers`` are the shares of twin calls and of
        hidden callers in the data (see :class:`CallStore`). Two switches make the
        server misbehave as real ones may: ``unstable_ties`` orders calls of one
        instant differently on each page (rows of a tie group cut by a page end are
        repeated or skipped), and ``ignore_page`` serves page 1's rows for every page,
        with the ``total_results`` and ``next_page`` of the page asked for.
        """
        if naming not in ("camel", "snake"):
            raise ValueError("naming must be 'camel' or 'snake'")
        if values not in ("native", "php"):
            raise ValueError("values must be 'native' or 'php'")
        self.store = CallStore(
            calls,
            start_date,
            end_date,
            seed=seed,
            extra_fields=extra_fields,
            lookalikes=lookalikes,
            hidden_callers=hidden_callers,
        )
        # Every account's calls by key, the default account first.
        self._stores: dict[str, CallStore] = {api_key: self.store}
        self.naming = naming
        self.values = values
        self.api_key = api_key
        self.latency = latency
        self.error_status = error_status
        self.verbose = verbose
        self.unstable_ties = unstable_ties
        self.ignore_page = ignore_page
        self._port = port
        self._lock = threading.RLock()
        # Served bodies by query, so the sandbox keeps pace with a fast client; mutations
        # clear it. Bounded in bytes, least recently used first out.
        self._bodies: OrderedDict[tuple[tuple[str, str], ...], bytes] = OrderedDict()
        self._body_bytes = 0
        self._faults: list[_Fault] = []
        # Armed arrive_while_paging: api key -> (calls, after_page).
        self._arrivals: dict[str, tuple[int, int]] = {}
        self._log: list[RequestRecord] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        for key, options in (accounts or {}).items():
            self.add_account(key, **options)

    # ------------------------------------------------------------------ accounts
    def add_account(
        self,
        api_key: str,
        *,
        calls: int = 1000,
        seed: int | None = None,
        start_date: str | None = None,
        end_date: str | None = None,
        extra_fields: bool | None = None,
        lookalikes: float | None = None,
        hidden_callers: float | None = None,
    ) -> CallStore:
        """Serve another account under ``api_key``, with calls of its own.

        Its range, ``extra_fields``, ``lookalikes`` and ``hidden_callers`` default to
        the default account's; its seed to one derived from the key, so two accounts
        never hold the same calls unless asked to.
        """
        if not api_key:
            raise ValueError("an account needs a non-empty api_key")
        store = CallStore(
            calls,
            start_date or self.store.start_day.isoformat(),
            end_date or self.store.end_day.isoformat(),
            seed=zlib.crc32(api_key.encode()) if seed is None else seed,
            extra_fields=self.store.extra_fields if extra_fields is None else extra_fields,
            lookalikes=self.store.lookalikes if lookalikes is None else lookalikes,
            hidden_callers=self.store.hidden_callers if hidden_callers is None else hidden_callers,
        )
        with self._lock:
            if api_key in self._stores:
                raise ValueError("this api_key already has an account")
            self._stores[api_key] = store
        return store

    @property
    def api_keys(self) -> list[str]:
        """Every account's key, the default (constructor's) first, then in order of addition."""
        with self._lock:
            return list(self._stores)

    def store_for(self, api_key: str | None = None) -> CallStore:
        """The calls of one account (None: the default account)."""
        with self._lock:
            if api_key is None:
                return self.store
            try:
                return self._stores[api_key]
            except KeyError:
                raise KeyError("no account has this api_key") from None

    def account_of(self, api_key: str | None) -> int | None:
        """The tag of an account in the request log: its key's position in :attr:`api_keys`."""
        with self._lock:
            for position, key in enumerate(self._stores):
                if key == api_key:
                    return position
        return None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Sandbox:
        """Bind the port and serve in a daemon thread."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.sandbox = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop every open (keep-alive) connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the requested one until started)."""
        return self._server.server_address[1] if self._server else self._port

    @property
    def url(self) -> str:
        """Full endpoint URL, e.g. ``http://127.0.0.1:8765/data-api``."""
        if self._server is None:
            raise RuntimeError("sandbox is not started")
        return f"http://127.0.0.1:{self.port}{PATH}"

    # ------------------------------------------------------------------ data helpers
    @property
    def start_date(self) -> str:
        """First local day of the generated data, ``YYYY-MM-DD``."""
        return self.store.start_day.isoformat()

    @property
    def end_date(self) -> str:
        """Last local day of the generated data, ``YYYY-MM-DD``."""
        return self.store.end_day.isoformat()

    @property
    def total_calls(self) -> int:
        """Number of calls currently held."""
        with self._lock:
            return self.store.count

    @property
    def tracking_numbers(self) -> list[dict[str, str | None]]:
        """The fixed tracking numbers with their destination phone and offline description."""
        return [
            {"tracking_number": t, "phone": PHONES[p], "offline_phone_description": d}
            for t, p, d, _w in TRACKING
        ]

    @property
    def phones(self) -> list[str]:
        """The fixed destination phones."""
        return list(PHONES)

    def truth_calls(
        self,
        start_date: str | None = None,
        end_date: str | None = None,
        *,
        api_key: str | None = None,
        **filters: str,
    ) -> list[dict[str, Any]]:
        """Every matching call of one account (default: the default one), oldest first."""
        unknown = set(filters) - set(FILTER_NAMES)
        if unknown:
            raise TypeError(f"unknown filters: {sorted(unknown)}")
        with self._lock:
            store = self.store_for(api_key)
            first = None if start_date is None else _day(start_date)
            last = None if end_date is None else _day(end_date)
            return list(store.records_at(store.matching(first, last, filters)))

    def truth_daily(
        self,
        start_date: str | None = None,
        end_date: str | None = None,
        *,
        api_key: str | None = None,
    ) -> list[dict[str, Any]]:
        """One account's per-day totals (date, calls, duration, revenue), oldest first."""
        with self._lock:
            store = self.store_for(api_key)
            first = None if start_date is None else _day(start_date)
            last = None if end_date is None else _day(end_date)
            rows = store.daily_rows(first, last, {})
        return [
            {"date": d, "calls": c, "duration": s, "revenue": round(r / 100, 2)}
            for d, c, s, r in rows
        ]

    def add_calls(
        self,
        n: int,
        start_date: str | None = None,
        end_date: str | None = None,
        *,
        api_key: str | None = None,
    ) -> list[dict[str, Any]]:
        """Add ``n`` new calls to an account on local days start..end (its range by default)."""
        with self._lock:
            store = self.store_for(api_key)
            self._forget_bodies()
            return store.add_calls(
                n,
                start_date or store.start_day.isoformat(),
                end_date or store.end_day.isoformat(),
            )

    def update_calls(self, n: int, *, api_key: str | None = None) -> list[dict[str, Any]]:
        """Change status / duration / revenue of ``n`` existing calls; returns new versions."""
        with self._lock:
            store = self.store_for(api_key)
            self._forget_bodies()
            return store.update_calls(n)

    def insert_call(
        self,
        start_date: str = "2024-03-31 00:30:00",
        *,
        fold: int = 0,
        api_key: str | None = None,
        allow_lookalike: bool = False,
        **fields: Any,
    ) -> dict[str, Any]:
        """Place one call at a Paris wall-clock time (``fold=1``: second autumn pass).

        ``allow_lookalike`` accepts a call with the (start, caller, tracking, phone) of
        another, which is refused otherwise.
        """
        with self._lock:
            store = self.store_for(api_key)
            self._forget_bodies()
            return store.insert_call(
                start_date, fold=fold, allow_lookalike=allow_lookalike, **fields
            )

    def arrive_while_paging(
        self, calls: int = 1, *, after_page: int = 1, api_key: str | None = None
    ) -> None:
        """Add calls once, right after the account's next ``type=calls`` page ``after_page``.

        They land on that request's ``end_date`` day, newer than every call of that day,
        so newest first they come first and push every later page's rows back by one
        each: what a call arriving while a client pages a window does. ``group_by_day``
        requests neither fire nor disarm it.
        """
        if calls < 1 or after_page < 1:
            raise ValueError("calls and after_page must be >= 1")
        key = self.api_key if api_key is None else api_key
        with self._lock:
            self.store_for(key)  # an unknown key raises KeyError
            self._arrivals[key] = (calls, after_page)

    # ------------------------------------------------------------------ faults and log
    def add_fault(
        self,
        kind: FaultKind,
        *,
        first: int | None = None,
        per: Literal["query", "request"] = "query",
        retry_after: int = 1,
        seconds: float = 0.0,
        api_key: str | None = None,
    ) -> None:
        """Inject a fault for the first ``first`` requests (per query or overall), or all.

        With ``api_key`` only that account's requests see it (and are counted by it);
        otherwise the same page of two accounts is one query (the key is not part of it).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if per not in ("query", "request"):
            raise ValueError("per must be 'query' or 'request'")
        with self._lock:
            account = None
            if api_key is not None:
                account = self.account_of(api_key)
                if account is None:
                    raise KeyError("no account has this api_key")
            self._faults.append(_Fault(kind, first, per, retry_after, seconds, account))

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        """Forget the logged requests."""
        with self._lock:
            self._log.clear()

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    def _pick_faults(
        self, params: dict[str, str], account: int | None
    ) -> tuple[float, _Fault | None]:
        """Seconds of injected latency and the failing fault, counting this request."""
        query = tuple(sorted((k, v) for k, v in params.items() if k != "api_key"))
        delay = 0.0
        with self._lock:
            for fault in self._faults:
                if fault.kind == "latency":
                    if fault.fires(query, account):
                        delay += fault.seconds
                elif fault.fires(query, account):
                    return delay, fault
        return delay, None

    # ------------------------------------------------------------------ the contract
    def respond(self, params: dict[str, str], *, stuck: bool = False) -> tuple[int, dict[str, Any]]:
        """Answer one /data-api query: (HTTP status, JSON envelope)."""
        errors: list[str] = []
        key = params.get("api_key")
        with self._lock:
            store = None if key is None else self._stores.get(key)
        if store is None:
            errors.append("Invalid api key")
        errors.extend(
            f"Missing parameter `{name}`"
            for name in ("type", "start_date", "end_date")
            if not params.get(name)
        )
        kind = params.get("type")
        if kind and kind not in ("calls", "sms"):
            errors.append("Invalid parameter type")
        days = []
        for name in ("start_date", "end_date"):
            value = params.get(name)
            if value:
                day = parse_day(value)
                if day is None:
                    errors.append(f"Invalid date {value}")
                days.append(day)
        limit = 100
        if "limit" in params:
            try:
                limit = int(params["limit"])
            except ValueError:
                limit = -1
            if not 10 <= limit <= 5000:
                errors.append("Limit must be between 10 and 5000")
        page = 1
        if "page" in params:
            try:
                page = int(params["page"])
            except ValueError:
                page = 0
            if page < 1:
                errors.append("Invalid parameter page")
        if errors:
            return self.error_status, {"status": "ERROR", "errors": errors}
        first, last = _day(params["start_date"]), _day(params["end_date"])
        filters = {k: params[k] for k in FILTER_NAMES if params.get(k)}
        served = 1 if self.ignore_page else page
        offset = (served - 1) * limit
        assert store is not None
        with self._lock:
            if kind == "sms":
                total, rows = 0, []
            elif _grouped(params):
                daily = store.daily_rows(first, last, filters)
                total = len(daily)
                chosen = daily[::-1][offset : offset + limit]
                rows = [
                    {"date": d, "calls": c, "duration": s, "revenue": round(r / 100, 2)}
                    for d, c, s, r in chosen
                ]
            else:
                positions = store.matching(first, last, filters)
                total = len(positions)
                shuffle = served if self.unstable_ties else None
                ranked = store.newest_first(positions, offset, offset + limit, shuffle)
                rows = list(store.records_at(ranked))
        envelope: dict[str, Any] = {"status": "OK", "total_results": total}
        if stuck or page * limit < total:
            envelope["next_page"] = page + 1
        envelope["results"] = [self._style(row) for row in rows]
        return 200, self._style(envelope, top=True)

    def _style(self, obj: dict[str, Any], *, top: bool = False) -> dict[str, Any]:
        """Apply the configured naming and value style to one object."""
        out: dict[str, Any] = {}
        for key, value in obj.items():
            name = CAMEL.get(key, key) if self.naming == "camel" else key
            if self.values == "php" and key not in ("status", "results", "errors"):
                value = _php(value)
            out[name] = value
        return out

    def handle(self, method: str, target: str) -> tuple[_Reply | None, str | None]:
        """Full request pipeline (latency, faults, contract) for the HTTP handler."""
        received = time.time()
        parts = urlsplit(target)
        params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if self.latency:
            time.sleep(self.latency)
        account = self.account_of(params.get("api_key"))
        reply: _Reply | None
        fault: _Fault | None = None
        fired: str | None = None
        if parts.path != PATH:
            reply = _Reply(404, b"Not Found\n", "text/plain; charset=utf-8")
        elif method != "GET":
            reply = _Reply(405, b"Method Not Allowed\n", "text/plain; charset=utf-8")
        else:
            delay, fault = self._pick_faults(params, account)
            if delay:
                time.sleep(delay)
                fired = "latency"
            reply = self._faulty(fault, params) if fault else None
            if fault is None:
                reply = self._cached_reply(params)
                self._arrive_after(params, reply)
            elif fault.kind == "stuck":
                status, envelope = self.respond(params, stuck=True)
                reply = _Reply(status, json.dumps(envelope).encode())
            if fault is not None:
                fired = fault.kind
        self._record(
            RequestRecord(
                method=method,
                path=parts.path,
                params=mask_params(params),
                status=None if reply is None else reply.status,
                fault=fired,
                time=received,
                account=account,
            )
        )
        return reply, fired

    def _cached_reply(self, params: dict[str, str]) -> _Reply:
        """The contract's answer, from the body cache when the same query was served."""
        query = tuple(sorted(params.items()))
        with self._lock:
            body = self._bodies.get(query)
            if body is not None:
                self._bodies.move_to_end(query)
                return _Reply(200, body)
        status, envelope = self.respond(params)
        body = json.dumps(envelope).encode()
        if status == 200:
            with self._lock:
                self._bodies[query] = body
                self._body_bytes += len(body)
                while self._body_bytes > BODY_CACHE_BYTES:
                    self._body_bytes -= len(self._bodies.popitem(last=False)[1])
        return _Reply(status, body)

    def _arrive_after(self, params: dict[str, str], reply: _Reply) -> None:
        """Fire an armed :meth:`arrive_while_paging` once its page has been answered.

        Called before the reply is written, so the client's next request sees the calls.
        """
        with self._lock:
            key = params.get("api_key", "")
            armed = self._arrivals.get(key)
            if (
                armed is None
                or reply.status != 200
                or not reply.body.startswith(_OK_BODY)
                or params.get("type") != "calls"
                or _grouped(params)
                or int(params.get("page", "1")) != armed[1]
            ):
                return
            del self._arrivals[key]
            self._forget_bodies()
            self._stores[key].add_newest(armed[0], params["end_date"])

    def _forget_bodies(self) -> None:
        """Drop served bodies: the data changed."""
        self._bodies.clear()
        self._body_bytes = 0

    def _faulty(self, fault: _Fault, params: dict[str, str]) -> _Reply | None:
        """The broken answer of a fault (None: reset the connection)."""
        kind = fault.kind
        if kind == "reset":
            return None
        if kind in ("http500", "http502", "http503", "http429"):
            code = int(kind[4:])
            reply = _Reply(
                code, _HTML.format(_STATUS_TEXT[code]).encode(), "text/html; charset=utf-8"
            )
            if code == 429:
                reply.headers["Retry-After"] = str(fault.retry_after)
            return reply
        if kind == "cannot_handle":
            envelope = {"status": "ERROR", "errors": ["Cannot handle request"]}
            return _Reply(self.error_status, json.dumps(envelope).encode())
        if kind == "truncated":
            _status, envelope = self.respond(params)
            body = json.dumps(envelope).encode()
            return _Reply(200, body[: max(1, len(body) // 2)])
        return None  # "stuck" is answered by respond()


def _grouped(params: dict[str, str]) -> bool:
    """Whether a query asks for per-day rows (``group_by_day``)."""
    return params.get("group_by_day", "").lower() in ("true", "1")


def _day(value: str) -> Any:
    """Parse a date for the Python API, raising on bad input."""
    day = parse_day(value)
    if day is None:
        raise ValueError(f"invalid date {value!r}, expected YYYY-MM-DD")
    return day


class _Server(ThreadingHTTPServer):
    """Threading server that can drop keep-alive connections on stop."""

    daemon_threads = True
    sandbox: Sandbox

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        super().__init__(address, handler)
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()

    def drop_connections(self) -> None:
        """Shut every open client socket so handler threads exit promptly."""
        with self.conn_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay silent: clients hanging up mid-answer are expected in fault tests."""


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler delegating to the owning Sandbox."""

    protocol_version = "HTTP/1.1"
    server_version = "Apache"
    sys_version = ""
    timeout = 60
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.conn_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        """Serve one request."""
        self._serve("GET")

    def do_POST(self) -> None:
        """Reject writes like the real API would."""
        self._serve("POST")

    def _serve(self, method: str) -> None:
        sandbox = self.server.sandbox
        reply, _fired = sandbox.handle(method, self.path)
        if reply is None:
            # Abortive close: SO_LINGER 0 makes the kernel send RST, not FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent by default; verbose mode logs with the api key masked."""
        if not self.server.sandbox.verbose:
            return
        parts = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        safe = parts.path + ("?" + urlencode(mask_params(params), safe="*") if params else "")
        message = format % args
        if self.requestline:
            message = message.replace(self.requestline, f"{self.command} {safe}")
        for key in self.server.sandbox.api_keys:
            message = message.replace(key, MASK)
        sys.stderr.write(f"{self.address_string()} - {message}\n")
