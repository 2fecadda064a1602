"""DNS for a fleet against the lab's real servers: BIND (primary of the first zone) and Knot
(primary of the second), each the other's secondary. Provider tests run against both."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from cozyops import inventory, state
from cozyops.dns import propagation, providers, records, tsig
from cozyops.dns.manager import DnsManager
from cozyops.errors import DnsError
from cozyops.lab import netns

pytestmark = pytest.mark.lab

PRIMARIES = ["bind", "knot"]


def addresses(lab, primary: str) -> tuple[str, str, str]:
    """(zone, primary's address, secondary's address) of the zone ``primary`` is primary of."""
    if primary == "bind":
        return lab.spec.zone, lab.spec.bind_address, lab.spec.knot_address
    return lab.spec.zone2, lab.spec.knot_address, lab.spec.bind_address


def tag() -> str:
    return secrets.token_hex(3)


def write_fleet(root: Path, lab, primary: str, instances: list[dict], mode: str = "nested", key=None,
                dns_extra: dict | None = None, name: str | None = None) -> Path:
    zone, server, _ = addresses(lab, primary)
    (root / "group_vars").mkdir(parents=True, exist_ok=True)
    tsig.write(root / "secrets/tsig.key", key or lab.key())
    (root / "secrets").chmod(0o700)
    group_vars = {
        "cozy_fleet_name": name or f"t-{root.parent.name[-40:]}-{root.name}",
        "cozy_zone": zone,
        "cozy_subdomains": mode,
        "cozy_dns": {"provider": "rfc2136", "server": server, "tsig_key_file": "secrets/tsig.key", "ttl": 60,
                     "propagation_timeout": 20, **(dns_extra or {})},
        "cozy_acme": {"directory": "letsencrypt"},
    }
    (root / "group_vars/all.yml").write_text(yaml.safe_dump(group_vars))
    hosts = {"all": {"children": {"cozy_servers": {"hosts": {
        "h1": {"ansible_host": "192.0.2.10", "cozy_public_ipv6": "2001:db8::10"},
        "h2": {"ansible_host": "192.0.2.11"},
    }}}}}
    (root / "hosts.yml").write_text(yaml.safe_dump(hosts))
    set_instances(root, instances)
    return root


def set_instances(root: Path, instances: list[dict]) -> None:
    (root / "instances.yml").write_text(yaml.safe_dump({"instances": instances}))


def cli(lab, fleet: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`cozyops lab exec -- cozyops dns ARGS --fleet FLEET`, as an operator runs it."""
    argv = [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
            sys.executable, "-m", "cozyops", "dns", *args, "--fleet", str(fleet)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def dig(lab, server: str, queries: list[tuple[str, str]]) -> set[tuple[str, str, str]]:
    """What ``server`` answers, by dig (one process for all the queries): (name, type, value)."""
    argv = [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
            "dig", "+noall", "+answer", "+norec", f"@{server}"]
    for name, rtype in queries:
        argv += [name, rtype]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answers = set()
    for line in result.stdout.splitlines():
        name, _ttl, _class, rtype, value = line.split(None, 4)
        answers.add((name.lower(), rtype, value))
    return answers


def expected_answers(fleet_dir: Path) -> set[tuple[str, str, str]]:
    fleet = inventory.load(fleet_dir)
    return {(records.fqdn(r.name, fleet.zone), r.rtype, value) for r in records.desired(fleet) for value in r.values}


def served_everywhere(lab, fleet_dir: Path, primary: str, deadline: float = 10.0) -> None:
    """dig at both servers shows every record of the fleet (the secondary within ``deadline``)."""
    zone, first, second = addresses(lab, primary)
    wanted = expected_answers(fleet_dir)
    queries = sorted({(name, rtype) for name, rtype, _ in wanted})
    for server in (first, second):
        end = time.monotonic() + deadline
        while (got := dig(lab, server, queries)) != wanted and time.monotonic() < end:
            time.sleep(0.2)
        assert got == wanted, f"{server}: missing {wanted - got}, unexpected {got - wanted}"


def inside(lab, function):
    return netns.inside(lab.spec.netns, function)


def raw_update(lab, primary: str, build) -> int:
    """A signed UPDATE made by hand (another tool, or a person), for foreign records."""
    zone, server, _ = addresses(lab, primary)

    def send():
        update = lab.key().update(zone)
        build(update, zone)
        return dns.query.tcp(update, server, timeout=5).rcode()

    return inside(lab, send)


def query(lab, server: str, name: str, rtype: str) -> list[str]:
    def ask():
        response = dns.query.udp(dns.message.make_query(name, rtype), server, timeout=2)
        return sorted(rdata.to_text() for rrset in response.answer if rrset.rdtype == dns.rdatatype.from_text(rtype)
                      for rdata in rrset)

    return inside(lab, ask)


# -- the CLI, end to end ------------------------------------------------------------------------


@pytest.mark.parametrize("primary", PRIMARIES)
@pytest.mark.parametrize("mode", ["nested", "flat"])
def test_apply_is_served_by_both_servers_and_a_second_apply_changes_nothing(lab, tmp_path, primary, mode):
    t = tag()
    zone = addresses(lab, primary)[0]
    instances = [
        {"domain": f"alice{t}.{zone}", "server": "h1", "apps": ["drive", "photos"]},
        {"domain": f"bob{t}.{zone}", "server": "h2", "apps": ["drive"]},
        {"domain": f"carol{t}.{zone}", "server": "h2", "apps": ["notes"]},
    ]
    fleet = write_fleet(tmp_path / "fleet", lab, primary, instances, mode)
    first = cli(lab, fleet, "apply", "--yes")
    assert first.returncode == 0, first.stderr
    assert "served by every authoritative server" in first.stderr
    served_everywhere(lab, fleet, primary)
    if mode == "flat":  # two servers: explicit app names, no wildcard
        names = {name for name, _, _ in expected_answers(fleet)}
        assert f"alice{t}-photos.{zone}." in names and f"bob{t}-drive.{zone}." in names
    again = cli(lab, fleet, "apply", "--yes")
    assert again.returncode == 0, again.stderr
    assert "no changes" in again.stderr
    planned = cli(lab, fleet, "plan", "--json")
    assert planned.returncode == 0, planned.stderr
    data = json.loads(planned.stdout)
    assert data["changes"] == [] and data["summary"]["owned"] == len(records.desired(inventory.load(fleet)))


def test_a_foreign_record_is_untouched(lab, tmp_path):
    t, primary = tag(), "bind"
    zone, server, _ = addresses(lab, primary)
    alice, bob = f"alice{t}.{zone}", f"bob{t}.{zone}"
    rcode = raw_update(lab, primary, lambda u, z: (u.add(f"{alice}.", 60, "A", "198.51.100.7"),
                                                   u.add(f"www{t}.{z}.", 60, "A", "198.51.100.8")))
    assert rcode == dns.rcode.NOERROR
    fleet = write_fleet(tmp_path / "fleet", lab, primary,
                        [{"domain": alice, "server": "h2"}, {"domain": bob, "server": "h2"}])
    result = cli(lab, fleet, "apply", "--yes")
    assert result.returncode == 1
    assert f"conflict {alice}. A: exists without a cozyops mark" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"cozyops: error: dns apply for zone {zone}: ")
    assert query(lab, server, f"{alice}.", "A") == ["198.51.100.7"]  # not overwritten
    assert query(lab, server, f"*.{alice}.", "A") == ["192.0.2.11"]  # the rest of the plan is applied
    assert query(lab, server, f"{bob}.", "A") == ["192.0.2.11"]
    set_instances(fleet, [])
    gone = cli(lab, fleet, "apply", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert query(lab, server, f"{alice}.", "A") == ["198.51.100.7"]  # never deleted: not the fleet's
    assert query(lab, server, f"www{t}.{zone}.", "A") == ["198.51.100.8"]
    assert query(lab, server, f"{bob}.", "A") == []


def test_another_fleets_records_are_theirs(lab, tmp_path):
    t, primary = tag(), "knot"
    zone, server, _ = addresses(lab, primary)
    shared = [{"domain": f"dana{t}.{zone}", "server": "h2"}]
    one = write_fleet(tmp_path / "one", lab, primary, shared, name=f"one-{t}")
    two = write_fleet(tmp_path / "two", lab, primary, [{"domain": f"dana{t}.{zone}", "server": "h1"}],
                      name=f"two-{t}")
    assert cli(lab, one, "apply", "--yes").returncode == 0
    refused = cli(lab, two, "apply", "--yes")
    assert refused.returncode == 1
    assert f"belongs to fleet one-{t}" in refused.stderr
    assert query(lab, server, f"dana{t}.{zone}.", "A") == ["192.0.2.11"]


def test_deleting_most_instances_is_refused_without_force(lab, tmp_path):
    t, primary = tag(), "bind"
    zone, server, _ = addresses(lab, primary)
    instances = [{"domain": f"u{i}x{t}.{zone}", "server": "h2"} for i in range(12)]
    fleet = write_fleet(tmp_path / "fleet", lab, primary, instances)
    assert cli(lab, fleet, "apply", "--yes").returncode == 0
    set_instances(fleet, instances[:2])
    refused = cli(lab, fleet, "apply", "--yes")
    assert refused.returncode == 2, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cozyops: error: plan for zone {zone}") and "deletes or updates 30 of the 36" in last
    assert query(lab, server, f"u5x{t}.{zone}.", "A") == ["192.0.2.11"]  # nothing applied
    forced = cli(lab, fleet, "apply", "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert query(lab, server, f"u5x{t}.{zone}.", "A") == []
    assert query(lab, server, f"u1x{t}.{zone}.", "A") == ["192.0.2.11"]


def test_thresholds_come_from_the_fleet(lab, tmp_path):
    t, primary = tag(), "knot"
    zone = addresses(lab, primary)[0]
    instances = [{"domain": f"v{i}x{t}.{zone}", "server": "h2"} for i in range(3)]
    fleet = write_fleet(tmp_path / "fleet", lab, primary, instances, dns_extra={"unsafe_changes": 1,
                                                                                 "unsafe_percent": 10})
    assert cli(lab, fleet, "apply", "--yes").returncode == 0
    set_instances(fleet, instances[:2])
    assert cli(lab, fleet, "apply", "--yes").returncode == 2


@pytest.mark.parametrize("primary", PRIMARIES)
@pytest.mark.parametrize(("wrong", "expected"), [("secret", "BADSIG"), ("name", "BADKEY")])
def test_a_bad_tsig_key_is_one_clear_line(lab, tmp_path, primary, wrong, expected):
    zone, server, _ = addresses(lab, primary)
    key = tsig.generate(lab.spec.key_name) if wrong == "secret" else tsig.generate("nobody-knows-me")
    fleet = write_fleet(tmp_path / "fleet", lab, primary, [{"domain": f"e{tag()}.{zone}", "server": "h2"}], key=key)
    for command in (("plan",), ("apply", "--yes")):
        result = cli(lab, fleet, *command)
        assert result.returncode == 1
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"cozyops: error: zone {zone} at {server} (TSIG key {key.name}): {expected}")
        assert key.secret not in result.stderr


def test_apply_checksum_applies_only_the_reviewed_plan(lab, tmp_path):
    t, primary = tag(), "bind"
    zone, server, _ = addresses(lab, primary)
    fleet = write_fleet(tmp_path / "fleet", lab, primary, [{"domain": f"f{t}.{zone}", "server": "h2"}])
    reviewed = json.loads(cli(lab, fleet, "plan", "--json").stdout)["checksum"]
    set_instances(fleet, [{"domain": f"f{t}.{zone}", "server": "h1"}])
    stale = cli(lab, fleet, "apply", "--yes", "--checksum", reviewed)
    assert stale.returncode == 1
    assert "its checksum is now" in stale.stderr and reviewed in stale.stderr
    assert query(lab, server, f"f{t}.{zone}.", "A") == []
    current = json.loads(cli(lab, fleet, "plan", "--json").stdout)["checksum"]
    applied = cli(lab, fleet, "apply", "--yes", "--checksum", current, "--json")
    assert applied.returncode == 0, applied.stderr
    report = json.loads(applied.stdout)
    assert report["checksum"] == current and report["propagation"]["ok"]
    assert query(lab, server, f"f{t}.{zone}.", "A") == ["192.0.2.10"]


def test_one_run_at_a_time_per_fleet(lab, tmp_path):
    zone = lab.spec.zone
    fleet = write_fleet(tmp_path / "fleet", lab, "bind", [{"domain": f"g{tag()}.{zone}", "server": "h2"}])
    with state.fleet_lock(fleet / ".cozyops", "test", "pytest holding the lock"):
        result = cli(lab, fleet, "apply", "--yes")
    assert result.returncode == 1
    assert "another cozyops run is working on it (pid" in result.stderr and "pytest holding the lock" in result.stderr
    assert cli(lab, fleet, "apply", "--yes").returncode == 0


def test_without_a_terminal_apply_needs_yes(lab, tmp_path):
    fleet = write_fleet(tmp_path / "fleet", lab, "bind", [{"domain": f"h{tag()}.{lab.spec.zone}", "server": "h2"}])
    result = cli(lab, fleet, "apply")
    assert result.returncode == 1 and "pass --yes" in result.stderr


def test_declining_the_prompt_says_nothing_was_applied(lab, tmp_path):
    name = f"n{tag()}.{lab.spec.zone}"
    fleet = write_fleet(tmp_path / "fleet", lab, "bind", [{"domain": name, "server": "h2"}])
    main, terminal = os.openpty()  # a terminal on standard input, answering "n"
    try:
        os.write(main, b"n\n")
        argv = [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--",
                sys.executable, "-m", "cozyops", "dns", "apply", "--fleet", str(fleet)]
        result = subprocess.run(argv, stdin=terminal, capture_output=True, text=True, timeout=180)
    finally:
        os.close(terminal)
        os.close(main)
    assert result.returncode == 1
    assert "Apply these 3 changes? [y/N]" in result.stderr  # (the terminal, not stderr, echoes the newline)
    assert result.stderr.rstrip().endswith(
        f"cozyops: error: plan for zone {lab.spec.zone}: not applied: declined at the prompt")
    assert query(lab, lab.spec.bind_address, f"{name}.", "A") == []


# -- the provider, on both servers --------------------------------------------------------------


def manager_for(fleet_dir: Path) -> DnsManager:
    return DnsManager(inventory.load(fleet_dir))


@pytest.mark.parametrize("primary", PRIMARIES)
def test_present_and_cleanup_txt_add_beside_and_remove_only_their_own(lab, tmp_path, primary):
    zone, server, secondary = addresses(lab, primary)
    name = f"_acme-challenge.i{tag()}.{zone}."
    assert raw_update(lab, primary, lambda u, z: u.add(name, 60, "TXT", '"someone-elses"')) == dns.rcode.NOERROR
    fleet = write_fleet(tmp_path / "fleet", lab, primary, [])
    provider = manager_for(fleet).provider()
    inside(lab, lambda: (provider.present_txt(name, "apex-token"), provider.present_txt(name, "wildcard-token")))
    assert query(lab, server, name, "TXT") == ['"apex-token"', '"someone-elses"', '"wildcard-token"']
    inside(lab, lambda: provider.cleanup_txt(name, "apex-token"))
    assert query(lab, server, name, "TXT") == ['"someone-elses"', '"wildcard-token"']
    end = time.monotonic() + 10
    while query(lab, secondary, name, "TXT") != ['"someone-elses"', '"wildcard-token"'] and time.monotonic() < end:
        time.sleep(0.1)
    assert query(lab, secondary, name, "TXT") == ['"someone-elses"', '"wildcard-token"']


@pytest.mark.parametrize("primary", PRIMARIES)
def test_a_failed_batch_is_journaled_and_the_next_apply_converges(lab, tmp_path, primary):
    t = tag()
    zone, server, _ = addresses(lab, primary)
    domains = [f"j{i}x{t}.{zone}" for i in range(5)]
    # One instance's changes per message (a group never splits), several messages in flight.
    fleet = write_fleet(tmp_path / "fleet", lab, primary, [{"domain": d, "server": "h2"} for d in domains],
                        dns_extra={"batch_size": 2, "unsafe_changes": 100})
    manager = manager_for(fleet)
    inside(lab, lambda: manager.apply(manager.plan()))
    set_instances(fleet, [{"domain": d, "server": "h1"} for d in domains])
    manager = manager_for(fleet)
    plan = inside(lab, manager.plan)
    assert plan.counts()["update"] == 2 * len(domains)
    # Someone changes one record between the plan and the apply: that batch's prerequisites fail.
    raw_update(lab, primary, lambda u, z: (u.replace(f"{domains[2]}.", 60, "A", "198.51.100.9")))
    result = inside(lab, lambda: manager.apply(plan))
    assert sorted(batch.index for batch in result.batches) == list(range(len(domains)))
    (failed,) = result.failed
    assert "the zone changed since it was read" in failed.error
    assert {change.group for change in failed.changes} == {domains[2].removesuffix(f".{zone}")}
    assert query(lab, server, f"{domains[2]}.", "A") == ["198.51.100.9"]  # the batch applied nothing
    assert query(lab, server, f"*.{domains[2]}.", "A") == ["192.0.2.11"]
    assert query(lab, server, f"{domains[3]}.", "A") == ["192.0.2.10"]  # the other batches did
    journaled = state.Journal(fleet / ".cozyops").entries("dns-batch", "failed")
    assert len(journaled) == 1 and journaled[0]["count"] == len(failed.changes)
    assert {change["name"] for change in journaled[0]["detail"]} >= {f"{domains[2]}.", f"*.{domains[2]}."}
    again = manager_for(fleet)
    inside(lab, lambda: again.apply(again.plan()))
    assert query(lab, server, f"{domains[2]}.", "A") == ["192.0.2.10"]
    assert inside(lab, manager_for(fleet).plan).changes == []


@pytest.mark.parametrize("primary", PRIMARIES)
def test_update_errors_name_server_zone_and_key(lab, tmp_path, primary):
    zone, _, secondary = addresses(lab, primary)
    fleet = write_fleet(tmp_path / "fleet", lab, primary, [{"domain": f"k{tag()}.{zone}", "server": "h2"}],
                        dns_extra={"server": secondary})
    manager = manager_for(fleet)
    plan = inside(lab, manager.plan)  # a secondary may serve the transfer...
    with pytest.raises(DnsError) as raised:
        inside(lab, lambda: manager.apply(plan))  # ...but takes no update
    message = str(raised.value)
    assert message.startswith(f"zone {zone} at {secondary} (TSIG key {lab.spec.key_name}): ")
    assert any(word in message for word in ("NOTAUTH", "REFUSED", "BADKEY"))  # BIND, BIND, Knot
    assert lab.key().secret not in message


def test_a_server_that_does_not_answer_times_out_in_one_line(lab, tmp_path):
    silent = lab.spec.address(250)  # in the lab's subnet, nobody there
    fleet = write_fleet(tmp_path / "fleet", lab, "bind", [], dns_extra={"server": silent, "timeout": 1})
    started = time.monotonic()
    with pytest.raises(DnsError, match=rf"^zone {lab.spec.zone} at {silent} \(TSIG key [^)]+\): "):
        inside(lab, manager_for(fleet).plan)
    assert time.monotonic() - started < 10


def test_propagation_reports_each_authoritative_server(lab, tmp_path):
    t = tag()
    zone, bind, knot = addresses(lab, "bind")
    fleet = write_fleet(tmp_path / "fleet", lab, "bind", [{"domain": f"m{t}.{zone}", "server": "h1"}])
    manager = manager_for(fleet)
    report = inside(lab, lambda: manager.apply_and_wait(manager.plan()))
    assert {(r.name, r.address) for r in report.propagation} == {(f"ns1.{zone}.", bind), (f"ns2.{zone}.", knot)}
    assert all(r.ok and r.checked == len(records.desired(manager.fleet)) for r in report.propagation)
    # A server in the NS set that never answers: reported by name, after the deadline, not before.
    silent = lab.spec.address(251)
    servers = [(f"ns1.{zone}.", bind), ("ns3.example.", silent)]
    expected = propagation.expectations(zone, records.desired(manager.fleet))
    serial = inside(lab, manager.provider().soa_serial)
    started = time.monotonic()
    reports = inside(lab, lambda: propagation.wait(servers, zone, serial, expected, deadline=3))
    elapsed = time.monotonic() - started
    assert 3 <= elapsed < 12
    by_name = {r.name: r for r in reports}
    assert by_name[f"ns1.{zone}."].ok
    assert not by_name["ns3.example."].ok and "timeout" in by_name["ns3.example."].reason


# -- manual mode and a delegated challenge ------------------------------------------------------


def normalized(snippet: str) -> set[str]:
    return {" ".join(line.split()) for line in snippet.splitlines()}


def paste(lab, snippet: str, primary: str) -> None:
    """What an operator does with the snippet at their DNS host (here: nsupdate on the lab's)."""
    zone, server, _ = addresses(lab, primary)
    lines = [line for line in snippet.splitlines() if line and not line.startswith((";", "$"))]
    script = f"server {server}\nzone {zone}\n" + "".join(
        f"update add {line.split()[0]}.{zone}. {' '.join(line.split()[1:])}\n" for line in lines) + "send\n"
    result = subprocess.run(
        [sys.executable, "-m", "cozyops", "lab", "exec", "--dir", str(lab.dir), "--", "nsupdate", "-k",
         str(lab.key_file)], input=script, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_manual_mode_prints_a_snippet_and_checks_the_servers(lab, tmp_path):
    t, primary = tag(), "bind"
    zone, bind, knot = addresses(lab, primary)
    fleet = write_fleet(tmp_path / "fleet", lab, primary, [{"domain": f"n{t}.{zone}", "server": "h1"}],
                        dns_extra={"provider": "manual", "nameservers": [bind, knot]})
    planned = cli(lab, fleet, "plan")
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.splitlines()[2] == f"$ORIGIN {zone}."
    assert f'n{t} 60 IN CAA 0 issuewild "letsencrypt.org"' in normalized(planned.stdout)
    data = json.loads(cli(lab, fleet, "plan", "--json").stdout)
    assert data["provider"] == "manual" and len(data["changes"]) == 5 and data["snippet"] == planned.stdout
    before = cli(lab, fleet, "check", "--json")
    assert before.returncode == 1
    report = json.loads(before.stdout)
    assert not report["ok"] and all(s["problem_count"] == 5 for s in report["servers"])
    assert f"n{t}.{zone}. A: missing (no such name)" in report["servers"][0]["problems"]
    assert cli(lab, fleet, "apply", "--yes").returncode == 1  # nothing to apply with the manual provider
    paste(lab, planned.stdout, primary)
    end = time.monotonic() + 10
    while (after := cli(lab, fleet, "check")).returncode != 0 and time.monotonic() < end:
        time.sleep(0.2)
    assert after.returncode == 0, after.stderr
    assert "serves serial" in after.stderr


def test_a_delegated_challenge_is_written_in_the_other_zone(lab, tmp_path):
    t = tag()
    zone, bind, knot = lab.spec.zone, lab.spec.bind_address, lab.spec.knot_address
    delegated = {"zone": lab.spec.zone2, "server": knot, "tsig_key_file": "secrets/tsig.key"}
    fleet = write_fleet(tmp_path / "fleet", lab, "bind", [{"domain": f"p{t}.{zone}", "server": "h2"}],
                        dns_extra={"provider": "manual", "nameservers": [bind, knot], "acme_challenge": delegated})
    snippet = cli(lab, fleet, "plan").stdout
    target = f"p{t}.{zone}.{lab.spec.zone2}."
    assert f"_acme-challenge.p{t} 60 IN CNAME {target}" in normalized(snippet)
    writer = manager_for(fleet).challenges()
    with pytest.raises(DnsError, match="is in no zone this fleet may update"):
        inside(lab, lambda: writer.present(f"p{t}.{zone}", "too-early"))  # the CNAME is not pasted yet
    paste(lab, snippet, "bind")
    writer = manager_for(fleet).challenges()
    written = inside(lab, lambda: (writer.present(f"p{t}.{zone}", "apex"), writer.present(f"*.p{t}.{zone}", "wild")))
    assert written == (target, target)
    assert query(lab, knot, target, "TXT") == ['"apex"', '"wild"']
    inside(lab, lambda: writer.cleanup(f"p{t}.{zone}", "apex"))
    assert query(lab, knot, target, "TXT") == ['"wild"']
    # A resolver following the CNAME from the fleet's zone finds it (asking BIND, the other server).
    end = time.monotonic() + 10
    while query(lab, bind, target, "TXT") != ['"wild"'] and time.monotonic() < end:
        time.sleep(0.1)
    assert query(lab, bind, target, "TXT") == ['"wild"']


def test_rfc2136_provider_reads_what_it_wrote(lab, tmp_path):
    zone, _, _ = addresses(lab, "knot")
    fleet = write_fleet(tmp_path / "fleet", lab, "knot", [{"domain": f"q{tag()}.{zone}", "server": "h1"}])
    manager = manager_for(fleet)
    provider = providers.build("rfc2136", zone, manager.fleet.dns.update)
    inside(lab, lambda: manager.apply(manager.plan()))
    data = inside(lab, provider.read)
    for record in records.desired(manager.fleet):
        assert data.rrsets[(record.name, record.rtype)].values == record.values
    assert data.nameservers() == [f"ns1.{zone}.", f"ns2.{zone}."]


@pytest.mark.parametrize("primary", PRIMARIES)
def test_zone_reads_match_dnspythons(lab, tmp_path, primary):
    """The wire-level AXFR reader sees exactly what dnspython's own transfer and parser see."""
    zone, server, _ = addresses(lab, primary)
    t = tag()

    def records_of_every_kind(update, z):
        update.add(f"Mixed{t}.{z}.", 60, "A", "192.0.2.1")
        update.add(f"mixed{t}.{z}.", 60, "AAAA", "2001:db8:0:0:1:0:0:1")
        update.add(f"mixed{t}.{z}.", 60, "TXT", '"plain" "two words"')
        update.add(f"mixed{t}.{z}.", 60, "TXT", '"quote \\" and backslash \\\\" "\\200\\001"')
        update.add(f"mixed{t}.{z}.", 60, "CAA", '128 issue "ca.example.net; account=1"')
        update.add(f"mx{t}.{z}.", 60, "MX", f"10 mixed{t}.{z}.")
        update.add(f"alias{t}.{z}.", 60, "CNAME", f"mixed{t}.{z}.")
        update.add(f"_sip._tcp.s{t}.{z}.", 60, "SRV", f"0 5 5060 mixed{t}.{z}.")
        update.add(f"*.w{t}.{z}.", 60, "A", "192.0.2.2")
        update.add(f"odd\\.label{t}.{z}.", 60, "TXT", "\"escaped dot in the owner\"")  # not an A: check-names

    assert raw_update(lab, primary, records_of_every_kind) == dns.rcode.NOERROR
    provider = manager_for(write_fleet(tmp_path / "fleet", lab, primary, [])).provider()
    key = lab.key()

    def both():
        ours = provider.read()
        theirs = {}
        origin = dns.name.from_text(zone)
        for message in dns.query.xfr(server, zone, keyring=key.keyring(), keyname=key.name,
                                     keyalgorithm=key.algorithm_name, relativize=False):
            for rrset in message.answer:
                name = rrset.name.relativize(origin).to_text().lower()
                rtype = dns.rdatatype.to_text(rrset.rdtype)
                values = set(theirs.get((name, rtype), ((), ()))[1]) | {rdata.to_text() for rdata in rrset}
                theirs[(name, rtype)] = (rrset.ttl, tuple(sorted(values)))
        return ours, theirs

    ours, theirs = inside(lab, both)
    assert {key: (rrset.ttl, rrset.values) for key, rrset in ours.rrsets.items()} == theirs
    assert ours.rrsets[(f"mixed{t}", "A")].values == ("192.0.2.1",)
    assert ours.rrsets[(f"odd\\.label{t}", "TXT")].values == ('"escaped dot in the owner"',)
    assert len(ours.rrsets[(f"mixed{t}", "TXT")].values) == 2
    assert ours.serial == int(theirs[("@", "SOA")][1][0].split()[2])


def test_rfc2136_mode_with_a_delegated_challenge_zone(lab, tmp_path):
    """The fleet's zone on BIND holds the _acme-challenge CNAMEs; challenges go to Knot's zone."""
    t = tag()
    zone, knot = lab.spec.zone, lab.spec.knot_address
    delegated = {"zone": lab.spec.zone2, "server": knot, "tsig_key_file": "secrets/tsig.key"}
    fleet = write_fleet(tmp_path / "fleet", lab, "bind", [{"domain": f"r{t}.{zone}", "server": "h2"}],
                        dns_extra={"acme_challenge": delegated})
    applied = cli(lab, fleet, "apply", "--yes")
    assert applied.returncode == 0, applied.stderr
    target = f"r{t}.{zone}.{lab.spec.zone2}."
    assert query(lab, knot, f"_acme-challenge.r{t}.{zone}.", "CNAME") == [target]  # served by the secondary too
    checked = cli(lab, fleet, "check", "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["ok"] and json.loads(checked.stdout)["records"] == 4
    writer = inside(lab, manager_for(fleet).challenges)  # reads the zone's NS: inside the lab
    assert inside(lab, lambda: writer.present(f"*.r{t}.{zone}", "token")) == target
    assert query(lab, knot, target, "TXT") == ['"token"']
    inside(lab, lambda: writer.cleanup(f"r{t}.{zone}", "token"))
    assert query(lab, knot, target, "TXT") == []
