"""Reading a fleet directory: the keys, Ansible's variable layering, one clear error per bad input."""

import json
import os
from pathlib import Path

import pytest
import yaml

from cozyops import inventory, paths
from cozyops.dns import tsig
from cozyops.errors import ConfigError
from cozyops.model import DnsProviderKind, SubdomainMode

GROUP_VARS = {
    "cozy_zone": "example.org",
    "cozy_subdomains": "nested",
    "cozy_dns": {"provider": "rfc2136", "server": "192.0.2.53", "tsig_key_file": "secrets/tsig.key"},
    "cozy_acme": {"directory": "letsencrypt", "email": "admin@example.org"},
}
HOSTS = {"all": {"children": {"cozy_servers": {"hosts": {"h1": {"ansible_host": "192.0.2.10"}}}}}}
INSTANCES = {"instances": [{"domain": "alice.example.org", "server": "h1", "apps": ["drive"]}]}


def make(root: Path, group_vars=None, hosts=None, instances=None, raw: dict | None = None) -> Path:
    (root / "group_vars").mkdir(parents=True, exist_ok=True)
    (root / "secrets").mkdir(exist_ok=True)
    tsig.write(root / "secrets/tsig.key", tsig.generate("k"))
    for name, data in (("group_vars/all.yml", group_vars or GROUP_VARS), ("hosts.yml", hosts or HOSTS),
                       ("instances.yml", instances or INSTANCES)):
        (root / name).write_text(yaml.safe_dump(data))
    for name, text in (raw or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def with_dns(**changes):
    return {**GROUP_VARS, "cozy_dns": {**GROUP_VARS["cozy_dns"], **changes}}


def test_a_good_fleet(tmp_path):
    fleet = inventory.load(make(tmp_path / "prod"))
    assert fleet.name == "prod" and fleet.zone == "example.org"
    assert fleet.subdomains is SubdomainMode.NESTED
    assert fleet.dns.provider is DnsProviderKind.RFC2136
    assert fleet.dns.update.server == "192.0.2.53" and fleet.dns.update.port == 53
    assert fleet.dns.update.tsig_key_file == tmp_path / "prod/secrets/tsig.key"
    assert (fleet.dns.ttl, fleet.dns.batch_size, fleet.dns.unsafe_changes, fleet.dns.unsafe_percent) == (
        300, 1000, 10, 30)
    assert fleet.acme.caa == ("letsencrypt.org",)
    assert fleet.servers["h1"].ipv4 == "192.0.2.10"
    assert [(i.domain, i.server, i.apps) for i in fleet.instances] == [("alice.example.org", "h1", ("drive",))]
    assert fleet.state_dir == tmp_path / "prod/.cozyops"


def test_the_documented_example_loads(tmp_path):
    example = paths.data_dir("inventories") / "example"
    copy = tmp_path / "example"
    for path in example.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(example)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(example)).write_bytes(path.read_bytes())
    tsig.write(copy / "secrets/tsig.key", tsig.generate("example"))
    fleet = inventory.load(copy)
    assert fleet.name == "example"
    assert fleet.servers["h1"].ipv6 == "2001:db8::10"
    assert {i.domain for i in fleet.instances} == {"alice.example.org", "bob.example.org"}


def test_variables_layer_as_in_ansible(tmp_path):
    hosts = {"all": {
        "vars": {"cozy_zone": "ignored.org"},
        "children": {"web": {
            "vars": {"cozy_public_ipv4": "192.0.2.1"},
            "hosts": {"h1": {"ansible_host": "h1.example.net"}, "h2": {"cozy_public_ipv4": "192.0.2.2"}},
        }},
    }}
    root = make(tmp_path / "f", hosts=hosts, raw={
        "group_vars/web.yml": "cozy_public_ipv6: '2001:db8::1'\n",
        "host_vars/h2.yml": "cozy_public_ipv4: 192.0.2.3\n",
    })
    fleet = inventory.load(root)
    assert fleet.zone == "example.org"  # group_vars/all.yml overrides all's vars in hosts.yml
    assert (fleet.servers["h1"].ipv4, fleet.servers["h1"].ipv6) == ("192.0.2.1", "2001:db8::1")
    assert fleet.servers["h2"].ipv4 == "192.0.2.3"  # host_vars/ wins


def test_fleet_name_setting_and_flat_mode(tmp_path):
    fleet = inventory.load(make(tmp_path / "f", group_vars={**GROUP_VARS, "cozy_fleet_name": "hoster-1",
                                                             "cozy_subdomains": "flat"}))
    assert fleet.name == "hoster-1" and fleet.subdomains is SubdomainMode.FLAT


def test_manual_provider_needs_no_server(tmp_path):
    fleet = inventory.load(make(tmp_path / "f", group_vars={**GROUP_VARS, "cozy_dns": {"provider": "manual"}}))
    assert fleet.dns.provider is DnsProviderKind.MANUAL and fleet.dns.update is None


def test_key_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FLEET_KEY", "hmac-sha512:k1:" + tsig.generate("x").secret)
    dns_settings = {"provider": "rfc2136", "server": "ns.example.org", "tsig_key_env": "FLEET_KEY"}
    fleet = inventory.load(make(tmp_path / "f", group_vars={**GROUP_VARS, "cozy_dns": dns_settings}))
    key = tsig.load_reference(fleet.dns.update.tsig_key_file)
    assert (key.name, key.algorithm) == ("k1", "hmac-sha512")


BAD = {
    "zone missing": (dict(group_vars={k: v for k, v in GROUP_VARS.items() if k != "cozy_zone"}),
                     "group_vars/all.yml: cozy_zone: missing"),
    "zone not a name": (dict(group_vars={**GROUP_VARS, "cozy_zone": "exa mple.org"}),
                        "group_vars/all.yml: cozy_zone: 'exa mple.org' is not a valid domain name"),
    "mode": (dict(group_vars={**GROUP_VARS, "cozy_subdomains": "deep"}),
             "group_vars/all.yml: cozy_subdomains: must be nested or flat, not 'deep'"),
    "provider": (dict(group_vars=with_dns(provider="route53")),
                 "group_vars/all.yml: cozy_dns.provider: must be one of rfc2136, manual, powerdns, lexicon, "
                 "not 'route53'"),
    "server missing": (dict(group_vars=with_dns(server=None)), "group_vars/all.yml: cozy_dns.server: missing"),
    "port": (dict(group_vars=with_dns(port=70000)), "group_vars/all.yml: cozy_dns.port: must be between 1 and 65535"),
    "key file missing": (dict(group_vars=with_dns(tsig_key_file="secrets/nope.key")),
                         "group_vars/all.yml: cozy_dns.tsig_key_file: "),
    "no key": (dict(group_vars=with_dns(tsig_key_file=None)), "group_vars/all.yml: cozy_dns.tsig_key_file: missing"),
    "algorithm": (dict(group_vars=with_dns(algorithm="hmac-md4")), "group_vars/all.yml: cozy_dns.algorithm: "),
    "unsafe percent": (dict(group_vars=with_dns(unsafe_percent=130)),
                       "group_vars/all.yml: cozy_dns.unsafe_percent: must be between 0 and 100"),
    "batch size": (dict(group_vars=with_dns(batch_size="many")),
                   "group_vars/all.yml: cozy_dns.batch_size: must be a number"),
    "challenge zone inside": (dict(group_vars=with_dns(acme_challenge={"zone": "acme.example.org", "server": "x"})),
                              "group_vars/all.yml: cozy_dns.acme_challenge.zone: must be another zone"),
    "acme directory": (dict(group_vars={**GROUP_VARS, "cozy_acme": {"directory": "ftp://x"}}),
                       "group_vars/all.yml: cozy_acme.directory: 'ftp://x' is neither"),
    "caa": (dict(group_vars={**GROUP_VARS, "cozy_acme": {"caa": ["not a domain"]}}),
            "group_vars/all.yml: cozy_acme.caa[0]: "),
    "key type": (dict(group_vars={**GROUP_VARS, "cozy_acme": {"key_type": "dsa"}}),
                 "group_vars/all.yml: cozy_acme.key_type: must be ecdsa or rsa, not 'dsa'"),
    "eab alone": (dict(group_vars={**GROUP_VARS, "cozy_acme": {"eab_kid": "k1"}}),
                  "group_vars/all.yml: cozy_acme: eab_kid and eab_hmac_key_file go together"),
    "budget": (dict(group_vars={**GROUP_VARS, "cozy_acme": {"budget": -1}}),
               "group_vars/all.yml: cozy_acme.budget: must be at least 0"),
    "deploy dir": (dict(group_vars={**GROUP_VARS, "cozy_acme": {"deploy_dir": "ssl/cozyops"}}),
                   "group_vars/all.yml: cozy_acme.deploy_dir: must be an absolute path on the servers, not 'ssl/"),
    "acme challenge": (dict(group_vars={**GROUP_VARS, "cozy_acme": {"challenge": "tls-alpn-01"}}),
                       "group_vars/all.yml: cozy_acme.challenge: must be dns-01 or http-01, not 'tls-alpn-01'"),
    "concurrency": (dict(group_vars={**GROUP_VARS, "cozy_acme": {"concurrency": 0}}),
                    "group_vars/all.yml: cozy_acme.concurrency: must be between 1 and 256"),
    "yaml syntax": (dict(raw={"instances.yml": "instances: [\n"}), "instances.yml: line "),
    "instances not a list": (dict(instances={"instances": {"a": 1}}), "instances.yml: instances: must be a list"),
    "domain outside zone": (dict(instances={"instances": [{"domain": "alice.example.net", "server": "h1"}]}),
                            "instances.yml: instances[0].domain: alice.example.net is not in the fleet's zone"),
    "domain twice": (dict(instances={"instances": [{"domain": "a.example.org", "server": "h1"},
                                                   {"domain": "A.example.org.", "server": "h1"}]}),
                     "instances.yml: instances[1].domain: a.example.org is already instances[0]"),
    "unknown server": (dict(instances={"instances": [{"domain": "a.example.org", "server": "h9"}]}),
                       "instances.yml: instances[0].server: 'h9' is not a host of hosts.yml (hosts: h1)"),
    "bad app": (dict(instances={"instances": [{"domain": "a.example.org", "server": "h1", "apps": ["Drive!"]}]}),
                "instances.yml: instances[0].apps: 'Drive!' is not an app slug"),
    "non-ascii": (dict(instances={"instances": [{"domain": "élise.example.org", "server": "h1"}]}),
                  "instances.yml: instances[0].domain: 'élise.example.org' is not ASCII"),
    "flat with a dash": (dict(group_vars={**GROUP_VARS, "cozy_subdomains": "flat"},
                              instances={"instances": [{"domain": "al-ice.example.org", "server": "h1"}]}),
                         "instances.yml: instances[0].domain: al-ice.example.org: no '-' in the first label"),
    "flat at the apex": (dict(group_vars={**GROUP_VARS, "cozy_subdomains": "flat"},
                              instances={"instances": [{"domain": "example.org", "server": "h1"}]}),
                         "instances.yml: instances[0].domain: in flat mode an instance cannot be the zone itself"),
    "bad ipv4": (dict(hosts={"all": {"hosts": {"h1": {"cozy_public_ipv4": "192.0.2"}}}}),
                 "hosts.yml: host h1: cozy_public_ipv4: '192.0.2' is not an IPv4 address"),
    "no address": (dict(hosts={"all": {"hosts": {"h1": {"ansible_host": "h1.example.net"}}}}),
                   "hosts.yml: host h1: no public address"),
    "hosts not a mapping": (dict(raw={"hosts.yml": "- h1\n"}), "hosts.yml: the file: must be a mapping"),
    "fleet name": (dict(group_vars={**GROUP_VARS, "cozy_fleet_name": "has space"}),
                   "group_vars/all.yml: cozy_fleet_name: 'has space' must be"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_error_naming_file_and_key(tmp_path, case):
    kwargs, message = BAD[case]
    root = make(tmp_path / "f", **kwargs)
    with pytest.raises(ConfigError) as raised:
        inventory.load(root)
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_key_file_others_can_read_is_refused(tmp_path):
    root = make(tmp_path / "f")
    os.chmod(root / "secrets/tsig.key", 0o644)
    with pytest.raises(ConfigError, match=r"cozy_dns.tsig_key_file: .* is readable by others \(mode 644\)"):
        inventory.load(root)


def test_fleet_dir_from_option_or_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("COZYOPS_FLEET", raising=False)
    with pytest.raises(ConfigError, match="no fleet directory"):
        inventory.fleet_dir(None)
    monkeypatch.setenv("COZYOPS_FLEET", str(tmp_path))
    assert inventory.fleet_dir(None) == tmp_path.resolve()
    with pytest.raises(ConfigError, match="is not a directory"):
        inventory.fleet_dir(tmp_path / "missing")


def test_instances_are_parsed_once_per_content(tmp_path):
    root = make(tmp_path / "f")
    first = inventory.load(root)
    (cache,) = (root / ".cozyops/cache").glob("instances-*.json")
    assert inventory.load(root) == first
    # The cache is what a second load reads (proved by planting other content in it)...
    cache.write_text('{"instances": [{"domain": "cached.example.org", "server": "h1"}]}')
    assert [i.domain for i in inventory.load(root).instances] == ["cached.example.org"]
    # ...but a changed file has another digest: never a stale answer, and the old entry goes.
    (root / "instances.yml").write_text(yaml.safe_dump({"instances": [{"domain": "new.example.org", "server": "h1"}]}))
    assert [i.domain for i in inventory.load(root).instances] == ["new.example.org"]
    assert len(list((root / ".cozyops/cache").glob("instances-*.json"))) == 1
    # A corrupt entry is ignored (and replaced).
    (entry,) = (root / ".cozyops/cache").glob("instances-*.json")
    entry.write_text("{not json")
    assert [i.domain for i in inventory.load(root).instances] == ["new.example.org"]
    assert json.loads(entry.read_text())["instances"][0]["domain"] == "new.example.org"


def test_bad_yaml_is_reported_even_with_a_cache(tmp_path):
    root = make(tmp_path / "f")
    inventory.load(root)
    (root / "instances.yml").write_text("instances: [\n")
    with pytest.raises(ConfigError, match="^instances.yml: line "):
        inventory.load(root)
