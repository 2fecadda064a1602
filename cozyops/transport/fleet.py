"""Reaching a fleet server: the transport from the model's :class:`~cozyops.model.Server`.

The connection settings were read once, with Ansible's precedence, by ``inventory.load``
(see docs/fleet.md): ``ansible_connection: local`` means this machine (the local transport);
otherwise SSH to the server's address, port and user with its key file, host keys from its
known_hosts file (strict checking always: an unknown host is refused).
"""

from __future__ import annotations

from cozyops.errors import ConfigError
from cozyops.model import Connection, Server
from cozyops.transport.base import Transport
from cozyops.transport.local import LocalTransport
from cozyops.transport.ssh import CONNECT_TIMEOUT, SshTarget, SshTransport


def ssh_target(server: Server) -> SshTarget:
    if server.key_file is None:
        raise ConfigError(f"server {server.name}", "has no ansible_ssh_private_key_file (in hosts.yml, "
                          "group_vars/ or host_vars/) and its ssh_config names no IdentityFile")
    if server.known_hosts is None:  # inventory.load always sets it for SSH; a hand-made Server may not
        raise ConfigError(f"server {server.name}", "has no known_hosts file: refusing to connect unchecked")
    return SshTarget(server.name, server.address, server.key_file, server.known_hosts, server.port, server.user,
                     key_source=server.key_file_source)


def transport(server: Server, timeout: float = CONNECT_TIMEOUT) -> Transport:
    """An open transport to ``server`` (close it, or use it as a context manager)."""
    if server.connection is Connection.LOCAL:
        return LocalTransport(server.name)
    return SshTransport(ssh_target(server), timeout)
