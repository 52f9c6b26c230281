"""Loopback HTTP server for tests of the model downloader.

Standard library only (``http.server`` + ``threading``).  The server binds to
``127.0.0.1`` on an ephemeral port (port 0) and never to any other address; it
serves from a daemon thread and can inject faults per route.

Usage::

    with LoopbackServer() as srv:
        url = srv.add("/model.tflite", b"...")
        srv.add("/flaky.bin", data, fault="500")
        ...
        srv.set_fault("/flaky.bin", None)      # next attempt succeeds
        assert srv.hits("/flaky.bin") == 2

or, in a test module, ``from tests.support.httpserver import http_server`` and take
``http_server`` as a fixture argument.

Faults (``fault=`` of :meth:`LoopbackServer.add`):

``None``
    200, correct ``Content-Length``, body sent in ``chunk_size`` chunks with
    ``delay_per_chunk`` seconds between chunks.
``"404"``, ``"500"``, ``"429"``, ``"503"``
    That status with a short text body; ``429`` carries ``Retry-After: 1``.
``"stall"``
    200 + full ``Content-Length`` + the first chunk (never the whole body), then
    nothing for up to 30 s (ends early when the server stops or the client
    goes away); then the connection is shut down.
``"stall_headers"``
    The request is read but no status line is ever sent (until the server stops
    or the client goes away).
``"truncate"``
    Full ``Content-Length`` but only the first half of the body, then the socket
    is shut down.
``"overlong"``
    ``Content-Length`` is half the body length; the whole body is written.
``"redirect_loop"``
    302 to the same path (and query) forever.
``"redirect"``
    302 to ``headers["Location"]``.
``"drop"``
    The connection is closed without any response.
``"no_length"``
    200 without ``Content-Length``; the body is streamed and the connection
    closed (read-until-close framing).  A valid response.
``"double_length"``
    Two ``Content-Length`` headers that disagree (the true length, then one
    more), then the whole body: a malformed response.

Every response carries ``Connection: close``: one request per connection; with
``LoopbackServer(keep_alive=True)`` a connection serves request after request
(HTTP/1.1 keep-alive) unless a fault ends it, and :meth:`LoopbackServer.connections`
counts the client connections the requests came on.
Only ``GET`` requests are counted by :meth:`LoopbackServer.hits` (``HEAD`` has
its own counter, ``hits(path, method="HEAD")``).
"""

from __future__ import annotations

import select
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

__all__ = ["FAULTS", "LoopbackServer", "http_server"]

HOST = "127.0.0.1"

#: Every accepted fault name (``None`` means "serve normally").
FAULTS = frozenset(
    {
        None,
        "404",
        "500",
        "429",
        "503",
        "stall",
        "stall_headers",
        "truncate",
        "overlong",
        "redirect_loop",
        "redirect",
        "drop",
        "no_length",
        "double_length",
    }
)

_STATUS_FAULTS = {"404": 404, "500": 500, "429": 429, "503": 503}
# Faults that only make sense with a non-empty body.
_NEEDS_BODY = {"stall", "truncate", "overlong"}

STALL_SECONDS = 30.0
_POLL = 0.05


@dataclass
class _Route:
    body: bytes
    fault: str | None
    content_type: str
    delay_per_chunk: float
    chunk_size: int
    headers: dict[str, str] = field(default_factory=dict)


def _check_fault(fault: str | None, body: bytes, headers: dict[str, str]) -> None:
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; expected one of {sorted(f for f in FAULTS if f)} or None")
    if fault in _NEEDS_BODY and not body:
        raise ValueError(f"fault {fault!r} needs a non-empty body")
    if fault == "redirect" and not any(k.lower() == "location" for k in headers):
        raise ValueError('fault "redirect" needs headers={"Location": url}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Never join handler threads on close: stalled handlers must not delay stop().
    block_on_close = False
    allow_reuse_address = False
    request_queue_size = 64

    owner: LoopbackServer  # set right after construction

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, ValueError)):
            return  # client went away / socket shut down by stop(): not interesting
        # A real bug in the handler: keep it visible.
        self.owner.errors.append(exc)
        traceback.print_exc()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackServer/1"
    sys_version = ""
    # Socket timeout for reads/writes of a single connection (not for stalls,
    # which wait on the server's stop Event instead).
    timeout = 60

    server: _Server

    # -- silence -----------------------------------------------------------
    def log_message(self, format, *args):
        pass

    # -- connection bookkeeping -------------------------------------------
    def setup(self):
        super().setup()
        self.server.owner._track(self.connection)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.owner._untrack(self.connection)

    # -- methods ------------------------------------------------------------
    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    # -- helpers ------------------------------------------------------------
    @property
    def _stop(self) -> threading.Event:
        return self.server.owner._stop_event

    def _abort(self) -> None:
        """Shut the connection down now (FIN both ways), no more response bytes."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _write(self, data: bytes) -> bool:
        if not data:
            return True
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except (OSError, ValueError):
            self.close_connection = True
            return False

    def _send_chunks(self, data: bytes, chunk_size: int, delay: float) -> bool:
        """Write *data* in chunks; False if the client vanished or we are stopping."""
        n = len(data)
        for start in range(0, n, chunk_size):
            if self._stop.is_set():
                return False
            if not self._write(data[start : start + chunk_size]):
                return False
            if delay > 0 and start + chunk_size < n and self._stop.wait(delay):
                return False
        return True

    def _wait_idle(self, timeout: float | None) -> None:
        """Sleep until *timeout*, the server stops, or the client closes its side."""
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = self.connection
        while not self._stop.is_set():
            step = _POLL
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                step = min(step, remaining)
            try:
                readable, _, _ = select.select([sock], [], [], step)
            except (OSError, ValueError):
                return
            if readable:
                try:
                    data = sock.recv(65536)
                except (OSError, ValueError):
                    return
                if not data:
                    return  # client closed the connection (e.g. its timeout fired)
                # Anything else the client sends is ignored.

    def _start(self, status: int, headers: list[tuple[str, str]]) -> bool:
        try:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            if not self.server.owner.keep_alive:
                self.send_header("Connection", "close")
            self.end_headers()
            return True
        except (OSError, ValueError):
            self.close_connection = True
            return False

    # -- the dispatcher -----------------------------------------------------
    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        self.close_connection = not owner.keep_alive
        parts = urlsplit(self.path)
        path = parts.path or "/"
        route = owner._record(
            path, parts.query, "HEAD" if head else "GET", dict(self.headers.items()), self.client_address
        )

        if route is None:
            self._simple(404, head, [])
            return

        fault = route.fault
        body = route.body
        ctype = route.content_type
        extra = [
            (k, v)
            for k, v in route.headers.items()
            if k.lower() not in ("content-length", "connection", "transfer-encoding")
        ]

        if fault == "drop":
            self._abort()
            return

        if fault == "stall_headers":
            self._wait_idle(None)
            self._abort()
            return

        if fault in _STATUS_FAULTS:
            hdrs = list(extra)
            if fault == "429":
                hdrs = [(k, v) for k, v in hdrs if k.lower() != "retry-after"]
                hdrs.append(("Retry-After", "1"))
            self._simple(_STATUS_FAULTS[fault], head, hdrs)
            return

        if fault == "redirect_loop":
            hdrs = [(k, v) for k, v in extra if k.lower() != "location"]
            hdrs.append(("Location", f"{owner.url}{self.path}"))
            self._simple(302, head, hdrs, text=b"")
            return

        if fault == "redirect":
            self._simple(302, head, extra, text=b"")
            return

        # Body-carrying responses.
        n = len(body)
        hdrs = [("Content-Type", ctype), *extra]
        if fault == "no_length":
            pass
        elif fault == "overlong":
            hdrs.append(("Content-Length", str(n // 2)))
        elif fault == "double_length":
            hdrs += [("Content-Length", str(n)), ("Content-Length", str(n + 1))]
        else:  # None, stall, truncate: the true length
            hdrs.append(("Content-Length", str(n)))
        if not self._start(200, hdrs) or head:
            return

        size, delay = route.chunk_size, route.delay_per_chunk
        if fault in (None, "no_length", "overlong", "double_length"):
            self._send_chunks(body, size, delay)
            if fault == "no_length":
                # Read-until-close framing: the FIN marks the end of the body.
                self._abort()
            return

        if fault == "truncate":
            self._send_chunks(body[: n // 2], size, delay)
            self._abort()
            return

        if fault == "stall":
            # The first chunk, but never the whole body (so the client waits).
            self._write(body[: min(size, n - 1)])
            self._wait_idle(STALL_SECONDS)
            self._abort()
            return

        raise AssertionError(f"unhandled fault {fault!r}")  # pragma: no cover

    def _simple(self, status: int, head: bool, headers: list[tuple[str, str]], text: bytes | None = None) -> None:
        if text is None:
            text = f"{status} {self.responses.get(status, ('',))[0]}\n".encode()
        hdrs = [(k, v) for k, v in headers if k.lower() != "content-type"]
        hdrs = [("Content-Type", "text/plain; charset=utf-8"), *hdrs, ("Content-Length", str(len(text)))]
        if self._start(status, hdrs) and not head:
            self._write(text)


class LoopbackServer:
    """An HTTP server on 127.0.0.1:<ephemeral port> with per-route faults."""

    def __init__(self, keep_alive: bool = False) -> None:
        #: Serve many requests per connection (no ``Connection: close``).
        self.keep_alive = keep_alive
        self._lock = threading.Lock()
        self._peers: list[tuple[str, str, tuple]] = []  # (method, path, client address) per request
        self._routes: dict[str, _Route] = {}
        self._hits: dict[tuple[str, str], int] = {}
        self._queries: dict[str, str] = {}
        self._req_headers: dict[str, dict[str, str]] = {}
        self._conns: set[socket.socket] = set()
        self._stop_event = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        #: Unexpected exceptions raised inside handlers (bugs, not client errors).
        self.errors: list[BaseException] = []

    # -- lifecycle ----------------------------------------------------------
    def _ensure_bound(self) -> _Server:
        with self._lock:
            if self._stopped:
                raise RuntimeError("LoopbackServer was stopped; create a new one")
            if self._httpd is None:
                httpd = _Server((HOST, 0), _Handler)
                httpd.owner = self
                self._httpd = httpd
            return self._httpd

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("LoopbackServer is not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{HOST}:{self.port}"

    def start(self) -> LoopbackServer:
        httpd = self._ensure_bound()
        with self._lock:
            if self._thread is not None:
                return self
            t = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": _POLL},
                name=f"LoopbackServer:{httpd.server_address[1]}",
                daemon=True,
            )
            self._thread = t
        t.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            httpd, thread = self._httpd, self._thread
            conns = list(self._conns)
        self._stop_event.set()  # wakes stalls and chunk delays
        for sock in conns:  # unblocks handlers stuck in socket reads/writes
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if httpd is not None:
            if thread is not None:
                httpd.shutdown()  # returns within one poll interval
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- routes -------------------------------------------------------------
    def add(
        self,
        path: str,
        body: bytes,
        *,
        fault: str | None = None,
        content_type: str = "application/octet-stream",
        delay_per_chunk: float = 0.0,
        chunk_size: int = 65536,
        headers: dict | None = None,
    ) -> str:
        """Serve *body* at *path* (query strings are ignored); return the full URL."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        if "?" in path or "#" in path:
            raise ValueError(f"path must not contain a query or fragment: {path!r}")
        if chunk_size <= 0:
            raise ValueError("chunk_size must be > 0")
        if delay_per_chunk < 0:
            raise ValueError("delay_per_chunk must be >= 0")
        body = bytes(body)
        hdrs = {str(k): str(v) for k, v in (headers or {}).items()}
        _check_fault(fault, body, hdrs)
        route = _Route(body, fault, content_type, float(delay_per_chunk), int(chunk_size), hdrs)
        self._ensure_bound()
        with self._lock:
            self._routes[path] = route
        return self.url + path

    def set_fault(self, path: str, fault: str | None) -> None:
        """Change the fault of an existing route (affects later requests only)."""
        with self._lock:
            route = self._routes.get(path)
            if route is None:
                raise KeyError(path)
            _check_fault(fault, route.body, route.headers)
            route.fault = fault

    # -- observations -------------------------------------------------------
    def hits(self, path: str, method: str = "GET") -> int:
        """How many *method* (default GET) requests were received for *path*."""
        with self._lock:
            return self._hits.get((path, method.upper()), 0)

    def reset_hits(self) -> None:
        with self._lock:
            self._hits.clear()
            self._peers.clear()

    def requests(self) -> list[tuple[str, str]]:
        """Every request so far, in order, as (method, path)."""
        with self._lock:
            return [(method, path) for method, path, _ in self._peers]

    def connections(self) -> int:
        """How many client connections the requests so far came on."""
        with self._lock:
            return len({peer for _, _, peer in self._peers})

    def last_query(self, path: str) -> str | None:
        """Raw query string of the last request for *path* ('' if none, None if never requested)."""
        with self._lock:
            return self._queries.get(path)

    def last_headers(self, path: str) -> dict[str, str] | None:
        """Request headers of the last request for *path* (None if never requested)."""
        with self._lock:
            h = self._req_headers.get(path)
            return dict(h) if h is not None else None

    @staticmethod
    def refused_url(path: str = "/refused") -> str:
        """A URL on 127.0.0.1 whose port has no listener (connection refused)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        return f"http://{HOST}:{port}{path}"

    # -- used by the handler -----------------------------------------------
    def _record(self, path: str, query: str, method: str, headers: dict[str, str], peer: tuple = ()) -> _Route | None:
        with self._lock:
            self._peers.append((method, path, peer))
            key = (path, method)
            self._hits[key] = self._hits.get(key, 0) + 1
            self._queries[path] = query
            self._req_headers[path] = headers
            route = self._routes.get(path)
            if route is None:
                return None
            # A snapshot, so a concurrent set_fault() does not affect this request.
            return _Route(
                route.body,
                route.fault,
                route.content_type,
                route.delay_per_chunk,
                route.chunk_size,
                dict(route.headers),
            )

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.add(sock)
        if self._stop_event.is_set():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.discard(sock)


@pytest.fixture
def http_server():
    with LoopbackServer() as srv:
        yield srv
