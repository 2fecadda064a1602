"""The lab's sshd hosts reached from the fleet model: the SSH settings the lab's fleet keeps only in
group_vars/ are followed (user, port, key file; host_vars/ over group_vars/), a bad one is one line
naming it; and cozyops.stack.connect reaches a server's cozy-stack and closes everything."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import uuid

import pytest

from cozyops import inventory
from cozyops.lab import netns
from cozyops.stack.connect import connect
from cozyops.transport import fleet as transports
from cozyops.transport.base import TransportError
from tests.integration.test_stack import stack_lab  # noqa: F401 - the module fixture that brings the stack up

# The first test waits for the module fixture that brings the stack up (test_stack.stack_lab), which
# takes minutes on a busy machine: the time allowed is test_stack's.
pytestmark = [pytest.mark.lab, pytest.mark.timeout(1500)]


def copy_fleet(lab, root):
    """The lab's fleet (hosts.yml with the hosts only, the SSH settings in group_vars/)."""
    shutil.copytree(lab.fleet_dir, root, ignore=shutil.ignore_patterns(".cozyops"))
    assert "ansible_" not in (root / "hosts.yml").read_text().replace("ansible_host", "")
    assert "ansible_ssh_private_key_file" in (root / "group_vars/cozy_servers.yml").read_text()
    return root


def whoami(lab, root, host="h1"):
    server = inventory.load(root).servers[host]

    def run():
        with transports.transport(server, timeout=5) as transport:
            return transport.run("id -un; hostname").check(host).text.split()

    return server, netns.inside(lab.spec.netns, run)


def test_ssh_settings_only_in_group_vars_are_followed(lab, tmp_path):
    root = copy_fleet(lab, tmp_path / "fleet")
    server, answer = whoami(lab, root)
    assert (server.user, server.port, server.key_file) == ("root", 22, lab.host_files.client_key)
    assert server.known_hosts == lab.host_files.known_hosts  # from the -F ssh_config's UserKnownHostsFile
    assert answer == ["root", "h1"]

    group_vars = root / "group_vars/cozy_servers.yml"
    original = group_vars.read_text()
    group_vars.write_text(original + "ansible_port: 2222\n")  # nothing listens there: the port is followed
    with pytest.raises(TransportError) as raised:
        whoami(lab, root)
    assert str(raised.value) == f"h1 (root@{server.address}:2222): cannot connect: Connection refused"
    (root / "host_vars").mkdir()
    (root / "host_vars/h1.yml").write_text("ansible_port: 22\n")  # host_vars/ over group_vars/
    assert whoami(lab, root)[1] == ["root", "h1"]

    group_vars.write_text(original.replace("ansible_user: root", "ansible_user: nobody"))
    with pytest.raises(TransportError) as raised:
        whoami(lab, root)
    assert str(raised.value) == (f"h1 (nobody@{server.address}:22): the server refused the key "
                                 f"{lab.host_files.client_key}")

    group_vars.write_text(original.replace(str(lab.host_files.client_key), "/nowhere/id_ed25519"))
    with pytest.raises(TransportError) as raised:
        whoami(lab, root)
    assert str(raised.value) == (f"h1 (root@{server.address}:22): key file /nowhere/id_ed25519 (set in "
                                 "group_vars/cozy_servers.yml: host h1: ansible_ssh_private_key_file): does not exist")


def test_connect_reaches_the_stack_and_closes_everything(stack_lab, tmp_path):  # noqa: F811
    fleet = inventory.load(copy_fleet(stack_lab, tmp_path / "fleet"))

    def run():
        with connect(fleet, fleet.servers["h1"]) as stack:
            instances = stack.admin.instances()
            version = stack.public(stack_lab.spec.host(1).fqdn).version()
            port = int(stack.public_url.rsplit(":", 1)[1])
            transport = stack.transport
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # the forward is closed
        with pytest.raises(TransportError, match="closed"):
            transport.run("true")
        return instances, version

    instances, version = netns.inside(stack_lab.spec.netns, run)
    assert isinstance(instances, list) and version.get("version")


def cli(lab, root, *args):
    argv = [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
            sys.executable, "-m", "cozyops", *args, "--fleet", str(root)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def test_v2_import_names_a_wrong_passphrase_and_a_missing_instance(stack_lab, tmp_path):  # noqa: F811
    from tests.v2export import Export

    root = copy_fleet(stack_lab, tmp_path / "fleet")
    export = Export().file("", "a.txt", b"a").write(tmp_path / "e.tar.gz")
    missing = f"nobody{uuid.uuid4().hex[:6]}.{stack_lab.spec.zone}"
    result = cli(stack_lab, root, "v2", "import", str(export), "--to", missing, "--server", "h1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"cozyops: error: instance {missing}: not found on server h1"

    (root / "secrets/wrong-passphrase").write_text("not-the-passphrase\n")
    (root / "secrets/wrong-passphrase").chmod(0o600)
    (root / "host_vars").mkdir()
    (root / "host_vars/h1.yml").write_text("cozy_admin_passphrase_file: secrets/wrong-passphrase\n")
    result = cli(stack_lab, root, "v2", "import", str(export), "--to", missing, "--server", "h1", "--json")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cozyops: error: server h1: cozy-stack refused the admin passphrase (40"), last
    assert "not-the-passphrase" not in result.stderr + result.stdout
    assert json.loads(result.stdout or "null") is None
