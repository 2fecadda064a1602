"""The HTTP plumbing of the double's two listeners: requests, responses, routes, request logs.

Request logs go to stderr, one line each, and never carry a secret: query values whose name
speaks of a passphrase, token, key or secret are masked, as is the MAC in move URLs; headers
(Authorization among them) are never logged.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

MAX_DISCARD = 1 << 20
_SECRET_NAME = re.compile(r"pass|token|secret|key|bearer|manifest|mac|code|auth", re.I)
_MOVE_MAC = re.compile(r"(/move/exports/(?:data/)?)[^/?]+")

log_lock = threading.Lock()


def log(line: str) -> None:
    with log_lock:
        sys.stderr.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + line + "\n")
        sys.stderr.flush()


def redact_target(target: str) -> str:
    parts = urlsplit(target)
    path = _MOVE_MAC.sub(r"\1***", parts.path)
    if not parts.query:
        return path
    shown = []
    for item in parts.query.split("&"):
        name, _, value = item.partition("=")
        shown.append(f"{name}=***" if _SECRET_NAME.search(unquote(name)) and value else item)
    return path + "?" + "&".join(shown)


class Request:
    def __init__(self, handler: BaseHTTPRequestHandler, listener: str) -> None:
        self.handler = handler
        self.listener = listener
        self.method = handler.command
        self.target = handler.path
        parts = urlsplit(handler.path)
        self.raw_path = parts.path
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.headers = handler.headers
        self.host = (handler.headers.get("Host") or "").strip().lower()
        self.client = handler.client_address[0]
        self._remaining: int | None = None
        self._chunked = "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower()
        self._chunk_left = 0
        self._done = False
        self._body: bytes | None = None
        length = handler.headers.get("Content-Length")
        if not self._chunked:
            try:
                self._remaining = int(length) if length is not None else 0
            except ValueError:
                self._remaining = 0
        self.short_body = False
        self.vars: dict = {}

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def has(self, name: str) -> bool:
        return name in self.query

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def accepts(self, mime: str) -> bool:
        return mime in (self.headers.get("Accept") or "")

    # --- the body
    def read_chunk(self, size: int = 65536) -> bytes:
        """The next piece of the body (b"" at its end). A body shorter than announced sets short_body."""
        if self._done:
            return b""
        rfile = self.handler.rfile
        if not self._chunked:
            if not self._remaining:
                self._done = True
                return b""
            data = rfile.read(min(size, self._remaining))
            if not data:
                return self._cut_short()
            self._remaining -= len(data)
            return data
        if self._chunk_left == 0:
            line = rfile.readline(65537)
            try:
                self._chunk_left = int(line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                self._chunk_left = 0
            if self._chunk_left == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                self._done = True
                return b""
        data = rfile.read(min(size, self._chunk_left))
        if not data:
            return self._cut_short()
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            rfile.readline(3)
        return data

    def _cut_short(self) -> bytes:
        """The client sent less than it announced: the body ends here, and so does the connection."""
        self.short_body = True
        self._done = True
        self.handler.close_connection = True
        return b""

    def body(self) -> bytes:
        if self._body is None:
            pieces = []
            while True:
                piece = self.read_chunk()
                if not piece:
                    break
                pieces.append(piece)
            self._body = b"".join(pieces)
        return self._body

    def json(self):
        raw = self.body()
        return json.loads(raw.decode("utf-8"))

    def finish_body(self) -> None:
        """Read what the handler left of the body (keep-alive), or drop the connection."""
        read = 0
        while not self._done:
            piece = self.read_chunk()
            read += len(piece)
            if read > MAX_DISCARD:
                self.handler.close_connection = True
                return


class Response:
    def __init__(
        self,
        status: int,
        body: bytes | Iterable[bytes] = b"",
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        length: int | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = list(headers or [])
        if content_type:
            self.headers.insert(0, ("Content-Type", content_type))
        self.length = length


def json_response(status: int, data, content_type: str = "application/json", headers=None) -> Response:
    raw = (json.dumps(data) + "\n").encode()
    return Response(status, raw, content_type, headers)


def text_response(status: int, text: str, headers=None) -> Response:
    return Response(status, text.encode(), "text/plain; charset=UTF-8", headers)


def empty(status: int, headers=None) -> Response:
    return Response(status, b"", None, headers)


class HTTPError(Exception):
    """Raised by a handler: its response is sent as is."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


Handler = Callable[..., Response]


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[str, list[str], Handler]] = []

    def add(self, methods: str, pattern: str, handler: Handler) -> None:
        segments = pattern.strip("/").split("/") if pattern.strip("/") else []
        if pattern.endswith("/") and pattern != "/":
            segments.append("")
        for method in methods.split("|"):
            self.routes.append((method, segments, handler))

    def match(self, method: str, raw_path: str) -> tuple[Handler | None, dict, bool]:
        """(handler, params, path known under another method)."""
        stripped = raw_path[1:] if raw_path.startswith("/") else raw_path
        segments = stripped.split("/") if stripped else []
        known = False
        for route_method, pattern, handler in self.routes:
            params = _match(pattern, segments)
            if params is None:
                continue
            if route_method == method or (route_method == "GET" and method == "HEAD"):
                return handler, params, True
            known = True
        return None, {}, known


    def methods_for(self, raw_path: str) -> list[str]:
        """The methods routed for this path (what a 405's Allow header lists)."""
        stripped = raw_path[1:] if raw_path.startswith("/") else raw_path
        segments = stripped.split("/") if stripped else []
        return sorted({method for method, pattern, _ in self.routes if _match(pattern, segments) is not None})


def _match(pattern: list[str], segments: list[str]) -> dict | None:
    params: dict = {}
    if pattern and pattern[-1] == "*":
        if len(segments) < len(pattern) - 1:
            return None
        params["*"] = unquote("/".join(segments[len(pattern) - 1 :]))
        pattern, segments = pattern[:-1], segments[: len(pattern) - 1]
    if len(pattern) != len(segments):
        return None
    for want, got in zip(pattern, segments, strict=True):
        if want.startswith(":"):
            if got == "":
                return None
            params[want[1:].replace("-", "_")] = unquote(got)
        elif want != got:
            return None
    return params


class App:
    """One listener's application: ``handle(request)`` answers, ``name`` tags its log lines."""

    name = "http"

    def handle(self, request: Request) -> Response:  # pragma: no cover - interface
        raise NotImplementedError


def _handler_class(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "cozy-stack-double"
        # Headers and body are written separately: with Nagle's algorithm the body waited for the
        # client's delayed ACK of the headers (40 ms a response). Go's servers set TCP_NODELAY too.
        disable_nagle_algorithm = True
        sys_version = ""

        def _serve(self) -> None:
            started = time.monotonic()
            request = Request(self, app.name)
            try:
                response = app.handle(request)
            except HTTPError as error:
                response = error.response
            except Exception as error:  # a bug of the double: answer 500, log the type only
                log(f"[{app.name}] internal error {type(error).__name__}: {error}")
                response = json_response(500, {"error": "Internal Server Error"})
            request.finish_body()
            self._send(response)
            took = (time.monotonic() - started) * 1000
            log(
                f"[{app.name}] {request.client} {request.method} {redact_target(request.target)} "
                f"host={request.host or '-'} {response.status} {took:.0f}ms"
            )

        def _send(self, response: Response) -> None:
            if response.status == 101:  # a WebSocket (realtime.serve_socket) has had the connection
                return
            body = response.body
            if isinstance(body, (bytes, bytearray)):
                length = len(body)
                pieces: Iterable[bytes] = [bytes(body)]
            else:
                length = response.length if response.length is not None else 0
                pieces = body
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            if response.status not in (204, 304):
                self.send_header("Content-Length", str(length))
            self.end_headers()
            if self.command != "HEAD" and response.status not in (204, 304):
                for piece in pieces:
                    self.wfile.write(piece)
            elif hasattr(pieces, "close"):
                pieces.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's API
            # Our own line per request instead (no headers, secrets masked); protocol errors only.
            if args and isinstance(args[0], int) and args[0] >= 400 and "code" in format:
                log(f"[{app.name}] {self.client_address[0]} protocol error {args[0]}")

    return Handler


class DualStackServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)


def serve(app: App, address: str, port: int) -> DualStackServer:
    server = DualStackServer((address, port), _handler_class(app))
    thread = threading.Thread(target=server.serve_forever, name=f"{app.name}-{address}", daemon=True)
    thread.start()
    return server


def quote_path(path: str) -> str:
    return quote(path, safe="/")
