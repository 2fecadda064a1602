"""The lab's services, for real: BIND, Knot and PowerDNS serving each other's zones, TSIG, pebble."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.update
import pytest
from cryptography import x509

from cozyops.lab import demo, netns, probe, procs
from cozyops.lab.lab import Lab


def cozyops(lab: Lab, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cozyops", *args[:2], "--dir", str(lab.dir), *args[2:]],
        capture_output=True, text=True, timeout=timeout, **kwargs,
    )


def test_status_json_reports_dns_and_acme_ok(lab):
    result = cozyops(lab, "lab", "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["ok"] and status["dns"]["ok"] and status["acme"]["ok"]
    assert status["zones"] == [lab.spec.zone, lab.spec.zone2, lab.spec.zone3]
    assert {(s["name"], s["address"], s["port"]) for s in status["dns"]["servers"]} == {
        ("bind", lab.spec.bind_address, 53),
        ("knot", lab.spec.knot_address, 53),
        ("powerdns", lab.spec.powerdns_address, 53),
    }
    powerdns = next(s for s in status["dns"]["servers"] if s["name"] == "powerdns")
    assert powerdns["api_url"] == f"http://{lab.spec.powerdns_address}:8081" and powerdns["ok"]
    assert list(powerdns["zones"]) == [lab.spec.zone3]
    assert status["fleets"] == {"powerdns": str(lab.dir / "fleet-powerdns"), "lexicon": str(lab.dir / "fleet-lexicon")}
    # The session's lab has two hosts, or more when a module that shares it (test_instances,
    # test_stack) asked for a third before this one runs.
    count = len(status["hosts"])
    assert count >= 2
    assert [(h["name"], h["address"], h["ok"]) for h in status["hosts"]] == [
        (f"h{n}", lab.spec.host(n).address, True) for n in range(1, count + 1)
    ]
    # pdns_server, named, knotd, pebble, the apt proxy and one init per host
    assert len(status["pids"]) == 5 + count and all(procs.pid_alive(pid) for pid in status["pids"])
    assert status["namespaces"] == [lab.spec.netns, *(lab.spec.host(n).netns for n in range(1, count + 1))]
    assert os.path.isfile(status["acme"]["ca_bundle"]) and os.path.isfile(status["acme"]["issuing_root"])


@pytest.mark.parametrize("server", ["bind", "knot"])
@pytest.mark.parametrize("which_zone", [0, 1])
def test_dig_through_lab_exec_answers_for_both_zones(lab, server, which_zone):
    address = lab.spec.bind_address if server == "bind" else lab.spec.knot_address
    zone = lab.spec.zones[which_zone]
    result = cozyops(lab, "lab", "exec", "--", "dig", "+norec", f"@{address}", "SOA", zone)
    assert result.returncode == 0, result.stderr
    assert "status: NOERROR" in result.stdout
    assert " aa" in result.stdout.split("flags:")[1].split(";")[0]  # authoritative
    assert f"hostmaster.{zone}." in result.stdout


def test_zones_have_ns_and_glue_for_their_servers(lab):
    def lookup():
        answers = {}
        for zone in lab.spec.zones:
            ns = dns.query.udp(dns.message.make_query(zone, "NS"), lab.spec.knot_address, timeout=2)
            answers[zone] = sorted(str(r.target) for rrset in ns.answer for r in rrset)
            for name in answers[zone]:
                a = dns.query.udp(dns.message.make_query(name, "A"), lab.spec.bind_address, timeout=2)
                answers[name] = [r.address for rrset in a.answer for r in rrset]
        return answers

    answers = netns.inside(lab.spec.netns, lookup)
    for zone in lab.spec.zones[:2]:
        assert answers[zone] == [f"ns1.{zone}.", f"ns2.{zone}."]
        addresses = {answers[f"ns1.{zone}."][0], answers[f"ns2.{zone}."][0]}
        assert addresses == {lab.spec.bind_address, lab.spec.knot_address}
    zone3 = lab.spec.zone3
    assert answers[zone3] == [f"ns1.{zone3}.", f"ns2.{zone3}.", f"ns3.{zone3}."]
    assert [answers[f"ns{n}.{zone3}."][0] for n in (1, 2, 3)] == [
        lab.spec.powerdns_address, lab.spec.bind_address, lab.spec.knot_address]


@pytest.mark.parametrize("which_zone", [0, 1])
def test_an_update_through_the_primary_is_served_by_the_secondary(lab, which_zone):
    detail = netns.inside(lab.spec.netns, lambda: demo.update_propagates(lab, lab.key(), lab.spec.zones[which_zone]))
    assert "served by" in detail


def test_a_write_through_powerdns_api_is_served_by_bind_and_knot(lab):
    """PowerDNS's API changes the zone; its signed NOTIFY brings BIND and Knot (its secondaries) along."""
    detail = netns.inside(lab.spec.netns, lambda: demo.api_write_propagates(lab))
    assert "served by BIND and Knot after" in detail
    for address in (lab.spec.powerdns_address, lab.spec.bind_address, lab.spec.knot_address):  # cleaned up
        end = time.monotonic() + 10
        while netns.inside(lab.spec.netns, lambda a=address: demo._txt(a, f"_cozyops-demo.{lab.spec.zone3}.")):
            assert time.monotonic() < end, f"{address} still serves the demo's record"
            time.sleep(0.1)


def test_unsigned_updates_and_transfers_are_refused(lab):
    netns.inside(lab.spec.netns, lambda: demo.unsigned_refused(lab))


def test_an_update_with_a_wrong_key_is_refused(lab):
    from cozyops.dns import tsig

    wrong = tsig.generate(lab.spec.key_name)  # the right name, another secret

    def send():
        update = wrong.update(lab.spec.zone)
        update.add(f"x.{lab.spec.zone}.", 60, "A", "192.0.2.1")
        return dns.query.tcp(update, lab.spec.bind_address, timeout=5)

    with pytest.raises(dns.tsig.PeerBadSignature):
        netns.inside(lab.spec.netns, send)


def test_acme_directory_and_issuing_root(lab):
    pebble = lab.pebble()
    directory = netns.inside(
        lab.spec.netns, lambda: probe.acme_directory(lab.spec.acme_directory, str(pebble.ca_bundle))
    )
    assert directory["newOrder"].startswith(f"https://{lab.spec.gateway}:14000/")
    root = x509.load_pem_x509_certificate(pebble.issuing_root.read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "Pebble" in root.subject.rfc4514_string()


def test_fleet_directory_points_at_the_lab(lab):
    import yaml

    group_vars = yaml.safe_load((lab.fleet_dir / "group_vars/all.yml").read_text())
    assert group_vars["cozy_zone"] == lab.spec.zone
    assert group_vars["cozy_dns"]["server"] == lab.spec.bind_address
    assert (lab.fleet_dir / group_vars["cozy_dns"]["tsig_key_file"]).stat().st_mode & 0o077 == 0
    assert (lab.fleet_dir / "secrets").stat().st_mode & 0o077 == 0
    assert (lab.fleet_dir / group_vars["cozy_acme"]["ca_bundle"]).read_bytes() == lab.pebble().ca_bundle.read_bytes()


def test_up_on_a_running_lab_restarts_nothing_and_keeps_the_zones(lab):
    key = lab.key()
    name = f"kept.{lab.spec.zone}."

    def add():
        update = key.update(lab.spec.zone)
        update.add(name, 60, "A", "192.0.2.7")
        assert dns.query.tcp(update, lab.spec.bind_address, timeout=5).rcode() == dns.rcode.NOERROR

    netns.inside(lab.spec.netns, add)
    before = lab.state().processes
    result = cozyops(lab, "lab", "up", "--json")
    assert result.returncode == 0, result.stderr
    assert lab.state().processes == before
    served = netns.inside(
        lab.spec.netns,
        lambda: dns.query.udp(dns.message.make_query(name, "A"), lab.spec.bind_address, timeout=2),
    )
    assert [r.address for rrset in served.answer for r in rrset] == ["192.0.2.7"]


def test_up_refuses_to_change_the_zone_of_a_running_lab(lab):
    result = cozyops(lab, "lab", "up", "--zone", "other.test")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"cozyops: error: lab {lab.spec.id}: is up with zone")


def test_up_restarts_only_what_died(lab):
    before = {proc.name: proc for proc in lab.state().processes}
    procs.stop(before["knotd"])
    result = cozyops(lab, "lab", "up")
    assert result.returncode == 0, result.stderr
    after = {proc.name: proc for proc in lab.state().processes}
    assert after["named"] == before["named"] and after["pebble"] == before["pebble"]
    assert after["knotd"].pid != before["knotd"].pid and procs.alive(after["knotd"])
    assert lab.status()["ok"]


def test_lab_exec_passes_everything_through(lab, tmp_path):
    script = "import os,sys; print(os.getcwd()); print(os.environ['MARK']); print(os.environ['COZYOPS_FLEET']); " \
             "print(sys.stdin.read()); sys.exit(7)"
    result = cozyops(lab, "lab", "exec", "--", sys.executable, "-c", script,
                     input="from stdin", cwd=tmp_path, env={**os.environ, "MARK": "m1"})
    assert result.returncode == 7
    assert result.stdout.splitlines() == [str(tmp_path), "m1", str(lab.fleet_dir), "from stdin"]
    ours = cozyops(lab, "lab", "exec", "--", "sh", "-c", "echo $COZYOPS_FLEET",
                   env={**os.environ, "COZYOPS_FLEET": "/my/fleet"})
    assert ours.stdout.strip() == "/my/fleet"
    inside = cozyops(lab, "lab", "exec", "--", "ip", "-o", "-4", "addr", "show", "br0")
    assert lab.spec.bind_address in inside.stdout


@pytest.mark.timeout(2700)
def test_demo_passes_on_the_lab(lab):
    # the demo provisions the hosts with Ansible (`lab up --with-stack`) when they lack the stack,
    # and one more, fresh, host through `cozyops install`
    result = cozyops(lab, "lab", "demo", "--json", timeout=2600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and all(step["ok"] for step in report["steps"])
    titles = [step["title"] for step in report["steps"]]
    assert "SSH to h1 with a verified host key" in titles
    details = {step["title"]: step["detail"] for step in report["steps"]}
    applied = details["a small fleet through cozyops plan, then cozyops apply --checksum (instances, DNS, "
                      "certificates, sites)"]
    assert re.search(r"^plan [0-9a-f]{16}: (.*instance \+\d.*; applied: \d+ done, 0 failed|nothing to do)", applied), \
        applied
    assert "nothing to do" in details["a second cozyops plan has nothing to do"]
    fleet_https = details[f"HTTPS on the app subdomains of alice.{lab.spec.zone} (the fleet's)"]
    assert f"https://APP.alice.{lab.spec.zone}/ through nginx, verified against pebble's root: drive " in fleet_https
    installed = next(step for step in report["steps"] if step["title"].startswith("cozyops install demo."))
    assert "onboarding link printed" in installed["detail"]
    https = next(step for step in report["steps"] if step["title"].startswith("HTTPS on the app subdomains"))
    assert "through nginx, verified against pebble's root: home " in https["detail"]


def test_another_directory_cannot_take_over_a_running_labs_namespace(lab, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cozyops", "lab", "up", "--id", lab.spec.id, "--dir", str(tmp_path / "other")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"cozyops: error: namespace {lab.spec.netns}: exists but is not recorded"
    )
    assert lab.status()["ok"]
