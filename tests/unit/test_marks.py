"""Ownership marks claim only what cozyops writes for their group: tables of claims, and plans
against zones with planted marks (issue 12, item 1). No I/O."""

import pytest

from cozyops.dns import planner, records
from cozyops.dns.plan import CREATE
from cozyops.dns.records import RRset, mark_strings, txt_text
from cozyops.model import ChallengeDelegation, Rfc2136Server
from tests.unit.test_records import CASES as FLEETS
from tests.unit.test_records import fleet

ME = "mine"

# (group, claimed name, type) -> honoured?
HONOURED = [
    ("alice", "alice", "A"), ("alice", "alice", "AAAA"), ("alice", "alice", "CAA"),
    ("alice", "*.alice", "A"), ("alice", "*.alice", "AAAA"),
    ("alice", "_acme-challenge.alice", "CNAME"),
    ("alice", "alice-drive", "A"), ("alice", "alice-drive", "AAAA"), ("alice", "alice-my_app", "A"),
    ("a.users", "a-drive.users", "A"), ("a.users", "*.a.users", "AAAA"), ("users", "*.users", "A"),
    ("alice", "_cozyops.alice", "TXT"),  # its own value: implied, changes nothing
    ("@", "@", "A"), ("@", "@", "AAAA"), ("@", "@", "CAA"), ("@", "*", "A"), ("@", "_acme-challenge", "CNAME"),
    ("bob-x", "bob-x", "A"),  # a nested instance may hold a '-'
]
REFUSED = [
    # types cozyops never writes, at the group's own names
    ("alice", "alice", "MX"), ("alice", "alice", "TXT"), ("alice", "alice", "NS"), ("alice", "alice", "SRV"),
    ("alice", "alice", "CNAME"), ("alice", "alice", "SOA"), ("alice", "*.alice", "CAA"), ("alice", "*.alice", "MX"),
    ("alice", "_acme-challenge.alice", "TXT"), ("alice", "_acme-challenge.alice", "A"),
    ("alice", "alice-drive", "CAA"), ("alice", "alice-drive", "MX"), ("alice", "_cozyops.alice", "A"),
    # the zone's own records, whoever claims them
    ("@", "@", "SOA"), ("@", "@", "NS"), ("@", "@", "MX"), ("@", "@", "TXT"), ("@", "_dmarc", "TXT"),
    # other groups' names
    ("alice", "bob", "A"), ("alice", "www", "A"), ("alice", "@", "A"), ("alice", "*", "A"), ("alice", "@", "NS"),
    ("alice", "*.bob", "A"), ("alice", "x.alice", "A"), ("alice", "_acme-challenge.bob", "CNAME"),
    ("@", "alice", "A"), ("@", "*.alice", "A"), ("@", "www", "A"), ("alice", "bob-drive", "A"),
    ("alice", "_cozyops.bob", "TXT"), ("alice", "_cozyops", "TXT"),
    # app hosts: the instance's first label, no '-' in it, the same parent, an app slug
    ("alice", "alice-drive.users", "A"), ("a.users", "a-drive", "A"), ("bob-x", "bob-x-drive", "A"),
    ("alice", "alice-", "A"), ("alice", "alice-_x", "A"), ("alice", "alice-Drive", "A"),
    # groups cozyops never marks
    ("*.alice", "*.alice", "A"), ("_acme-challenge.alice", "_acme-challenge.alice", "CNAME"),
    ("_cozyops.alice", "_cozyops.alice", "TXT"),
    # case: cozyops writes lowercase
    ("alice", "alice", "a"), ("alice", "ALICE", "A"),
]


@pytest.mark.parametrize(("group", "name", "rtype"), HONOURED)
def test_claims_honoured(group, name, rtype):
    assert records.claim_problem(group, name, rtype) is None


@pytest.mark.parametrize(("group", "name", "rtype"), REFUSED)
def test_claims_refused(group, name, rtype):
    problem = records.claim_problem(group, name, rtype)
    assert problem is not None and problem.startswith(f"claims {name} {rtype}: ")


def test_soa_and_apex_ns_say_they_are_never_planned():
    assert records.claim_problem("@", "@", "NS") == "claims @ NS: the zone's NS is never planned"
    assert "never planned" in records.claim_problem("@", "@", "SOA")


@pytest.mark.parametrize(("text", "problem"), [
    ('"cozyops-owner=f" "alice A" "alice MX"', "claims alice MX: cozyops never writes MX there"),
    ('"cozyops-owner=f" "alice A,TXT"', "claims alice TXT: cozyops never writes TXT there"),
    ('"cozyops-owner=f" "www A"', "claims www A: not a name of the group alice"),
    ('"cozyops-owner=f" "alice"', "holds 'alice', not '<name> <TYPE>,<TYPE>'"),
    ('"cozyops-owner=f" "alice A,,AAAA"', "holds 'alice A,,AAAA', not '<name> <TYPE>,<TYPE>'"),
])
def test_one_bad_claim_makes_the_whole_mark_malformed(text, problem):
    mark = records.parse_mark("_cozyops.alice", text)
    assert mark.owner == "f" and mark.problem == problem and mark.claims == frozenset()


def test_a_good_mark_has_no_problem_and_its_own_txt_is_not_a_claim():
    mark = records.parse_mark("_cozyops.alice", '"cozyops-owner=f" "*.alice A" "_cozyops.alice TXT" "alice A,CAA"')
    assert mark.problem is None
    assert mark.claims == {("*.alice", "A"), ("alice", "A"), ("alice", "CAA")}


DELEGATION = ChallengeDelegation("acme.example.net", Rfc2136Server("192.0.2.53"))


@pytest.mark.parametrize("case", FLEETS)
@pytest.mark.parametrize("extras", [dict(), dict(caa=("letsencrypt.org",), delegation=DELEGATION)])
def test_every_mark_cozyops_writes_is_honoured(case, extras):
    the_fleet = FLEETS[case][0]
    instances = [(i.domain, i.server, i.apps) for i in the_fleet.instances]
    desired = records.desired(fleet(the_fleet.subdomains.value, instances, **extras))
    plan = planner.plan_dns(ME, "example.org", "rfc2136", desired, {})
    marks = [change for change in plan.changes if change.mark]
    assert len(marks) == len(desired.groups)
    for change in marks:
        mark = records.parse_mark(change.name, change.values[0])
        assert mark.problem is None, (change.name, change.values[0], mark.problem)
        assert mark.claims == {record.key for record in desired.groups[mark.group]}


# -- plans against planted marks ----------------------------------------------------------------

ALICE = RRset("alice", "A", 300, ("192.0.2.10",), "alice")
STAR = RRset("*.alice", "A", 300, ("192.0.2.10",), "alice")
FOREIGN = [  # records cozyops never writes, at alice's names, other names and the apex
    RRset("alice", "MX", 300, ("10 mail.example.org.",)),
    RRset("alice", "TXT", 300, ('"v=spf1 -all"',)),
    RRset("alice", "NS", 300, ("ns.example.net.",)),
    RRset("_sip._tcp.alice", "SRV", 300, ("0 5 5060 sip.example.org.",)),
    RRset("*.alice", "MX", 300, ("10 mail.example.org.",)),
    RRset("www", "A", 300, ("198.51.100.8",)),
    RRset("bob", "A", 300, ("198.51.100.9",)),
    RRset("@", "NS", 300, ("ns1.example.org.",)),
    RRset("@", "SOA", 300, ("ns1.example.org. admin.example.org. 7 3600 600 86400 60",)),
    RRset("@", "MX", 300, ("10 mail.example.org.",)),
    RRset("@", "TXT", 300, ('"v=spf1 mx -all"',)),
    RRset("@", "A", 300, ("198.51.100.1",)),
]
PLANTED = {  # mark name -> TXT values, each claiming some of FOREIGN, with our fleet as owner
    "_cozyops.alice": ['"cozyops-owner=mine" "alice MX,TXT" "www A" "@ NS"',
                       '"cozyops-owner=mine" "*.alice MX" "_sip._tcp.alice SRV" "alice NS"',
                       '"cozyops-owner=theirs" "alice A" "bob A"'],
    "_cozyops": ['"cozyops-owner=mine" "@ NS,SOA,MX,TXT"', '"cozyops-owner=mine" "@ A" "bob A"'],
    "_cozyops.bob": ['"cozyops-owner=mine" "alice A" "*.alice A"'],
}


def planted_zone(*extra):
    observed = {r.key: RRset(r.name, r.rtype, r.ttl, r.values) for r in (*FOREIGN, *extra)}
    for name, texts in PLANTED.items():
        observed[(name, "TXT")] = RRset(name, "TXT", 300, tuple(sorted(texts)))
    return observed


@pytest.mark.parametrize("desired", [[], [ALICE, STAR]], ids=["no instances", "alice wanted"])
def test_planted_marks_change_nothing_they_claim_and_are_reported(desired):
    plan = planner.plan_dns(ME, "example.org", "rfc2136", desired, planted_zone())
    foreign = {r.key for r in FOREIGN}
    assert not [c for c in plan.changes if (c.name, c.rtype) in foreign]
    assert not [c for c in plan.changes if c.action != CREATE]  # nothing updated or deleted, no mark either
    assert plan.owned == 0
    planted = {(name, text) for name, texts in PLANTED.items() for text in texts}
    assert {(mark.name, mark.text) for mark in plan.malformed} == planted
    assert all(mark.problem for mark in plan.malformed)
    data = plan.to_json()["malformed"]
    assert {entry["value"] for entry in data} == {text for _, text in planted}
    assert {entry["name"] for entry in data} == {"_cozyops.alice.example.org.",
                                                 "_cozyops.example.org.", "_cozyops.bob.example.org."}


def test_a_malformed_mark_protects_nothing_and_is_trusted_for_nothing():
    # alice A exists, claimed only by a malformed mark of ours: it is not ours (a conflict, not an update)
    moved = RRset("alice", "A", 300, ("192.0.2.99",))
    plan = planner.plan_dns(ME, "example.org", "rfc2136", [ALICE, STAR], planted_zone(moved))
    assert [(c.name, c.rtype, c.owner) for c in plan.conflicts] == [("alice", "A", None)]
    assert [(c.action, c.name, c.rtype) for c in plan.record_changes] == [(CREATE, "*.alice", "A")]


def test_soa_and_apex_ns_are_never_planned_even_from_a_group_of_records():
    desired = [RRset("@", "NS", 300, ("ns9.example.org.",), "@"), RRset("@", "A", 300, ("192.0.2.10",), "@")]
    plan = planner.plan_dns(ME, "example.org", "rfc2136", desired, {})
    assert [(c.name, c.rtype) for c in plan.record_changes] == [("@", "A")]


def test_a_record_another_fleet_claims_too_is_never_deleted():
    observed = {("alice-drive", "A"): RRset("alice-drive", "A", 300, ("192.0.2.10",))}
    observed[("_cozyops.alice", "TXT")] = RRset("_cozyops.alice", "TXT", 300, (txt_text(mark_strings(ME, {
        "alice-drive": {"A"}})),))
    observed[("_cozyops.alice-drive", "TXT")] = RRset("_cozyops.alice-drive", "TXT", 300, (txt_text(mark_strings(
        "theirs", {"alice-drive": {"A"}})),))
    plan = planner.plan_dns(ME, "example.org", "rfc2136", [], observed)
    assert plan.record_changes == []
    assert [(c.action, c.name) for c in plan.changes] == [("delete", "_cozyops.alice")]


def _types_cozyops_never_writes():
    import dns.rdatatype

    written = {"A", "AAAA", "CAA", "CNAME"}
    return sorted({dns.rdatatype.to_text(code) for code in dns.rdatatype.RdataType} - written)


@pytest.mark.parametrize("rtype", _types_cozyops_never_writes())
def test_no_mark_may_claim_a_type_cozyops_never_writes(rtype):
    """The README's promise: cozyops never touches types it does not write, whatever a mark says."""
    for group, name in [("alice", "alice"), ("alice", "*.alice"), ("alice", "_acme-challenge.alice"),
                        ("alice", "alice-drive"), ("@", "@"), ("@", "*"), ("@", "_acme-challenge")]:
        assert records.claim_problem(group, name, rtype) is not None, (group, name)
    observed = {("alice", rtype): RRset("alice", rtype, 300, ("x",)),
                ("_cozyops.alice", "TXT"): RRset("_cozyops.alice", "TXT", 300, (
                    f'"cozyops-owner={ME}" "alice {rtype}" "*.alice {rtype}"',))}
    plan = planner.plan_dns(ME, "example.org", "rfc2136", [], observed)
    assert plan.changes == [] and len(plan.malformed) == 1
