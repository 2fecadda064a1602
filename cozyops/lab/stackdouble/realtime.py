"""Realtime events (cozy-stack's ``pkg/realtime``, ``web/realtime/realtime.go``) and the WebSocket they travel on.

The hub keeps subscribers in this process (``memHub``): an event published for an instance reaches
the subscribers of that instance and the global ones (the admin API's ``/realtime/``, where
``GetHub().Subscriber(GlobalPrefixer)`` hears every instance). Messages are
``{"event": "CREATED|UPDATED|DELETED|NOTIFIED", "payload": {"type", "id", "doc"}}``; a client sends
``{"method": "SUBSCRIBE", "payload": {"type": …}}``. The double implements the admin side, which
``cozy-stack instances export --path`` listens to (``client/realtime.go``); the WebSocket framing
(RFC 6455) is written here on the standard library, server and client, because the double runs on
hosts with the standard library and PyYAML only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import socket
import struct
import threading

CREATED, UPDATED, DELETED = "CREATED", "UPDATED", "DELETED"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 1024  # web/realtime: maxMessageSize, for what a client sends


class Subscriber:
    def __init__(self, hub: Hub, prefix: str | None) -> None:
        self.hub = hub
        self.prefix = prefix  # None: every instance (the global prefixer)
        self.types: set[str] = set()
        self.events: queue.Queue = queue.Queue()

    def subscribe(self, doctype: str) -> None:
        self.types.add(doctype)

    def unsubscribe(self, doctype: str) -> None:
        self.types.discard(doctype)

    def close(self) -> None:
        self.hub.remove(self)


class Hub:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subscribers: list[Subscriber] = []

    def subscriber(self, prefix: str | None) -> Subscriber:
        sub = Subscriber(self, prefix)
        with self.lock:
            self.subscribers.append(sub)
        return sub

    def remove(self, sub: Subscriber) -> None:
        with self.lock:
            if sub in self.subscribers:
                self.subscribers.remove(sub)

    def publish(self, prefix: str | None, verb: str, doctype: str, doc: dict) -> None:
        """``Publish(db, verb, doc, old)``: to the instance's subscribers and the global ones."""
        message = {"event": verb, "payload": {"type": doctype, "id": doc.get("_id", ""), "doc": doc}}
        with self.lock:
            targets = [s for s in self.subscribers
                       if doctype in s.types and (s.prefix is None or s.prefix == prefix)]
        for sub in targets:
            sub.events.put(message)


# --- RFC 6455 framing
def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def _read_exact(rfile, size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = rfile.read(size - len(data))
        if not piece:
            raise EOFError("connection closed")
        data += piece
    return data


def read_frame(rfile) -> tuple[int, bytes]:
    """(opcode, payload) of the next frame; fragmented messages are not used by either side."""
    first, second = _read_exact(rfile, 2)
    opcode, length = first & 0x0F, second & 0x7F
    if length == 126:
        length = struct.unpack(">H", _read_exact(rfile, 2))[0]
    elif length == 127:
        length = struct.unpack(">Q", _read_exact(rfile, 8))[0]
    mask = _read_exact(rfile, 4) if second & 0x80 else b""
    payload = _read_exact(rfile, length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return opcode, payload


def frame(opcode: int, payload: bytes, masked: bool) -> bytes:
    """One final frame; a client masks (RFC 6455 §5.3), a server does not."""
    head = bytes([0x80 | opcode])
    bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126:
        head += bytes([bit | size])
    elif size < 1 << 16:
        head += bytes([bit | 126]) + struct.pack(">H", size)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", size)
    if masked:
        mask = os.urandom(4)
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def serve_socket(handler, hub: Hub, prefix: str | None) -> None:
    """Upgrade the request of ``handler`` and pump events until the client goes (``realtime.Ws``)."""
    key = handler.headers.get("Sec-WebSocket-Key", "")
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Accept: " + accept_key(key)]
    if "io.cozy.websocket" in (handler.headers.get("Sec-WebSocket-Protocol") or ""):
        lines.append("Sec-WebSocket-Protocol: io.cozy.websocket")
    handler.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    handler.wfile.flush()
    handler.close_connection = True
    sub = hub.subscriber(prefix)
    write_lock = threading.Lock()
    gone = threading.Event()

    def send(message: dict) -> None:
        with write_lock:
            handler.wfile.write(frame(TEXT, json.dumps(message).encode(), masked=False))
            handler.wfile.flush()

    def read_pump() -> None:
        try:
            while True:
                opcode, payload = read_frame(handler.rfile)
                if opcode == CLOSE:
                    return
                if opcode == PING:
                    with write_lock:
                        handler.wfile.write(frame(PONG, payload, masked=False))
                    continue
                if opcode != TEXT or len(payload) > MAX_MESSAGE:
                    continue
                _command(json.loads(payload), sub, send)
        except (OSError, EOFError, ValueError):
            return
        finally:
            gone.set()

    threading.Thread(target=read_pump, daemon=True).start()
    try:
        while not gone.is_set():
            try:
                message = sub.events.get(timeout=0.2)
            except queue.Empty:
                continue
            send(message)
    except OSError:
        pass
    finally:
        sub.close()


def _command(cmd: dict, sub: Subscriber, send) -> None:
    method = str(cmd.get("method", ""))
    payload = cmd.get("payload") if isinstance(cmd.get("payload"), dict) else {}
    if method.upper() not in ("SUBSCRIBE", "UNSUBSCRIBE"):
        send({"event": "error", "payload": {"status": "405 Method Not Allowed", "code": "method not allowed",
                                            "title": f"The {method} method is not supported", "source": cmd}})
        return
    if not payload.get("type"):
        send({"event": "error", "payload": {"status": "404 Page Not Found", "code": "page not found",
                                            "title": "The type parameter is mandatory for SUBSCRIBE",
                                            "source": cmd}})
        return
    if method.upper() == "SUBSCRIBE":
        sub.subscribe(payload["type"])
    else:
        sub.unsubscribe(payload["type"])


class Client:
    """A WebSocket client for the CLI (``client.RealtimeClient``): connect, subscribe, read messages."""

    def __init__(self, host: str, port: int, authorization: str, timeout: float | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /realtime/ HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Authorization: {authorization}\r\n\r\n")
        self.sock.sendall(request.encode())
        self.rfile = self.sock.makefile("rb")
        status = self.rfile.readline().decode(errors="replace").strip()
        headers = {}
        while True:
            line = self.rfile.readline().decode(errors="replace").strip()
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if not status.startswith("HTTP/1.1 101") or headers.get("sec-websocket-accept") != accept_key(key):
            self.close()
            raise OSError("websocket: bad handshake")
        self.sock.settimeout(timeout)

    def send(self, message: dict) -> None:
        self.sock.sendall(frame(TEXT, json.dumps(message).encode(), masked=True))

    def subscribe(self, doctype: str) -> None:
        self.send({"method": "SUBSCRIBE", "payload": {"type": doctype}})

    def receive(self) -> dict:
        while True:
            opcode, payload = read_frame(self.rfile)
            if opcode == TEXT:
                return json.loads(payload)
            if opcode == PING:
                self.sock.sendall(frame(PONG, payload, masked=True))
            elif opcode == CLOSE:
                raise EOFError("websocket: close 1000 (normal)")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
