"""`dns plan --json` is unchanged for users: its output and checksum, for a plan with every kind
of change (creates, updates, deletes, marks), conflicts (unmarked and another fleet's) and a
malformed mark, against committed fixtures of the output before the plan was made
resource-neutral (issue 13, item 5). The manual provider's output goes through the CLI itself."""

import json
from pathlib import Path

from cozyops.dns import records
from cozyops.dns.records import RRset, mark_strings, txt_text
from cozyops.model import ChallengeDelegation, Rfc2136Server
from tests.unit.test_dns_cli import manual_fleet, run  # noqa: F401 - a fixture
from tests.unit.test_records import fleet

FIXTURES = Path(__file__).parent / "fixtures"
ZONE = "example.org"


def observed() -> dict:
    """A zone where alice is in place but moved, carol is gone, dora is someone else's, and eve is unmarked."""
    found = {}

    def add(name, rtype, *values, ttl=300):
        found[(name, rtype)] = RRset(name, rtype, ttl, tuple(sorted(values)))

    add("alice", "A", "192.0.2.99")
    add("*.alice", "A", "192.0.2.99")
    add("alice", "AAAA", "2001:db8::99", ttl=60)
    add("carol", "A", "192.0.2.11")
    add("*.carol", "A", "192.0.2.11")
    add("dora", "A", "198.51.100.4")
    add("eve", "A", "198.51.100.5")
    add("alice", "MX", "10 mail.example.net.")
    marks = {
        "_cozyops.alice": [txt_text(mark_strings("f", {"alice": {"A", "AAAA"}, "*.alice": {"A"}})),
                           '"cozyops-owner=f" "alice MX"'],
        "_cozyops.carol": [txt_text(mark_strings("f", {"carol": {"A"}, "*.carol": {"A"}}))],
        "_cozyops.dora": [txt_text(mark_strings("other", {"dora": {"A"}}))],
    }
    for name, texts in marks.items():
        add(name, "TXT", *texts)
    return found


def dns_plan_json() -> dict:
    """What `cozyops dns plan --json` prints for an RFC 2136 fleet (the CLI adds `unsafe`)."""
    from cozyops.dns import planner
    from cozyops.dns.plan import Safety

    delegation = ChallengeDelegation("acme.example.net", Rfc2136Server("192.0.2.53"))
    the_fleet = fleet("nested", [("alice.example.org", "h1", ["drive"]), ("bob.example.org", "h2", []),
                                 ("dora.example.org", "h2", []), ("eve.example.org", "h2", [])],
                      caa=("letsencrypt.org",), delegation=delegation)
    zone = observed()
    plan = planner.plan_dns("f", ZONE, "rfc2136", records.desired(the_fleet), zone, serial=7,
                            marks_index=records.mark_index(zone))
    data = plan.to_json()
    data["unsafe"] = plan.unsafe(Safety(1, 10))
    return data


def canonical(data: dict) -> dict:
    """The plan's data with its changes in a fixed order: the planner lists the deletions of records
    its marks claim in the order of a set of strings, which differs between processes."""
    return {**data, "changes": sorted(data["changes"], key=lambda change: json.dumps(change, sort_keys=True))}


def test_dns_plan_json_and_checksum_are_unchanged():
    assert canonical(dns_plan_json()) == canonical(json.loads((FIXTURES / "dns_plan.json").read_text()))


def test_manual_dns_plan_json_is_unchanged(capsys, manual_fleet):  # noqa: F811
    code, out, _ = run(capsys, "dns", "plan", "--json", "--fleet", str(manual_fleet))
    assert code in (0, None)
    assert json.loads(out) == json.loads((FIXTURES / "dns_plan_manual.json").read_text())


def test_the_fixture_holds_every_kind_of_change():
    data = json.loads((FIXTURES / "dns_plan.json").read_text())
    assert len(data["checksum"]) == 16 and data["serial"] == 7 and data["unsafe"]
    assert {(c["action"], bool(c.get("mark"))) for c in data["changes"]} == {
        (action, mark) for action in ("create", "update", "delete") for mark in (False, True)}
    assert {c["owner"] for c in data["conflicts"]} == {None, "other"}
    assert [m["value"] for m in data["malformed"]] == ['"cozyops-owner=f" "alice MX"']
