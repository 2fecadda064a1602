"""Fleet input that used to end in an unexpected error is one line naming its input: a TSIG key
file that is not UTF-8 (and no byte of it shown), a cozy_acme.ca_bundle that does not exist."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cozyops import inventory
from cozyops.dns import tsig
from cozyops.errors import ConfigError
from tests.unit.test_inventory import GROUP_VARS, make


def test_a_tsig_key_file_that_is_not_utf8_is_named_and_none_of_it_shown(tmp_path):
    root = make(tmp_path / "f")
    secret = b'key "k" {\n  algorithm hmac-sha256;\n  secret "\xe9\xfa\xfbSECRETPART==";\n};\n'
    (root / "secrets/tsig.key").write_bytes(secret)
    with pytest.raises(ConfigError) as raised:
        tsig.load(root / "secrets/tsig.key")
    assert str(raised.value) == (f"{root}/secrets/tsig.key: not a TSIG key file: not UTF-8 text "
                                 '(expected key "NAME" { ... })')
    result = subprocess.run([sys.executable, "-m", "cozyops", "dns", "plan", "--fleet", str(root)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"cozyops: error: {root.resolve()}/secrets/tsig.key: not a TSIG key file: not UTF-8 text "
        '(expected key "NAME" { ... })']
    for shown in ("SECRET", "\\xe9", "0xe9", "é", "position"):
        assert shown not in result.stderr + result.stdout


def test_a_missing_ca_bundle_is_refused_when_the_fleet_loads(tmp_path):
    acme = {**GROUP_VARS["cozy_acme"], "ca_bundle": "secrets/ca.pem"}
    root = make(tmp_path / "f", group_vars={**GROUP_VARS, "cozy_acme": acme})
    with pytest.raises(ConfigError) as raised:
        inventory.load(root)
    assert str(raised.value) == (f"group_vars/all.yml: cozy_acme.ca_bundle: {root.resolve()}/secrets/ca.pem "
                                 "does not exist")
    (root / "secrets/ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert inventory.load(root).acme.ca_bundle == root.resolve() / "secrets/ca.pem"
