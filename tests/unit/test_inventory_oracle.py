"""The inventory against Ansible itself: for each table case (a fleet directory), every host's
variables as ``ansible-inventory -i <fleet>/hosts.yml --host H`` prints them must equal
``inventory.host_vars``, and the model's connection settings must be what those variables say."""

from __future__ import annotations

import getpass
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cozyops import inventory
from cozyops.model import Connection
from tests.unit.test_inventory import make

ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"
EMPTY = "instances: []\n"

CASES = {
    "settings only in group_vars": {
        "hosts.yml": "all:\n  children:\n    cozy_servers:\n      hosts:\n        h1: {ansible_host: 10.0.0.1}\n",
        "group_vars/cozy_servers.yml": "ansible_user: deploy\nansible_port: 2222\n"
                                       "ansible_ssh_private_key_file: keys/id\nansible_become: true\n",
    },
    "host_vars over group_vars": {
        "hosts.yml": "all:\n  children:\n    web:\n      hosts:\n        h1:\n        h2:\n",
        "group_vars/web.yml": "ansible_user: web\nansible_port: 2200\n",
        "host_vars/h2.yml": "ansible_user: special\n",
    },
    "hosts.yml host vars over group_vars files": {
        "hosts.yml": "all:\n  children:\n    web:\n      hosts:\n        h1: {ansible_user: inline}\n",
        "group_vars/web.yml": "ansible_user: file\nansible_port: 2022\n",
        "host_vars/h1.yml": "ansible_port: 2023\n",
    },
    "child group over parent": {
        "hosts.yml": "all:\n  children:\n    parent:\n      vars: {ansible_user: p, ansible_port: 2001}\n"
                     "      children:\n        child:\n          vars: {ansible_user: c}\n"
                     "          hosts:\n            h1:\n      hosts:\n        h2:\n",
    },
    "group_vars of a parent over the child's hosts.yml vars": {
        "hosts.yml": "all:\n  children:\n    parent:\n      children:\n        child:\n"
                     "          vars: {ansible_user: inline_child}\n          hosts:\n            h1:\n",
        "group_vars/parent.yml": "ansible_user: file_parent\n",
        "group_vars/child.yml": "ansible_port: 2100\n",
    },
    "all: hosts.yml vars, group vars, group_vars/all": {
        "hosts.yml": "all:\n  vars: {ansible_user: all_inline, ansible_port: 2000, ansible_become: 'no'}\n"
                     "  children:\n    g:\n      vars: {ansible_port: 2001, ansible_become: 'yes'}\n"
                     "      hosts:\n        h1:\n",
        "group_vars/all.yml": "{all}ansible_become: false\nansible_user: all_file\n",
    },
    "ansible_connection: local": {
        "hosts.yml": "all:\n  children:\n    cozy_servers:\n      hosts:\n        here:\n        there:\n"
                     "          ansible_host: 10.0.0.2\n",
        "host_vars/here.yml": "ansible_connection: local\n",
        "group_vars/cozy_servers.yml": "ansible_connection: ssh\n",
    },
    "group_vars/<group>/ directories": {
        "hosts.yml": "all:\n  children:\n    web:\n      hosts:\n        h1:\n",
        "group_vars/web/10-ssh.yml": "ansible_user: first\nansible_port: 2301\n",
        "group_vars/web/20-more.yaml": "ansible_user: second\n",
        "group_vars/web/sub/30-deeper.yml": "ansible_become: true\n",
        "group_vars/web/ignored.txt": "ansible_user: never\n",
        "group_vars/web.yml": "ansible_user: shadowed_by_the_directory\n",
        "host_vars/h1/vars.yml": "ansible_ssh_common_args: -F ssh/config\n",
        "ssh/config": "Host *\n  UserKnownHostsFile /srv/known_hosts /srv/other\n",
    },
    "siblings: name order, then ansible_group_priority": {
        "hosts.yml": "all:\n  children:\n    alpha:\n      vars: {ansible_user: alpha, ansible_port: 2401}\n"
                     "      hosts: {h1: null, h2: null}\n"
                     "    beta:\n      vars: {ansible_user: beta}\n      hosts: {h1: null}\n"
                     "    gamma:\n      vars: {ansible_group_priority: 0, ansible_port: 2402}\n"
                     "      hosts: {h2: null}\n",
    },
    "a host listed twice": {
        "hosts.yml": "all:\n  children:\n    a:\n      hosts:\n        h1: {ansible_user: first, ansible_port: 2501}\n"
                     "    b:\n      hosts:\n        h1: {ansible_user: second}\n",
    },
    "ungrouped hosts": {
        "hosts.yml": "all:\n  hosts:\n    lone: {ansible_host: 10.0.0.9}\n"
                     "  children:\n    g:\n      hosts: {h1: null}\n",
        "group_vars/ungrouped.yml": "ansible_user: nobody_grouped_me\n",
        "group_vars/g.yml": "ansible_user: grouped\n",
    },
    "top-level groups without all": {
        "hosts.yml": "cozy_servers:\n  vars: {ansible_user: top}\n  hosts:\n    h1: {ansible_port: 2601}\n"
                     "other:\n  hosts:\n    h2:\n",
        "group_vars/other.yml": "ansible_become: true\n",
    },
    "name:port in hosts.yml, aliases": {
        "hosts.yml": "all:\n  children:\n    g:\n      hosts:\n        'h1:2701':\n        h2:\n"
                     "          ansible_ssh_port: 2702\n          ansible_ssh_user: old\n"
                     "          ansible_ssh_host: 10.0.0.22\n",
        "group_vars/g.yml": "ansible_port: 2700\nansible_private_key_file: /keys/g\n",
    },
    "a group under two parents (depth)": {
        "hosts.yml": "all:\n  children:\n    a:\n      vars: {ansible_user: a}\n      children:\n"
                     "        b:\n          vars: {ansible_user: b}\n          children:\n"
                     "            c: {vars: {ansible_user: c}}\n"
                     "        c:\n          hosts: {h1: null}\n    z:\n      vars: {ansible_user: z}\n"
                     "      hosts: {h1: null}\n",
    },
    "host_vars .yaml and .json": {
        "hosts.yml": "all:\n  children:\n    g:\n      hosts: {h1: null, h2: null}\n",
        "host_vars/h1.yaml": "ansible_user: yaml\n",
        "host_vars/h2.json": '{"ansible_user": "json", "ansible_port": 2801}\n',
    },
}


def _ansible(root: Path, scratch: Path, host: str) -> dict:
    env = {**os.environ, "ANSIBLE_HOME": str(scratch / "home"), "ANSIBLE_LOCAL_TEMP": str(scratch / "tmp"),
           "ANSIBLE_CONFIG": str(scratch / "none.cfg"), "ANSIBLE_INVENTORY_ENABLED": "yaml"}
    result = subprocess.run([str(ANSIBLE_INVENTORY), "-i", str(root / "hosts.yml"), "--host", host],
                            capture_output=True, text=True, env=env, cwd=scratch, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _expected(root: Path, found: dict, name: str) -> dict:
    """The connection settings Ansible's variables give: its ssh plugin takes the last set of
    its names for an option (ansible_ssh_port over ansible_port...)."""
    def first(*keys, default=None):
        return next((found[key] for key in keys if key in found), default)

    config_file = None
    for index, word in enumerate(shlex.split(found.get("ansible_ssh_common_args", ""))):
        if word == "-F":
            config_file = root / shlex.split(found["ansible_ssh_common_args"])[index + 1]
    known = Path("~/.ssh/known_hosts").expanduser()
    if config_file:
        for line in config_file.read_text().splitlines():
            if line.strip().startswith("UserKnownHostsFile"):
                known = Path(line.split()[1])
    key = first("ansible_ssh_private_key_file", "ansible_private_key_file")
    local = found.get("ansible_connection") == "local"
    become = str(found.get("ansible_become", False)).lower() in ("true", "yes", "1")
    return {
        "connection": Connection.LOCAL if local else Connection.SSH,
        "address": first("ansible_ssh_host", "ansible_host", default=name),
        "port": int(first("ansible_ssh_port", "ansible_port", default=22)),
        "user": first("ansible_ssh_user", "ansible_user", default=getpass.getuser()),
        "key_file": (root / key) if key else None,
        "ssh_config": config_file,
        "known_hosts": None if local else known,
        "become": become,
    }


@pytest.mark.parametrize("case", list(CASES))
def test_inventory_matches_ansible_inventory(case, tmp_path):
    files = dict(CASES[case])
    all_vars = files.pop("group_vars/all.yml", "{all}").replace("{all}", "")
    root = make(tmp_path / "fleet", raw={**files, "instances.yml": EMPTY})
    all_file = root / "group_vars" / "all.yml"
    all_file.write_text(all_file.read_text() + all_vars)
    root = root.resolve()
    ours = inventory.host_vars(root)
    assert ours, case
    fleet = inventory.load(root)
    (tmp_path / "scratch").mkdir()
    with ThreadPoolExecutor(max_workers=4) as pool:
        theirs = dict(zip(ours, pool.map(lambda host: _ansible(root, tmp_path / "scratch", host), ours), strict=True))
    for host in ours:
        assert ours[host] == theirs[host], f"{case}: {host}"
        server = fleet.servers[host]
        model = {"connection": server.connection, "address": server.address, "port": server.port,
                 "user": server.user, "key_file": server.key_file, "ssh_config": server.ssh_config,
                 "known_hosts": server.known_hosts, "become": server.become}
        assert model == _expected(root, theirs[host], host), f"{case}: {host}"


def test_every_case_sets_some_connection_setting():
    """The table is about connection settings: each case sets at least one."""
    for case, files in CASES.items():
        assert any("ansible_" in text for text in files.values()), case
