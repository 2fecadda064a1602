"""Desired records per subdomain mode: tables of fleets and the exact records they need."""

from pathlib import Path

import pytest

from cozyops.dns import records
from cozyops.dns.records import RRset
from cozyops.model import (
    AcmeSettings,
    ChallengeDelegation,
    DnsProviderKind,
    DnsSettings,
    Fleet,
    Instance,
    Rfc2136Server,
    Server,
    SubdomainMode,
)

H1 = Server("h1", "192.0.2.10", "2001:db8::10")
H2 = Server("h2", "192.0.2.11")
H3 = Server("h3", "192.0.2.10")  # the same IPv4 as h1, but no IPv6
H4 = Server("h4", "192.0.2.11")  # exactly h2's addresses


def fleet(mode, instances, caa=(), delegation=None, ttl=300, zone="example.org"):
    return Fleet(
        "f", Path("/nowhere"), zone, SubdomainMode(mode),
        DnsSettings(DnsProviderKind.RFC2136, ttl=ttl, acme_challenge=delegation),
        AcmeSettings("https://ca.example/dir", caa=caa),
        {"h1": H1, "h2": H2, "h3": H3, "h4": H4},
        tuple(Instance(domain, server, tuple(apps)) for domain, server, apps in instances),
    )


def table(rrsets):
    return sorted((r.name, r.rtype, r.values, r.group) for r in rrsets)


A10, A11, AAAA10 = ("192.0.2.10",), ("192.0.2.11",), ("2001:db8::10",)
CAA_LE = ('0 issue "letsencrypt.org"', '0 issuewild "letsencrypt.org"')

CASES = {
    "nested: name and wildcard to the server, AAAA with IPv6": (
        fleet("nested", [("alice.example.org", "h1", ["drive"]), ("bob.example.org", "h2", ["drive"])]),
        [("*.alice", "A", A10, "alice"), ("*.alice", "AAAA", AAAA10, "alice"), ("*.bob", "A", A11, "bob"),
         ("alice", "A", A10, "alice"), ("alice", "AAAA", AAAA10, "alice"), ("bob", "A", A11, "bob")],
    ),
    "nested: CAA issue and issuewild at each instance": (
        fleet("nested", [("bob.example.org", "h2", [])], caa=("letsencrypt.org",)),
        [("*.bob", "A", A11, "bob"), ("bob", "A", A11, "bob"), ("bob", "CAA", CAA_LE, "bob")],
    ),
    "nested: an instance at the apex and one two labels down": (
        fleet("nested", [("example.org", "h2", []), ("a.users.example.org", "h2", [])]),
        [("*", "A", A11, "@"), ("*.a.users", "A", A11, "a.users"), ("@", "A", A11, "@"),
         ("a.users", "A", A11, "a.users")],
    ),
    "flat, one server: the names and one zone wildcard": (
        fleet("flat", [("alice.example.org", "h2", ["drive", "photos"]), ("bob.example.org", "h2", ["drive"])],
              caa=("letsencrypt.org",)),
        [("*", "A", A11, "@"), ("@", "CAA", CAA_LE, "@"), ("alice", "A", A11, "alice"), ("bob", "A", A11, "bob")],
    ),
    "flat, two servers: explicit <instance>-<app> names, no wildcard": (
        fleet("flat", [("alice.example.org", "h1", ["drive"]), ("bob.example.org", "h2", ["drive", "notes"])]),
        [("alice", "A", A10, "alice"), ("alice", "AAAA", AAAA10, "alice"), ("alice-drive", "A", A10, "alice"),
         ("alice-drive", "AAAA", AAAA10, "alice"), ("bob", "A", A11, "bob"), ("bob-drive", "A", A11, "bob"),
         ("bob-notes", "A", A11, "bob")],
    ),
    "flat: hosts sharing an IPv4 but not their IPv6 are two servers": (
        fleet("flat", [("alice.example.org", "h1", ["drive"]), ("bob.example.org", "h3", ["drive"])]),
        [("alice", "A", A10, "alice"), ("alice", "AAAA", AAAA10, "alice"), ("alice-drive", "A", A10, "alice"),
         ("alice-drive", "AAAA", AAAA10, "alice"), ("bob", "A", A10, "bob"), ("bob-drive", "A", A10, "bob")],
    ),
    "flat: hosts with identical addresses share the wildcard": (
        fleet("flat", [("bob.example.org", "h2", ["drive"]), ("carol.example.org", "h4", ["notes"])]),
        [("*", "A", A11, "@"), ("bob", "A", A11, "bob"), ("carol", "A", A11, "carol")],
    ),
    "flat: the wildcard is per parent name": (
        fleet("flat", [("a.users.example.org", "h2", ["drive"]), ("b.example.org", "h1", ["drive"])]),
        [("*", "A", A10, "@"), ("*", "AAAA", AAAA10, "@"), ("*.users", "A", A11, "users"),
         ("a.users", "A", A11, "a.users"), ("b", "A", A10, "b"), ("b", "AAAA", AAAA10, "b")],
    ),
    "flat, split servers under a sub-parent: app names keep the parent": (
        fleet("flat", [("a.users.example.org", "h2", ["drive"]), ("b.users.example.org", "h1", [])]),
        [("a-drive.users", "A", A11, "a.users"), ("a.users", "A", A11, "a.users"), ("b.users", "A", A10, "b.users"),
         ("b.users", "AAAA", AAAA10, "b.users")],
    ),
    "no instances: no records": (fleet("nested", []), []),
}


@pytest.mark.parametrize("case", CASES)
def test_desired_records(case):
    the_fleet, expected = CASES[case]
    assert table(records.desired(the_fleet)) == sorted(expected)


def test_ttl_is_the_fleets():
    assert {r.ttl for r in records.desired(fleet("nested", [("a.example.org", "h1", [])], ttl=42))} == {42}


def test_delegated_challenge_is_a_cname_into_the_other_zone():
    delegation = ChallengeDelegation("acme.example.net", Rfc2136Server("192.0.2.53"))
    nested = records.desired(fleet("nested", [("alice.example.org", "h2", [])], delegation=delegation))
    assert ("_acme-challenge.alice", "CNAME", ("alice.example.org.acme.example.net.",), "alice") in table(nested)
    flat = records.desired(fleet("flat", [("alice.example.org", "h2", [])], delegation=delegation))
    assert ("_acme-challenge", "CNAME", ("example.org.acme.example.net.",), "@") in table(flat)
    assert not any(r.name.startswith("_acme-challenge.alice") for r in flat)


@pytest.mark.parametrize(("rtype", "text", "canonical"), [
    ("AAAA", "2001:DB8:0:0:0:0:0:10", "2001:db8::10"),
    ("CAA", '0 issue "letsencrypt.org"', '0 issue "letsencrypt.org"'),
    ("A", "192.0.2.1", "192.0.2.1"),
])
def test_values_are_in_the_form_servers_return(rtype, text, canonical):
    assert records.canonical(rtype, text) == canonical


def test_marks_round_trip_and_foreign_txt_is_not_a_mark():
    strings = records.mark_strings("lab-x", {"alice": {"CAA", "A"}, "*.alice": {"A"}})
    assert strings == ("cozyops-owner=lab-x", "*.alice A", "alice A,CAA")
    mark = records.parse_mark("_cozyops.alice", records.txt_text(strings))
    assert mark.owner == "lab-x"
    assert mark.claims == {("alice", "A"), ("alice", "CAA"), ("*.alice", "A")}
    assert records.parse_mark("_cozyops.alice", '"v=spf1 -all"') is None
    assert records.mark_name("@") == "_cozyops" and records.mark_name("a.b") == "_cozyops.a.b"


def test_zone_snippet_lists_every_value_under_the_origin():
    the_fleet = fleet("nested", [("alice.example.org", "h1", [])], caa=("letsencrypt.org",))
    snippet = records.zone_snippet("example.org", records.desired(the_fleet), "header line")
    lines = snippet.splitlines()
    assert lines[0] == "; header line" and lines[1] == "$ORIGIN example.org."
    body = [" ".join(line.split()) for line in lines[2:]]
    assert body == [
        "alice 300 IN A 192.0.2.10",
        "alice 300 IN AAAA 2001:db8::10",
        'alice 300 IN CAA 0 issue "letsencrypt.org"',
        'alice 300 IN CAA 0 issuewild "letsencrypt.org"',
        "*.alice 300 IN A 192.0.2.10",
        "*.alice 300 IN AAAA 2001:db8::10",
    ]


def test_zone_snippet_orders_names_from_the_zone_down_apex_first():
    # Labels compared one by one (as lists): '-' and '0' sort below '.', so a joined string with
    # '.' would put a-b.x before c.a.x; the snippet's key must not.
    names = ["c.a.x", "a-b.x", "a.x", "x", "@", "b.x", "*.a.x", "a0.x", "_cozyops.a.x", "drive.a-b.x"]
    rrsets = [RRset(name, rtype, 300, ("v",)) for name in names for rtype in ("TXT", "A")]
    expected = sorted(rrsets, key=lambda r: (r.name != "@", list(reversed(r.name.split("."))), r.rtype))
    body = [line.split()[0:4] for line in records.zone_snippet("example.org", rrsets).splitlines()[1:]]
    assert body == [[r.name, "300", "IN", r.rtype] for r in expected]
    assert body[0][0] == "@" and [row[0] for row in body].index("a.x") < [row[0] for row in body].index("a-b.x")
