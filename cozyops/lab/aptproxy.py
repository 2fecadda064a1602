"""The lab hosts' only way out: an HTTP proxy that reaches the machine's package mirrors, and nothing else.

The hosts have no route out of the lab. ``lab up`` creates the proxy's listening socket inside the
lab's network namespace (on the gateway address, where every host reaches it) and hands it to this
process, which runs in the machine's own namespace: what the proxy connects to, it reaches with the
machine's network, and nothing of the lab listens outside the lab.

Only the (host, port) pairs given with ``--allow`` (the mirrors of the machine's apt sources) are
served: ``GET``/``HEAD`` of ``http://`` URLs, as apt sends them to a proxy, and ``CONNECT`` for
``https://`` mirrors. Everything else gets 403. Every request is logged, one line each.

``--serve NAME=DIR`` serves the files of DIR itself for ``http://NAME/...``: that is how the
hosts reach the lab's own apt repository (``apt.lab.invalid``), through the same proxy path.

    python -m cozyops.lab.aptproxy --fd N --allow deb.debian.org:80 [--allow HOST:PORT ...]
                                   [--serve apt.lab.invalid=DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

HEAD_LIMIT = 64 * 1024
CONNECT_TIMEOUT = 15.0
HOP_BY_HOP = {"proxy-connection", "proxy-authorization", "keep-alive"}


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def parse_head(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise Refused(400, f"bad request line {lines[0][:80]!r}") from None
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return method, target, version, headers


def origin_request(
    method: str, target: str, version: str, headers: list[tuple[str, str]], allowed: set[tuple[str, int]]
) -> tuple[tuple[str, int], bytes]:
    """Check a proxied GET/HEAD and rewrite it for the origin server: ((host, port), request head)."""
    if method not in ("GET", "HEAD"):
        raise Refused(405, f"method {method} not served")
    if any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers):
        raise Refused(400, "requests with a body are not served")
    url = urlsplit(target)
    if url.scheme != "http" or not url.hostname:
        raise Refused(400, f"not an absolute http URL: {target[:80]}")
    where = (url.hostname.lower(), url.port or 80)
    if where not in allowed:
        raise Refused(403, f"{where[0]}:{where[1]} is not a mirror of the machine's apt sources")
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    kept = [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP]
    head = f"{method} {path} {version}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in kept) + "\r\n"
    return where, head.encode("latin-1")


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if error.partial.strip():
            raise Refused(400, "truncated request") from None
        return None
    except asyncio.LimitOverrunError:
        raise Refused(431, "request head too large") from None
    return head[:-4]


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()


def local_file(root: Path, target: str) -> Path | None:
    """The file of ``root`` an ``http://NAME/path`` URL names, or None (never outside ``root``)."""
    relative = unquote(urlsplit(target).path).lstrip("/")
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()) or not candidate.is_file():
        return None
    return candidate


class Proxy:
    def __init__(self, allowed: set[tuple[str, int]], served: dict[str, Path] | None = None) -> None:
        self.allowed = allowed
        self.served = served or {}

    async def serve_local(self, client: str, method: str, target: str, writer: asyncio.StreamWriter) -> None:
        """Answer one GET/HEAD for a served directory, then close (apt reconnects as needed)."""
        root = self.served[(urlsplit(target).hostname or "").lower()]
        found = local_file(root, target) if method in ("GET", "HEAD") else None
        log(f"{client} {method} {target} (local: {'200' if found else '404'})")
        if found is None:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        size = found.stat().st_size
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: application/octet-stream\r\n"
                     f"Connection: close\r\n\r\n".encode())
        if method == "GET":
            with open(found, "rb") as source:
                while chunk := source.read(1 << 20):
                    writer.write(chunk)
                    await writer.drain()
        await writer.drain()

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        peer = client_writer.get_extra_info("peername")
        client = peer[0] if peer else "?"
        upstream_writer = None
        try:
            head = await read_head(client_reader)
            if head is None:
                return
            method, target, version, headers = parse_head(head)
            if method == "CONNECT":
                await self.tunnel(client, target, client_reader, client_writer)
                return
            if (urlsplit(target).hostname or "").lower() in self.served:
                await self.serve_local(client, method, target, client_writer)
                return
            where, request = origin_request(method, target, version, headers, self.allowed)
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(*where), CONNECT_TIMEOUT
            )
            log(f"{client} {method} {target}")
            upstream_writer.write(request)
            responses = asyncio.create_task(pipe(upstream_reader, client_writer))
            # apt pipelines its requests on one connection per mirror: forward the next ones.
            while (head := await read_head(client_reader)) is not None:
                method, target, version, headers = parse_head(head)
                following, request = origin_request(method, target, version, headers, self.allowed)
                if following != where:
                    log(f"{client} {method} {target}: another server on this connection; closing")
                    break
                log(f"{client} {method} {target}")
                upstream_writer.write(request)
                await upstream_writer.drain()
            upstream_writer.write_eof()
            await responses
        except Refused as refusal:
            log(f"{client} refused ({refusal.status}): {refusal}")
            body = f"cozyops lab proxy: {refusal}\n".encode()
            client_writer.write(
                f"HTTP/1.1 {refusal.status} Refused\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
        except (TimeoutError, OSError) as error:
            log(f"{client} upstream error: {error}")
            with contextlib.suppress(Exception):
                client_writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        finally:
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    with contextlib.suppress(Exception):
                        writer.close()
                        await writer.wait_closed()

    async def tunnel(
        self, client: str, target: str, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = target.rpartition(":")
        where = (host.lower().strip("[]"), int(port) if port.isdigit() else 0)
        if where not in self.allowed:
            raise Refused(403, f"CONNECT {target} is not a mirror of the machine's apt sources")
        upstream_reader, upstream_writer = await asyncio.wait_for(asyncio.open_connection(*where), CONNECT_TIMEOUT)
        log(f"{client} CONNECT {target}")
        client_writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
        upstream_writer.close()


def parse_allow(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return (host.lower(), int(port))


def parse_serve(value: str) -> tuple[str, Path]:
    name, _, directory = value.partition("=")
    if not name or not directory or not Path(directory).is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is not NAME=DIRECTORY (an existing directory)")
    return (name.lower(), Path(directory))


async def serve(listener: socket.socket, allowed: set[tuple[str, int]], served: dict[str, Path] | None = None) -> None:
    server = await asyncio.start_server(Proxy(allowed, served).handle, sock=listener, limit=HEAD_LIMIT)
    log("serving " + ", ".join([f"{host}:{port}" for host, port in sorted(allowed)]
                               + [f"{name} from {root}" for name, root in sorted((served or {}).items())]))
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cozyops.lab.aptproxy", description=__doc__.split("\n")[0])
    parser.add_argument("--fd", type=int, required=True, help="the listening socket, inherited")
    parser.add_argument("--allow", type=parse_allow, action="append", default=[], help="HOST:PORT of a mirror")
    parser.add_argument("--serve", type=parse_serve, action="append", default=[], help="NAME=DIR served locally")
    args = parser.parse_args(argv)
    listener = socket.socket(fileno=args.fd)
    try:
        asyncio.run(serve(listener, set(args.allow), dict(args.serve)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
