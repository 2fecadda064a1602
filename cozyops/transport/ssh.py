"""SSH with paramiko: key authentication, strict host key checking, exec, files, port forwarding.

Host keys are checked against one known_hosts file and nothing else: an unknown host or a
changed key is refused (no trust on first use). Agents and default key files are not used: the
key is the one the fleet names.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import secrets
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import paramiko

from cozyops.transport.base import (
    Command,
    CommandResult,
    Forward,
    Stdin,
    TransportError,
    chunks,
    command_line,
    shorten,
)

log = logging.getLogger(__name__)
# paramiko's transport thread logs a failed handshake with its traceback; with no handler anywhere,
# Python's last-resort handler printed those ~20 lines on stderr. Ours is the one-line TransportError
# (the traceback still reaches a log file when the application configures one).
logging.getLogger("paramiko").addHandler(logging.NullHandler())
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class SshTarget:
    name: str  # the inventory name, for messages
    address: str  # what to connect to (and what known_hosts must name)
    key_file: Path
    known_hosts: Path
    port: int = 22
    user: str = "root"
    key_source: str = ""  # where the fleet names the key file (for messages)

    @property
    def where(self) -> str:
        return f"{self.name} ({self.user}@{self.address}:{self.port})"


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


class SshTransport:
    def __init__(self, target: SshTarget, timeout: float = CONNECT_TIMEOUT) -> None:
        self.target = target
        self.name = target.name
        self._client = self._connect(timeout)

    def _connect(self, timeout: float) -> paramiko.SSHClient:
        target = self.target
        named = f" (set in {target.key_source})" if target.key_source else ""
        try:
            with open(target.key_file, "rb"):
                pass
        except OSError as error:
            reason = "does not exist" if isinstance(error, FileNotFoundError) else error.strerror
            raise TransportError(target.where, f"key file {target.key_file}{named}: {reason}") from None
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(target.known_hosts))
        except OSError as error:
            reason = f"cannot read known_hosts {target.known_hosts}: {error.strerror}"
            raise TransportError(target.where, reason) from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                target.address,
                port=target.port,
                username=target.user,
                key_filename=str(target.key_file),
                allow_agent=False,
                look_for_keys=False,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
            )
        except paramiko.BadHostKeyException as error:
            client.close()
            raise TransportError(
                target.where,
                f"host key {_fingerprint(error.key)} differs from the one in {target.known_hosts} "
                f"({_fingerprint(error.expected_key)}): refusing to connect",
                "the server was reinstalled, or another machine answers at its address",
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise TransportError(target.where, f"the server refused the key {target.key_file}") from None
        except paramiko.SSHException as error:
            # Whether the server sent its banner: paramiko's reader thread and connect() race, so a
            # port that is not SSH ends in "Error reading SSH protocol banner" or "No existing session".
            ssh = client.get_transport()
            banner = bool(getattr(ssh, "remote_version", "")) if ssh is not None else False
            client.close()
            text = str(error)
            if "not found in known_hosts" in text:
                raise TransportError(
                    target.where,
                    f"host key unknown: no entry for {target.address} in {target.known_hosts}; refusing to connect",
                ) from None
            if "protocol banner" in text or ("No existing session" in text and not banner):
                raise TransportError(target.where, f"no SSH banner within {timeout:g} s: is an SSH server listening "
                                     "there? (ansible_host, ansible_port)") from None
            if "No existing session" in text:
                raise TransportError(target.where, f"the SSH handshake did not finish within {timeout:g} s") from None
            if any(word in text.lower() for word in ("private key", "encrypted", "not a valid")):
                reason = f"key file {target.key_file}{named} cannot be used: {text}"
                raise TransportError(target.where, reason) from None
            raise TransportError(target.where, f"SSH failed: {text}") from None
        except (OSError, EOFError) as error:
            client.close()
            causes = list(getattr(error, "errors", {}).values())  # paramiko's NoValidConnectionsError
            cause = causes[0] if causes else error
            reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
            raise TransportError(target.where, f"cannot connect: {reason}") from None
        return client

    @property
    def _transport(self) -> paramiko.Transport:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise TransportError(self.target.where, "the SSH connection is closed")
        return transport

    # -- commands ---------------------------------------------------------------------------

    def run(self, command: Command, stdin: Stdin = None, timeout: float | None = None) -> CommandResult:
        """Run a command through the server's shell; its exit status and output (nothing raised for a
        non-zero status: see ``CommandResult.check``)."""
        line = command_line(command)
        channel = self._transport.open_session(timeout=CONNECT_TIMEOUT)
        try:
            channel.exec_command(line)
            feeder = None
            if stdin is not None:
                feeder = threading.Thread(target=self._feed, args=(channel, stdin), daemon=True)
                feeder.start()
            else:
                channel.shutdown_write()
            out, err = self._collect(channel, line, timeout)
            if feeder:
                feeder.join()
            return CommandResult(line, channel.recv_exit_status(), out, err)
        finally:
            channel.close()

    @staticmethod
    def _feed(channel: paramiko.Channel, stdin: Stdin) -> None:
        try:
            if isinstance(stdin, bytes):
                channel.sendall(stdin)
            elif stdin is not None:
                for chunk in chunks(stdin):
                    channel.sendall(chunk)
            channel.shutdown_write()
        except (OSError, paramiko.SSHException):
            pass  # the command ended before reading everything; its status tells

    def _collect(self, channel: paramiko.Channel, line: str, timeout: float | None) -> tuple[bytes, bytes]:
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        while True:
            busy = False
            while channel.recv_ready():
                out += channel.recv(65536)
                busy = True
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
                busy = True
            if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                if channel.eof_received or channel.closed:
                    break
            if deadline is not None and time.monotonic() > deadline:
                raise TransportError(f"{self.target.name}: {shorten(line)}", f"no end after {timeout:.0f} s")
            if not busy:
                select.select([channel], [], [], 0.1)
        return bytes(out), bytes(err)

    # -- files ------------------------------------------------------------------------------

    def put(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        """Write a file atomically: a temporary file beside it, its mode set, then renamed over it."""
        folder, name = posixpath.split(remote_path)
        tmp = posixpath.join(folder, f".{name}.cozyops-{secrets.token_hex(4)}")
        try:
            with self._client.open_sftp() as sftp:
                with sftp.open(tmp, "wb") as handle:
                    handle.chmod(mode)
                    handle.set_pipelined(True)
                    handle.write(data)
                sftp.posix_rename(tmp, remote_path)
        except OSError as error:
            with contextlib.suppress(Exception), self._client.open_sftp() as sftp:
                sftp.remove(tmp)
            raise TransportError(f"{self.target.name}:{remote_path}", f"cannot write: {error}") from None

    def get(self, remote_path: str) -> bytes:
        try:
            with self._client.open_sftp() as sftp, sftp.open(remote_path, "rb") as handle:
                handle.prefetch()
                return handle.read()
        except OSError as error:
            raise TransportError(f"{self.target.name}:{remote_path}", f"cannot read: {error}") from None

    @contextlib.contextmanager
    def open_read(self, remote_path: str) -> Iterator[BinaryIO]:
        """A remote file opened for reading over SFTP, streamed (prefetched): for files too large
        to hold in memory, such as an instance's export parts."""
        try:
            sftp = self._client.open_sftp()
        except (OSError, paramiko.SSHException) as error:
            raise TransportError(f"{self.target.name}:{remote_path}", f"cannot open SFTP: {error}") from None
        try:
            try:
                handle = sftp.open(remote_path, "rb")
            except OSError as error:
                raise TransportError(f"{self.target.name}:{remote_path}", f"cannot read: {error}") from None
            with handle:
                handle.prefetch()
                yield handle  # type: ignore[misc]
        finally:
            sftp.close()

    # -- port forwarding --------------------------------------------------------------------

    @contextlib.contextmanager
    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> Iterator[Forward]:
        """A listener on 127.0.0.1 (a free port) whose connections are tunnelled to
        ``remote_host:remote_port`` as the server sees it (ssh -L)."""
        listener = socket.create_server(("127.0.0.1", 0))
        stop = threading.Event()
        forward = Forward("127.0.0.1", listener.getsockname()[1], remote_host, remote_port)
        acceptor = threading.Thread(
            target=self._accept, args=(listener, forward, stop), name=f"forward-{self.name}-{remote_port}", daemon=True
        )
        acceptor.start()
        try:
            yield forward
        finally:
            stop.set()
            acceptor.join(timeout=2)  # it polls every 0.2 s: never close the listener under its accept()
            listener.close()

    def _accept(self, listener: socket.socket, forward: Forward, stop: threading.Event) -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                channel = self._transport.open_channel(
                    "direct-tcpip", (forward.remote_host, forward.remote_port), peer, timeout=CONNECT_TIMEOUT
                )
            except (paramiko.SSHException, TransportError, OSError) as error:
                log.info("%s: forward to %s:%s refused: %s", self.name, forward.remote_host, forward.remote_port, error)
                connection.close()
                continue
            threading.Thread(target=_pump, args=(connection, channel, stop), daemon=True).start()

    @contextlib.contextmanager
    def reverse_forward(self, local_port: int, local_host: str = "127.0.0.1") -> Iterator[Forward]:
        """A listener on the server's loopback (a free port sshd picks) whose connections are
        tunnelled back to ``local_host:local_port`` here (ssh -R): how a server reaches a service
        cozyops runs, such as the export parts it carries to a move's target.

        The Forward's ``local_*`` are the server's end (what the server connects to)."""
        transport = self._transport
        stop = threading.Event()

        def handler(channel: paramiko.Channel, origin: tuple, server: tuple) -> None:
            # Called in paramiko's transport thread: connect and pump in a thread of its own.
            threading.Thread(target=_connect_back, args=(channel, local_host, local_port, stop), daemon=True).start()

        try:
            port = transport.request_port_forward("127.0.0.1", 0, handler)
        except paramiko.SSHException as error:
            raise TransportError(self.target.where, f"the server refused a reverse port forward: {error}") from None
        try:
            yield Forward("127.0.0.1", port, local_host, local_port)
        finally:
            stop.set()
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                if transport.is_active():
                    transport.cancel_port_forward("127.0.0.1", port)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SshTransport:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _pump(connection: socket.socket, channel: paramiko.Channel, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes: this thread from the channel to the local
    connection, a second one the other way.

    The channel is never select()ed: paramiko's Channel.fileno() makes a pipe, and paramiko's
    transport thread may write to it between its close() and the flag that says so (PosixPipe),
    i.e. into a descriptor another socket may have taken meanwhile. Rare test failures fit that
    (no TLS answer through a forward; "Bad file descriptor" on an SSH connection's socket right
    after a forward); channel.recv() with a timeout needs no pipe.
    """
    channel.settimeout(0.2)
    upstream = threading.Thread(target=_upstream, args=(connection, channel, stop), daemon=True)
    upstream.start()
    try:
        while not stop.is_set():
            try:
                data = channel.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            connection.sendall(data)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        try:
            connection.shutdown(socket.SHUT_RDWR)  # ends the other thread's wait on the connection
        except OSError:
            pass
        upstream.join(timeout=5)
        channel.close()
        connection.close()


def _connect_back(channel: paramiko.Channel, host: str, port: int, stop: threading.Event) -> None:
    try:
        connection = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    except OSError as error:
        log.info("reverse forward to %s:%s refused: %s", host, port, error)
        channel.close()
        return
    connection.settimeout(None)
    _pump(connection, channel, stop)


def _upstream(connection: socket.socket, channel: paramiko.Channel, stop: threading.Event) -> None:
    """From the local connection to the channel; its end is the channel's EOF."""
    try:
        while not stop.is_set():
            if not select.select([connection], [], [], 0.2)[0]:
                continue
            data = connection.recv(65536)
            if not data:
                break
            while data and not stop.is_set():
                try:
                    data = data[channel.send(data):]
                except TimeoutError:  # the remote window is full: wait on
                    continue
        channel.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        pass
