"""A fleet server reached from the model: the SSH target from the settings inventory.load read
(hosts.yml, group_vars/, host_vars/ and an -F ssh_config), or the local transport."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cozyops import inventory
from cozyops.errors import ConfigError
from cozyops.model import Connection
from cozyops.transport import fleet as connect
from tests.unit.test_inventory import make


def test_target_from_ansible_vars_and_the_ssh_config(tmp_path):
    (tmp_path / "ssh_config").write_text("Host h1 10.0.0.11\n    HostName 10.0.0.11\n"
                                         "    UserKnownHostsFile /lab/known_hosts\n")
    root = make(tmp_path / "f", raw={"hosts.yml": f"""
all:
  vars:
    ansible_user: root
    ansible_ssh_private_key_file: /lab/id_ed25519
    ansible_ssh_common_args: -F {tmp_path}/ssh_config
  children:
    cozy_servers:
      hosts:
        h1: {{ansible_host: 10.0.0.11}}
        h2: {{ansible_host: 10.0.0.12, ansible_port: 2222, cozy_known_hosts: /other/known}}
"""})
    fleet = inventory.load(root)
    h1 = connect.ssh_target(fleet.servers["h1"])
    assert (h1.address, h1.port, h1.user, str(h1.key_file), str(h1.known_hosts)) == \
        ("10.0.0.11", 22, "root", "/lab/id_ed25519", "/lab/known_hosts")
    h2 = connect.ssh_target(fleet.servers["h2"])
    assert (h2.port, str(h2.known_hosts)) == (2222, "/other/known")


def test_an_ssh_config_without_known_hosts_means_openssh_default(tmp_path):
    (tmp_path / "ssh_config").write_text("Host *\n    StrictHostKeyChecking yes\n")  # no UserKnownHostsFile
    root = make(tmp_path / "f", raw={"hosts.yml": f"""
all:
  hosts:
    h1:
      ansible_host: 192.0.2.10
      ansible_ssh_private_key_file: k
      ansible_ssh_common_args: '-F {tmp_path}/ssh_config'
"""})
    server = inventory.load(root).servers["h1"]
    assert server.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert server.key_file == root.resolve() / "k"  # relative to the fleet


def test_a_missing_ssh_config_is_named(tmp_path):
    root = make(tmp_path / "f", raw={"group_vars/cozy_servers.yml": "ansible_ssh_common_args: -F /nowhere/cfg\n"})
    with pytest.raises(ConfigError, match=r"^group_vars/cozy_servers.yml: host h1: ansible_ssh_common_args: "
                       r"the ssh_config /nowhere/cfg does not exist"):
        inventory.load(root)


def test_no_key_is_a_clear_error(tmp_path):
    server = inventory.load(make(tmp_path / "f")).servers["h1"]
    with pytest.raises(ConfigError, match="ansible_ssh_private_key_file"):
        connect.ssh_target(server)
    with pytest.raises(ConfigError, match="known_hosts"):
        connect.ssh_target(dataclasses.replace(server, key_file=Path("/k"), known_hosts=None))


def test_a_server_with_ansible_connection_local_is_this_machine(tmp_path):
    from cozyops.transport.local import LocalTransport

    root = make(tmp_path / "f", raw={"host_vars/h1.yml": "ansible_connection: local\n"})
    server = inventory.load(root).servers["h1"]
    assert server.connection is Connection.LOCAL
    with connect.transport(server) as transport:
        assert isinstance(transport, LocalTransport) and transport.name == "h1"
        assert transport.run("echo ok").check("h1").text == "ok\n"
