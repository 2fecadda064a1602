"""The planner's ownership rule, and a plan's safety and checksum: tables, no I/O."""

import pytest

from cozyops.dns import planner
from cozyops.dns.plan import CREATE, DELETE, UPDATE, Change, Conflict, Plan, Safety
from cozyops.dns.records import RRset, mark_strings, txt_text

ME, OTHER = "mine", "theirs"


def want(name, rtype, value, group=None, ttl=300):
    return RRset(name, rtype, ttl, (value,), group or name.removeprefix("*."))


def zone(*rrsets, marks=()):
    """Observed records, plus marks: (owner, group, {name: types})."""
    observed = {(r.name, r.rtype): RRset(r.name, r.rtype, r.ttl, r.values) for r in rrsets}
    by_name: dict = {}
    for owner, group, claims in marks:
        name = "_cozyops" if group == "@" else f"_cozyops.{group}"
        by_name.setdefault(name, []).append(txt_text(mark_strings(owner, claims)))
    for name, texts in by_name.items():
        observed[(name, "TXT")] = RRset(name, "TXT", 300, tuple(sorted(texts)))
    return observed


def records_of(plan):
    return sorted((c.action, c.name, c.rtype, c.values, c.old_values) for c in plan.record_changes)


def marks_of(plan):
    return sorted((c.action, c.name) for c in plan.changes if c.mark)


ALICE = want("alice", "A", "192.0.2.10")
ALICE_MOVED = want("alice", "A", "192.0.2.99")
STAR = want("*.alice", "A", "192.0.2.10")
MINE = (ME, "alice", {"alice": {"A"}, "*.alice": {"A"}})

CASES = {
    "empty zone: create records and the mark": dict(
        desired=[ALICE, STAR], observed=zone(),
        records=[(CREATE, "*.alice", "A", ("192.0.2.10",), ()), (CREATE, "alice", "A", ("192.0.2.10",), ())],
        marks=[(CREATE, "_cozyops.alice")], owned=0,
    ),
    "all in place: nothing to do": dict(
        desired=[ALICE, STAR], observed=zone(ALICE, STAR, marks=[MINE]), records=[], marks=[], owned=2,
    ),
    "owned record with another value: update": dict(
        desired=[ALICE_MOVED, want("*.alice", "A", "192.0.2.99")], observed=zone(ALICE, STAR, marks=[MINE]),
        records=[(UPDATE, "*.alice", "A", ("192.0.2.99",), ("192.0.2.10",)),
                 (UPDATE, "alice", "A", ("192.0.2.99",), ("192.0.2.10",))],
        marks=[], owned=2,
    ),
    "owned record with another TTL only: update": dict(
        desired=[want("alice", "A", "192.0.2.10", ttl=60), want("*.alice", "A", "192.0.2.10", ttl=60)],
        observed=zone(ALICE, STAR, marks=[MINE]),
        records=[(UPDATE, "*.alice", "A", ("192.0.2.10",), ("192.0.2.10",)),
                 (UPDATE, "alice", "A", ("192.0.2.10",), ("192.0.2.10",))],
        marks=[], owned=2,
    ),
    "instance gone: delete its records and its mark": dict(
        desired=[], observed=zone(ALICE, STAR, marks=[MINE]),
        records=[(DELETE, "*.alice", "A", (), ("192.0.2.10",)), (DELETE, "alice", "A", (), ("192.0.2.10",))],
        marks=[(DELETE, "_cozyops.alice")], owned=2,
    ),
    "unmarked record at a wanted name: conflict, nothing written for it": dict(
        desired=[ALICE, STAR], observed=zone(ALICE_MOVED),
        records=[(CREATE, "*.alice", "A", ("192.0.2.10",), ())],
        marks=[(CREATE, "_cozyops.alice")], owned=0, conflicts=[("alice", "A", None)],
    ),
    "another fleet's record: conflict, and never deleted": dict(
        desired=[ALICE], observed=zone(ALICE_MOVED, marks=[(OTHER, "alice", {"alice": {"A"}})]),
        records=[], marks=[], owned=0, conflicts=[("alice", "A", OTHER)],
    ),
    "another fleet's records are not ours to delete": dict(
        desired=[], observed=zone(ALICE, STAR, marks=[(OTHER, "alice", {"alice": {"A"}, "*.alice": {"A"}})]),
        records=[], marks=[], owned=0,
    ),
    "foreign record of another type at our name: untouched, no conflict": dict(
        desired=[ALICE], observed=zone(RRset("alice", "MX", 300, ("10 mail.example.org.",))),
        records=[(CREATE, "alice", "A", ("192.0.2.10",), ())], marks=[(CREATE, "_cozyops.alice")], owned=0,
    ),
    "a foreign CNAME at our name blocks every type": dict(
        desired=[ALICE], observed=zone(RRset("alice", "CNAME", 300, ("elsewhere.example.net.",))),
        records=[], marks=[], owned=0, conflicts=[("alice", "A", None)],
    ),
    "a wanted CNAME where foreign data is: conflict": dict(
        desired=[want("_acme-challenge.alice", "CNAME", "alice.example.org.acme.example.net.", "alice")],
        observed=zone(RRset("_acme-challenge.alice", "TXT", 60, ('"token"',))),
        records=[], marks=[], owned=0, conflicts=[("_acme-challenge.alice", "CNAME", None)],
    ),
    "challenge delegation dropped: our CNAME goes, the mark is rewritten in the same group": dict(
        desired=[ALICE],
        observed=zone(ALICE, RRset("_acme-challenge.alice", "CNAME", 300, ("alice.example.org.acme.example.net.",)),
                      marks=[(ME, "alice", {"alice": {"A"}, "_acme-challenge.alice": {"CNAME"}})]),
        records=[(DELETE, "_acme-challenge.alice", "CNAME", (), ("alice.example.org.acme.example.net.",))],
        marks=[(UPDATE, "_cozyops.alice")], owned=2,
    ),
    "a record set claimed but gone from the zone: recreated": dict(
        desired=[ALICE, STAR], observed=zone(ALICE, marks=[MINE]),
        records=[(CREATE, "*.alice", "A", ("192.0.2.10",), ())], marks=[], owned=1,
    ),
    "a new type in an instance's group: the mark is rewritten": dict(
        desired=[ALICE, STAR, want("alice", "AAAA", "2001:db8::10")], observed=zone(ALICE, STAR, marks=[MINE]),
        records=[(CREATE, "alice", "AAAA", ("2001:db8::10",), ())], marks=[(UPDATE, "_cozyops.alice")], owned=2,
    ),
    "another fleet's mark at the same name stays": dict(
        desired=[], observed=zone(ALICE, marks=[(ME, "alice", {"alice": {"A"}}), (OTHER, "alice", {"alice": {"CAA"}})]),
        records=[(DELETE, "alice", "A", (), ("192.0.2.10",))], marks=[(DELETE, "_cozyops.alice")], owned=1,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_plan_table(case):
    spec = CASES[case]
    plan = planner.plan_dns(ME, "example.org", "rfc2136", spec["desired"], spec["observed"])
    assert records_of(plan) == sorted(spec["records"])
    assert marks_of(plan) == sorted(spec["marks"])
    assert plan.owned == spec["owned"]
    assert sorted((c.name, c.rtype, c.owner) for c in plan.conflicts) == sorted(spec.get("conflicts", []))


def test_marks_list_exactly_what_the_fleet_writes():
    plan = planner.plan_dns(ME, "example.org", "rfc2136", [ALICE, STAR], zone(ALICE_MOVED))
    (mark,) = [c for c in plan.changes if c.mark]
    assert mark.values == ('"cozyops-owner=mine" "*.alice A"',)  # not alice A: that one is someone else's


def test_a_mark_update_replaces_only_our_value():
    observed = zone(ALICE, STAR, marks=[MINE, (OTHER, "alice", {"alice": {"CAA"}})])
    plan = planner.plan_dns(ME, "example.org", "rfc2136", [ALICE], observed)
    (mark,) = [c for c in plan.changes if c.mark]
    assert mark.action == UPDATE
    assert mark.old_values == ('"cozyops-owner=mine" "*.alice A" "alice A"',)
    assert mark.values == ('"cozyops-owner=mine" "alice A"',)


def test_adopt_takes_unmarked_records_but_never_another_fleets():
    observed = zone(ALICE_MOVED, STAR, marks=[(OTHER, "alice", {"*.alice": {"A"}})])
    plan = planner.plan_dns(ME, "example.org", "rfc2136", [ALICE, STAR], observed, adopt=True)
    assert records_of(plan) == [(UPDATE, "alice", "A", ("192.0.2.10",), ("192.0.2.99",))]
    assert [(c.name, c.owner) for c in plan.conflicts] == [("*.alice", OTHER)]


def test_deletions_travel_with_their_groups_mark():
    plan = planner.plan_dns(ME, "example.org", "rfc2136", [], zone(ALICE, STAR, marks=[MINE]))
    assert {c.group for c in plan.changes} == {"alice"}


def test_manual_plans_have_no_marks():
    plan = planner.plan_dns(ME, "example.org", "manual", [ALICE, STAR], {}, marks=False)
    assert len(plan.changes) == 2 and not any(c.mark for c in plan.changes)


SAFETY = Safety(max_changes=10, max_percent=30)


@pytest.mark.parametrize(("risky", "owned", "unsafe"), [
    (0, 0, False),
    (10, 10, False),  # not more than 10
    (11, 100, False),  # 11 % of what it owns
    (11, 36, True),  # 30.6 %
    (11, 37, False),  # 29.7 %
    (30, 100, False),  # exactly 30 % is not more than 30 %
    (31, 100, True),
    (50, 50, True),
    (11, 0, True),  # owns nothing yet somehow deletes: unsafe
])
def test_safety_needs_both_thresholds(risky, owned, unsafe):
    assert (SAFETY.verdict(risky, owned) is not None) == unsafe


def test_safety_thresholds_are_configurable():
    assert Safety(0, 0).verdict(1, 100) is not None
    assert Safety(100, 100).verdict(99, 1) is None


def test_unsafe_counts_updates_and_deletes_not_creates_or_marks():
    changes = [Change(CREATE, f"c{i}", "A", 300, ("192.0.2.1",), None, (), f"c{i}") for i in range(50)]
    changes += [Change(DELETE, f"d{i}", "A", None, (), 300, ("192.0.2.1",), f"d{i}") for i in range(6)]
    changes += [Change(UPDATE, f"u{i}", "A", 300, ("192.0.2.2",), 300, ("192.0.2.1",), f"u{i}") for i in range(6)]
    changes += [Change(DELETE, f"_cozyops.d{i}", "TXT", None, (), None, ('"x"',), f"d{i}", True) for i in range(6)]
    plan = Plan("f", "example.org", "rfc2136", changes, owned=12)
    assert plan.risky == 12
    assert "12 of the 12 records" in plan.unsafe(SAFETY)


def test_checksum_identifies_the_changes_before_and_after():
    base = [Change(UPDATE, "a", "A", 300, ("192.0.2.2",), 300, ("192.0.2.1",), "a")]
    same = Plan("f", "example.org", "rfc2136", list(reversed(base))).checksum
    assert Plan("f", "example.org", "rfc2136", base).checksum == same
    other_old = [base[0]._replace(old_values=("192.0.2.3",))]
    assert Plan("f", "example.org", "rfc2136", other_old).checksum != same
    assert Plan("g", "example.org", "rfc2136", base).checksum != same
    assert Plan("f", "example.org", "rfc2136", []).checksum != same
    assert len(same) == 16 and int(same, 16) >= 0


def test_plan_json_has_changes_and_checksum():
    plan = planner.plan_dns(ME, "example.org", "rfc2136", [ALICE], zone(ALICE_MOVED, marks=[]))
    data = plan.to_json()
    assert data["checksum"] == plan.checksum and data["changes"] == []
    assert data["conflicts"][0]["name"] == "alice.example.org." and data["conflicts"][0]["owner"] is None
    plan = planner.plan_dns(ME, "example.org", "rfc2136", [ALICE], {})
    change = next(c for c in plan.to_json()["changes"] if not c.get("mark"))
    assert change == {"action": "create", "name": "alice.example.org.", "type": "A", "ttl": 300,
                      "values": ["192.0.2.10"]}
    assert Conflict("x", "A", "o", ()).reason() == "belongs to fleet o"


def test_a_record_two_of_our_marks_claim_is_owned_once_and_kept():
    # Flat mode gave alice the app host alice-drive; now (nested) alice-drive is an instance.
    host, host_star = want("alice-drive", "A", "192.0.2.10"), want("*.alice-drive", "A", "192.0.2.10")
    mine = (ME, "alice-drive", {"alice-drive": {"A"}, "*.alice-drive": {"A"}})
    observed = zone(host, host_star, marks=[mine, (ME, "alice", {"alice-drive": {"A"}})])
    plan = planner.plan_dns(ME, "example.org", "rfc2136", [host, host_star], observed)
    assert plan.owned == 2
    assert records_of(plan) == []  # alice-drive A is still wanted (by its own group): not deleted
    assert marks_of(plan) == [(DELETE, "_cozyops.alice")]
