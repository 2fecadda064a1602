"""Planted ownership marks against BIND (issue 12, item 1): marks in the zone that claim records
cozyops never writes (MX, TXT, NS, SOA, SRV, ...), other groups' names and the apex, written by
hand with the lab's TSIG key as another tool would. `dns apply --yes` changes none of those
records and reports the marks as malformed; `dns plan --json` and `dns check` list them."""

from __future__ import annotations

import json

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.integration.test_dns import addresses, cli, inside, query, raw_update, set_instances, tag, write_fleet

pytestmark = pytest.mark.lab

PRIMARY = "bind"


def foreign_records(t: str) -> list[tuple[str, str, str]]:
    """(name relative to the zone, type, value): types cozyops never writes, at alice's names and others'."""
    return [
        (f"alice{t}", "MX", "10 mail.example.net."),
        (f"alice{t}", "TXT", '"v=spf1 -all"'),
        (f"alice{t}", "HINFO", '"planted" "by hand"'),
        (f"*.alice{t}", "MX", "20 mail.example.net."),
        (f"_sip._tcp.alice{t}", "SRV", "0 5 5060 sip.example.net."),
        (f"_25._tcp.alice{t}", "TLSA", "3 1 1 " + "ab" * 32),
        (f"alice{t}", "SSHFP", "4 2 " + "cd" * 32),
        (f"ptr{t}", "PTR", "alice.example.net."),
        (f"www{t}", "A", "198.51.100.8"),
        (f"bob{t}", "A", "198.51.100.9"),
        (f"cn{t}", "CNAME", "elsewhere.example.net."),
        (f"sub{t}", "NS", "ns.example.net."),
        ("@", "TXT", f'"planted-{t}"'),
    ]


def planted_marks(t: str, owner: str) -> list[tuple[str, str]]:
    """(mark name, TXT value): each claims something cozyops never writes for that mark's group."""
    me = f'"cozyops-owner={owner}"'
    return [
        (f"_cozyops.alice{t}", f'{me} "alice{t} MX,TXT" "www{t} A" "@ NS"'),
        (f"_cozyops.alice{t}", f'{me} "*.alice{t} MX" "_sip._tcp.alice{t} SRV" "_25._tcp.alice{t} TLSA"'),
        (f"_cozyops.alice{t}", f'{me} "alice{t} HINFO,SSHFP"'),
        (f"_cozyops.alice{t}", f'{me} "alice{t} A" "bob{t} A" "cn{t} CNAME" "sub{t} NS" "ptr{t} PTR"'),
        (f"_cozyops.alice{t}", '"cozyops-owner=someone-else" "alice{t} MX"'.replace("{t}", t)),
        ("_cozyops", f'{me} "@ SOA,NS,TXT"'),
        ("_cozyops", f'{me} "@ NS" "bob{t} A"'),
        (f"_cozyops.bob{t}", f'{me} "bob{t} A" "alice{t} MX"'),
    ]


def fqdn(name: str, zone: str) -> str:
    return f"{zone}." if name == "@" else f"{name}.{zone}."


def held(lab, server: str, name: str, rtype: str) -> list[str]:
    """The values the server holds at ``name`` ``rtype``, in its answer or (a delegation's NS) its referral."""

    def ask():
        response = dns.query.tcp(dns.message.make_query(name, rtype), server, timeout=5)
        code = dns.rdatatype.from_text(rtype)
        return sorted(rdata.to_text() for rrset in (*response.answer, *response.authority)
                      if rrset.rdtype == code and rrset.name.to_text().lower() == name for rdata in rrset)

    return inside(lab, ask)


def test_planted_marks_change_nothing_and_are_reported_as_malformed(lab, tmp_path):
    t = tag()
    zone, server, _ = addresses(lab, PRIMARY)
    fleet = write_fleet(tmp_path / "fleet", lab, PRIMARY, [{"domain": f"alice{t}.{zone}", "server": "h2"}],
                        name=f"marks-{t}")
    owner = f"marks-{t}"
    foreign, marks = foreign_records(t), planted_marks(t, owner)
    watched = sorted({(name, rtype) for name, rtype, _ in foreign} | {("@", "NS")})  # the SOA's serial moves

    def served() -> dict[tuple[str, str], list[str]]:
        return {(name, rtype): held(lab, server, fqdn(name, zone), rtype) for name, rtype in watched}

    def plant(update, z):
        for name, rtype, value in foreign:
            update.add(fqdn(name, z), 300, rtype, value)
        for name, value in marks:
            update.add(fqdn(name, z), 300, "TXT", value)

    def unplant(update, z):
        for name, rtype, value in foreign:
            update.delete(fqdn(name, z), rtype, value)
        for name, value in marks:
            update.delete(fqdn(name, z), "TXT", value)

    assert raw_update(lab, PRIMARY, plant) == dns.rcode.NOERROR
    try:
        before = served()
        assert [key for key, values in before.items() if not values] == [], before
        planned = cli(lab, fleet, "plan", "--json")
        assert planned.returncode == 0, planned.stderr
        data = json.loads(planned.stdout)
        reported = {(entry["name"], entry["value"]) for entry in data["malformed"]}
        assert reported == {(fqdn(name, zone), value) for name, value in marks}
        assert all(entry["problem"].startswith("claims ") for entry in data["malformed"])
        touched = {(change["name"], change["type"]) for change in data["changes"]}
        assert not touched & {(fqdn(name, zone), rtype) for name, rtype in [*watched, ("@", "SOA")]}
        assert {change["action"] for change in data["changes"]} == {"create"}

        applied = cli(lab, fleet, "apply", "--yes")
        assert applied.returncode == 1, applied.stderr
        assert (f"! malformed ownership mark _cozyops.alice{t}.{zone}. TXT (owner {owner}): claims alice{t} MX: "
                "cozyops never writes MX there; ignored") in applied.stderr
        assert f"! malformed ownership mark _cozyops.{zone}. TXT (owner {owner}): claims @ SOA" in applied.stderr
        last = applied.stderr.strip().splitlines()[-1]
        assert last.startswith(f"cozyops: error: dns apply for zone {zone}: ") and "malformed ownership mark" in last
        assert served() == before
        assert query(lab, server, f"alice{t}.{zone}.", "A") == ["192.0.2.11"]  # the rest of the plan is applied

        checked = cli(lab, fleet, "check", "--json")
        assert checked.returncode == 1
        check_data = json.loads(checked.stdout)
        assert check_data["ok"] is True and len(check_data["malformed"]) == len(marks)

        set_instances(fleet, [])  # alice gone: a trusted mark would now have its claims deleted
        gone = cli(lab, fleet, "apply", "--yes")
        assert gone.returncode == 1, gone.stderr
        assert served() == before
        assert len(query(lab, server, f"{zone}.", "SOA")) == 1
        assert query(lab, server, f"alice{t}.{zone}.", "A") == []  # what the fleet wrote is removed
        # its own mark too; the malformed ones are neither trusted nor deleted
        assert query(lab, server, f"_cozyops.alice{t}.{zone}.", "TXT") == sorted(
            value for name, value in marks if name == f"_cozyops.alice{t}")
    finally:
        assert raw_update(lab, PRIMARY, unplant) == dns.rcode.NOERROR
