"""One way to a fleet server's cozy-stack: the transport, the admin passphrase, the two forwards,
the two clients, and everything closed afterwards.

    with connect(fleet, fleet.servers["h1"]) as stack:
        stack.admin.instance("alice.example.org")
        files = stack.public("alice.example.org", token)

The admin passphrase is the server's ``cozy_admin_passphrase_file`` (a file on this machine, mode
0600) when the fleet sets it, else Debian's clear copy ``/etc/cozy/.cozy-admin-passphrase``, read
over the transport (with ``sudo -n`` when the server has ``ansible_become``). It is never printed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cozyops.errors import CozyopsError
from cozyops.model import DEBIAN_PASSPHRASE_FILE, Fleet, Server
from cozyops.stack.admin import AdminClient
from cozyops.stack.http import StackError
from cozyops.stack.public import PublicClient
from cozyops.transport import fleet as transports
from cozyops.transport.base import Transport

ADMIN_PORT, PUBLIC_PORT = 6060, 8080  # cozy-stack's defaults, on the server's loopback


class StackClients:
    """A server's cozy-stack, reached: the transport, its admin client, a public client per instance.

    The passphrase is read and each port forwarded when first needed (``cert deploy`` needs only
    the transport); everything is closed when ``connect``'s block ends.
    """

    def __init__(self, server: Server, transport: Transport, stack: contextlib.ExitStack) -> None:
        self.server = server
        self.transport = transport
        self._stack = stack
        self._admin: AdminClient | None = None
        self._public_url: str | None = None

    @property
    def admin(self) -> AdminClient:
        """The admin API client (port 6060 forwarded, the admin passphrase found)."""
        if self._admin is None:
            passphrase = admin_passphrase(self.server, self.transport)
            forward = self._stack.enter_context(self.transport.forward(ADMIN_PORT))
            self._admin = AdminClient(forward.url, passphrase)
            self._stack.callback(self._admin.close)
        return self._admin

    def package_version(self) -> str:
        """The installed cozy-stack package's version (dpkg), "" when it is not installed."""
        ran = self.transport.run(["dpkg-query", "-W", "-f=${Version}", "cozy-stack"])
        return ran.stdout.decode(errors="replace").strip() if ran.returncode == 0 else ""

    def status_message(self, domain: str) -> str:
        """``GET /status``'s message through the public port, or the error that came instead."""
        try:
            return str(self.public(domain).status().get("message") or "")
        except CozyopsError as error:
            return str(error)

    @property
    def public_url(self) -> str:
        """The forwarded public port (http://127.0.0.1:PORT)."""
        if self._public_url is None:
            self._public_url = self._stack.enter_context(self.transport.forward(PUBLIC_PORT)).url
        return self._public_url

    def public(self, domain: str, token: str = "") -> PublicClient:
        """A public API client for the instance ``domain`` (closed with the rest)."""
        client = PublicClient(self.public_url, domain, token)
        self._stack.callback(client.close)
        return client


def admin_passphrase(server: Server, transport: Transport) -> str:
    """The server's admin passphrase: its cozy_admin_passphrase_file, else Debian's, on the server."""
    if server.admin_passphrase_file is not None:
        path = server.admin_passphrase_file
        try:
            text = path.read_bytes().decode()
        except OSError as error:
            raise CozyopsError(f"server {server.name}: cozy_admin_passphrase_file {path}",
                               f"cannot read: {error.strerror}") from None
        except UnicodeDecodeError:  # never echo any of it
            raise CozyopsError(f"server {server.name}: cozy_admin_passphrase_file {path}",
                               "is not UTF-8 text") from None
    else:
        command = ["cat", DEBIAN_PASSPHRASE_FILE]
        if server.become:
            command = ["sudo", "-n", *command]
        result = transport.run(command)
        if result.returncode != 0:
            lines = result.stderr.decode(errors="replace").strip().splitlines()
            raise CozyopsError(f"server {server.name}: {DEBIAN_PASSPHRASE_FILE}",
                               f"cannot read the admin passphrase: {lines[-1] if lines else result.returncode}",
                               "is cozy-stack's Debian package installed? or set cozy_admin_passphrase_file")
        text = result.stdout.decode(errors="replace")
    passphrase = text.strip()
    if not passphrase:
        raise CozyopsError(f"server {server.name}", "the admin passphrase is empty")
    return passphrase


@contextlib.contextmanager
def connect(fleet: Fleet, server: Server) -> Iterator[StackClients]:
    """The server's cozy-stack: the transport opened now; the passphrase found and the admin (6060)
    and public (8080) ports forwarded on first use of ``admin`` / ``public()``; all closed when
    the block ends."""
    if fleet.servers.get(server.name) != server:
        raise CozyopsError(f"server {server.name}", f"is not a server of fleet {fleet.name}")
    with contextlib.ExitStack() as stack:
        transport = transports.transport(server)
        stack.callback(transport.close)
        yield StackClients(server, transport, stack)


def stack_problem(error: StackError, server: str, domain: str | None = None) -> CozyopsError:
    """A cozy-stack error as one line that keeps its meaning: 401/403 the admin passphrase, 404 the
    instance, 5xx the server."""
    if error.status in (401, 403):
        return CozyopsError(f"server {server}", f"cozy-stack refused the admin passphrase ({error.status} "
                            f"{error.title})", "check cozy_admin_passphrase_file, or /etc/cozy/.cozy-admin-passphrase "
                            "on the server")
    if error.status == 404 and domain:
        return CozyopsError(f"instance {domain}", f"not found on server {server}")
    if error.status >= 500:
        return CozyopsError(f"server {server}", f"cozy-stack failed: {error.reason}")
    return CozyopsError(f"server {server}: {error.subject}", error.reason)
