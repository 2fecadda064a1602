"""The shared provider suite: the same cases against every DNS provider that writes a zone.

- ``bind``: RFC 2136 to BIND (primary of the lab's first zone; Knot its secondary);
- ``knot``: RFC 2136 to Knot (primary of the second zone; BIND its secondary);
- ``powerdns``: PowerDNS's HTTP API (primary of the third zone; BIND and Knot its secondaries);
- ``lexicon``: dns-lexicon's powerdns provider, pointed at the same API.

Each case runs as an operator would (the CLI inside the lab's namespace) or through the provider
interface, and looks at what every authoritative server of the zone answers.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import requests
import yaml

from cozyops import files, inventory
from cozyops.dns import records, tsig
from cozyops.dns.manager import DnsManager
from cozyops.errors import DnsError
from cozyops.lab import netns
from cozyops.tls.manager import CertManager

pytestmark = pytest.mark.lab

BACKENDS = ["bind", "knot", "powerdns", "lexicon"]


@dataclass
class Backend:
    name: str
    zone: str
    servers: list[str]  # every authoritative server of the zone, its primary first
    dns: dict  # cozy_dns, secrets relative to the fleet
    secrets: dict[str, str]  # fleet-relative path: content (mode 0600)


def backend_for(lab, name: str) -> Backend:
    spec = lab.spec
    key = lab.key()
    key_text = f'key "{key.name}" {{\n\talgorithm {key.algorithm};\n\tsecret "{key.secret}";\n}};\n'
    if name == "bind":
        return Backend(name, spec.zone, [spec.bind_address, spec.knot_address],
                       {"provider": "rfc2136", "server": spec.bind_address, "tsig_key_file": "secrets/tsig.key"},
                       {"secrets/tsig.key": key_text})
    if name == "knot":
        return Backend(name, spec.zone2, [spec.knot_address, spec.bind_address],
                       {"provider": "rfc2136", "server": spec.knot_address, "tsig_key_file": "secrets/tsig.key"},
                       {"secrets/tsig.key": key_text})
    servers = [spec.powerdns_address, spec.bind_address, spec.knot_address]
    api_key = lab.powerdns_api_key()
    if name == "powerdns":
        return Backend(name, spec.zone3, servers,
                       {"provider": "powerdns", "api_url": spec.powerdns_api, "server_id": "localhost",
                        "api_key_file": "secrets/powerdns-api.key"},
                       {"secrets/powerdns-api.key": api_key + "\n"})
    return Backend(name, spec.zone3, servers,
                   {"provider": "lexicon", "lexicon_provider": "powerdns",
                    "lexicon_options": {"pdns_server": spec.powerdns_api, "pdns_server_id": "localhost"},
                    "credentials_file": "secrets/lexicon.yml"},
                   {"secrets/lexicon.yml": yaml.safe_dump({"auth_token": api_key})})


@pytest.fixture(params=BACKENDS)
def backend(request, lab) -> Backend:
    return backend_for(lab, request.param)


def tag() -> str:
    return secrets.token_hex(3)


def write_fleet(root: Path, lab, backend: Backend, domains: list[str], dns_extra: dict | None = None,
                name: str | None = None, server: str = "h1") -> Path:
    (root / "group_vars").mkdir(parents=True, exist_ok=True)
    files.private_dir(root / "secrets")
    for path, content in backend.secrets.items():
        files.write_private(root / path, content)
    files.write_atomic(root / "secrets/ca.pem", lab.pebble().ca_bundle.read_bytes())
    group_vars = {
        "cozy_fleet_name": name or f"t-{backend.name}-{root.name}-{tag()}",
        "cozy_zone": backend.zone,
        "cozy_subdomains": "nested",
        "cozy_dns": {**backend.dns, "ttl": 60, "propagation_timeout": 20, **(dns_extra or {})},
        "cozy_acme": {"directory": lab.spec.acme_directory, "email": f"admin@{backend.zone}",
                      "ca_bundle": "secrets/ca.pem"},
    }
    (root / "group_vars/all.yml").write_text(yaml.safe_dump(group_vars))
    hosts = {"all": {"children": {"cozy_servers": {"hosts": {
        "h1": {"ansible_host": "192.0.2.10"}, "h2": {"ansible_host": "192.0.2.11"},
    }}}}}
    (root / "hosts.yml").write_text(yaml.safe_dump(hosts))
    set_instances(root, domains, server)
    return root


def set_instances(root: Path, domains: list[str], server: str = "h1") -> None:
    (root / "instances.yml").write_text(yaml.safe_dump(
        {"instances": [{"domain": domain, "server": server} for domain in domains]}))


def inside(lab, function):
    return netns.inside(lab.spec.netns, function)


def cli(lab, fleet: Path, group: str, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
            sys.executable, "-m", "cozyops", group, *args, "--fleet", str(fleet)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)


def answers(lab, server: str, name: str, rtype: str) -> list[str]:
    def ask():
        response = dns.query.udp(dns.message.make_query(name, rtype), server, timeout=2)
        return sorted(rdata.to_text() for rrset in response.answer if rrset.rdtype == dns.rdatatype.from_text(rtype)
                      for rdata in rrset)

    return inside(lab, ask)


def everywhere(lab, backend: Backend, name: str, rtype: str, wanted: list[str], settle: float = 10.0) -> None:
    """Every authoritative server answers ``wanted`` (the secondaries given ``settle`` s)."""
    for server in backend.servers:
        end = time.monotonic() + settle
        while (got := answers(lab, server, name, rtype)) != wanted and time.monotonic() < end:
            time.sleep(0.1)
        assert got == wanted, f"{backend.name}: {server} answers {got} for {name} {rtype}, not {wanted}"


def write_by_hand(lab, backend: Backend, name: str, rtype: str, values: list[str]) -> None:
    """Records written by someone else (another tool, a person), not through cozyops."""
    if backend.dns["provider"] == "rfc2136":
        def send():
            update = lab.key().update(backend.zone)
            update.replace(name, 60, rtype, *values)
            assert dns.query.tcp(update, backend.servers[0], timeout=5).rcode() == dns.rcode.NOERROR
    else:
        def send():
            url = f"{lab.spec.powerdns_api}/api/v1/servers/localhost/zones/{backend.zone}."
            rrset = {"name": name, "type": rtype, "ttl": 60, "changetype": "REPLACE",
                     "records": [{"content": value, "disabled": False} for value in values]}
            answer = requests.patch(url, json={"rrsets": [rrset]}, headers={"X-API-Key": lab.powerdns_api_key()},
                                    timeout=5)
            assert answer.status_code == 204, answer.text
            requests.put(url + "/notify", headers={"X-API-Key": lab.powerdns_api_key()}, timeout=5)
    inside(lab, send)


def manager_for(fleet: Path) -> DnsManager:
    return DnsManager(inventory.load(fleet))


# -- the cases ------------------------------------------------------------------------------------


def test_apply_is_served_everywhere_checked_and_a_second_apply_plans_nothing(lab, tmp_path, backend):
    t = tag()
    alice, bob = f"alice{t}.{backend.zone}", f"bob{t}.{backend.zone}"
    fleet = write_fleet(tmp_path / "fleet", lab, backend, [alice, bob])
    first = cli(lab, fleet, "dns", "apply", "--yes")
    assert first.returncode == 0, first.stderr
    assert "served by every authoritative server" in first.stderr
    assert first.stderr.count(": serves serial") == len(backend.servers)  # the propagation check asked each
    for name in (f"{alice}.", f"*.{alice}.", f"drive.{bob}."):
        everywhere(lab, backend, name, "A", ["192.0.2.10"])
    assert answers(lab, backend.servers[0], f"_cozyops.alice{t}.{backend.zone}.", "TXT")[0].startswith(
        '"cozyops-owner=')
    again = cli(lab, fleet, "dns", "apply", "--yes")
    assert again.returncode == 0, again.stderr
    assert "no changes" in again.stderr
    check = cli(lab, fleet, "dns", "check")
    assert check.returncode == 0, check.stderr
    planned = json.loads(cli(lab, fleet, "dns", "plan", "--json").stdout)
    assert planned["changes"] == [] and planned["summary"]["owned"] == len(records.desired(inventory.load(fleet)))


def test_a_foreign_record_is_untouched(lab, tmp_path, backend):
    t = tag()
    alice, bob = f"alice{t}.{backend.zone}", f"bob{t}.{backend.zone}"
    write_by_hand(lab, backend, f"{alice}.", "A", ["198.51.100.7"])
    write_by_hand(lab, backend, f"www{t}.{backend.zone}.", "A", ["198.51.100.8"])
    fleet = write_fleet(tmp_path / "fleet", lab, backend, [alice, bob], server="h2")
    result = cli(lab, fleet, "dns", "apply", "--yes")
    assert result.returncode == 1
    assert f"conflict {alice}. A: exists without a cozyops mark" in result.stderr
    everywhere(lab, backend, f"{alice}.", "A", ["198.51.100.7"])  # not overwritten
    everywhere(lab, backend, f"{bob}.", "A", ["192.0.2.11"])  # the rest of the plan is applied
    set_instances(fleet, [])
    gone = cli(lab, fleet, "dns", "apply", "--yes")
    assert gone.returncode == 0, gone.stderr
    everywhere(lab, backend, f"{alice}.", "A", ["198.51.100.7"])  # never deleted: not the fleet's
    everywhere(lab, backend, f"www{t}.{backend.zone}.", "A", ["198.51.100.8"])
    everywhere(lab, backend, f"{bob}.", "A", [])


def test_another_fleets_records_and_marks_are_theirs(lab, tmp_path, backend):
    t = tag()
    dana, erin = f"dana{t}.{backend.zone}", f"erin{t}.{backend.zone}"
    one = write_fleet(tmp_path / "one", lab, backend, [dana], name=f"one-{t}", server="h2")
    two = write_fleet(tmp_path / "two", lab, backend, [dana, erin], name=f"two-{t}")
    assert cli(lab, one, "dns", "apply", "--yes").returncode == 0
    refused = cli(lab, two, "dns", "apply", "--yes")
    assert refused.returncode == 1
    assert f"belongs to fleet one-{t}" in refused.stderr
    everywhere(lab, backend, f"{dana}.", "A", ["192.0.2.11"])
    everywhere(lab, backend, f"{erin}.", "A", ["192.0.2.10"])  # its own instance is written
    set_instances(two, [])
    assert cli(lab, two, "dns", "apply", "--yes").returncode == 0
    everywhere(lab, backend, f"{dana}.", "A", ["192.0.2.11"])
    everywhere(lab, backend, f"{erin}.", "A", [])
    assert inside(lab, manager_for(one).plan).changes == []


def test_deleting_most_instances_is_refused_without_force(lab, tmp_path, backend):
    t = tag()
    domains = [f"u{i}x{t}.{backend.zone}" for i in range(4)]
    fleet = write_fleet(tmp_path / "fleet", lab, backend, domains, {"unsafe_changes": 2, "unsafe_percent": 20})
    assert cli(lab, fleet, "dns", "apply", "--yes").returncode == 0
    set_instances(fleet, domains[:1])
    refused = cli(lab, fleet, "dns", "apply", "--yes")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(f"cozyops: error: plan for zone {backend.zone}")
    everywhere(lab, backend, f"{domains[2]}.", "A", ["192.0.2.10"])  # nothing applied
    forced = cli(lab, fleet, "dns", "apply", "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    everywhere(lab, backend, f"{domains[2]}.", "A", [])
    everywhere(lab, backend, f"{domains[0]}.", "A", ["192.0.2.10"])


def test_the_checksum_applies_only_the_reviewed_plan(lab, tmp_path, backend):
    t = tag()
    domain = f"f{t}.{backend.zone}"
    fleet = write_fleet(tmp_path / "fleet", lab, backend, [domain], server="h2")
    reviewed = json.loads(cli(lab, fleet, "dns", "plan", "--json").stdout)["checksum"]
    set_instances(fleet, [domain], server="h1")  # the fleet changed since the review
    stale = cli(lab, fleet, "dns", "apply", "--yes", "--checksum", reviewed)
    assert stale.returncode == 1 and "its checksum is now" in stale.stderr
    everywhere(lab, backend, f"{domain}.", "A", [])
    current = json.loads(cli(lab, fleet, "dns", "plan", "--json").stdout)["checksum"]
    applied = cli(lab, fleet, "dns", "apply", "--yes", "--checksum", current)
    assert applied.returncode == 0, applied.stderr
    everywhere(lab, backend, f"{domain}.", "A", ["192.0.2.10"])


def test_challenge_txt_values_go_beside_the_others_and_only_ours_leave(lab, tmp_path, backend):
    name = f"_acme-challenge.i{tag()}.{backend.zone}."
    write_by_hand(lab, backend, name, "TXT", ['"someone-elses"'])
    provider = manager_for(write_fleet(tmp_path / "fleet", lab, backend, [])).provider()
    inside(lab, lambda: (provider.present_txt(name, "apex-token"), provider.present_txt(name, "wildcard-token")))
    everywhere(lab, backend, name, "TXT", ['"apex-token"', '"someone-elses"', '"wildcard-token"'])
    inside(lab, lambda: provider.change_txts(deletes=[(name, "apex-token"), (name, "wildcard-token")]))
    everywhere(lab, backend, name, "TXT", ['"someone-elses"'])


def test_a_batch_whose_records_changed_is_skipped_and_the_next_apply_converges(lab, tmp_path, backend):
    t = tag()
    domains = [f"j{i}x{t}.{backend.zone}" for i in range(3)]
    fleet = write_fleet(tmp_path / "fleet", lab, backend, domains, {"batch_size": 2, "unsafe_changes": 100})
    manager = manager_for(fleet)
    inside(lab, lambda: manager.apply(manager.plan()))
    set_instances(fleet, domains, server="h2")
    manager = manager_for(fleet)
    plan = inside(lab, manager.plan)
    write_by_hand(lab, backend, f"{domains[1]}.", "A", ["198.51.100.9"])  # between the plan and the apply
    result = inside(lab, lambda: manager.apply(plan))
    (failed,) = result.failed
    assert "the zone changed since it was read" in failed.error
    assert {change.group for change in failed.changes} == {domains[1].removesuffix(f".{backend.zone}")}
    everywhere(lab, backend, f"{domains[1]}.", "A", ["198.51.100.9"])  # that batch applied nothing
    everywhere(lab, backend, f"*.{domains[1]}.", "A", ["192.0.2.10"])
    everywhere(lab, backend, f"{domains[2]}.", "A", ["192.0.2.11"])  # the other batches did
    again = manager_for(fleet)
    inside(lab, lambda: again.apply(again.plan()))
    everywhere(lab, backend, f"{domains[1]}.", "A", ["192.0.2.11"])
    assert inside(lab, manager_for(fleet).plan).changes == []


def test_wildcard_certificates_through_dns01(lab, tmp_path, backend):
    domain = f"w{tag()}.{backend.zone}"
    fleet = write_fleet(tmp_path / "fleet", lab, backend, [domain])
    assert cli(lab, fleet, "dns", "apply", "--yes").returncode == 0
    issued = cli(lab, fleet, "cert", "issue", "--json")
    assert issued.returncode == 0, issued.stderr
    assert list(json.loads(issued.stdout)["issued"]) == [domain]
    manager = CertManager(inventory.load(fleet))
    try:
        from cryptography import x509

        leaf = x509.load_pem_x509_certificate(manager.store.fullchain(domain).read_bytes())
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(names.get_values_for_type(x509.DNSName)) == sorted([domain, f"*.{domain}"])
    finally:
        manager.close()
    everywhere(lab, backend, f"_acme-challenge.{domain}.", "TXT", [])  # cleaned up
    for output in (issued.stdout, issued.stderr):
        assert lab.key().secret not in output and lab.powerdns_api_key() not in output


def test_a_wrong_credential_is_one_line_without_the_secret(lab, tmp_path, backend):
    fleet = write_fleet(tmp_path / "fleet", lab, backend, [f"k{tag()}.{backend.zone}"])
    wrong = "wrong-" + secrets.token_hex(8)
    for path in backend.secrets:
        if path.endswith("tsig.key"):
            tsig.write(fleet / path, tsig.generate(lab.spec.key_name))
        elif path.endswith(".yml"):
            files.write_private(fleet / path, yaml.safe_dump({"auth_token": wrong}))
        else:
            files.write_private(fleet / path, wrong + "\n")
    result = cli(lab, fleet, "dns", "apply", "--yes")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cozyops: error: zone ") and backend.zone in last
    assert wrong not in result.stderr and lab.powerdns_api_key() not in result.stderr
    with pytest.raises(DnsError):
        inside(lab, manager_for(fleet).plan)
