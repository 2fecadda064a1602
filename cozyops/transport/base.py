"""The transport interface, its results and its one error type."""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from cozyops.errors import CozyopsError


class TransportError(CozyopsError):
    """A server could not be reached, or refused us; names the host, never a secret."""


@dataclass(frozen=True)
class CommandResult:
    command: str
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")

    def check(self, host: str) -> CommandResult:
        """This result, or a TransportError naming the host, the command and its last error line."""
        if self.returncode != 0:
            lines = self.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {self.returncode}"]
            raise TransportError(f"{host}: {shorten(self.command)}", f"exit {self.returncode}: {lines[-1]}")
        return self


@dataclass(frozen=True)
class Forward:
    """A local address that reaches ``remote_host:remote_port`` as seen from the server."""

    local_host: str
    local_port: int
    remote_host: str
    remote_port: int

    @property
    def url(self) -> str:
        return f"http://{self.local_host}:{self.local_port}"


Command = str | Sequence[str]
Stdin = bytes | BinaryIO | None


def command_line(command: Command) -> str:
    return command if isinstance(command, str) else shlex.join(command)


def shorten(command: str, limit: int = 80) -> str:
    return command if len(command) <= limit else command[: limit - 3] + "..."


class Transport(Protocol):
    name: str

    def run(self, command: Command, stdin: Stdin = None, timeout: float | None = None) -> CommandResult: ...

    def put(self, data: bytes, remote_path: str, mode: int = 0o644) -> None: ...

    def get(self, remote_path: str) -> bytes: ...

    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> AbstractContextManager[Forward]: ...

    def open_read(self, remote_path: str) -> AbstractContextManager[BinaryIO]: ...

    def reverse_forward(self, local_port: int, local_host: str = "127.0.0.1") -> AbstractContextManager[Forward]: ...

    def close(self) -> None: ...


def chunks(stream: BinaryIO, size: int = 256 * 1024) -> Iterator[bytes]:
    while chunk := stream.read(size):
        yield chunk
