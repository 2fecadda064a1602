"""The local transport: cozyops runs on the server itself."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cozyops import files
from cozyops.transport.base import Command, CommandResult, Forward, Stdin, TransportError, command_line


class LocalTransport:
    def __init__(self, name: str = "localhost") -> None:
        self.name = name

    def run(self, command: Command, stdin: Stdin = None, timeout: float | None = None) -> CommandResult:
        line = command_line(command)
        try:
            result = subprocess.run(
                line if isinstance(command, str) else list(command),
                shell=isinstance(command, str),
                input=stdin if isinstance(stdin, bytes) or stdin is None else stdin.read(),
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise TransportError(f"{self.name}: {line}", f"no answer after {timeout:.0f} s") from None
        except OSError as error:
            raise TransportError(f"{self.name}: {line}", error.strerror or str(error)) from None
        return CommandResult(line, result.returncode, result.stdout, result.stderr)

    def put(self, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        files.write_atomic(Path(remote_path), data, mode)

    def get(self, remote_path: str) -> bytes:
        try:
            return Path(remote_path).read_bytes()
        except OSError as error:
            raise TransportError(f"{self.name}: {remote_path}", error.strerror or str(error)) from None

    @contextlib.contextmanager
    def forward(self, remote_port: int, remote_host: str = "127.0.0.1") -> Iterator[Forward]:
        # On the server itself, its loopback is ours: nothing to forward.
        yield Forward(remote_host, remote_port, remote_host, remote_port)

    @contextlib.contextmanager
    def open_read(self, remote_path: str) -> Iterator[BinaryIO]:
        try:
            handle = open(remote_path, "rb")  # noqa: SIM115 (closed by the with below)
        except OSError as error:
            raise TransportError(f"{self.name}: {remote_path}", error.strerror or str(error)) from None
        with handle:
            yield handle

    @contextlib.contextmanager
    def reverse_forward(self, local_port: int, local_host: str = "127.0.0.1") -> Iterator[Forward]:
        # On the server itself, our listener is already on its loopback.
        yield Forward(local_host, local_port, local_host, local_port)

    def close(self) -> None:
        pass

    def __enter__(self) -> LocalTransport:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
