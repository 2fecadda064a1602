"""The lab's fleet directory and the documented example use the keys of the architecture."""

import yaml

from cozyops import paths
from cozyops.lab import fleet
from cozyops.lab.spec import LabSpec

REQUIRED = {"cozy_zone", "cozy_subdomains", "cozy_dns", "cozy_acme"}


def test_lab_fleet_has_the_architecture_keys(tmp_path):
    spec = LabSpec("f1")
    ca = tmp_path / "ca.pem"
    ca.write_text("CA")
    fleet.write(tmp_path / "fleet", spec, ca)
    group_vars = yaml.safe_load((tmp_path / "fleet/group_vars/all.yml").read_text())
    assert REQUIRED <= set(group_vars)
    assert group_vars["cozy_dns"] == {
        "provider": "rfc2136",
        "server": spec.bind_address,
        "tsig_key_file": "secrets/tsig.key",
    }
    assert group_vars["cozy_acme"]["directory"] == spec.acme_directory
    assert (tmp_path / "fleet/secrets/ca.pem").read_text() == "CA"
    assert yaml.safe_load((tmp_path / "fleet/hosts.yml").read_text()) == {
        "all": {"children": {"cozy_servers": {"hosts": {}}}}
    }
    assert ".cozyops/" in (tmp_path / "fleet/.gitignore").read_text()


def test_rewriting_keeps_the_users_instances(tmp_path):
    spec, ca = LabSpec("f2"), tmp_path / "ca.pem"
    ca.write_text("CA")
    fleet.write(tmp_path / "fleet", spec, ca)
    instances = tmp_path / "fleet/instances.yml"
    instances.write_text("instances:\n  - domain: alice.cozy.test\n    server: h1\n")
    fleet.write(tmp_path / "fleet", spec, ca)
    assert yaml.safe_load(instances.read_text())["instances"][0]["domain"] == "alice.cozy.test"


def test_example_inventory_is_complete():
    example = paths.data_dir("inventories") / "example"
    group_vars = yaml.safe_load((example / "group_vars/all.yml").read_text())
    assert REQUIRED <= set(group_vars)
    assert group_vars["cozy_subdomains"] in ("nested", "flat")
    hosts = yaml.safe_load((example / "hosts.yml").read_text())
    servers = set(hosts["all"]["children"]["cozy_servers"]["hosts"])
    instances = yaml.safe_load((example / "instances.yml").read_text())["instances"]
    assert instances and all(instance["server"] in servers for instance in instances)
    assert all(instance["domain"].endswith("." + group_vars["cozy_zone"]) for instance in instances)


def test_lab_fleet_lists_the_hosts_with_their_ssh_settings(tmp_path):
    spec, ca = LabSpec("f3"), tmp_path / "ca.pem"
    ca.write_text("CA")
    hosts = [{"name": h.name, "address": h.address, "fqdn": h.fqdn} for h in spec.hosts(2)]
    fleet.write(tmp_path / "fleet", spec, ca, hosts, tmp_path / "id", tmp_path / "config")
    inventory = yaml.safe_load((tmp_path / "fleet/hosts.yml").read_text())["all"]
    servers = inventory["children"]["cozy_servers"]["hosts"]
    assert servers == {
        "h1": {"ansible_host": spec.host(1).address, "cozy_public_ipv4": spec.host(1).address},
        "h2": {"ansible_host": spec.host(2).address, "cozy_public_ipv4": spec.host(2).address},
    }
    assert "vars" not in inventory  # the SSH settings are only in group_vars/
    ssh = yaml.safe_load((tmp_path / "fleet/group_vars/cozy_servers.yml").read_text())
    assert ssh["ansible_ssh_common_args"] == f"-F {tmp_path / 'config'}"
    assert ssh["ansible_ssh_private_key_file"] == str(tmp_path / "id")
