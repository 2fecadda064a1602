"""Reaching a fleet server: the transport from the fleet's hosts.yml.

A server is reached as Ansible reaches it: ``ansible_connection: local`` means this machine (the
local transport); otherwise SSH to ``ansible_host`` (default: the name), ``ansible_port``,
``ansible_user`` (default root), ``ansible_ssh_private_key_file``; host keys from the
``UserKnownHostsFile`` of an ``-F`` ssh_config in ``ansible_ssh_common_args``, else
``cozy_known_hosts``, else ``~/.ssh/known_hosts`` (strict checking always).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import paramiko
import yaml

from cozyops.errors import ConfigError
from cozyops.transport.base import Transport
from cozyops.transport.local import LocalTransport
from cozyops.transport.ssh import SshTarget, SshTransport


def _walk(group: dict, inherited: dict, found: dict[str, dict]) -> None:
    merged = {**inherited, **(group.get("vars") or {})}
    for name, host_vars in (group.get("hosts") or {}).items():
        found[str(name)] = {**found.get(str(name), {}), **merged, **(host_vars or {})}
    for child in (group.get("children") or {}).values():
        _walk(child or {}, merged, found)


def host_vars(fleet: Path) -> dict[str, dict[str, Any]]:
    path = fleet / "hosts.yml"
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(str(path), f"cannot be read ({error})") from None
    found: dict[str, dict] = {}
    _walk(data.get("all", data) if isinstance(data, dict) else {}, {}, found)
    return found


def ssh_target(fleet: Path, server: str) -> SshTarget:
    hosts = host_vars(fleet)
    if server not in hosts:
        raise ConfigError(f"server {server}", f"is not in the fleet's hosts.yml ({fleet})")
    values = hosts[server]
    address = str(values.get("ansible_host") or server)
    key = values.get("ansible_ssh_private_key_file")
    if not key:
        raise ConfigError(f"server {server}", "has no ansible_ssh_private_key_file in hosts.yml")
    known_hosts = values.get("cozy_known_hosts")
    args = shlex.split(str(values.get("ansible_ssh_common_args") or ""))
    if "-F" in args and args.index("-F") + 1 < len(args):
        config = paramiko.SSHConfig.from_path(args[args.index("-F") + 1]).lookup(server)
        known_hosts = known_hosts or (config.get("userknownhostsfile") or "").split()[0] or None
    known = Path(known_hosts).expanduser() if known_hosts else Path.home() / ".ssh" / "known_hosts"
    return SshTarget(server, address, Path(str(key)).expanduser(), known, int(values.get("ansible_port") or 22),
                     str(values.get("ansible_user") or "root"))


def transport(fleet: Path, server: str) -> Transport:
    """An open transport to ``server`` (close it, or use it as a context manager)."""
    hosts = host_vars(fleet)
    if server in hosts and str(hosts[server].get("ansible_connection") or "") == "local":
        return LocalTransport(server)
    return SshTransport(ssh_target(fleet, server))
