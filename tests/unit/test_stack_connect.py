"""cozyops.stack.connect without a stack: where the admin passphrase comes from, and its errors
(the local transport: a server with ansible_connection: local is this machine)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cozyops import inventory
from cozyops.errors import ConfigError, CozyopsError
from cozyops.model import DEBIAN_PASSPHRASE_FILE
from cozyops.stack.connect import admin_passphrase, connect
from cozyops.transport.local import LocalTransport
from tests.unit.test_inventory import make


def local_fleet(tmp_path: Path, host_vars: str = ""):
    return inventory.load(make(tmp_path / "f", raw={"host_vars/h1.yml": "ansible_connection: local\n" + host_vars}))


def test_the_passphrase_file_the_fleet_names(tmp_path):
    root = tmp_path / "f"
    (root / "secrets").mkdir(parents=True)
    (root / "secrets/pass").write_text("s3cret\n")
    (root / "secrets/pass").chmod(0o600)
    fleet = local_fleet(tmp_path, "cozy_admin_passphrase_file: secrets/pass\n")
    server = fleet.servers["h1"]
    assert server.admin_passphrase_file == root.resolve() / "secrets/pass"
    with connect(fleet, server) as stack:
        assert isinstance(stack.transport, LocalTransport)
        assert admin_passphrase(server, stack.transport) == "s3cret"
    (root / "secrets/pass").write_bytes(b"\xff\xfe secret bytes")
    with pytest.raises(CozyopsError) as raised:
        admin_passphrase(server, LocalTransport("h1"))
    where = f"server h1: cozy_admin_passphrase_file {root.resolve()}/secrets/pass"
    assert str(raised.value) == f"{where}: is not UTF-8 text"


def test_a_passphrase_file_others_can_read_is_refused_at_load(tmp_path):
    root = tmp_path / "f"
    (root / "secrets").mkdir(parents=True)
    (root / "secrets/pass").write_text("s3cret\n")
    (root / "secrets/pass").chmod(0o644)
    with pytest.raises(ConfigError, match=r"^host_vars/h1.yml: host h1: cozy_admin_passphrase_file: .* is readable"):
        local_fleet(tmp_path, "cozy_admin_passphrase_file: secrets/pass\n")


@pytest.mark.skipif(Path(DEBIAN_PASSPHRASE_FILE).exists(), reason="this machine has cozy-stack's Debian package")
def test_without_cozy_stack_the_debian_file_is_named(tmp_path):
    fleet = local_fleet(tmp_path)
    with connect(fleet, fleet.servers["h1"]) as stack, pytest.raises(CozyopsError) as raised:
        stack.admin  # noqa: B018 - the passphrase is read on first use
    assert str(raised.value).startswith(f"server h1: {DEBIAN_PASSPHRASE_FILE}: cannot read the admin passphrase: ")
    assert "No such file" in str(raised.value)


def test_a_server_of_another_fleet_is_refused(tmp_path):
    fleet = local_fleet(tmp_path)
    other = dataclasses.replace(fleet.servers["h1"], port=2222)
    with pytest.raises(CozyopsError, match="is not a server of fleet"), connect(fleet, other):
        pass
