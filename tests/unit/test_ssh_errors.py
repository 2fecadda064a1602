"""SSH failures are one line naming their input, without paramiko's traceback on stderr: a port
with no SSH server, a listener that never answers, a missing key file (real listeners on
127.0.0.1, opened and closed by the test); and stack errors keep their meaning."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cozyops import inventory
from cozyops.stack.connect import stack_problem
from cozyops.stack.http import StackError
from cozyops.transport import fleet as transports
from cozyops.transport.base import TransportError
from tests.unit.test_inventory import make


class Listener:
    """A TCP listener on 127.0.0.1 that answers each connection with ``greeting`` (or nothing) and
    keeps it open until closed."""

    def __init__(self, greeting: bytes | None) -> None:
        self.greeting = greeting
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)
            if self.greeting is not None:
                connection.sendall(self.greeting)

    def close(self) -> None:
        self.server.close()
        for connection in self.connections:
            connection.close()
        self.thread.join(timeout=5)


def fleet_to(tmp_path: Path, port: int, key: str = "secrets/id") -> Path:
    """A fleet whose h1 is 127.0.0.1:port, its SSH settings only in group_vars/."""
    root = make(tmp_path / "f", hosts={"all": {"children": {"cozy_servers": {"hosts": {
        "h1": {"ansible_host": "127.0.0.1", "cozy_public_ipv4": "192.0.2.10"}}}}}})
    private = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    (root / "secrets/id").write_bytes(private)
    (root / "secrets/id").chmod(0o600)
    (root / "known_hosts").write_text("")
    (root / "group_vars/cozy_servers.yml").write_text(
        f"ansible_port: {port}\nansible_user: deploy\nansible_ssh_private_key_file: {key}\n"
        "cozy_known_hosts: known_hosts\n")
    return root


def connect_cli(root: Path) -> subprocess.CompletedProcess:
    """Open h1's transport in a fresh interpreter, as a command would: its stderr is all a user sees."""
    code = ("import sys; from pathlib import Path; from cozyops import inventory; "
            "from cozyops.transport import fleet; from cozyops.errors import CozyopsError\n"
            "try:\n    fleet.transport(inventory.load(Path(sys.argv[1])).servers['h1'], timeout=2)\n"
            "except CozyopsError as error:\n    print(error, file=sys.stderr); sys.exit(1)\n")
    return subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60)


NO_BANNER = "no SSH banner within 2 s: is an SSH server listening there? (ansible_host, ansible_port)"
NO_HANDSHAKE = "the SSH handshake did not finish within 2 s"


@pytest.mark.parametrize("greeting, reasons", [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", [NO_BANNER]),
    (None, [NO_BANNER]),
    (b"SSH-2.0-OpenSSH_9.2\r\n", [NO_HANDSHAKE]),
])
def test_a_port_that_does_not_speak_ssh_is_one_line(tmp_path, greeting, reasons):
    listener = Listener(greeting)
    try:
        root = fleet_to(tmp_path, listener.port)
        started = time.monotonic()
        result = connect_cli(root)
        assert time.monotonic() - started < 30
    finally:
        listener.close()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() in [[f"h1 (deploy@127.0.0.1:{listener.port}): {r}"] for r in reasons]


def test_a_missing_key_file_is_named_with_where_the_fleet_sets_it(tmp_path):
    listener = Listener(b"SSH-2.0-OpenSSH_9.2\r\n")
    try:
        root = fleet_to(tmp_path, listener.port, key="secrets/missing")
        with pytest.raises(TransportError) as raised:
            transports.transport(inventory.load(root).servers["h1"], timeout=2)
    finally:
        listener.close()
    assert str(raised.value) == (
        f"h1 (deploy@127.0.0.1:{listener.port}): key file {root.resolve()}/secrets/missing (set in "
        "group_vars/cozy_servers.yml: host h1: ansible_ssh_private_key_file): does not exist")
    assert listener.connections == []  # refused before any connection


def test_nothing_listening_is_one_line(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed again: nothing listens there
    result = connect_cli(fleet_to(tmp_path, port))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"h1 (deploy@127.0.0.1:{port}): cannot connect: Connection refused"]


@pytest.mark.parametrize("status, line", [
    (401, "server h1: cozy-stack refused the admin passphrase (401 Unauthorized)"),
    (403, "server h1: cozy-stack refused the admin passphrase (403 Forbidden)"),
    (404, "instance alice.example.org: not found on server h1"),
    (500, "server h1: cozy-stack failed: 500 Internal Server Error: boom"),
    (503, "server h1: cozy-stack failed: 503 Service Unavailable"),
    (409, "server h1: GET /instances/alice.example.org: 409 Conflict"),
])
def test_stack_errors_keep_their_meaning(status, line):
    titles = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error",
              503: "Service Unavailable", 409: "Conflict"}
    error = StackError("GET /instances/alice.example.org", status, titles[status], "boom" if status == 500 else "")
    assert str(stack_problem(error, "h1", "alice.example.org")).startswith(line)
