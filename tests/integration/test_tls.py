"""Certificates against the lab's pebble and BIND: nested and flat wildcards, chains verified
against pebble's root, renewal, an unpublishable challenge, the CLI."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store

from cozyops import files, inventory
from cozyops.dns import tsig
from cozyops.lab import netns
from cozyops.tls import policy
from cozyops.tls.manager import CertManager
from cozyops.tls.store import split_chain

pytestmark = pytest.mark.lab


def tag() -> str:
    return secrets.token_hex(3)


def write_fleet(root: Path, lab, instances: list[str], mode: str = "nested", zone: str | None = None,
                acme: dict | None = None) -> Path:
    zone = zone or lab.spec.zone
    (root / "group_vars").mkdir(parents=True, exist_ok=True)
    tsig.write(root / "secrets/tsig.key", lab.key())
    files.private_dir(root / "secrets")
    files.write_atomic(root / "secrets/ca.pem", lab.pebble().ca_bundle.read_bytes())
    server = lab.spec.bind_address if zone == lab.spec.zone else lab.spec.knot_address
    group_vars = {
        "cozy_fleet_name": f"t-{root.name}",
        "cozy_zone": zone,
        "cozy_subdomains": mode,
        "cozy_dns": {"provider": "rfc2136", "server": server, "tsig_key_file": "secrets/tsig.key", "ttl": 60,
                     "propagation_timeout": 20},
        "cozy_acme": {"directory": lab.spec.acme_directory, "email": f"admin@{zone}", "ca_bundle": "secrets/ca.pem",
                      **(acme or {})},
    }
    (root / "group_vars/all.yml").write_text(yaml.safe_dump(group_vars))
    hosts = {"all": {"children": {"cozy_servers": {"hosts": {"h1": {"ansible_host": lab.spec.host(1).address}}}}}}
    (root / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (root / "instances.yml").write_text(yaml.safe_dump(
        {"instances": [{"domain": domain, "server": "h1"} for domain in instances]}))
    return root


def inside(lab, function):
    return netns.inside(lab.spec.netns, function)


def verify_chain(lab, fullchain: Path, domains: tuple[str, ...], host: str) -> x509.Certificate:
    pems = split_chain(fullchain.read_text())
    leaf = x509.load_pem_x509_certificate(pems[0].encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(domains)
    root = x509.load_pem_x509_certificate(lab.pebble().issuing_root.read_bytes())
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(DNSName(host))
    chain = verifier.verify(leaf, [x509.load_pem_x509_certificate(pem.encode()) for pem in pems[1:]])
    assert "Pebble Root CA" in chain[-1].subject.rfc4514_string()
    return leaf


def txt_values(lab, name: str, settle: float = 10.0) -> list[str]:
    """The TXT values at ``name`` on both servers (the secondary given ``settle`` s to catch up)."""
    import dns.message
    import dns.query

    def ask():
        end = time.monotonic() + settle
        while True:
            values = []
            for server in (lab.spec.bind_address, lab.spec.knot_address):
                response = dns.query.udp(dns.message.make_query(name, "TXT"), server, timeout=2)
                values += [rdata.to_text() for rrset in response.answer for rdata in rrset]
            if not values or time.monotonic() > end:
                return values
            time.sleep(0.1)

    return inside(lab, ask)


def test_nested_certificates_issued_verified_and_renewed_when_due(lab, tmp_path):
    t = tag()
    domains = [f"n{i}{t}.{lab.spec.zone}" for i in range(3)]
    fleet = inventory.load(write_fleet(tmp_path / "fleet", lab, domains))
    manager = CertManager(fleet)

    def first():
        plan = manager.plan()
        assert [spec.name for spec, renewal in plan.todo] == sorted(domains)
        return manager.execute(plan.todo)

    result = inside(lab, first)
    assert not result.failed and sorted(result.issued) == sorted(domains)
    keys = set()
    for domain in domains:
        store = manager.store
        verify_chain(lab, store.fullchain(domain), (domain, f"*.{domain}"), f"drive.{domain}")
        assert store.privkey(domain).stat().st_mode & 0o777 == 0o600
        keys.add(store.privkey(domain).read_bytes())
        assert txt_values(lab, f"_acme-challenge.{domain}") == []
    assert len(keys) == 3  # a key per certificate

    # nothing due: renew does nothing; one made due: renewed, with a new key and serial
    before = manager.store.records()
    assert inside(lab, lambda: manager.plan(renew_only=True)).todo == []
    manager.store.expire_now(domains[1])
    plan = inside(lab, lambda: manager.plan(renew_only=True))
    assert [(spec.name, renewal) for spec, renewal in plan.todo] == [(domains[1], True)]
    result = inside(lab, lambda: manager.execute(plan.todo))
    assert list(result.issued) == [domains[1]] and not result.failed
    after = manager.store.records()
    assert after[domains[1]].serial != before[domains[1]].serial
    assert after[domains[0]].serial == before[domains[0]].serial
    assert manager.store.privkey(domains[1]).read_bytes() not in keys
    manager.close()


def test_flat_zone_certificate_in_knot_zone(lab, tmp_path):
    t = tag()
    zone = lab.spec.zone2
    fleet = inventory.load(write_fleet(tmp_path / "fleet", lab, [f"f{t}.{zone}", f"g{t}.{zone}"], "flat", zone))
    manager = CertManager(fleet)
    plan = inside(lab, manager.plan)
    assert [spec.domains for spec, _ in plan.todo] == [(zone, f"*.{zone}")]
    result = inside(lab, lambda: manager.execute(plan.todo))
    assert not result.failed, result.failed
    verify_chain(lab, manager.store.fullchain(zone), (zone, f"*.{zone}"), f"f{t}-drive.{zone}")
    verify_chain(lab, manager.store.fullchain(zone), (zone, f"*.{zone}"), zone)
    manager.close()


def test_unpublishable_challenge_one_error_naming_the_domain_no_txt_left(lab, tmp_path):
    t = tag()
    good = f"ok{t}.{lab.spec.zone}"
    fleet = inventory.load(write_fleet(tmp_path / "fleet", lab, [good]))
    manager = CertManager(fleet)
    bad = policy.CertSpec(f"x{t}.elsewhere.test", policy.order_names(f"x{t}.elsewhere.test"))
    ok = policy.spec_for(fleet, good)
    result = inside(lab, lambda: manager.execute([(bad, False), (ok, False)]))
    assert list(result.issued) == [good]
    assert list(result.failed) == [bad.name]
    assert f"_acme-challenge.{bad.name}." in result.failed[bad.name]
    assert "no zone this fleet may update" in result.failed[bad.name]
    assert txt_values(lab, f"_acme-challenge.{good}") == []
    manager.close()


def test_validation_failure_names_each_failed_name_and_the_reason(lab, tmp_path):
    """A CNAME the CA follows to a name whose TXT is not ours: the CA's reason for each name."""
    # A delegated challenge zone that the CA cannot see: the CNAME points into zone2, where the
    # values are written, but zone2's record is removed before the CA looks.
    t = tag()
    domain = f"v{t}.{lab.spec.zone}"
    fleet = inventory.load(write_fleet(tmp_path / "fleet", lab, [domain]))
    manager = CertManager(fleet)
    solver = inside(lab, manager.solver)
    original = solver.wait

    def sabotage(published, deadline=None):
        solver.cleanup(published)  # the values vanish before the CA asks
        return original(published, deadline)

    solver.wait = sabotage
    spec = policy.spec_for(fleet, domain)
    result = inside(lab, lambda: manager.execute([(spec, False)]))
    assert not result.issued
    reason = result.failed[domain]
    assert domain in reason and f"*.{domain}" in reason and "unauthorized" in reason, reason
    manager.close()


def cli(lab, fleet: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
            sys.executable, "-m", "cozyops", "cert", *args, "--fleet", str(fleet)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_cli_issue_ls_renew(lab, tmp_path):
    t = tag()
    domains = [f"c{i}{t}.{lab.spec.zone}" for i in range(2)]
    fleet = write_fleet(tmp_path / "fleet", lab, domains)
    done = cli(lab, fleet, "issue", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(report["issued"]) == sorted(domains) and report["failed"] == {}
    listing = cli(lab, fleet, "ls", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = {row["name"]: row for row in json.loads(listing.stdout)}
    for domain in domains:
        row = rows[domain]
        assert row["names"] == [domain, f"*.{domain}"] and row["status"] == "valid"
        assert Path(row["fullchain"]).is_absolute() and Path(row["fullchain"]).is_file()
        assert row["days_left"] > 30 and row["not_after"] and row["next_renewal"]
    again = cli(lab, fleet, "renew", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["renewed"] == []
    bad = cli(lab, fleet, "issue", "nosuch.example.org")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "nosuch.example.org" in bad.stderr
    for output in (done.stdout + done.stderr, listing.stdout, again.stdout + again.stderr):
        assert "PRIVATE KEY" not in output and lab.key().secret not in output
