"""A fleet server reached for the import: the SSH target from hosts.yml (and an -F ssh_config)."""

from __future__ import annotations

import pytest

from cozyops.errors import ConfigError
from cozyops.transport import fleet as connect


def test_target_from_ansible_vars_and_the_ssh_config(tmp_path):
    (tmp_path / "ssh_config").write_text("Host h1\n    HostName 10.0.0.11\n    UserKnownHostsFile /lab/known_hosts\n")
    (tmp_path / "hosts.yml").write_text(f"""
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
""")
    h1 = connect.ssh_target(tmp_path, "h1")
    assert (h1.address, h1.port, h1.user, str(h1.key_file), str(h1.known_hosts)) == \
        ("10.0.0.11", 22, "root", "/lab/id_ed25519", "/lab/known_hosts")
    h2 = connect.ssh_target(tmp_path, "h2")
    assert (h2.port, str(h2.known_hosts)) == (2222, "/other/known")
    with pytest.raises(ConfigError, match="not in the fleet"):
        connect.ssh_target(tmp_path, "h9")


def test_no_key_is_a_clear_error(tmp_path):
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    h1: {ansible_host: 10.0.0.11}\n")
    with pytest.raises(ConfigError, match="ansible_ssh_private_key_file"):
        connect.ssh_target(tmp_path, "h1")


def test_a_server_with_ansible_connection_local_is_this_machine(tmp_path):
    from cozyops.transport.local import LocalTransport

    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    here:\n      ansible_connection: local\n")
    with connect.transport(tmp_path, "here") as transport:
        assert isinstance(transport, LocalTransport) and transport.name == "here"
        assert transport.run("echo ok").check("here").text == "ok\n"
